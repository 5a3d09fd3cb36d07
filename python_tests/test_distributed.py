"""dalcore.distributed under the gloo backend, 2 and 3 processes spawned on this machine.

The shards are uneven, and with 3 processes the middle rank holds no row. Every case runs in one
spawn per process count (the workers save what each rank returned); the checks here compare with
the one-process kernels on the concatenated data and with float64 references: a greedy replay
of the picks (test_kcenter.check_greedy), brute-force neighbours, scipy's direct solve.
Data: seeded random sets (Gaussian, tight clusters far from the origin, exact duplicates),
scikit-learn's digits (integer pixels: many exact distance ties, and a 1024-row block of the
mean split across ranks) and Fashion-MNIST test images where the IDX files are installed.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from gloo_world import run_rank, spawn_world
from test_kcenter import check_greedy

import dalcore

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
BUDGET = 25
K = 10
PROP_CASES = {
    "paper": dict(alpha=0.99, tol=1e-6, max_iter=20),
    "paper64": dict(alpha=0.99, tol=1e-6, max_iter=20, precision="float64"),
    "double": dict(alpha=0.99, tol=1e-10, max_iter=400, precision="float64"),
    "warm": dict(alpha=0.9, tol=1e-6, max_iter=20, x0="ones"),
}


# ------------------------------------------------------------------ data, the same in every process
def datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1505)
    centres = rng.standard_normal((12, 24)) * 10 + 100
    from sklearn.datasets import load_digits

    out = {
        "gauss": rng.standard_normal((300, 37)).astype(np.float32),
        "clustered": (centres[rng.integers(0, 12, 260)]
                      + 0.3 * rng.standard_normal((260, 24))).astype(np.float32),
        "duplicates": rng.standard_normal((40, 8)).astype(np.float32)[rng.integers(0, 40, 250)],
        "digits": load_digits().data.astype(np.float32),
        # magnitudes at which dalcore.kcenter rescales by a power of two
        "tiny": (rng.standard_normal((200, 20)) * 1e-25).astype(np.float32),
    }
    if FASHION.exists():
        with gzip.open(FASHION, "rb") as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        out["fashion"] = raw.reshape(-1, 784)[:400].astype(np.float32) / 255.0
    return out


def labeled_sets(name: str, n: int) -> dict[str, np.ndarray | None]:
    seed = sum(map(ord, name))  # stable across processes (never hash())
    rng = np.random.default_rng(seed)
    return {"none": None, "few": np.sort(rng.choice(n, 7, replace=False)),
            "many": rng.choice(n, 40, replace=False)}


def shard_sizes(n: int, world: int) -> list[int]:
    """Uneven shards; with 3 ranks the middle one is empty."""
    if world == 2:
        a = int(0.6 * n)
        return [a, n - a]
    a = int(0.4 * n)
    return [a, 0, n - a]


def digits_problem() -> tuple[sp.csr_array, np.ndarray, int]:
    """The k-NN graph (k=10, gamma=3) of L2-normalised digits and 5 labels per class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = sp.csr_array(dalcore.knn_graph(dalcore.knn(x, K)))
    rng = np.random.default_rng(77)
    lab = np.full(x.shape[0], -1, dtype=np.int64)
    for c in range(10):
        i = rng.choice(np.flatnonzero(d.target == c), 5, replace=False)
        lab[i] = c
    return s, lab, 10


# ------------------------------------------------------------------ the worker (one per rank)
def _kcenter_cases(rank: int, world: int, out: dict) -> None:
    from dalcore import distributed as dd

    for name, x in datasets().items():
        sizes = shard_sizes(x.shape[0], world)
        lo = sum(sizes[:rank])
        local = x[lo : lo + sizes[rank]]
        for lname, lab in labeled_sets(name, x.shape[0]).items():
            picks, radius = dd.kcenter(local, BUDGET, lab, return_radius=True)
            out[f"kc/{name}/{lname}"] = picks
            out[f"kcr/{name}/{lname}"] = np.float64(radius)
        if name == "duplicates":  # 40 distinct rows: the last picks are exact ties at 0
            out["kc0/duplicates"] = dd.kcenter(local, 45, return_radius=True)[0]
        t = dd.kcenter(torch.from_numpy(local), 5)
        out[f"kct/{name}"] = t.numpy()
        if name in ("gauss", "digits"):
            v, i = dd.knn(local, K)
            out[f"knn/{name}/v"], out[f"knn/{name}/i"] = v, i
            v, i = dd.knn(local, K, metric="l2")
            out[f"knnl2/{name}/v"], out[f"knnl2/{name}/i"] = v, i


def _propagate_cases(rank: int, world: int, out: dict) -> None:
    from dalcore import distributed as dd

    s, lab, c = digits_problem()
    sizes = shard_sizes(s.shape[0], world)
    lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
    for case, kw in PROP_CASES.items():
        kw = dict(kw)
        if kw.get("x0") == "ones":
            kw["x0"] = np.ones((hi - lo, c), np.float32) * 0.01
        z, info = dd.propagate(s[lo:hi], lab[lo:hi], num_classes=c, return_info=True, **kw)
        out[f"prop/{case}"] = z
        out[f"propit/{case}"] = info.iterations
    x = datasets()["digits"]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    v, i = dd.knn(x[lo:hi], K)
    for mode in ("reciprocal", "union"):
        gm = dd.knn_graph(v, i, gamma=3.0, mode=mode)
        out[f"graph/{mode}/indptr"], out[f"graph/{mode}/indices"] = gm.indptr, gm.indices
        out[f"graph/{mode}/data"] = gm.data
    lab_all = digits_problem()[1]
    zp, _ = dd.propagate_pool(x, lab_all, k=K, gamma=3.0, mode="reciprocal", num_classes=c,
                              alpha=0.99, max_iter=20)
    out["prop/pool"] = zp
    g = s[lo:hi]
    z = dd.propagate((torch.from_numpy(g.indptr), torch.from_numpy(g.indices),
                      torch.from_numpy(g.data)), torch.from_numpy(lab[lo:hi]), num_classes=c)
    out["prop/triple"] = z.numpy()


def _error_cases(rank: int, world: int, out: dict) -> None:
    """Refused input raises on every rank, and the group stays usable afterwards."""
    from dalcore import distributed as dd

    x = datasets()["gauss"]
    sizes = shard_sizes(x.shape[0], world)
    lo = sum(sizes[:rank])
    local = x[lo : lo + sizes[rank]].copy()
    bad = local.copy()
    if rank == world - 1:
        bad[0, 0] = np.nan
    budgets = [BUDGET] * world
    budgets[0] = BUDGET + 1
    calls = {
        "budget_too_large": lambda: dd.kcenter(local, x.shape[0] + 1),
        "nan_on_last_rank": lambda: dd.kcenter(bad, 3),
        "budget_differs": lambda: dd.kcenter(local, budgets[rank]),
        "k_too_large": lambda: dd.knn(local, x.shape[0]),
        "labeled_out_of_range": lambda: dd.kcenter(local, 3, [x.shape[0]]),
        "float_labels": lambda: dd.propagate(sp.csr_array((sizes[rank], x.shape[0])),
                                             np.zeros(sizes[rank]), num_classes=2),
    }
    for case, call in calls.items():
        try:
            call()
            out[f"err/{case}"] = np.str_("no error")
        except (TypeError, ValueError) as e:
            out[f"err/{case}"] = np.str_(f"{type(e).__name__}: {e}")
    out["after_errors"] = dd.kcenter(local, 3)


def _worker(rank: int, world: int, store: str, outdir: str) -> None:
    run_rank(rank, world, store, outdir, _body)


def _body(rank: int, world: int) -> dict:
    out: dict = {}
    _kcenter_cases(rank, world, out)
    _propagate_cases(rank, world, out)
    _error_cases(rank, world, out)
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=["2proc", "3proc"])
def runs(request, tmp_path_factory) -> tuple[int, list[dict]]:
    world = request.param
    return world, spawn_world(_worker, world, tmp_path_factory.mktemp(f"dist{world}"))


# ------------------------------------------------------------------ checks
@pytest.mark.timeout(900)
def test_kcenter_picks_equal_one_process(runs):
    world, res = runs
    for name, x in datasets().items():
        for lname, lab in labeled_sets(name, x.shape[0]).items():
            ref, ref_r = dalcore.kcenter(x, BUDGET, lab, return_radius=True)
            for r in range(world):
                got = res[r][f"kc/{name}/{lname}"]
                np.testing.assert_array_equal(got, ref, err_msg=f"{name}/{lname} rank {r}")
                assert float(res[r][f"kcr/{name}/{lname}"]) == ref_r, (name, lname, r)


@pytest.mark.timeout(900)
def test_kcenter_exact_ties_go_to_the_lowest_global_index(runs):
    world, res = runs
    x = datasets()["duplicates"]
    ref = dalcore.kcenter(x, 45)
    uniq = np.unique(x, axis=0).shape[0]
    assert uniq == 40
    for r in range(world):
        np.testing.assert_array_equal(res[r]["kc0/duplicates"], ref)
    check_greedy(x, ref)  # the float64 replay also checks the zero-distance ties go low


@pytest.mark.timeout(900)
def test_kcenter_against_float64_replay(runs):
    world, res = runs
    for name, x in datasets().items():
        for lname, lab in labeled_sets(name, x.shape[0]).items():
            md = check_greedy(x, res[0][f"kc/{name}/{lname}"], lab)
            assert np.sqrt(md.max()) == pytest.approx(float(res[0][f"kcr/{name}/{lname}"]),
                                                      rel=1e-5)
        assert res[world - 1][f"kct/{name}"].tolist() == dalcore.kcenter(x, 5).tolist()


def _brute_knn(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    s = x @ x.T if metric == "ip" else -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(s, -np.inf)
    o = np.argsort(-s, axis=1, kind="stable")[:, :k]
    v = np.take_along_axis(s, o, 1)
    return (v if metric == "ip" else -v), o


@pytest.mark.timeout(900)
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_knn_against_one_process_and_brute_force(runs, metric):
    world, res = runs
    key = "knn" if metric == "ip" else "knnl2"
    for name in ("gauss", "digits"):
        x = datasets()[name]
        v = np.concatenate([res[r][f"{key}/{name}/v"] for r in range(world)])
        i = np.concatenate([res[r][f"{key}/{name}/i"] for r in range(world)])
        assert i.shape == (x.shape[0], K)
        v1, i1 = dalcore.knn(x, K, metric=metric)
        bv, bi = _brute_knn(x, K, metric)
        scale = max(1.0, float(np.abs(bv).max()))
        np.testing.assert_allclose(v, bv, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(v, v1, rtol=0, atol=1e-5 * scale)
        assert not np.any(i == np.arange(x.shape[0])[:, None]), "self listed"
        # Same neighbours, except where float32 rounding may reorder near-equal scores: there
        # the listed neighbour's exact score must equal the reference's at that rank.
        x64 = x.astype(np.float64)
        exact = (np.einsum("ij,ikj->ik", x64, x64[i]) if metric == "ip"
                 else ((x64[:, None, :] - x64[i]) ** 2).sum(-1))
        np.testing.assert_allclose(exact, bv, rtol=0, atol=1e-5 * scale)
        gap_ok = np.abs(np.diff(bv, axis=1)).min(axis=1) > 1e-4 * scale
        np.testing.assert_array_equal(i[gap_ok], bi[gap_ok])
        np.testing.assert_array_equal(i[gap_ok], i1[gap_ok])
        assert gap_ok.mean() > 0.3


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["reciprocal", "union"])
def test_knn_graph_rows_equal_one_process(runs, mode):
    """Each rank's rows equal the one-process graph's rows; against a float64 reference too."""
    world, res = runs
    x = datasets()["digits"]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = [sp.csr_array((res[r][f"graph/{mode}/data"], res[r][f"graph/{mode}/indices"],
                          res[r][f"graph/{mode}/indptr"]),
                         shape=(len(res[r][f"graph/{mode}/indptr"]) - 1, x.shape[0]))
            for r in range(world)]
    g = sp.vstack(rows, format="csr")
    one = sp.csr_array(dalcore.knn_graph(dalcore.knn(x, K), mode=mode))
    assert abs(g - one).max() == 0
    # float64 reference: brute-force lists, W = max(0, s)^3, mutual (mean) or union (sum)
    _, nn = _brute_knn(x, K, "ip")
    s64 = x.astype(np.float64) @ x.astype(np.float64).T
    a = np.zeros_like(s64)
    np.put_along_axis(a, nn, np.maximum(np.take_along_axis(s64, nn, 1), 0) ** 3, 1)
    w = (a + a.T) / 2 * ((a > 0) & (a.T > 0)) if mode == "reciprocal" else a + a.T
    deg = w.sum(1)
    dinv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    np.testing.assert_allclose(g.toarray(), dinv[:, None] * w * dinv[None, :], atol=1e-5)


@pytest.mark.timeout(900)
def test_propagate_within_1e5_of_one_process(runs):
    world, res = runs
    s, lab, c = digits_problem()
    n = s.shape[0]
    for case, kw in PROP_CASES.items():
        kw = dict(kw)
        if kw.get("x0") == "ones":
            kw["x0"] = np.ones((n, c), np.float32) * 0.01
        z = np.concatenate([res[r][f"prop/{case}"] for r in range(world)])
        z1, info = dalcore.propagate(s, lab, num_classes=c, return_info=True, **kw)
        assert z.shape == (n, c) and z.dtype == np.float32
        # float64 CG vectors: within 1e-5 of the one-process solution. float32 ones (20
        # unconverged iterations at alpha=0.99): the one-process float32 result itself lies
        # 4e-5 from the float64 iterate on this graph, so both are held to 1e-4 of it.
        f32 = kw.get("precision", "float32") == "float32"
        np.testing.assert_allclose(z, z1, rtol=0, atol=1e-4 if f32 else 1e-5)
        if f32:
            z64 = dalcore.propagate(s, lab, num_classes=c, **{**kw, "precision": "float64"})
            np.testing.assert_allclose(z, z64, rtol=0, atol=1e-4)
        for r in range(world):
            it = res[r][f"propit/{case}"]  # a column ending next to tol may take one more
            assert np.abs(it - info.iterations).max() <= 1, (case, it, info.iterations)
    for r in range(world):  # SEMI's sharded graph + solve: the whole Z on every rank
        np.testing.assert_allclose(res[r]["prop/pool"], dalcore.propagate(s, lab, num_classes=c),
                                   rtol=0, atol=1e-4)
    zt = np.concatenate([res[r]["prop/triple"] for r in range(world)])
    np.testing.assert_allclose(zt, dalcore.propagate(s, lab, num_classes=c), rtol=0, atol=1e-4)


@pytest.mark.timeout(900)
def test_propagate_against_float64_solve(runs):
    world, res = runs
    s, lab, c = digits_problem()
    n = s.shape[0]
    counts = np.bincount(lab[lab >= 0], minlength=c)
    y = np.zeros((n, c))
    y[lab >= 0, lab[lab >= 0]] = 1.0 / counts[lab[lab >= 0]]
    a = sp.identity(n, format="csc") - 0.99 * sp.csc_array(s.astype(np.float64))
    ref = spl.spsolve(a, y)
    z = np.concatenate([res[r]["prop/double"] for r in range(world)])
    np.testing.assert_allclose(z, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@pytest.mark.timeout(900)
def test_refused_input_raises_on_every_rank(runs):
    world, res = runs
    for r in range(world):
        e = {k[4:]: str(v) for k, v in res[r].items() if k.startswith("err/")}
        assert e["budget_too_large"].startswith("ValueError: budget:"), e
        assert e["k_too_large"].startswith("ValueError: k:"), e
        assert e["labeled_out_of_range"].startswith("ValueError: labeled:"), e
        assert e["budget_differs"].startswith("ValueError: budget: every rank"), e
        assert e["float_labels"].startswith("TypeError"), e
        if r == world - 1:
            assert "local_features: contains 1 NaN" in e["nan_on_last_rank"], e
        else:
            assert e["nan_on_last_rank"] == (f"ValueError: kcenter: refused on rank(s) "
                                             f"[{world - 1}] (see the error raised there)"), e
        assert res[r]["after_errors"].tolist() == dalcore.kcenter(datasets()["gauss"], 3).tolist()


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fma(a, b, c) with one rounding (a * b is exact in float64; the float64 sum's
    error is recovered by TwoSum and decides the halfway cases)."""
    p, c64 = a.astype(np.float64) * b.astype(np.float64), c.astype(np.float64)
    s = p + c64
    bb = s - p
    e = (p - (s - bb)) + (c64 - bb)
    r = s.astype(np.float32)
    other = np.nextafter(r, np.where(s > r, np.inf, -np.inf).astype(np.float32))
    mid = (r.astype(np.float64) + other.astype(np.float64)) * 0.5
    half = (s == mid) & (e != 0)
    toward = np.where((e > 0) == (other > r), other, r)
    return np.where(half, toward, r).astype(np.float32)


def _fused_sq_dist(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """What the core's sq_dist would give if its lane updates were contracted into fmas."""
    n, d = x.shape
    m = -(-d // 16)
    t = np.zeros((n, m * 16), dtype=np.float32)
    t[:, :d] = x - q
    t = t.reshape(n, m, 16)
    acc = np.zeros((n, 16), dtype=np.float32)
    for j in range(m):
        acc = _fma32(t[:, j, :], t[:, j, :], acc)
    for w in (8, 4, 2):
        acc = acc[:, :w] + acc[:, w : 2 * w]
    return acc[:, 0] + acc[:, 1]


def test_core_rounding_reproduced_bit_for_bit():
    """The distances dalcore.distributed sums equal the core's, bit for bit, on inputs where
    fused and unfused rounding differ (the radius after one pick is one such distance): the core
    has no fused multiply-add in any clone (-ffp-contract=off), so the AVX-512 clone that runs
    on this machine rounds as the AVX2 and baseline ones."""
    from dalcore import distributed as dd

    rng = np.random.default_rng(4242)
    differ = 0
    for d in (5, 16, 37, 128):
        for _ in range(40):
            a = rng.standard_normal((1, d)).astype(np.float32) * 3
            near = (a + rng.standard_normal((1, d)).astype(np.float32)).astype(np.float32)
            x = np.concatenate([a, a + np.float32(1e3), near])
            _, radius = dalcore.kcenter(x, 1, [0], return_radius=True)
            ours = dd._sq_dist(near, a[0])[0]
            assert np.float32(radius * radius) == ours
            differ += bool(ours != _fused_sq_dist(near, a[0])[0])
            ref = float(((near.astype(np.float64) - a) ** 2).sum())
            assert ours == pytest.approx(ref, rel=1e-5)
    assert differ > 0  # the check could tell the two roundings apart


def test_without_process_group_is_one_process():
    from dalcore import distributed as dd

    if dist.is_initialized():
        pytest.skip("a default process group exists in this process")
    x = datasets()["digits"]
    assert dd.world_size() == 1 and dd.rank() == 0 and dd.is_writer()
    assert dd.kcenter(x, 10).tolist() == dalcore.kcenter(x, 10).tolist()


# ------------------------------------------------------------------ `torchrun -m dalcore run`
def _descendant_with_rank(root: int, rank: int) -> int | None:
    """The pid of the process below ``root`` whose environment says RANK=<rank>."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
        todo.extend(children.get(pid, []))
    return None


def _torchrun_cmd(out: Path) -> list[str]:
    import sys

    from _run_helpers import tiny_args

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "dalcore", *tiny_args(out, methods="random,coreset")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_torchrun_dalcore_run_resumes_after_kill_9_of_one_rank(tmp_path):
    """`torchrun --nproc-per-node 2 -m dalcore run --device cpu` on digits; rank 1 is killed
    with SIGKILL after the first checkpoint; the same command then finishes the run, and its
    results equal those of an uninterrupted 2-process run (rank 0 wrote them all, once)."""
    import signal
    import subprocess
    import time

    from _run_helpers import read_rows, without_seconds

    repo = Path(dalcore.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    ref = tmp_path / "reference"
    proc = subprocess.run(_torchrun_cmd(ref) + ["--device", "cpu"], env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = without_seconds(read_rows(ref / "results.csv"))
    assert len(expected) == 4  # 2 methods x 2 cycles, each written once

    out = tmp_path / "killed"
    cmd = _torchrun_cmd(out) + ["--device", "cpu"]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("*.json")) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    victim = _descendant_with_rank(run.pid, 1)
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0, "torchrun should fail when a rank is killed"
    done_before = len(read_rows(out / "results.csv"))
    assert done_before < 4
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert without_seconds(read_rows(out / "results.csv")) == expected
