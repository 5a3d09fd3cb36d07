"""The labeling page in a real browser: headless Chromium driven by selenium.

Chromium and chromedriver come from Debian (``.ci/run`` installs them); where they are absent the
test is skipped, except under ``DALCORE_REQUIRE_BROWSER=1`` (set by CI), where it fails.
``DALCORE_SCREENSHOT=PATH`` also keeps the screenshot there (README's picture is made so).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from project_helpers import cli, db_labels, digits_images, fashion_images, free_port, write_pngs

FASHION = "tshirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot"


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("DALCORE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required here (DALCORE_REQUIRE_BROWSER=1)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _wait(pred, timeout: float = 20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def _labels_of(proj: Path, paths: list[str]) -> list[str | None]:
    labels = db_labels(proj)
    return [labels.get(p) for p in paths]


def test_label_a_batch_with_keys_and_clicks(tmp_path: Path) -> None:
    data = fashion_images(60, seed=2)
    classes = FASHION
    if data is None:
        data, classes = digits_images(60, seed=2), "0,1,2,3,4,5,6,7,8,9"
        data = (np.kron(data[0], np.ones((4, 4), np.uint8)), data[1])
    images = tmp_path / "images"
    write_pngs(images, *data)
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", images, "--classes", classes, "--quiet") == 0
    assert cli("query", proj, "--budget", "8", "--quiet") == 0
    driver = _driver()
    port = free_port()
    server = _start_with_token(proj, port)
    try:
        _label_on_the_page(driver, proj, port, tmp_path)
    finally:
        driver.quit()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def _start_with_token(proj: Path, port: int):
    import subprocess
    import sys

    import httpx

    p = subprocess.Popen([sys.executable, "-m", "dalcore", "serve", str(proj), "--port",
                          str(port), "--token", "tok"], stdout=subprocess.DEVNULL)
    _wait(lambda: _up(httpx, port), 60)
    return p


def _up(httpx, port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/state",
                         headers={"X-Dalcore-Token": "tok"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _label_on_the_page(driver, proj: Path, port: int, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"http://127.0.0.1:{port}/?token=tok")
    cards = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .card"))
    assert len(cards) == 8
    paths = [c.find_element(By.CLASS_NAME, "path").text for c in cards]
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("1")  # first class on image 1
    _wait(lambda: _labels_of(proj, paths[:1]) == [_name(proj, 0)])
    body.send_keys("3")  # third class on image 2
    _wait(lambda: _labels_of(proj, paths[:2]) == [_name(proj, 0), _name(proj, 2)])
    driver.find_elements(By.CSS_SELECTOR, "#classes .cls")[1].click()  # a click on image 3
    _wait(lambda: _labels_of(proj, paths[2:3]) == [_name(proj, 1)])
    body.send_keys(Keys.BACKSPACE)  # undo the click
    _wait(lambda: _labels_of(proj, paths[2:3]) == [None])
    body.send_keys("0")  # tenth class, on image 3 again (undo made it current)
    _wait(lambda: _labels_of(proj, paths[2:3]) == [_name(proj, 9)])
    body.send_keys(" ")  # skip image 4
    body.send_keys("2")  # image 5
    _wait(lambda: _labels_of(proj, paths[4:5]) == [_name(proj, 1)])
    cards[6].click()  # jump to image 7 with the mouse, label it with a key
    body.send_keys("5")
    _wait(lambda: _labels_of(proj, paths[6:7]) == [_name(proj, 4)])
    counter = driver.find_element(By.ID, "counter").text
    assert counter == "5 of 8 labeled", counter
    assert _labels_of(proj, paths) == [_name(proj, 0), _name(proj, 2), _name(proj, 9), None,
                                       _name(proj, 1), None, _name(proj, 4), None]
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
    keep = os.environ.get("DALCORE_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def _name(proj: Path, k: int) -> str:
    import sqlite3

    con = sqlite3.connect(proj / "project.db")
    try:
        return con.execute("SELECT name FROM classes WHERE id = ?", (k,)).fetchone()[0]
    finally:
        con.close()
