"""``dalcore init | query | import | export``: the flow, label-free first batches, bad input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from project_helpers import (
    cli,
    cli_proc,
    db_count,
    db_labels,
    digits_images,
    read_csv,
    write_labels_csv,
    write_pngs,
)

from dalcore.project.locks import ProjectLock

CLASSES = "0,1,2,3,4,5,6,7,8,9"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    x, y = digits_images(160, seed=11)
    root = tmp_path_factory.mktemp("digits") / "images"
    return root, write_pngs(root, np.kron(x, np.ones((2, 2), np.uint8)), y, nested=5)


def _init(tmp_path: Path, folder: Path, name: str = "proj") -> Path:
    proj = tmp_path / name
    assert cli("init", proj, "--images", folder, "--classes", CLASSES, "--quiet") == 0
    return proj


def _one_line_error(r, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _normalised_pixels(folder: Path, paths: list[str]) -> np.ndarray:
    """float64 reference features: grayscale pixels in [0, 1], standardised over the folder."""
    x = np.stack([np.asarray(Image.open(folder / p), dtype=np.float64) / 255.0 for p in paths])
    x = (x - x.mean()) / x.std()
    return x.reshape(len(paths), -1)


def _row_order(proj: Path) -> list[str]:
    """Display path of every readable image in row order (by id), read with plain sqlite3."""
    con = sqlite3.connect(proj / "project.db")
    try:
        return [p for (p,) in con.execute(
            "SELECT MIN(f.path) FROM images i JOIN files f ON f.image_id = i.id "
            "WHERE i.status = 'ok' GROUP BY i.id ORDER BY i.id")]
    finally:
        con.close()


def _farthest_first(x: np.ndarray, start: list[int], budget: int) -> list[int]:
    """Brute-force greedy k-center in float64, ties to the lowest index."""
    d = np.min(((x[:, None, :] - x[None, start, :]) ** 2).sum(-1), axis=1)
    picks = []
    for _ in range(budget):
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, ((x - x[i]) ** 2).sum(1))
    return picks


def test_first_batch_without_labels_then_one_class_then_a_model(tmp_path, folder) -> None:
    root, truth = folder
    proj = _init(tmp_path, root)
    r = cli_proc("query", proj, "--budget", "12", "--quiet")
    assert r.returncode == 0, r.stderr
    first = Path(r.stdout.strip().splitlines()[-1])  # the file's path is the last line
    assert first == proj / "queries" / "0001.csv" and "without labels" in r.stdout
    batch = [row["path"] for row in read_csv(first)]
    assert len(batch) == 12 == len(set(batch)) and set(batch) <= set(truth)

    # Labels of one class only: k-center from the labeled images on the pixels.
    ones = [p for p in sorted(truth) if truth[p] == 1][:3]
    write_labels_csv(tmp_path / "ones.csv", [(p, "1") for p in ones])
    assert cli("import", proj, tmp_path / "ones.csv") == 0
    out = tmp_path / "second.csv"
    r = cli_proc("query", proj, "--budget", "5", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "one class only" in r.stdout and r.stdout.strip().splitlines()[-1] == str(out)
    order = _row_order(proj)
    x = _normalised_pixels(root, order)
    want = _farthest_first(x, [order.index(p) for p in ones], 5)
    assert [row["path"] for row in read_csv(out)] == [order[i] for i in want]


def test_label_free_coverage_methods(tmp_path, folder) -> None:
    """No label yet: coreset is k-center from the mean, typiclust one pick per cluster."""
    root, truth = folder
    proj = _init(tmp_path, root)
    out = tmp_path / "kc.csv"
    assert cli("query", proj, "--budget", "6", "--method", "coreset", "--out", out,
               "--quiet") == 0
    order = _row_order(proj)
    x = _normalised_pixels(root, order)
    first = int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))  # farthest from the mean
    want = [first] + _farthest_first(x, [first], 5)
    assert [row["path"] for row in read_csv(out)] == [order[i] for i in want]
    out = tmp_path / "tc.csv"
    assert cli("query", proj, "--budget", "6", "--method", "typiclust", "--out", out,
               "--quiet") == 0
    picks = [row["path"] for row in read_csv(out)]
    assert len(set(picks)) == 6 and set(picks) <= set(truth)
    assert len({truth[p] for p in picks}) >= 3  # typical points of different clusters


def test_query_trains_records_and_exports(tmp_path, folder) -> None:
    root, truth = folder
    proj = _init(tmp_path, root)
    labeled = sorted(truth)[:40]
    write_labels_csv(tmp_path / "l.csv", [(p, str(truth[p])) for p in labeled])
    assert cli("import", proj, tmp_path / "l.csv") == 0
    r = cli_proc("query", proj, "--budget", "10", "--method", "uncertainty", "--cv", "2",
                 "--quiet")
    assert r.returncode == 0, r.stderr
    assert "2-fold cross-validation over 40 labels" in r.stdout
    assert "unlabeled images by class" in r.stdout
    batch = [row["path"] for row in read_csv(Path(r.stdout.strip().splitlines()[-1]))]
    assert len(batch) == 10 and not set(batch) & set(labeled)
    out = tmp_path / "export"
    assert cli("export", proj, "--out", out) == 0
    assert {(row["path"], row["label"]) for row in read_csv(out / "labels.csv")} == \
        {(p, str(truth[p])) for p in labeled}
    preds = read_csv(out / "predictions.csv")
    assert {row["path"] for row in preds} == set(truth)
    card = __import__("json").loads((out / "model.json").read_text())
    assert card["labels_used"] == 40 and card["classes"] == CLASSES.split(",")
    # The exported weights reproduce the exported predictions (model card's recipe).
    from dalcore.models import ConvNet13

    model = ConvNet13(in_channels=card["channels"], num_classes=10, width=card["width"])
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    model.eval()
    some = preds[:20]
    imgs = np.stack([np.asarray(Image.open(root / row["path"]).resize(
        (card["image_size"],) * 2, Image.Resampling.BILINEAR), np.float32) / 255.0
        for row in some])
    x = (torch.from_numpy(imgs)[:, None] - card["mean"][0]) / card["std"][0]
    with torch.no_grad():
        got = model(x)[0].argmax(1).numpy()
    assert [str(v) for v in got] == [row["label"] for row in some]
    # The batch accuracy line appears once the batch is labeled.
    write_labels_csv(tmp_path / "b.csv", [(p, str(truth[p])) for p in batch])
    assert cli("import", proj, tmp_path / "b.csv") == 0
    r = cli_proc("query", proj, "--budget", "5", "--method", "coreset", "--cv", "0", "--quiet")
    assert r.returncode == 0 and "images of query 1 labeled since" in r.stdout, r.stderr


def test_pretrain_and_semi_on_a_project(tmp_path, folder) -> None:
    """--pretrain: the first batch is k-center on the DeepCluster features (cached in the
    project); --semi: the export carries label propagation's pseudo-labels and weights."""
    root, truth = folder
    proj = _init(tmp_path, root)
    r = cli_proc("query", proj, "--budget", "10", "--pretrain", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "DeepCluster backbone" in r.stdout and list((proj / "cache").glob("pretrain_*.pt"))
    con = sqlite3.connect(proj / "project.db")
    assert con.execute("SELECT method FROM queries").fetchone()[0] == "kcenter (label-free)"
    con.close()
    batch = [row["path"] for row in read_csv(Path(r.stdout.strip().splitlines()[-1]))]
    write_labels_csv(tmp_path / "b.csv", [(p, str(truth[p])) for p in batch])
    assert cli("import", proj, tmp_path / "b.csv") == 0
    r = cli_proc("query", proj, "--budget", "5", "--semi", "--pretrain", "--cv", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "reused from" in r.stdout and "label propagation" in r.stdout
    assert cli("export", proj, "--out", tmp_path / "x") == 0
    preds = read_csv(tmp_path / "x" / "predictions.csv")
    assert len(preds) == len(truth)
    labeled = {p: str(truth[p]) for p in batch}
    for row in preds:
        w = float(row["pseudo_weight"])
        assert row["pseudo_label"] in CLASSES.split(",") and 0.0 <= w <= 1.0
        if row["path"] in labeled:  # labeled images keep their label, with weight 1
            assert row["pseudo_label"] == labeled[row["path"]] and w == 1.0


# ------------------------------------------------------------------------------ bad input


def test_init_refuses_bad_folders_and_classes(tmp_path, folder) -> None:
    root, _ = folder
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("not a png")
    cases = [
        (("--images", tmp_path / "empty", "--classes", "a,b"), "no image file"),
        (("--images", tmp_path / "junk", "--classes", "a,b"), "could be read"),
        (("--images", root, "--classes", "a,b,a"), "listed twice"),
        (("--images", root, "--classes", "onlyone"), "at least two"),
        (("--images", root, "--classes", "a,,b"), "empty class"),
        (("--images", tmp_path / "nope", "--classes", "a,b"), "not a folder"),
        (("--images", root), "--classes"),
    ]
    for k, (args, needle) in enumerate(cases):
        proj = tmp_path / f"p{k}"
        _one_line_error(cli_proc("init", proj, *args, "--quiet"), needle)
        assert not proj.exists()  # a failed init leaves nothing behind


def test_import_refuses_bad_rows_and_stores_nothing(tmp_path, folder) -> None:
    root, truth = folder
    proj = _init(tmp_path, root)
    paths = sorted(truth)
    good = [(paths[0], "1"), (paths[1], "2")]
    cases = [
        (good + [(paths[2], "cat")], "unknown class 'cat'"),
        (good + [("not/here.png", "1")], "not an image of this project"),
        (good + [(paths[0], "3")], "another label"),
    ]
    for k, (rows, needle) in enumerate(cases):
        _one_line_error(cli_proc("import", proj, write_labels_csv(tmp_path / f"{k}.csv", rows)),
                        needle, f"{k}.csv")
        assert db_count(proj, "SELECT COUNT(*) FROM labels") == 0
    (tmp_path / "hdr.csv").write_text("file,class\na.png,1\n")
    _one_line_error(cli_proc("import", proj, tmp_path / "hdr.csv"), "path,label")
    _one_line_error(cli_proc("import", proj, tmp_path / "missing.csv"), "no such file")
    # A file that has gone since the scan.
    victim = root / paths[5]
    data = victim.read_bytes()
    victim.unlink()
    try:
        assert cli("init", proj, "--quiet") == 0
        _one_line_error(cli_proc("import", proj, write_labels_csv(
            tmp_path / "gone.csv", [(paths[5], "1")])), "removed or renamed")
    finally:
        victim.write_bytes(data)
    assert db_count(proj, "SELECT COUNT(*) FROM labels") == 0


def test_query_refuses_big_budget_concurrent_runs_and_newer_databases(tmp_path, folder) -> None:
    root, truth = folder
    proj = _init(tmp_path, root)
    _one_line_error(cli_proc("query", proj, "--budget", str(len(truth) + 1)), "--budget")
    _one_line_error(cli_proc("query", proj, "--budget", "0"), "--budget")
    _one_line_error(cli_proc("query", tmp_path / "nothing", "--budget", "3"), "not a dalcore")
    with ProjectLock(proj, "query"):
        _one_line_error(cli_proc("query", proj, "--budget", "3"), "already running")
    with ProjectLock(proj, "serve"):
        _one_line_error(cli_proc("serve", proj, "--port", "8791"), "already serving")
    write_labels_csv(tmp_path / "l.csv", [(sorted(truth)[0], "4")])
    assert cli("import", proj, tmp_path / "l.csv") == 0
    con = sqlite3.connect(proj / "project.db")
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    _one_line_error(cli_proc("query", proj, "--budget", "3"), "newer dalcore")
    _one_line_error(cli_proc("import", proj, tmp_path / "l.csv"), "newer dalcore")
    assert db_labels(proj) == {sorted(truth)[0]: "4"}  # nothing lost


def test_init_again_keeps_classes_and_labels(tmp_path, folder) -> None:
    root, truth = folder
    proj = _init(tmp_path, root)
    write_labels_csv(tmp_path / "l.csv", [(p, str(truth[p])) for p in sorted(truth)[:4]])
    assert cli("init", proj, "--labels", tmp_path / "l.csv", "--quiet") == 0
    _one_line_error(cli_proc("init", proj, "--classes", "x,y"), "cannot be changed")
    assert len(db_labels(proj)) == 4
