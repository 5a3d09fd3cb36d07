"""The GPU path of knn_graph (csrc/cuda/graph.cu) run on Thrust's OpenMP backend (_core_omp), and
on a real device where one is present, against the float64 scipy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from graph_reference import assert_graph_matches, clustered_features, random_lists, reference_graph

import dalcore
from dalcore import _graph

torch = pytest.importorskip("torch")

MODES = ["reciprocal", "union"]


def gpu_path(core, sims, idx, gamma=3.0, mode="reciprocal"):
    """Runs the Python glue of the GPU path with the twin module on CPU tensors."""
    s = torch.from_numpy(np.ascontiguousarray(sims, np.float32))
    i = torch.from_numpy(np.ascontiguousarray(idx, np.int64))
    indptr, indices, data = _graph._knn_graph_gpu(s, i, gamma, mode, core=core.gpu)
    assert indptr.dtype == torch.int64 and indices.dtype == torch.int32
    assert data.dtype == torch.float32
    n = sims.shape[0]
    return sp.csr_array((data.numpy(), indices.numpy(), indptr.numpy()), shape=(n, n))


@pytest.mark.parametrize("mode", MODES)
def test_clustered_features(omp_core, rng, mode):
    x, _ = clustered_features(rng)
    sims, idx = dalcore.knn(x, 12)
    assert_graph_matches(gpu_path(omp_core, sims, idx, 3.0, mode),
                         reference_graph(sims, idx, 3.0, mode))


@pytest.mark.parametrize("mode", MODES)
def test_random_lists_isolated_nodes_and_self_entries(omp_core, rng, mode):
    sims, idx, isolated = random_lists(rng, 300, 9)
    g = gpu_path(omp_core, sims, idx, 1.5, mode)
    assert_graph_matches(g, reference_graph(sims, idx, 1.5, mode))
    assert np.all(np.diff(g.indptr)[isolated] == 0)


@pytest.mark.parametrize("mode", MODES)
def test_digits(omp_core, mode):
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims, idx = dalcore.knn(x.astype(np.float32), 10)
    assert_graph_matches(gpu_path(omp_core, sims, idx, 3.0, mode),
                         reference_graph(sims, idx, 3.0, mode))


def test_bad_input_raises(omp_core, rng):
    sims, idx, _ = random_lists(rng, 40, 4, n_isolated=0)
    bad = idx.copy()
    bad[3, 0] = 40
    with pytest.raises(ValueError, match=r"knn_result.*\[0, 40\)"):
        gpu_path(omp_core, sims, bad)
    bad = sims.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="knn_result.*NaN"):
        gpu_path(omp_core, bad, idx, mode="union")
    bad = idx.copy()
    r = next(r for r in range(40) if r not in bad[r])  # a row that does not list itself
    bad[r, 0] = bad[r, 3]
    with pytest.raises(ValueError, match="knn_result.*more than once"):
        gpu_path(omp_core, sims, bad)
    with pytest.raises(ValueError, match="mode"):
        omp_core.gpu.knn_graph_workspace_bytes(40, 4, "both")
    indptr = np.empty(41, np.int64)
    with pytest.raises(ValueError, match="workspace"):
        omp_core.gpu.knn_graph_count(sims, idx, 3.0, "union", np.empty(16, np.uint8), indptr, 0)
    with pytest.raises(ValueError, match="gamma"):
        ws = np.empty(omp_core.gpu.knn_graph_workspace_bytes(40, 4, "union"), np.uint8)
        omp_core.gpu.knn_graph_count(sims, idx, 0.0, "union", ws, indptr, 0)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_device_matches_reference(rng, mode):
    x, _ = clustered_features(rng, n=2000, d=32)
    xt = torch.from_numpy(x).cuda()
    sims, idx = dalcore.knn(xt, 20)
    assert sims.is_cuda and idx.is_cuda
    indptr, indices, data = dalcore.knn_graph((sims, idx), mode=mode)
    assert indptr.is_cuda and indices.is_cuda and data.is_cuda
    s, i = sims.cpu().numpy(), idx.cpu().numpy()
    g = sp.csr_array((data.cpu().numpy(), indices.cpu().numpy(), indptr.cpu().numpy()),
                     shape=(2000, 2000))
    assert_graph_matches(g, reference_graph(s, i, 3.0, mode))
    # features in -> the same graph as from the lists
    indptr2, indices2, data2 = dalcore.knn_graph(xt, k=20, mode=mode)
    assert torch.equal(indptr2, indptr) and torch.equal(indices2, indices)


@pytest.mark.gpu
def test_cuda_bad_lists_raise(rng):
    sims, idx, _ = random_lists(rng, 40, 4, n_isolated=0)
    idx[0, 0] = 99
    with pytest.raises(ValueError, match="knn_result"):
        dalcore.knn_graph((torch.from_numpy(sims).cuda(), torch.from_numpy(idx).cuda()))
