"""`torchrun -m dalcore run`'s distributed steps, with the gloo backend on this machine.

- Selections: 2 and 3 spawned processes run :func:`dalcore.loop.select` (coreset through
  ``distributed.kcenter`` on each rank's shard; uncertainty and CEAL scored per shard, only the
  scores gathered; jLP on the gathered features) on the same features as one process; the picks
  (and CEAL's pseudo-labels) must be exactly the one-process ones, and they are checked against
  float64 references (a greedy replay of the k-center picks; entropies recomputed in float64).
  A stand-in model hands its input through as (logits, features), so that every process sees
  the same features: scikit-learn's digits (integer pixels: many exact ties) and seeded random
  sets with repeated rows.
- :func:`dalcore.distributed.on_writer`: rank 0's result (and error) on every rank.
- SyncBatchNorm: converted on the CUDA/NCCL path only; torch refuses it on CPUs.
- ``--pretrain`` under torchrun: the backbone equals the one-process one, also after kill -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gloo_world import run_rank, spawn_world
from test_kcenter import check_greedy

import dalcore

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

METHODS = ("coreset", "uncertainty", "ceal", "ceal-uncapped", "jlp")
BUDGET = 12
C = 10


# ------------------------------------------------------------------ the same data in every process
class _Data:
    """What the acquisition context reads: x_train (N, C + d, 1, 1), y_train, num_classes."""

    def __init__(self, logits: np.ndarray, feats: np.ndarray, y: np.ndarray) -> None:
        x = np.concatenate([logits, feats], axis=1).astype(np.float32)
        self.x_train = torch.from_numpy(x[:, :, None, None].copy())
        self.y_train = torch.from_numpy(y.astype(np.int64))
        self.num_classes = C


class _PassThrough(torch.nn.Module):
    """(logits, features) = the input's first C channels, the rest: exact, batch-independent."""

    def forward(self, x):  # noqa: D401
        return x[:, :C, 0, 0], x[:, C:, 0, 0]


def cases() -> dict[str, tuple[_Data, np.ndarray, np.ndarray]]:
    """name -> (data, labeled, pool)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    px = d.data.astype(np.float32)
    feats = px / np.linalg.norm(px, axis=1, keepdims=True)
    logits = 3.0 * px[:, 20:30] / 4.0  # integer steps: exact entropy ties; some rows confident
    out = {}
    rng = np.random.default_rng(1515)
    lab = np.sort(rng.choice(px.shape[0], 30, replace=False))
    rest = np.setdiff1d(np.arange(px.shape[0]), lab)
    pool = np.sort(rng.choice(rest, 900, replace=False))
    out["digits"] = (_Data(logits, feats, d.target), lab, pool)

    base = rng.standard_normal((60, 16)).astype(np.float32)
    f = base[rng.integers(0, 60, 400)]  # repeated rows: exact distance and entropy ties
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    lg = rng.standard_normal((60, C)) * 0.3
    lg[np.arange(30), np.arange(30) % C] += 12.0  # confident rows of every class (CEAL's cap)
    lg = lg.astype(np.float32)[rng.integers(0, 60, 400)]
    y = rng.integers(0, C, 400)
    lab = np.sort(rng.choice(400, 25, replace=False))
    y[lab] = np.arange(25) % C  # true labels of every class
    pool = np.setdiff1d(np.arange(400), lab)
    out["random"] = (_Data(lg, f, y), lab, pool)
    out["random_unlabeled"] = (_Data(lg, f, y), np.zeros(0, np.int64), np.arange(400))
    return out


def selections() -> dict[str, np.ndarray]:
    """Every method on every case through dalcore.loop.select (distributed when a process
    group is up): picks, CEAL's pseudo-labels."""
    from dalcore.loop import FitResult, select

    fitted = FitResult(model=_PassThrough(), refresh=None, history={})
    out = {}
    for name, (data, lab, pool) in cases().items():
        for method in METHODS:
            if method.startswith("ceal") and lab.size == 0:
                continue
            sel = select(fitted, data, lab, pool, method=method, budget=BUDGET, cycle=2,
                         seed=7, device="cpu")
            out[f"{name}/{method}"] = sel.indices
            if sel.pseudo is not None:
                out[f"{name}/{method}/pseudo_idx"] = sel.pseudo.indices
                out[f"{name}/{method}/pseudo_lab"] = sel.pseudo.labels
    return out


def _writer_cases(rank: int, out: dict) -> None:
    from dalcore import distributed as dd

    def make() -> dict:
        # rank 0 alone, as one process: no collective may run here
        g = torch.Generator().manual_seed(42)
        return {"w": torch.randn(5, 3, generator=g), "ws": torch.tensor(dd.world_size())}

    got = dd.on_writer(make)
    out["writer_w"], out["writer_ws"] = got["w"].numpy(), got["ws"].numpy()

    def fail() -> None:
        raise ValueError("epochs: refused on purpose")

    try:
        dd.on_writer(fail)
        out["writer_err"] = np.array("none")
    except ValueError as e:
        out["writer_err"] = np.array(f"ValueError: {e}")
    out["after_writer"] = np.asarray(dd.world_size())  # the group works after a failure


def _syncbn_on_cpu(out: dict) -> None:
    """torch's SyncBatchNorm on CPU tensors under gloo (the premise of keeping BatchNorm)."""
    m = torch.nn.SyncBatchNorm(4).train()
    try:
        m(torch.randn(6, 4, 3, 3))
        out["syncbn_cpu"] = np.array("ran")
    except ValueError as e:
        out["syncbn_cpu"] = np.array(f"ValueError: {e}")


def _worker(rank: int, world: int, store: str, outdir: str) -> None:
    run_rank(rank, world, store, outdir, _body)


def _body(rank: int, world: int) -> dict:
    out = selections()
    _writer_cases(rank, out)
    _syncbn_on_cpu(out)
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=["2proc", "3proc"])
def runs(request, tmp_path_factory) -> tuple[int, list[dict]]:
    world = request.param
    return world, spawn_world(_worker, world, tmp_path_factory.mktemp(f"driver{world}"))


@pytest.fixture(scope="module")
def one_process() -> dict[str, np.ndarray]:
    dalcore._core.set_num_threads(1)
    return selections()


# ------------------------------------------------------------------ selections
@pytest.mark.timeout(600)
def test_selections_equal_one_process_exactly(runs, one_process):
    world, res = runs
    assert len(one_process) >= 3 * len(METHODS)
    for key, ref in one_process.items():
        for r in range(world):
            assert key in res[r], f"{key} missing on rank {r}"
            assert res[r][key].dtype == ref.dtype, key
            np.testing.assert_array_equal(res[r][key], ref, err_msg=f"{key}, rank {r}/{world}")


def _probs_feats(data: _Data, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = data.x_train.numpy()[idx, :, 0, 0].astype(np.float64)
    z = x[:, :C] - x[:, :C].max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p, x[:, C:]


@pytest.mark.timeout(600)
def test_coreset_picks_replay_greedy_in_float64(runs):
    world, res = runs
    for name, (data, lab, pool) in cases().items():
        order = np.concatenate([lab, pool])
        _, feats = _probs_feats(data, order)
        rows = np.full(int(order.max()) + 1, -1)
        rows[order] = np.arange(order.size)
        picks = rows[res[0][f"{name}/coreset"]].astype(np.int64)
        check_greedy(feats, picks, np.arange(lab.size) if lab.size else None)


@pytest.mark.timeout(600)
def test_uncertainty_and_ceal_against_float64_entropy(runs):
    from dalcore.acquisition.ceal import ceal_delta

    world, res = runs
    for name, (data, lab, pool) in cases().items():
        p, _ = _probs_feats(data, pool)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        pos = np.searchsorted(pool, res[0][f"{name}/uncertainty"])
        rest = np.setdiff1d(np.arange(pool.size), pos)
        assert h[pos].min() >= h[rest].max() - 1e-6, name  # the most uncertain, up to rounding
        if lab.size == 0:
            continue
        for m in ("ceal", "ceal-uncapped"):
            np.testing.assert_array_equal(res[0][f"{name}/{m}"], res[0][f"{name}/uncertainty"])
            idx = res[0].get(f"{name}/{m}/pseudo_idx", np.zeros(0, np.int64))
            at = np.searchsorted(pool, idx)
            np.testing.assert_array_equal(res[0][f"{name}/{m}/pseudo_lab"], p[at].argmax(axis=1))
            assert np.all(h[at] / np.log(C) < ceal_delta(2) + 1e-6)
        n_unc = res[0].get(f"{name}/ceal-uncapped/pseudo_idx", np.zeros(0)).size
        assert n_unc > 0, f"{name}: no confident row, CEAL's pseudo-labels went untested"
    assert res[0]["random/ceal/pseudo_idx"].size >= C  # the balanced cap kept some


# ------------------------------------------------------------------ on_writer, SyncBatchNorm
@pytest.mark.timeout(600)
def test_on_writer_result_and_error_reach_every_rank(runs):
    world, res = runs
    ref = torch.randn(5, 3, generator=torch.Generator().manual_seed(42)).numpy()
    for r in range(world):
        np.testing.assert_array_equal(res[r]["writer_w"], ref)
        assert int(res[r]["writer_ws"]) == 1  # rank 0 ran it as one process
        assert str(res[r]["writer_err"]) == "ValueError: epochs: refused on purpose"
        assert int(res[r]["after_writer"]) == world


@pytest.mark.timeout(600)
def test_torch_refuses_syncbatchnorm_on_cpu_so_cpu_keeps_batchnorm(runs):
    from dalcore._ddp import sync_batchnorm_supported

    world, res = runs
    for r in range(world):
        assert str(res[r]["syncbn_cpu"]).startswith("ValueError: SyncBatchNorm expected")
    assert not sync_batchnorm_supported("cpu", "gloo")


@pytest.mark.parametrize("device,backend,converted", [
    ("cuda", "nccl", True), ("cuda:1", "NCCL", True), ("cpu", "gloo", False),
    ("cuda", "gloo", False), (torch.device("cpu"), "nccl", False)])
def test_convert_batchnorm_on_the_cuda_path_only(device, backend, converted):
    from dalcore.distributed import convert_batchnorm
    from dalcore.models import ConvNet13

    torch.manual_seed(3)
    model = ConvNet13(in_channels=1, num_classes=C, width=0.125)
    norm = torch.nn.modules.batchnorm._NormBase
    bn = {n for n, m in model.named_modules() if isinstance(m, norm)}
    assert len(bn) >= 9  # one after every conv
    kinds = {n: type(m) for n, m in model.named_modules()}
    params = {n: p for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = convert_batchnorm(model, device, backend)
    assert out is model
    for n, m in model.named_modules():
        want = torch.nn.SyncBatchNorm if converted and n in bn else kinds[n]
        assert type(m) is want, n
    for n, p in model.named_parameters():  # an optimiser built before still holds them
        assert p is params[n], n
    after = model.state_dict()
    assert after.keys() == state.keys()
    for k in state:
        assert torch.equal(after[k], state[k]), k


def test_backend_for_device(monkeypatch):
    from dalcore.distributed import backend_for, join_from_env

    assert backend_for("cuda") == "nccl" and backend_for(torch.device("cuda", 3)) == "nccl"
    assert backend_for("cpu") == "gloo"
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join_from_env(torch.device("cpu")) == torch.device("cpu")  # one process: nothing
    assert not dist.is_initialized()


# ------------------------------------------------------------------ --pretrain under torchrun
def _pretrain_args(out: Path) -> list[str]:
    from _run_helpers import tiny_args

    return [*tiny_args(out, "--pretrain", "--device", "cpu", methods="random,coreset",
                       cycles=1)]


def _env() -> dict:
    repo = Path(dalcore.__file__).resolve().parents[1]
    return dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")


def _torchrun(out: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "dalcore", *_pretrain_args(out)]


def _backbone(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_backbone(a: dict, b: dict) -> None:
    assert a["meta"] == b["meta"]
    assert a["backbone"].keys() == b["backbone"].keys() and len(a["backbone"]) > 10
    for k in a["backbone"]:
        assert torch.equal(a["backbone"][k], b["backbone"][k]), k
    assert a["nmi"] == b["nmi"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_torchrun_pretrain_equals_one_process_and_resumes_after_kill_9(tmp_path):
    """Rank 0 pre-trains alone as one process: the cached backbone is the one-process one,
    bit for bit; rank 0 killed (SIGKILL) mid-pre-training: the same command resumes from the
    partial checkpoint and ends with the same backbone."""
    from _run_helpers import read_rows
    from test_distributed import _descendant_with_rank

    env = _env()
    one = tmp_path / "one"
    proc = subprocess.run([sys.executable, "-m", "dalcore", *_pretrain_args(one)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = _backbone(one / "pretrain_r0.pt")

    two = tmp_path / "two"
    proc = subprocess.run(_torchrun(two), env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_backbone(_backbone(two / "pretrain_r0.pt"), ref)
    assert len(read_rows(two / "results.csv")) == 2

    killed = tmp_path / "killed"
    run = subprocess.Popen(_torchrun(killed), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    partial = killed / "pretrain_r0.pt.partial"
    deadline = time.monotonic() + 300
    while not partial.exists() and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before its first pre-training checkpoint"
        time.sleep(0.02)
    victim = _descendant_with_rank(run.pid, 0)
    assert victim is not None, "rank 0 not found"
    os.kill(victim, signal.SIGKILL)
    run.communicate(timeout=120)
    assert run.returncode != 0, "torchrun should fail when rank 0 is killed"
    assert not (killed / "pretrain_r0.pt").exists()
    proc = subprocess.run(_torchrun(killed), env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_backbone(_backbone(killed / "pretrain_r0.pt"), ref)
    assert not partial.exists()


@pytest.mark.timeout(300)
def test_gpu_check_distributed_dry_run_on_gloo():
    """tools/gpu_check_distributed.py (gpu_check.sh's NCCL step) on gloo and the CPU: its
    checks compare with the one-process kernels; every one must pass here too."""
    script = Path(__file__).resolve().parents[1] / "tools" / "gpu_check_distributed.py"
    proc = subprocess.run([sys.executable, str(script),
                           "--device", "cpu"], env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "9 of 9 checks passed" in proc.stdout
