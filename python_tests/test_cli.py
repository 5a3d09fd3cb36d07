"""The command line: bad arguments give one clear line and exit code 2; --pretrain/--semi wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _run_helpers import read_rows, tiny_args

import dalcore
import dalcore.training
from dalcore.cli import main

# Children import the same dalcore as this process (the source tree or the installed package).
REPO = Path(dalcore.__file__).resolve().parents[1]


def _one_error_line(capsys, *needles: str) -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert "Traceback" not in cap.err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--dataset", "imagenet"], ("--dataset", "imagenet", "digits")),
        (["--methods", "random,oracle"], ("--methods", "oracle", "uncertainty")),
        (["--methods", ","], ("--methods",)),
        (["--pool-size", "50", "--budget", "30"], ("--budget", "50")),
        (["--budget", "1000", "--cycles", "5"], ("--budget", "5000")),
        (["--budget", "0"], ("--budget",)),
        (["--pool-size", "100000"], ("--pool-size",)),
        (["--dataset", "mnist", "--data-dir", "/nonexistent/dalcore-data"], ("mnist",)),
        (["--width", "1e9"], ("--width", "1000000000")),
        (["--width", "0.0001"], ("--width",)),
        (["--width", "nan"], ("--width",)),
        (["--pretrain", "--pool-size", "30", "--budget", "2"], ("--pretrain", "50", "30")),
        (["--epochs", "0"], ("--epochs",)),
        (["--threads", "-1"], ("--threads",)),
    ],
)
def test_bad_arguments_one_line_exit_2(args, needles, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--quiet", *args]) == 2
    _one_error_line(capsys, *needles)
    assert not (out / "results.csv").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--device", "tpu"], ("--device", "tpu")),
        (["--preset", "huge"], ("--preset", "huge")),
        (["--budget", "ten"], ("--budget", "ten")),
        (["--no-such-option"], ("--no-such-option",)),
    ],
)
def test_parser_errors_one_line_exit_2(args, needles, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--out", str(tmp_path / "o"), "--quiet", *args])
    assert e.value.code == 2
    _one_error_line(capsys, *needles)


def test_missing_dataset_files_in_a_subprocess(tmp_path: Path) -> None:
    """The real console entry: exit code 2, one line on stderr, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "dalcore", "run", "--dataset", "cifar10", "--data-dir",
         str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr and "cifar" in err[0].lower()


def test_semi_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "semi"
    assert main(tiny_args(out, "--semi", methods="random", cycles=2)) == 0
    rows = read_rows(out / "results.csv")
    assert [r["semi"] for r in rows] == ["1", "1"] and [r["labels"] for r in rows] == ["10", "20"]
    assert "SEMI + random" in (out / "summary.md").read_text()


def test_pretrain_is_cached_and_reused(tmp_path: Path, monkeypatch) -> None:
    import importlib

    out = tmp_path / "pre"
    args = tiny_args(out, "--pretrain", methods="random", cycles=1)
    assert main(args) == 0
    assert (out / "pretrain_r0.pt").is_file()
    mod = importlib.import_module("dalcore.unsupervised.deepcluster")

    def boom(*a, **k):
        raise AssertionError("pre-training ran again instead of using the cache")

    monkeypatch.setattr(mod, "pretrain", boom)
    rows = read_rows(out / "results.csv")
    (out / "results.csv").unlink()
    import shutil

    shutil.rmtree(out / "checkpoints")
    assert main(args) == 0  # reruns the cycle from scratch, with the cached backbone
    again = read_rows(out / "results.csv")
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    assert [r["pretrain"] for r in again] == ["1"]


def test_help_lists_the_options(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--dataset", "--data-dir", "--methods", "--budget", "--cycles", "--repeats",
                "--preset", "--epochs", "--width", "--pool-size", "--device", "--seed", "--out",
                "--pretrain", "--semi", "--graph", "--class-balance", "--save-models"):
        assert opt in text


def _no_training(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(dalcore.training, "train_model", lambda *a, **k: calls.append(1))
    return calls


def test_out_is_a_file_or_below_one(tmp_path: Path, capsys, monkeypatch) -> None:
    calls = _no_training(monkeypatch)
    f = tmp_path / "file"
    f.write_text("not a folder")
    for out in (f, f / "sub"):
        assert main(tiny_args(out)) == 2
        _one_error_line(capsys, "--out", str(out))
    assert calls == [] and f.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["results-binary", "results-row", "checkpoint-json",
                                    "checkpoint-labels", "config"])
def test_corrupt_files_met_on_resume(damage: str, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    assert main(tiny_args(out, methods="random", cycles=1)) == 0
    capsys.readouterr()
    what, _, how = damage.partition("-")
    target = {"results": out / "results.csv", "config": out / "config.json",
              "checkpoint": out / "checkpoints" / "random_r0.json"}[what]
    if damage == "results-binary":
        target.write_bytes(b"\xff\xfe\x00garbage")
    elif damage == "results-row":
        with open(target, "a") as fh:
            fh.write("digits,random,0,0,cpu,0.25,16,x,200,10,reciprocal,0,b,v,ZERO,1,0,10,0.5,1\n")
    elif damage == "checkpoint-json":
        target.write_text("{ not json")
    elif damage == "checkpoint-labels":
        doc = json.loads(target.read_text())
        doc["labeled"] = [10**9]
        target.write_text(json.dumps(doc))
    else:
        target.write_text("[1, 2")
    calls = _no_training(monkeypatch)
    assert main(tiny_args(out, methods="random", cycles=2)) == 2
    _one_error_line(capsys, target.name)
    assert calls == []


def test_older_run_folder_is_refused_by_name(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "old"
    assert main(tiny_args(out, methods="random", cycles=1)) == 0
    capsys.readouterr()
    doc = json.loads((out / "config.json").read_text())
    del doc["data"]  # written before the dataset fingerprint
    (out / "config.json").write_text(json.dumps(doc))
    calls = _no_training(monkeypatch)
    assert main(tiny_args(out, methods="random", cycles=1)) == 2
    _one_error_line(capsys, "older dalcore", "config.json")
    assert calls == []


@pytest.mark.parametrize("module, extra, needle", [
    ("matplotlib", [], "pip install matplotlib"),
    ("PIL", ["--dataset", "folder", "--data-dir", "."], "pip install pillow"),
    ("faiss", ["--pretrain"], "pip install faiss-cpu"),
])
def test_missing_dependency_fails_before_training(module, extra, needle, tmp_path: Path, capsys,
                                                  monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    calls = _no_training(monkeypatch)
    assert main([*tiny_args(tmp_path / "o"), *extra]) == 2
    _one_error_line(capsys, module, needle)
    assert calls == [] and not (tmp_path / "o").exists()


def test_folder_dataset_errors_before_training(tmp_path: Path, capsys, monkeypatch) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(one / f"{k}.png")
    calls = _no_training(monkeypatch)
    base = ["run", "--dataset", "folder", "--budget", "1", "--cycles", "1", "--quiet"]
    assert main([*base, "--data-dir", str(tmp_path / "one"), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "one class")
    two = tmp_path / "two"
    for c in ("a", "b"):  # one image per class: nothing left for the test split
        (two / c).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(two / c / "0.png")
    assert main([*base, "--data-dir", str(two), "--out", str(tmp_path / "o2")]) == 2
    _one_error_line(capsys, "test set is empty")
    assert calls == []


def test_disk_error_mid_run_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import dalcore.experiment as ex

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "checkpoints" / "x"))

    monkeypatch.setattr(ex, "_atomic_write_text", full)
    assert main(tiny_args(tmp_path / "o", methods="random", cycles=1)) == 2
    _one_error_line(capsys, "No space left on device", "resume")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_out_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    calls = _no_training(monkeypatch)
    try:
        assert main(tiny_args(out)) == 2
    finally:
        out.chmod(0o700)
    _one_error_line(capsys, "--out", str(out))
    assert calls == []


def test_missing_scikit_learn_for_digits(tmp_path: Path, capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    calls = _no_training(monkeypatch)
    assert main(tiny_args(tmp_path / "o")) == 2
    _one_error_line(capsys, "pip install scikit-learn")
    assert calls == []
