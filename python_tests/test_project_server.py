"""``dalcore serve``'s API: labels in transactions, two tabs, token, only project files, jobs,
and a real server killed with SIGKILL between labels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from project_helpers import (
    cli,
    db_count,
    db_labels,
    digits_images,
    free_port,
    write_labels_csv,
    write_pngs,
)
from starlette.testclient import TestClient

from dalcore.project.server import create_app

CLASSES = "0,1,2,3,4,5,6,7,8,9"


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    x, y = digits_images(80, seed=5)
    root = tmp_path / "images"
    truth = write_pngs(root, np.kron(x, np.ones((2, 2), np.uint8)), y)
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", root, "--classes", CLASSES, "--quiet") == 0
    assert cli("query", proj, "--budget", "10", "--quiet") == 0  # a label-free first batch
    return proj, root, truth


def _batch(client: TestClient) -> list[dict]:
    st = client.get("/api/state").json()
    return st["query"]["items"]


def test_labels_are_stored_at_once_and_two_tabs_agree(project) -> None:
    proj, _root, _truth = project
    tab1, tab2 = TestClient(create_app(proj)), TestClient(create_app(proj))
    items = _batch(tab1)
    qid = tab1.get("/api/state").json()["query"]["id"]
    r = tab1.post("/api/label", json={"image_id": items[0]["image_id"], "class_id": 3,
                                      "query_id": qid})
    assert r.status_code == 200 and r.json()["changed"] is True
    assert db_labels(proj) == {items[0]["path"]: "3"}  # on disk when the response came
    r = tab2.post("/api/label", json={"image_id": items[0]["image_id"], "class_id": 3})
    assert r.json()["changed"] is False  # the same label from the other tab: not duplicated
    assert db_count(proj, "SELECT COUNT(*) FROM labels") == 1
    errors: list[str] = []

    def label_half(client: TestClient, part: list[dict], cls: int) -> None:
        for it in part:
            if client.post("/api/label", json={"image_id": it["image_id"],
                                               "class_id": cls}).status_code != 200:
                errors.append(it["path"])

    t = [threading.Thread(target=label_half, args=(c, items[k::2], k)) for k, c in
         enumerate((tab1, tab2))]
    [th.start() for th in t]
    [th.join() for th in t]
    assert not errors
    labels = db_labels(proj)
    assert {it["path"]: labels[it["path"]] for it in items} == \
        {it["path"]: str(k % 2) for k, it in enumerate(items)}
    state = tab2.get("/api/state").json()
    assert all(it["label"] == k % 2 for k, it in enumerate(state["query"]["items"]))
    # undo restores the previous label as a new history row
    tab1.post("/api/label", json={"image_id": items[2]["image_id"], "class_id": 7})
    tab1.post("/api/label", json={"image_id": items[2]["image_id"], "class_id": 0, "undo": True})
    assert db_labels(proj)[items[2]["path"]] == "0"


def test_bad_requests_get_clear_errors(project) -> None:
    proj, _root, _truth = project
    c = TestClient(create_app(proj))
    iid = _batch(c)[0]["image_id"]
    assert c.post("/api/label", content=b"{not json").status_code == 400
    r = c.post("/api/label", json={"image_id": iid, "class_id": 10})
    assert r.status_code == 400 and "class 10" in r.json()["error"]
    r = c.post("/api/label", json={"image_id": "x", "class_id": 1})
    assert r.status_code == 400 and "image_id" in r.json()["error"]
    assert c.post("/api/label", json={"class_id": 1}).status_code == 400
    assert c.post("/api/train", json={"budget": 0}).status_code == 400
    assert c.get("/api/predictions?offset=-1").status_code == 400
    assert db_count(proj, "SELECT COUNT(*) FROM labels") == 0


def test_serves_only_project_images(project, tmp_path) -> None:
    proj, root, truth = project
    (tmp_path / "secret.txt").write_text("not for the page")
    (root / "later.png").write_bytes((root / next(iter(truth))).read_bytes())  # not scanned
    c = TestClient(create_app(proj))
    rel = sorted(truth)[0]
    r = c.get(f"/files/{rel}")
    assert r.status_code == 200 and r.content == (root / rel).read_bytes()
    for bad in ("../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt", "later.png",
                f"{rel}/..", "/etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd"):
        assert c.get(f"/files/{bad}").status_code in (403, 404), bad
    img = c.get(f"/api/image/{_batch(c)[0]['image_id']}")
    assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.get("/api/image/999999").status_code == 404
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/static/../project.db").status_code == 404
    assert TestClient(create_app(proj), base_url="http://evil.example").get(
        "/api/state").status_code == 400  # a foreign Host header (DNS rebinding)


def test_token_is_required_when_given(project) -> None:
    proj, _root, _truth = project
    c = TestClient(create_app(proj, token="s3cret"))
    assert c.get("/api/state").status_code == 403
    assert c.get("/").status_code == 403
    assert c.get("/api/state", headers={"X-Dalcore-Token": "wrong"}).status_code == 403
    assert c.get("/api/state", headers={"X-Dalcore-Token": "s3cret"}).status_code == 200
    r = c.get("/?token=s3cret")  # the address `serve` prints: sets the page's cookie
    assert r.status_code == 200 and "dalcore_token" in r.headers.get("set-cookie", "")
    assert c.get("/api/state").status_code == 200  # the cookie now rides along


def test_train_runs_in_the_background(project) -> None:
    proj, _root, truth = project
    paths = sorted(truth)[:30]
    write_labels_csv(proj.parent / "l.csv", [(p, str(truth[p])) for p in paths])
    assert cli("import", proj, proj.parent / "l.csv") == 0
    c = TestClient(create_app(proj))
    r = c.post("/api/train", json={"budget": 8, "method": "coreset", "cv": 0})
    assert r.status_code == 202
    assert c.post("/api/train", json={"budget": 8}).status_code == 409  # one at a time
    t0 = time.monotonic()
    iid = _batch(c)[0]["image_id"]  # the page stays usable while training
    assert c.post("/api/label", json={"image_id": iid, "class_id": 1}).status_code == 200
    while c.get("/api/job").json()["state"] == "running":
        assert time.monotonic() - t0 < 300
        time.sleep(0.5)
    job = c.get("/api/job").json()
    assert job["state"] == "done", job
    st = c.get("/api/state").json()
    new = st["query"]["items"]
    # An image labeled while the model trained is left out of the new batch.
    assert st["query"]["id"] == 2 and len(new) == 8 - any(
        "labeled while the model trained" in ln for ln in job["lines"])
    assert iid not in {it["image_id"] for it in new}
    assert all(it["predicted"] is not None and it["label"] is None for it in new)
    preds = c.get("/api/predictions?limit=500").json()
    conf = [it["confidence"] for it in preds["items"]]
    assert preds["total"] == len(truth) and conf == sorted(conf)  # least confident first


def _start(proj: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "dalcore", "serve", str(proj), "--port",
                          str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=2).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("dalcore serve did not start")


def test_kill_9_between_labels_loses_none(project) -> None:
    proj, _root, _truth = project
    port = free_port()
    server = _start(proj, port)
    try:
        items = httpx.get(f"http://127.0.0.1:{port}/api/state").json()["query"]["items"]
        given = {}
        for k, it in enumerate(items[:7]):
            r = httpx.post(f"http://127.0.0.1:{port}/api/label",
                           json={"image_id": it["image_id"], "class_id": k % 10})
            assert r.status_code == 200
            given[it["path"]] = str(k % 10)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert db_labels(proj) == given
    again = _start(proj, port)  # the serve lock died with the process
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/api/label",
                       json={"image_id": items[8]["image_id"], "class_id": 2})
        assert r.status_code == 200
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=30)
    assert len(db_labels(proj)) == 8
