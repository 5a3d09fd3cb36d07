"""The experiment loop: outputs, determinism, checkpoints and resume after a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _run_helpers import METHODS, assert_same_rows, read_rows, tiny_args, without_seconds

import dalcore
import dalcore.experiment as experiment
import dalcore.training
from dalcore.cli import main
from dalcore.experiment import COLUMNS, repeat_seed
from dalcore.presets import PRESETS


class SimulatedCrash(RuntimeError):
    """Raised through the experiment's commit seam to simulate a crash between two writes."""


def crash_after(monkeypatch, n: int, where: str) -> None:
    """Make the n-th finished cycle of the next run crash at ``where`` (checkpoint or row)."""

    def hook(at: str, finished: int) -> None:
        if at == where and finished >= n:
            raise SimulatedCrash(f"simulated crash after {finished} cycle(s) ({at})")

    monkeypatch.setattr(experiment, "_commit_hook", hook)

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
            # the selection is made after the last cycle too (the run can be extended)
            assert st["next_cycle"] == 2 and lab.size == 30 and np.unique(lab).size == 30
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
    assert np.bincount(y_pool[lab], minlength=10).sum() == 30


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
    assert_same_rows(a, b, 12)
    assert without_seconds(a) == without_seconds(b)  # in the same order too
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
    crash_after(monkeypatch, 3, where)
    with pytest.raises(SimulatedCrash):
        main(tiny_args(out, repeats=2))
    partial = read_rows(out / "results.csv")
    assert len(partial) == (3 if where == "row" else 2)
    monkeypatch.setattr(experiment, "_commit_hook", None)
    calls = _count_training(monkeypatch)
    assert main(tiny_args(out, repeats=2)) == 0
    total = len(METHODS.split(",")) * 2 * 2
    assert len(calls) == total - 3  # the 3 finished cycles are not trained again
    resumed = read_rows(out / "results.csv")
    assert_same_rows(resumed, read_rows(reference_run / "results.csv"), total)
    # rows finished before the crash keep their original timing
    assert [r["seconds"] for r in resumed[: len(partial)]] == [r["seconds"] for r in partial]


def test_resume_drops_a_torn_line_and_finished_run_does_nothing(
        reference_run: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "torn"
    crash_after(monkeypatch, 2, "row")
    with pytest.raises(SimulatedCrash):
        main(tiny_args(out, repeats=2))
    monkeypatch.setattr(experiment, "_commit_hook", None)
    with open(out / "results.csv", "a") as f:
        f.write("digits,random,0,0,1,0,10,0.9")  # killed in the middle of a write
    assert main(tiny_args(out, repeats=2)) == 0
    rows = read_rows(out / "results.csv")
    assert_same_rows(rows, read_rows(reference_run / "results.csv"), 12)
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
    assert p.augment and p.semi_min_epochs is None  # the paper's augmentation and schedule
    assert p.epochs_for(20, semi=True, semi_batches=33) == 200
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
    args = tiny_args(out, repeats=2)
    # the test seam, set in the child: SIGKILL between the 2nd checkpoint and its results row
    kill = (
        "import os, signal, sys\n"
        "import dalcore.experiment as ex\n"
        "from dalcore.cli import main\n"
        "def hook(at, n):\n"
        "    if at == 'checkpoint' and n >= 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "ex._commit_hook = hook\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, "-c", kill, *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(read_rows(out / "results.csv")) == 1  # the 2nd row was not written yet
    proc = subprocess.run([sys.executable, "-m", "dalcore", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # the 2nd cycle is not run again: its row comes from the checkpoint
    finished_lines = re.findall(r"repeat \d+ +cycle \d+ +labels", proc.stdout)
    assert len(finished_lines) == len(read_rows(reference_run / "results.csv")) - 2
    assert_same_rows(read_rows(out / "results.csv"), read_rows(reference_run / "results.csv"), 12)


def test_repetition_seeds_are_hashed_and_recorded(reference_run: Path, tmp_path: Path) -> None:
    """Every row carries its repetition's own seed, a hash of (base seed, r): two base seeds
    share no repetition (seed + r made --seed 0 and --seed 1 share all but one)."""
    rows = read_rows(reference_run / "results.csv")
    for r in rows:
        assert int(r["seed"]) == repeat_seed(0, int(r["repeat"]))
    base0 = {repeat_seed(0, r) for r in range(200)}
    base1 = {repeat_seed(1, r) for r in range(200)}
    assert len(base0) == len(base1) == 200 and not base0 & base1
    assert all(repeat_seed(0, r) != r for r in range(200))
    assert main(tiny_args(tmp_path / "s1", repeats=2, seed=1, cycles=1, methods="random")) == 0
    other = read_rows(tmp_path / "s1" / "results.csv")
    assert len(other) == 2
    assert not {r["seed"] for r in other} & {r["seed"] for r in rows}
    ja = [json.loads((reference_run / "checkpoints" / f"random_r{k}.json").read_text())
          for k in range(2)]
    jb = [json.loads((tmp_path / "s1" / "checkpoints" / f"random_r{k}.json").read_text())
          for k in range(2)]
    for a in ja:  # no initial split of base seed 1 is one of base seed 0
        for b in jb:
            assert a["rows"][0]["seed"] != b["rows"][0]["seed"]
            assert a["labeled"] != b["labeled"]


def test_rows_carry_every_setting(reference_run: Path) -> None:
    rows = read_rows(reference_run / "results.csv")
    assert len(rows) == 12
    for r in rows:
        assert tuple(r) == COLUMNS
        assert (r["preset"], r["width"], r["image_size"], r["epochs_or_steps"], r["pool_size"],
                r["budget"], r["graph"], r["class_balance"], r["initial"], r["version"]) == (
            "cpu", "0.25", "16", "epochs:8", "200", "10", "reciprocal", "0", "balanced",
            dalcore.__version__)


def test_extend_with_more_cycles_repeats_and_methods(reference_run: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    """1 cycle x 1 repeat x random, then 2 x 2 x random,ceal into the same folder: only the
    new cycles train, and the rows equal those of one uninterrupted run."""
    out = tmp_path / "grow"
    assert main(tiny_args(out, methods="random", repeats=1, cycles=1)) == 0
    calls = _count_training(monkeypatch)
    assert main(tiny_args(out, methods="random,ceal", repeats=2, cycles=2)) == 0
    assert len(calls) == 2 * 2 * 2 - 1
    ref = [r for r in read_rows(reference_run / "results.csv") if r["method"] in ("random", "ceal")]
    assert_same_rows(read_rows(out / "results.csv"), ref, 8)
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["methods"], cfg["cycles"], cfg["repeats"]) == (["random", "ceal"], 2, 2)
    calls.clear()
    assert main(tiny_args(out, methods="random", repeats=1, cycles=1)) == 0  # a subset: no work
    assert calls == []


@pytest.mark.parametrize("change, setting", [
    (["--width", "0.5"], "width"),
    (["--budget", "12"], "budget"),
    (["--pool-size", "150"], "pool_size"),
    (["--preset", "paper"], "preset"),
])
def test_extension_refuses_a_changed_setting(change, setting, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fixed"
    assert main(tiny_args(out, methods="random", cycles=1)) == 0
    capsys.readouterr()
    args = tiny_args(out, methods="random", cycles=2)
    i = args.index(change[0]) if change[0] in args else len(args)
    args[i:i + 2] = change
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and setting in err[0] and "different configuration" in err[0]
    assert len(read_rows(out / "results.csv")) == 1


def test_seed_change_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "seed"
    assert main(tiny_args(out, methods="random", cycles=1)) == 0
    capsys.readouterr()
    assert main(tiny_args(out, methods="random", cycles=1, seed=3)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed" in err[0]


def _folder_dataset(root: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(12):
            img = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            Image.fromarray(img).save(root / c / f"{k}.png")


def test_resume_on_changed_data_is_refused(tmp_path: Path, rng, capsys) -> None:
    data = tmp_path / "imgs"
    _folder_dataset(data, rng)
    out = tmp_path / "run"
    args = ["run", "--dataset", "folder", "--data-dir", str(data), "--budget", "2",
            "--cycles", "1", "--repeats", "1", "--epochs", "1", "--methods", "random",
            "--out", str(out), "--quiet", "--threads", "1"]
    assert main(args) == 0
    fp = json.loads((out / "config.json").read_text())["data"]["fingerprint"]
    assert len(fp) == 64
    moved = tmp_path / "moved"
    data.rename(moved)  # the same files elsewhere: accepted (nothing to redo)
    args[args.index(str(data))] = str(moved)
    assert main(args) == 0
    capsys.readouterr()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(moved / "a" / "3.png")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fingerprint" in err[0] and "Traceback" not in err[0]


def test_save_models_keeps_each_cycles_weights(tmp_path: Path) -> None:
    """The saved weights (read with weights_only=True) give the row's test accuracy, computed
    here with numpy from the model's logits."""
    import torch

    from dalcore.data import load_dataset
    from dalcore.models import ConvNet13

    out = tmp_path / "models"
    assert main(tiny_args(out, "--save-models", methods="random", cycles=2)) == 0
    rows = read_rows(out / "results.csv")
    ds = load_dataset("digits", image_size=16)
    y = ds.y_test.numpy()
    assert len(rows) == 2
    for r in rows:
        path = out / "models" / f"random_r0_c{r['cycle']}.pt"
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = ConvNet13(in_channels=1, num_classes=10, width=0.25)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            logits = model(ds.x_test)[0].double().numpy()
        acc = float(np.mean(np.argmax(logits, axis=1) == y))
        assert acc == pytest.approx(float(r["accuracy"]), abs=1e-6)


def test_graph_input_needs_semi_and_a_known_value(tmp_path: Path, capsys) -> None:
    code = main(tiny_args(tmp_path / "a", "--graph-input", "always", methods="random"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--graph-input" in err and "--semi" in err
    with pytest.raises(SystemExit) as e:
        main(tiny_args(tmp_path / "b", "--semi", "--graph-input", "pixels", methods="random"))
    assert e.value.code == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_graph_input_reaches_the_refresh_and_the_results(tmp_path: Path, monkeypatch) -> None:
    """``--graph-input only`` builds every propagation graph on the images (the refresh's
    feature matrix is the flattened, L2-normalised images, rebuilt here), is recorded in the
    ``graph`` column, and a folder written before the option existed still resumes."""
    import dalcore.semi.label_propagation as lp

    seen: list[np.ndarray] = []
    real = lp.propagate_labels

    def spy(features, *args, **kwargs):
        seen.append(np.asarray(features, dtype=np.float64))
        return real(features, *args, **kwargs)

    monkeypatch.setattr(lp, "propagate_labels", spy)
    out = tmp_path / "run"
    args = tiny_args(out, "--semi", "--graph-input", "only", "--epochs", "2", methods="random",
                     cycles=1)
    assert main(args) == 0
    data = experiment._load_data(experiment.ExperimentConfig(dataset="digits", pool_size=200),
                                 PRESETS["cpu"])[0]
    pix = data.x_train.numpy().reshape(200, -1).astype(np.float64)
    pix /= np.linalg.norm(pix, axis=1, keepdims=True)
    assert len(seen) == 2
    for f in seen:
        np.testing.assert_allclose(f, pix, atol=1e-6)
    rows = read_rows(out / "results.csv")
    assert [r["graph"] for r in rows] == ["reciprocal+images:only"]
    # A config.json of a run made before --graph-input existed: the run resumes (extends).
    doc = json.loads((out / "config.json").read_text())
    del doc["config"]["input_graph"]
    (out / "config.json").write_text(json.dumps(doc))
    args_old = tiny_args(out, "--semi", "--epochs", "2", methods="random", cycles=2)
    assert main(args_old) == 0
    assert len(read_rows(out / "results.csv")) == 2
