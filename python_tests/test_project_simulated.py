"""A simulated annotator on real images: Fashion-MNIST written as PNG files, labeled through the
CLI batch by batch; the exported model must be as good as ``dalcore run`` at as many labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from project_helpers import (
    FASHION_DIR,
    cli,
    fashion_images,
    read_csv,
    write_labels_csv,
    write_pngs,
)

CLASSES = "tshirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot"
POOL, BUDGET, CYCLES = 1000, 50, 3


@pytest.mark.slow
def test_simulated_annotator_matches_the_simulator(tmp_path: Path) -> None:
    data = fashion_images(POOL, seed=7)
    if data is None:
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({FASHION_DIR})")
    names = CLASSES.split(",")
    truth = write_pngs(tmp_path / "images", *data)  # a flat folder of 28x28 PNGs
    proj = tmp_path / "proj"
    assert cli("init", proj, "--images", tmp_path / "images", "--classes", CLASSES,
               "--quiet") == 0
    labeled: set[str] = set()
    for cycle in range(CYCLES):
        out = tmp_path / f"batch{cycle}.csv"
        assert cli("query", proj, "--budget", BUDGET, "--method", "random", "--cv", "0",
                   "--out", out, "--quiet") == 0
        batch = [row["path"] for row in read_csv(out)]
        assert len(batch) == BUDGET and not labeled & set(batch)
        write_labels_csv(tmp_path / f"answers{cycle}.csv",
                         [(p, names[truth[p]]) for p in batch])  # the annotator answers
        assert cli("import", proj, tmp_path / f"answers{cycle}.csv") == 0
        labeled |= set(batch)
    assert cli("query", proj, "--budget", BUDGET, "--method", "random", "--cv", "0",
               "--quiet") == 0  # trains on all CYCLES * BUDGET labels
    assert cli("export", proj, "--out", tmp_path / "export") == 0
    card = json.loads((tmp_path / "export" / "model.json").read_text())
    assert card["labels_used"] == CYCLES * BUDGET
    preds = read_csv(tmp_path / "export" / "predictions.csv")
    unlabeled = [r for r in preds if r["path"] not in labeled]
    assert len(unlabeled) == POOL - CYCLES * BUDGET
    acc = np.mean([r["label"] == names[truth[r["path"]]] for r in unlabeled])

    ref = _simulator_accuracy(tmp_path / "run")
    # Two random draws of 150 labels from different 1,000-image pools, scored on different
    # images: "within noise" is a few std of the simulator's repetitions, at least 8 points.
    tol = max(0.08, 3 * float(np.std(ref)))
    assert abs(acc - float(np.mean(ref))) <= tol, (acc, ref)


def _simulator_accuracy(out: Path) -> list[float]:
    """``dalcore run`` on Fashion-MNIST at the same pool size, budget and number of labels."""
    assert cli("run", "--dataset", "fashion-mnist", "--data-dir", FASHION_DIR, "--pool-size",
               POOL, "--budget", BUDGET, "--cycles", CYCLES, "--methods", "random",
               "--repeats", 2, "--out", out, "--quiet") == 0
    rows = read_csv(out / "results.csv")
    return [float(r["accuracy"]) for r in rows if int(r["labels"]) == CYCLES * BUDGET]
