"""benches/bench_accuracy.py fits the scikit-learn baselines on exactly dalcore's labeled sets:
its reproduced splits equal the checkpoints of a real run (hashed repetition seeds, random
acquisition), and its baselines agree with scikit-learn fitted here on those sets."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_PATH = Path(__file__).resolve().parents[1] / "benches" / "bench_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_accuracy", mod)  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def test_splits_equal_the_runs_checkpoints(tmp_path: Path) -> None:
    from dalcore.experiment import run_experiment

    b = _bench()
    spec = b.Spec("digits", 10, 2, 200)
    args = argparse.Namespace(seed=3, repeats=2, quick=True)
    data = b.load_split(spec, args)
    sets = b.label_sets(spec, args, data.y_train.numpy(), int(data.num_classes))
    cfg = b.experiment_config(spec, args, "base", str(tmp_path / "run"))
    cfg.epochs = 1
    run_experiment(cfg)
    for repeat in range(2):
        ckpt = json.loads((tmp_path / "run" / "checkpoints" / f"random_r{repeat}.json")
                          .read_text())
        np.testing.assert_array_equal(np.sort(ckpt["labeled"]), sets[repeat][-1])
        assert [s.size for s in sets[repeat]] == [10, 20, 30]
        for a, b2 in zip(sets[repeat], sets[repeat][1:]):
            assert np.isin(a, b2).all()
    with open(tmp_path / "run" / "results.csv", encoding="utf-8") as f:
        rows = {(int(r["repeat"]), int(r["labels"])) for r in csv.DictReader(f)}
    assert rows == {(r, n) for r in range(2) for n in (10, 20)}
    assert not np.array_equal(sets[0][0], sets[1][0])  # the repetitions differ


def test_baselines_are_scikit_learn_on_those_sets(rng) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading

    b = _bench()
    spec = b.Spec("digits", 20, 1, None)
    args = argparse.Namespace(seed=0, repeats=1, quick=True)
    data = b.load_split(spec, args)
    sets = b.label_sets(spec, args, data.y_train.numpy(), int(data.num_classes))
    rows, _ = b.run_baselines("digits", data, [sets[0][:1]])
    x = data.x_train.reshape(len(data.y_train), -1).numpy().astype(np.float64)
    xt = data.x_test.reshape(len(data.y_test), -1).numpy().astype(np.float64)
    y, yt, lab = data.y_train.numpy(), data.y_test.numpy(), sets[0][0]
    lr = LogisticRegression(max_iter=2000).fit(x[lab], y[lab])
    part = np.full(y.size, -1)
    part[lab] = y[lab]
    ls = LabelSpreading(kernel="knn", n_neighbors=10).fit(x, part)
    got = {r["method"]: r["accuracy"] for r in rows}
    assert got["logreg"] == pytest.approx(float((lr.predict(xt) == yt).mean()))
    assert got["labelspreading"] == pytest.approx(float((ls.predict(xt) == yt).mean()))
