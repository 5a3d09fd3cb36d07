"""One contract for both paths of knn_graph: the CPU kernel (csrc/cpu/graph.cpp) and the GPU path
(csrc/cuda/graph.cu, run here on its Thrust/OpenMP twin _core_omp) accept and refuse the same
corner cases and build the same graph, checked against the float64 scipy reference."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from graph_reference import assert_graph_matches, clustered_features, reference_graph

import dalcore
from dalcore import _graph

torch = pytest.importorskip("torch")

MODES = ["reciprocal", "union"]


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def cpu_path(sims, idx, gamma=3.0, mode="reciprocal"):
    return dalcore.knn_graph((sims, idx), gamma=gamma, mode=mode)


def twin_path(core, sims, idx, gamma=3.0, mode="reciprocal"):
    """The production glue of the CUDA path (scaling, count, fill) on CPU tensors and the twin."""
    s = torch.from_numpy(np.ascontiguousarray(sims, np.float32))
    i = torch.from_numpy(np.ascontiguousarray(idx, np.int64))
    s = _graph.scale_similarities(s, i, gamma)
    indptr, indices, data = _graph._knn_graph_gpu(s, i, gamma, mode, core=core.gpu)
    n = sims.shape[0]
    return sp.csr_array((data.numpy(), indices.numpy(), indptr.numpy()), shape=(n, n))


def both(core, sims, idx, gamma=3.0, mode="reciprocal"):
    return cpu_path(sims, idx, gamma, mode), twin_path(core, sims, idx, gamma, mode)


def digits_lists(k=10):
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return dalcore.knn(x.astype(np.float32), k)


def drop_missing_reference(sims, idx, gamma, mode):
    """Reference graph with the -1 entries left out (a self entry is dropped by the reference)."""
    rows = np.repeat(np.arange(idx.shape[0])[:, None], idx.shape[1], axis=1)
    fixed = np.where(idx < 0, rows, idx)  # -1 -> self: the reference ignores it
    return reference_graph(np.where(idx < 0, 0.0, sims), fixed, gamma, mode)


@pytest.mark.parametrize("mode", MODES)
def test_self_entries_accepted_by_both(omp_core, mode):
    rng = seeded(f"self-{mode}")
    x, _ = clustered_features(rng, n=300)
    sims, idx = dalcore.knn(x, 8)
    rows = rng.choice(300, 40, replace=False)
    idx[rows, 3] = rows  # listed once
    idx[rows[:10], 5] = rows[:10]  # listed twice in the same row: still not a repeated neighbour
    ref = reference_graph(sims, idx, 3.0, mode)
    for g in both(omp_core, sims, idx, mode=mode):
        assert_graph_matches(g, ref)


@pytest.mark.parametrize("garbage", [np.nan, np.inf, np.finfo(np.float32).max, 1e-30])
def test_missing_neighbours_similarity_is_not_read(omp_core, garbage):
    """Whatever a -1 entry's similarity holds, neither the kernels nor the scale check use it."""
    sims, idx = digits_lists()
    sims, idx = sims.copy(), idx.copy()
    holes = seeded(f"garbage-{garbage}").random(idx.shape) < 0.1
    idx[holes] = -1
    sims[holes] = garbage
    for mode in MODES:
        ref = drop_missing_reference(sims, idx, 3.0, mode)
        for g in both(omp_core, sims, idx, mode=mode):
            assert_graph_matches(g, ref)


@pytest.mark.parametrize("mode", MODES)
def test_missing_neighbours_accepted_by_both(omp_core, mode):
    sims, idx = digits_lists()
    rng = seeded(f"missing-{mode}")
    sims, idx = sims.copy(), idx.copy()
    n, k = idx.shape
    holes = rng.random((n, k)) < 0.15
    holes[:20, :] = True  # rows with no neighbour at all
    idx[holes] = -1
    sims[holes] = np.where(rng.random(holes.sum()) < 0.5, -np.inf, -np.finfo(np.float32).max)
    ref = drop_missing_reference(sims, idx, 3.0, mode)
    cpu, twin = both(omp_core, sims, idx, mode=mode)
    assert_graph_matches(cpu, ref)
    assert_graph_matches(twin, ref)
    assert np.all(np.diff(cpu.indptr)[:20] == 0) or mode == "union"


@pytest.mark.parametrize("mode", MODES)
def test_repeated_neighbour_refused_by_both(omp_core, mode):
    sims, idx = digits_lists()
    idx = idx.copy()
    idx[17, 4] = idx[17, 1]
    with pytest.raises(ValueError, match="knn_result.*more than once"):
        cpu_path(sims, idx, mode=mode)
    with pytest.raises(ValueError, match="knn_result.*more than once"):
        twin_path(omp_core, sims, idx, mode=mode)


@pytest.mark.parametrize("bad", [-2, 10**6])
def test_out_of_range_refused_by_both(omp_core, bad):
    sims, idx = digits_lists()
    idx = idx.copy()
    idx[3, 2] = bad
    for run in (cpu_path, lambda s, i: twin_path(omp_core, s, i)):
        with pytest.raises(ValueError, match=r"knn_result.*\[0, 1797\)"):
            run(sims, idx)


def test_underflowing_reciprocal_weight_dropped_by_both(omp_core):
    """(a_ij + a_ji) / 2 with a_ij the smallest subnormal and a_ji = 0 rounds to 0 in float32:
    neither path stores that edge, and both give the same graph."""
    rng = seeded("underflow")
    n, k = 60, 4
    idx = np.stack([rng.choice(np.setdiff1d(np.arange(n), [i]), k, replace=False)
                    for i in range(n)])
    sims = rng.uniform(0.3, 0.9, (n, k)).astype(np.float32)
    # make 0 <-> 1 mutual, with s_01 ** 3 the smallest subnormal and s_10 <= 0
    idx[0, 0], idx[1, 0] = 1, 0
    for r, other in ((0, 1), (1, 0)):
        dup = np.nonzero(idx[r, 1:] == other)[0]
        idx[r, 1 + dup] = (np.setdiff1d(np.arange(2, n), idx[r]))[: dup.size]
    sims[0, 0] = np.float32(1.2e-15)
    sims[1, 0] = -0.5
    assert np.float32(np.float64(sims[0, 0]) ** 3) > 0
    cpu, twin = both(omp_core, sims, idx)
    for g in (cpu, twin):
        assert g[0, 1] == 0 and g[1, 0] == 0
        assert np.all(g.data > 0)
    np.testing.assert_array_equal(cpu.indptr.astype(np.int64), twin.indptr)
    np.testing.assert_array_equal(cpu.indices, twin.indices)
    np.testing.assert_array_equal(cpu.data, twin.data)


@pytest.mark.parametrize("scale", [1e30, 1e-20, 2.0**100, 1e-30])
@pytest.mark.parametrize("mode", MODES)
def test_scale_invariance_on_both(omp_core, scale, mode):
    """S = D^-1/2 W D^-1/2 does not depend on the scale of the similarities."""
    sims, idx = digits_lists()
    scaled = (sims.astype(np.float64) * scale).astype(np.float32)
    assert np.isfinite(scaled).all() and np.any(scaled > 0)
    ref = reference_graph(sims, idx, 3.0, mode)
    for g in both(omp_core, scaled, idx, mode=mode):
        assert_graph_matches(g, ref, atol=2e-6)


def test_paths_agree_on_random_lists_with_everything(omp_core):
    """Self entries, -1 entries, negative similarities and isolated rows at once."""
    rng = seeded("everything")
    n, k = 500, 12
    idx = np.argsort(rng.random((n, n)), axis=1)[:, :k].astype(np.int64)
    sims = rng.uniform(-0.5, 1.0, (n, k)).astype(np.float32)
    idx[rng.random((n, k)) < 0.05] = -1
    selfish = rng.choice(n, 30, replace=False)
    idx[selfish, 0] = selfish
    for mode in MODES:
        for gamma in (1.0, 3.0, 2.5):
            ref = drop_missing_reference(sims, idx, gamma, mode)
            cpu, twin = both(omp_core, sims, idx, gamma, mode)
            assert_graph_matches(cpu, ref)
            assert_graph_matches(twin, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_path_same_contract(mode):
    """On a device: self, -1 and scaled similarities give the reference graph; a repeated
    neighbour is refused."""
    sims, idx = digits_lists()
    sims, idx = sims.copy(), idx.copy()
    rng = seeded(f"cuda-{mode}")
    holes = rng.random(idx.shape) < 0.1
    idx[holes], sims[holes] = -1, -np.inf
    selfish = rng.choice(idx.shape[0], 50, replace=False)
    idx[selfish, 0] = selfish
    ref = drop_missing_reference(sims, idx, 3.0, mode)
    for scale in (1.0, 1e30, 1e-20):
        s = torch.from_numpy((sims.astype(np.float64) * scale).astype(np.float32)).cuda()
        indptr, indices, data = dalcore.knn_graph((s, torch.from_numpy(idx).cuda()), mode=mode)
        g = sp.csr_array((data.cpu().numpy(), indices.cpu().numpy(), indptr.cpu().numpy()),
                         shape=ref.shape)
        assert_graph_matches(g, ref, atol=2e-6)
    idx[5, 3] = idx[5, 1] if idx[5, 1] >= 0 else 7
    idx[5, 1] = idx[5, 3]
    with pytest.raises(ValueError, match="more than once"):
        dalcore.knn_graph((torch.from_numpy(sims).cuda(), torch.from_numpy(idx).cuda()))
