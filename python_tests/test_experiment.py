"""The experiment loop: outputs, determinism, checkpoints and resume after a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _run_helpers import METHODS, read_rows, tiny_args, without_seconds

import dalcore.training
from dalcore.cli import main
from dalcore.experiment import COLUMNS, CRASH_ENV, SimulatedCrash
from dalcore.presets import PRESETS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """One uninterrupted tiny run (2 repeats x 2 cycles x the methods), shared by several tests."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(tiny_args(out, repeats=2)) == 0
    return out


def _count_training(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = dalcore.training.train_model

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dalcore.training, "train_model", counting)
    return calls


def test_run_writes_all_outputs(reference_run: Path) -> None:
    out = reference_run
    methods = METHODS.split(",")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["budget"] == 10 and cfg["config"]["methods"] == methods
    assert cfg["resolved"]["train_images"] == 200
    rows = read_rows(out / "results.csv")
    assert tuple(rows[0].keys()) == COLUMNS
    assert len(rows) == len(methods) * 2 * 2
    assert {(r["method"], r["repeat"], r["cycle"]) for r in rows} == {
        (m, str(r), str(c)) for m in methods for r in range(2) for c in range(2)
    }
    for r in rows:
        assert r["dataset"] == "digits" and r["pretrain"] == "0" and r["semi"] == "0"
        assert int(r["labels"]) == 10 * (int(r["cycle"]) + 1)
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["seconds"]) > 0
    assert (out / "summary.md").read_text().count("|") > 0
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC
    # checkpoints: the final labeled set has (cycles) x budget labels, distinct, inside the pool
    for m in methods:
        for rep in range(2):
            st = json.loads((out / "checkpoints" / f"{m}_r{rep}.json").read_text())
            lab = np.asarray(st["labeled"])
            assert st["next_cycle"] == 2 and lab.size == 20 and np.unique(lab).size == 20
            assert lab.min() >= 0 and lab.max() < 200


def test_cycle_zero_is_shared_and_pool_is_balanced(reference_run: Path) -> None:
    """All methods start from the same split and init; the pool and start set are balanced."""
    rows = read_rows(reference_run / "results.csv")
    for rep in ("0", "1"):
        acc0 = {r["accuracy"] for r in rows if r["cycle"] == "0" and r["repeat"] == rep}
        assert len(acc0) == 1
    from dalcore.data import load_dataset

    ds = load_dataset("digits", image_size=PRESETS["cpu"].image_size)
    # rebuild the pool exactly as the experiment does, and check it is class balanced
    from dalcore.data import class_balanced_indices
    from dalcore.experiment import derive_seed

    idx = class_balanced_indices(ds.y_train, 200, 10, np.random.default_rng(derive_seed(0, "pool")))
    counts = np.bincount(ds.y_train.numpy()[idx], minlength=10)
    assert counts.max() - counts.min() <= 1
    # the first labeled set of a repeat (labeled minus the picks) is balanced: 1 per class
    st = json.loads((reference_run / "checkpoints" / "random_r0.json").read_text())
    y_pool = ds.y_train.numpy()[idx]
    lab = np.asarray(st["labeled"])
    assert np.bincount(y_pool[lab], minlength=10).sum() == 20


def test_summary_matches_numpy(reference_run: Path) -> None:
    rows = read_rows(reference_run / "results.csv")
    text = (reference_run / "summary.md").read_text()
    for m in METHODS.split(","):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {m} |"))
        cells = [c.strip() for c in line.strip("|").split("|")[1:]]
        for cell, labels in zip(cells, ("10", "20")):
            acc = np.array([float(r["accuracy"]) for r in rows
                            if r["method"] == m and r["labels"] == labels], dtype=np.float64)
            mean, std = (float(v) for v in cell.split("±"))
            assert mean == pytest.approx(100 * acc.mean(), abs=0.006)
            assert std == pytest.approx(100 * acc.std(), abs=0.006)


def test_same_seed_same_results(reference_run: Path, tmp_path: Path) -> None:
    assert main(tiny_args(tmp_path / "again", repeats=2)) == 0
    a = read_rows(reference_run / "results.csv")
    b = read_rows(tmp_path / "again" / "results.csv")
    assert without_seconds(a) == without_seconds(b)
    for m in METHODS.split(","):
        ja = json.loads((reference_run / "checkpoints" / f"{m}_r1.json").read_text())
        jb = json.loads((tmp_path / "again" / "checkpoints" / f"{m}_r1.json").read_text())
        assert ja["labeled"] == jb["labeled"] and ja["pseudo"] == jb["pseudo"]
    # a different seed draws another split: the labeled sets differ
    assert main(tiny_args(tmp_path / "other", cycles=1, seed=7, methods="random")) == 0
    jo = json.loads((tmp_path / "other" / "checkpoints" / "random_r0.json").read_text())
    ja = json.loads((reference_run / "checkpoints" / "random_r0.json").read_text())
    assert jo["labeled"] != ja["labeled"]


@pytest.mark.parametrize("where", ["row", "checkpoint"])
def test_resume_after_crash(reference_run: Path, tmp_path: Path, monkeypatch, where: str) -> None:
    """A crash after 3 finished cycles, then the same command: same results, nothing redone."""
    out = tmp_path / "crashy"
    monkeypatch.setenv(CRASH_ENV, f"3:{where}")
    with pytest.raises(SimulatedCrash):
        main(tiny_args(out, repeats=2))
    partial = read_rows(out / "results.csv")
    assert len(partial) == (3 if where == "row" else 2)
    monkeypatch.delenv(CRASH_ENV)
    calls = _count_training(monkeypatch)
    assert main(tiny_args(out, repeats=2)) == 0
    total = len(METHODS.split(",")) * 2 * 2
    assert len(calls) == total - 3  # the 3 finished cycles are not trained again
    resumed = read_rows(out / "results.csv")
    assert without_seconds(resumed) == without_seconds(read_rows(reference_run / "results.csv"))
    # rows finished before the crash keep their original timing
    assert [r["seconds"] for r in resumed[: len(partial)]] == [r["seconds"] for r in partial]


def test_resume_drops_a_torn_line_and_finished_run_does_nothing(
        reference_run: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "torn"
    monkeypatch.setenv(CRASH_ENV, "2")
    with pytest.raises(SimulatedCrash):
        main(tiny_args(out, repeats=2))
    monkeypatch.delenv(CRASH_ENV)
    with open(out / "results.csv", "a") as f:
        f.write("digits,random,0,0,1,0,10,0.9")  # killed in the middle of a write
    assert main(tiny_args(out, repeats=2)) == 0
    rows = read_rows(out / "results.csv")
    assert without_seconds(rows) == without_seconds(read_rows(reference_run / "results.csv"))
    calls = _count_training(monkeypatch)
    assert main(tiny_args(out, repeats=2)) == 0  # everything finished: nothing to train
    assert calls == []
    assert read_rows(out / "results.csv") == rows


def test_resume_refuses_another_configuration(reference_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cfg"
    assert main(tiny_args(out, methods="random", cycles=1)) == 0
    capsys.readouterr()
    code = main(tiny_args(out, "--width", "0.5", methods="random", cycles=1))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "different configuration" in err and "width" in err


def test_presets_paper_is_exact() -> None:
    p = PRESETS["paper"]
    assert (p.width, p.epochs, p.batch_size, p.lr, p.image_size, p.pretrain_epochs) == (
        1.0, 200, 32, 0.2, None, 400)
    assert p.epochs_for(20) == 200 and p.epochs_for(5000) == 200
    assert p.epochs_for(20, override=3) == 3
    c = PRESETS["cpu"]
    # cpu: a fixed number of gradient steps per cycle, whatever the labeled-set size
    for n in (10, 20, 33, 100, 250, 993):
        b = c.batch_for(n)
        batches = -(-n // b)
        steps = c.epochs_for(n) * batches
        assert c.steps <= steps < c.steps + batches
        # no tiny last batch: it is empty or at least half of the others, brute force over n
        last = n - (batches - 1) * b
        assert b <= c.batch_size and 2 * last >= b
        assert b == max(bb for bb in range(-(-c.batch_size // 2), c.batch_size + 1)
                        if n % bb == 0 or 2 * (n % bb) >= bb) if n > c.batch_size else b == n
    assert PRESETS["paper"].batch_for(100) == 32


def test_resume_after_kill_9(reference_run: Path, tmp_path: Path) -> None:
    """A real SIGKILL of `python -m dalcore run` after 2 cycles, then the same command."""
    import os
    import signal
    import subprocess
    import sys

    import dalcore

    repo = Path(dalcore.__file__).resolve().parents[1]  # the dalcore this process tests
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dalcore", *tiny_args(out, repeats=2)]
    env = dict(os.environ, PYTHONPATH=str(repo), **{CRASH_ENV: "2:kill"})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert len(read_rows(out / "results.csv")) == 1  # the 2nd row was not written yet
    env.pop(CRASH_ENV)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # the 2nd cycle is not run again: its row comes from the checkpoint
    finished_lines = re.findall(r"repeat \d+ +cycle \d+ +labels", proc.stdout)
    assert len(finished_lines) == len(read_rows(reference_run / "results.csv")) - 2
    assert without_seconds(read_rows(out / "results.csv")) == without_seconds(
        read_rows(reference_run / "results.csv"))
