"""``dalcore run --initial``: cycle 0's labeled set, class-balanced or chosen without labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from _run_helpers import read_rows, tiny_args

import dalcore.experiment as experiment
from dalcore.cli import main


def _initial_sets(monkeypatch, out: Path, initial: str, permute: bool) -> tuple[list, object]:
    """Run one cycle of ``random`` and return the labeled set the first training received (and
    the dataset), optionally with the training labels permuted (what a label-blind choice must
    not notice)."""
    seen: list[np.ndarray] = []
    kept: dict = {}
    real_fit, real_load = experiment.fit, experiment._load_data

    def recording_fit(settings, data, labeled, **kw):
        seen.append(np.array(labeled))
        return real_fit(settings, data, labeled, **kw)

    def loading(cfg, preset):
        data, fp = real_load(cfg, preset)
        if permute:
            g = torch.Generator().manual_seed(1234)
            y = data.y_train[torch.randperm(data.y_train.numel(), generator=g)]
            data = dataclasses.replace(data, y_train=y)
        kept["data"] = data
        return data, fp

    monkeypatch.setattr(experiment, "fit", recording_fit)
    monkeypatch.setattr(experiment, "_load_data", loading)
    args = tiny_args(out, "--initial", initial, methods="random", cycles=1)
    assert main(args) == 0
    monkeypatch.undo()
    return seen, kept["data"]


@pytest.mark.parametrize("initial", ["random", "kcenter", "typiclust"])
def test_label_free_initial_sets_ignore_the_labels(tmp_path, monkeypatch, initial) -> None:
    a, _ = _initial_sets(monkeypatch, tmp_path / "a", initial, permute=False)
    b, _ = _initial_sets(monkeypatch, tmp_path / "b", initial, permute=True)
    assert len(a) == len(b) == 1 and a[0].size == 10
    assert np.array_equal(a[0], b[0])
    rows = read_rows(tmp_path / "a" / "results.csv")
    assert rows and all(r["initial"] == initial for r in rows)


def test_balanced_reads_the_labels(tmp_path, monkeypatch) -> None:
    """The paper's class-balanced draw does depend on the labels (so the test above can fail)."""
    a, data = _initial_sets(monkeypatch, tmp_path / "a", "balanced", permute=False)
    b, _ = _initial_sets(monkeypatch, tmp_path / "b", "balanced", permute=True)
    assert not np.array_equal(a[0], b[0])
    assert np.bincount(data.y_train.numpy()[a[0]], minlength=10).tolist() == [1] * 10


def test_kcenter_initial_is_farthest_first_from_the_mean(tmp_path, monkeypatch) -> None:
    got, data = _initial_sets(monkeypatch, tmp_path / "k", "kcenter", permute=False)
    x = data.x_train.reshape(data.x_train.shape[0], -1).double().numpy()
    picks = [int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))]  # the first: farthest from the mean
    d = ((x - x[picks[0]]) ** 2).sum(1)
    for _ in range(9):  # float64 brute force, ties to the lowest index
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, ((x - x[i]) ** 2).sum(1))
    assert got[0].tolist() == sorted(picks)


def test_bad_initial_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--initial", "oracle"])
    assert e.value.code == 2
    assert "--initial" in capsys.readouterr().err
