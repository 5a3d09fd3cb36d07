"""The GPU-path bindings check their arrays in C++ (here through the OpenMP twin, which takes
host arrays by __array_interface__ as _core takes CUDA arrays by __cuda_array_interface__), and
the twin poisons fresh buffers and outputs so that a read of memory never written fails."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from graph_reference import reference_graph

import dalcore


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


class Exposed:
    """An object exposing a given array interface (to hand the binding odd descriptions)."""

    def __init__(self, a: np.ndarray, **changes):
        self._a = a  # keeps the memory alive
        self.__array_interface__ = dict(a.__array_interface__, **changes)


@pytest.fixture
def x():
    return seeded("features").standard_normal((60, 8)).astype(np.float32)


def kc(core, features, labeled=None, out=None, radius=None, stream=0):
    labeled = np.empty(0, np.int64) if labeled is None else labeled
    out = np.empty(5, np.int64) if out is None else out
    return core.gpu.kcenter(features, labeled, out, radius, stream)


def test_valid_arrays_run_and_match_the_reference(omp_core, x):
    out = np.zeros(5, np.int64)
    radius = np.zeros((), np.float64)
    kc(omp_core, x, np.array([2, 9], np.int64), out, radius)
    picks, r = dalcore.kcenter(x, 5, [2, 9], return_radius=True)
    np.testing.assert_array_equal(out, picks)
    assert float(radius) == pytest.approx(r, rel=1e-6)


@pytest.mark.parametrize("bad, exc, match", [
    (lambda x: x.ctypes.data, TypeError, "features: expected a host array"),  # a bare pointer
    (lambda x: None, TypeError, "features: expected"),
    (lambda x: x.astype(np.float64), TypeError, "features: expected float32"),
    (lambda x: x.ravel(), ValueError, "features: expected 2 dimension"),
    (lambda x: np.asfortranarray(x), ValueError, "features: expected a C-contiguous"),
    (lambda x: x[:, ::2], ValueError, "features: expected a C-contiguous"),
    (lambda x: Exposed(x, data=(0, False)), ValueError, "features: null data pointer"),
    (lambda x: Exposed(x, data=(x.ctypes.data + 1, False)), ValueError, "not aligned"),
    (lambda x: Exposed(x, stream=7), ValueError, "features: the array is ordered on stream 7"),
    (lambda x: Exposed(x, mask=np.ones(x.shape, bool)), ValueError, "features: masked"),
])
def test_bad_features_refused_naming_the_argument(omp_core, x, bad, exc, match):
    with pytest.raises(exc, match=match):
        kc(omp_core, bad(x))


def test_bad_outputs_refused(omp_core, x):
    ro = np.empty(5, np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writable array"):
        kc(omp_core, x, out=ro)
    with pytest.raises(TypeError, match="out: expected int64"):
        kc(omp_core, x, out=np.empty(5, np.int32))
    with pytest.raises(TypeError, match="radius: expected float64"):
        kc(omp_core, x, radius=np.zeros((), np.float32))
    with pytest.raises(ValueError, match="radius: expected 0 dimension"):
        kc(omp_core, x, radius=np.zeros(1, np.float64))
    with pytest.raises(TypeError, match="labeled: expected int64"):
        kc(omp_core, x, labeled=np.array([1.0]))


def test_graph_and_propagate_bindings_check_shapes(omp_core):
    rng = seeded("graph")
    sims = rng.uniform(0, 1, (30, 4)).astype(np.float32)
    idx = np.argsort(rng.random((30, 30)), axis=1)[:, 1:5].astype(np.int64)
    ws = np.empty(omp_core.gpu.knn_graph_workspace_bytes(30, 4, "union"), np.uint8)
    with pytest.raises(ValueError, match="indices: expected dimension 1 = 4"):
        omp_core.gpu.knn_graph_count(sims, idx[:, :3].copy(), 3.0, "union", ws,
                                     np.empty(31, np.int64), 0)
    with pytest.raises(ValueError, match="indptr: expected dimension 0 = 31"):
        omp_core.gpu.knn_graph_count(sims, idx, 3.0, "union", ws, np.empty(30, np.int64), 0)
    z = np.empty((30, 2), np.float32)
    with pytest.raises(ValueError, match="labels: expected dimension 0 = 30"):
        omp_core.gpu.propagate(np.zeros(31, np.int64), np.empty(0, np.int32),
                               np.empty(0, np.float32), np.zeros(29, np.int64),
                               np.ones(2, np.int64), None, 0.99, 1e-6, 5, False, z,
                               np.empty(2, np.int64), np.empty(2, np.float64), 0)


def test_fill_never_writes_past_its_outputs(omp_core):
    """Outputs shorter than indptr says: the fill writes the prefix that fits, nothing more."""
    rng = seeded("fill")
    n, k = 80, 6
    sims = rng.uniform(0.1, 1, (n, k)).astype(np.float32)
    idx = np.argsort(rng.random((n, n)), axis=1)[:, :k].astype(np.int64)
    ws = np.empty(omp_core.gpu.knn_graph_workspace_bytes(n, k, "union"), np.uint8)
    indptr = np.empty(n + 1, np.int64)
    nnz = omp_core.gpu.knn_graph_count(sims, idx, 3.0, "union", ws, indptr, 0)
    ref = reference_graph(sims, idx, 3.0, "union")
    assert nnz == ref.nnz
    short = nnz - 17
    guard = np.full(nnz, 12345, np.int32)  # the short outputs are views of longer buffers
    gdata = np.full(nnz, -7.0, np.float32)
    omp_core.gpu.knn_graph_fill(k, "union", ws, indptr, guard[:short], gdata[:short], 0)
    np.testing.assert_array_equal(guard[:short], ref.indices[:short])
    np.testing.assert_allclose(gdata[:short], ref.data[:short], atol=1e-6)
    assert (guard[short:] == 12345).all() and (gdata[short:] == -7.0).all()


def test_poisoned_buffer_read_fails(omp_core):
    """A fresh twin buffer holds NaN (floats) and -1 (integers): a kernel that reads an element
    it never wrote gets NaN, which the reference tests reject, rather than a harmless 0."""
    total, first_int = omp_core.gpu._poison_probe(1000, -1)
    assert total == 1000.0
    total, first_int = omp_core.gpu._poison_probe(1000, 417)  # element 417 never written
    assert math.isnan(total)
    assert first_int == -1


def test_outputs_are_poisoned_before_the_kernel_runs(omp_core):
    """The twin poisons every output it is handed: a kernel that failed (or forgot) to write
    leaves NaN / -1 there, not the caller's zeros."""
    rng = seeded("poison-out")
    sims = rng.uniform(0, 1, (20, 3)).astype(np.float32)
    idx = np.argsort(rng.random((20, 20)), axis=1)[:, 1:4].astype(np.int64)
    ws = np.empty(omp_core.gpu.knn_graph_workspace_bytes(20, 3, "union"), np.uint8)
    indptr = np.zeros(21, np.int64)
    with pytest.raises(ValueError, match="gamma"):
        omp_core.gpu.knn_graph_count(sims, idx, -1.0, "union", ws, indptr, 0)
    assert (indptr == -1).all()
    z = np.zeros((20, 2), np.float32)
    g = sp.csr_array((20, 20), dtype=np.float32)
    with pytest.raises(ValueError, match="alpha"):
        omp_core.gpu.propagate(g.indptr.astype(np.int64), g.indices.astype(np.int32), g.data,
                               np.r_[0, 1, np.full(18, -1)].astype(np.int64),
                               np.ones(2, np.int64), None, 1.5, 1e-6, 5, False, z,
                               np.zeros(2, np.int64), np.zeros(2, np.float64), 0)
    assert np.isnan(z).all()


def test_graph_scratch_release(omp_core):
    """The CPU graph's cached scratch can be freed; later builds still give the same graph."""
    rng = seeded("scratch")
    sims = rng.uniform(0, 1, (500, 10)).astype(np.float32)
    idx = np.argsort(rng.random((500, 500)), axis=1)[:, 1:11].astype(np.int64)
    a = dalcore.knn_graph((sims, idx))
    dalcore._core.knn_graph_release_scratch()
    b = dalcore.knn_graph((sims, idx))
    assert (a != b).nnz == 0
    assert abs(a - reference_graph(sims, idx, 3.0, "reciprocal")).max() <= 1e-6
