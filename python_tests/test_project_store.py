"""The project store and the folder scan: formats, unreadable files, rescans, labels, errors."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from project_helpers import (
    cli,
    cli_proc,
    db_count,
    db_labels,
    digits_images,
    write_labels_csv,
    write_pngs,
)

from dalcore.project import Project, ProjectError
from dalcore.project.scan import decode_image, read_cache

CLASSES = "0,1,2,3,4,5,6,7,8,9"


def _pixels(project: Path, rel: str) -> np.ndarray:
    """The cached (3, s, s) pixels of one file, read via plain sqlite3 + numpy."""
    con = sqlite3.connect(project / "project.db")
    row, size = con.execute(
        "SELECT i.cache_row, (SELECT value FROM meta WHERE key='image_size') FROM files f "
        "JOIN images i ON i.id = f.image_id WHERE f.path = ?", (rel,)).fetchone()
    con.close()
    s = int(size)
    raw = np.fromfile(project / "cache" / f"pixels_{s}.u8", dtype=np.uint8)
    return raw.reshape(-1, 3, s, s)[row]


@pytest.fixture
def digits_folder(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    x, y = digits_images(60, seed=3)
    big = np.kron(x, np.ones((2, 2), dtype=np.uint8))  # 16x16: the cpu preset's size exactly
    folder = tmp_path / "images"
    return folder, write_pngs(folder, big, y, nested=4)


def test_init_scans_recursively_and_caches_exact_pixels(tmp_path, digits_folder) -> None:
    folder, truth = digits_folder
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", folder, "--classes", CLASSES, "--quiet") == 0
    assert db_count(proj, "SELECT COUNT(*) FROM files") == len(truth)
    assert db_count(proj, "SELECT COUNT(*) FROM images WHERE status='ok'") == len(truth)
    checked = 0
    for rel in list(truth)[:12]:
        ref = np.asarray(Image.open(folder / rel))  # already 16x16: stored without change
        got = _pixels(proj, rel)
        assert np.array_equal(got[0], ref) and np.array_equal(got[1], ref)
        checked += 1
    assert checked == 12
    assert any("/" in p for p in truth)  # the sub-folder was scanned too


def _modes_folder(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One file per PIL mode/format; returns the expected 16x16 gray or RGB reference."""
    root.mkdir(parents=True)
    ref = {}
    g = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(g).save(root / "gray.png")
    ref["gray.png"] = np.stack([g] * 3)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "rgb.bmp")
    ref["rgb.bmp"] = rgb.transpose(2, 0, 1)
    Image.fromarray(rgb).save(root / "rgb.tiff")
    ref["rgb.tiff"] = rgb.transpose(2, 0, 1)
    Image.fromarray(rgb).save(root / "lossless.webp", lossless=True)
    ref["lossless.webp"] = rgb.transpose(2, 0, 1)
    alpha = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(root / "rgba.png")
    a = alpha.astype(np.float64)[..., None] / 255.0
    ref["rgba.png"] = np.round(rgb * a + 255.0 * (1 - a)).transpose(2, 0, 1)  # over white
    g16 = rng.integers(0, 65536, (16, 16), dtype=np.uint16)
    Image.fromarray(g16).save(root / "deep16.png")
    ref["deep16.png"] = np.stack([np.round(g16 / 257.0)] * 3)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(root / "palette.gif")
    ref["palette.gif"] = np.asarray(pal.convert("RGB")).transpose(2, 0, 1)
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (40, 200)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    ref["anim.gif"] = np.full((3, 16, 16), 40)  # the first frame
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.tiff")
    ref["cmyk.tiff"] = rgb.transpose(2, 0, 1)
    return ref


def test_every_mode_converts_to_the_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(20261205)
    ref = _modes_folder(tmp_path / "modes", rng)
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", tmp_path / "modes", "--classes", "a,b", "--quiet") == 0
    for rel, want in ref.items():
        got = _pixels(proj, rel).astype(np.int64)
        tol = 2 if rel in ("cmyk.tiff", "rgba.png", "deep16.png") else 0
        assert np.abs(got - want).max() <= tol, rel
    assert len(ref) == 9


def test_large_image_is_resized_like_an_area_average(tmp_path: Path) -> None:
    """A smooth 256x256 image reduced to 16x16 matches 16x16 block means within a few levels."""
    yy, xx = np.mgrid[0:256, 0:256]
    img = (127.5 + 100 * np.sin(xx / 40.0) * np.cos(yy / 55.0)).astype(np.uint8)
    a, info = decode_image(_png_bytes(img), 16)
    blocks = img.reshape(16, 16, 16, 16).mean(axis=(1, 3))
    assert info["gray"] and info["width"] == 256
    assert np.abs(a[0].astype(float) - blocks).max() <= 4


def _png_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_unreadable_files_are_recorded_not_fatal(tmp_path, digits_folder) -> None:
    folder, truth = digits_folder
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, not an image")
    good = (folder / next(iter(truth))).read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    bomb = tmp_path / "bomb.png"
    Image.new("L", (13000, 13000)).save(bomb)  # 169 Mpx: over PIL's decompression-bomb limit
    shutil.copy(bomb, folder / "bomb.png")
    proj = tmp_path / "proj"
    r = cli_proc("init", proj, "--images", folder, "--classes", CLASSES, "--quiet")
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(proj / "project.db")
    bad = dict(con.execute("SELECT f.path, i.reason FROM files f JOIN images i "
                           "ON i.id = f.image_id WHERE i.status != 'ok'"))
    con.close()
    assert set(bad) == {"empty.png", "text.jpg", "truncated.png", "bomb.png"}
    assert "0 bytes" in bad["empty.png"] and "too large" in bad["bomb.png"]
    assert all(bad.values())
    assert db_count(proj, "SELECT COUNT(*) FROM images WHERE status='ok'") == len(truth)


def test_rescan_added_removed_renamed_changed_and_duplicates(tmp_path, digits_folder) -> None:
    folder, truth = digits_folder
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", folder, "--classes", CLASSES, "--quiet") == 0
    paths = sorted(truth)
    labeled = paths[:6]
    write_labels_csv(tmp_path / "l.csv", [(p, str(truth[p])) for p in labeled])
    assert cli("import", proj, tmp_path / "l.csv") == 0
    n_images = db_count(proj, "SELECT COUNT(*) FROM images")
    (folder / "moved").mkdir()
    os.replace(folder / labeled[0], folder / "moved" / "renamed.png")  # rename a labeled file
    shutil.copy(folder / labeled[1], folder / "copy_of_1.png")  # a duplicate of a labeled file
    os.remove(folder / labeled[2])  # remove a labeled file
    x, _ = digits_images(2, seed=99)
    Image.fromarray(np.kron(x[0], np.ones((2, 2), np.uint8))).save(folder / "new.png")
    Image.fromarray(np.kron(x[1], np.ones((2, 2), np.uint8))).save(folder / paths[10])  # changed
    assert cli("init", proj, "--rescan", "--quiet") == 0
    labels = db_labels(proj)
    assert labels["moved/renamed.png"] == str(truth[labeled[0]])  # identity by content
    assert labels["copy_of_1.png"] == labels[labeled[1]] == str(truth[labeled[1]])
    assert labeled[0] not in labels and labeled[2] not in labels
    assert db_count(proj, "SELECT COUNT(*) FROM images") == n_images + 2  # new + changed
    with Project.open(proj) as p:
        shown = {im.path for im in p.images()}
        assert "copy_of_1.png" not in shown or labeled[1] not in shown  # one image, one path
        assert len(p.images()) == len(truth) - 1 + 1  # removed one, added one, changed in place
        assert p.label_of(p.image_id_of("moved/renamed.png")) == truth[labeled[0]]


def test_labels_keep_history_and_same_label_twice_is_one_row(tmp_path, digits_folder) -> None:
    folder, _ = digits_folder
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", folder, "--classes", CLASSES, "--quiet") == 0
    with Project.open(proj) as p:
        img = p.images()[0].id
        assert p.set_label(img, 3) is True
        assert p.set_label(img, 3) is False  # a second tab giving the same label
        assert p.set_label(img, 5) is True
        assert p.set_label(img, None, source="undo") is True
        assert [c for c, _s, _t in p.label_history(img)] == [3, 5, None]
        assert img not in p.current_labels()
        with pytest.raises(ProjectError, match="class 10"):
            p.set_label(img, 10)
        with pytest.raises(ProjectError, match="no such image"):
            p.set_label(10**6, 1)


def test_cache_reads_back_what_was_decoded(tmp_path, digits_folder) -> None:
    folder, truth = digits_folder
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", folder, "--classes", CLASSES, "--quiet") == 0
    with Project.open(proj) as p:
        ims = p.images()
        got = read_cache(p, np.array([im.cache_row for im in ims]))
        for im, a in zip(ims, got):
            ref = np.asarray(Image.open(folder / im.path))
            assert np.array_equal(a[0], ref)
        assert len(ims) == len(truth)
