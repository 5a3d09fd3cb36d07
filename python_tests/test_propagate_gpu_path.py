"""The GPU path of propagate (csrc/cuda/propagate.cu) run on the CPU through its Thrust/OpenMP
twin `_core_omp`, against the same float64 scipy references as the CPU kernel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spl
from test_propagate import (
    bad_calls,
    cases,
    col_rel_err,
    digits_graph,
    direct,
    pick_labels,
    rhs,
    small_problem,
    system,
    two_speed_problem,
)

from dalcore._propagate import _propagate_host_gpu_path


@pytest.fixture(scope="module")
def digits():
    return digits_graph()


def run(omp_core, graph, labels, **kw):
    return _propagate_host_gpu_path(omp_core.gpu, graph, labels, **kw)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_matches_direct_solve(omp_core, rng, digits, precision):
    for name, s, labels, c in cases(rng, digits):
        ref = direct(s, labels, c, 0.99)
        z, info = run(omp_core, s, labels, num_classes=c, tol=1e-8, max_iter=3000,
                      precision=precision)
        assert z.dtype == np.float32 and z.shape == ref.shape
        assert col_rel_err(z, ref) <= 1e-5, (name, col_rel_err(z, ref))
        assert (info.residuals <= 1e-8).all() and (info.iterations >= 1).all()


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_matches_scipy_cg_at_equal_iterations(omp_core, rng, digits, precision):
    for name, s, labels, c in cases(rng, digits):
        a = system(s, 0.99)
        y = rhs(labels, c)
        ref = np.stack([spl.cg(a, y[:, j], rtol=1e-30, atol=0.0, maxiter=5)[0]
                        for j in range(c)], axis=1)
        z, info = run(omp_core, s, labels, num_classes=c, tol=1e-30, max_iter=5,
                      precision=precision)
        assert (info.iterations == 5).all(), name
        assert col_rel_err(z, ref) <= 1e-4, (name, col_rel_err(z, ref))


def test_warm_start(omp_core, rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 5)
    ref = direct(s, labels, 10, 0.99)
    _, cold = run(omp_core, s, labels, num_classes=10, tol=1e-7, max_iter=1000)
    rough, _ = run(omp_core, s, labels, num_classes=10, tol=1e-3, max_iter=1000)
    z, warm = run(omp_core, s, labels, num_classes=10, tol=1e-7, max_iter=1000, x0=rough)
    assert warm.iterations.sum() < cold.iterations.sum()
    assert col_rel_err(z, ref) <= 1e-5
    z, at = run(omp_core, s, labels, num_classes=10, tol=1e-4, x0=ref.astype(np.float32))
    assert (at.iterations == 0).all() and np.array_equal(z, ref.astype(np.float32))


def test_columns_stop_independently(omp_core, rng):
    s, labels = two_speed_problem(rng)
    ref = direct(s, labels, 4, 0.99)
    z, info = run(omp_core, s, labels, num_classes=4, tol=1e-6, max_iter=1000)
    assert info.iterations[0] <= 3 < info.iterations[1:].min()
    assert col_rel_err(z, ref) <= 1e-5
    z_short, _ = run(omp_core, s, labels, num_classes=4, tol=1e-6,
                     max_iter=int(info.iterations[0]))
    assert np.array_equal(z_short[:, 0], z[:, 0])


def test_early_exit_every_few_iterations(omp_core, rng, digits):
    """All columns converge long before max_iter: the host check stops the loop, and the
    reported iterations are those of the columns, not max_iter."""
    s, y = digits
    labels = pick_labels(rng, y, 5)
    z, info = run(omp_core, s, labels, num_classes=10, tol=1e-2, max_iter=100000)
    assert (info.iterations < 100).all() and (info.residuals <= 1e-2).all()


def test_bad_input(omp_core, rng):
    s, labels = small_problem(rng)
    for args, kwargs, exc, match in bad_calls(s, labels):
        with pytest.raises(exc, match=match):
            run(omp_core, *args, **kwargs)


def test_kernel_checks_its_parameters(omp_core, rng):
    """The C++ entry point refuses bad parameters itself (not only the Python border)."""
    s, labels = small_problem(rng)
    n = s.shape[0]
    indptr = s.indptr.astype(np.int64)
    count = np.bincount(labels[labels >= 0], minlength=3).astype(np.int64)
    z = np.empty((n, 3), np.float32)
    it = np.empty(3, np.int64)
    rr = np.empty(3, np.float64)

    def call(alpha=0.99, tol=1e-6, max_iter=5, n_=n):
        return omp_core.gpu.propagate(indptr[: n_ + 1], s.indices, s.data, labels, count, None,
                                      alpha, tol, max_iter, False, z, it, rr, 0)

    assert call() == 0
    for kw, match in [({"alpha": 1.0}, "alpha"), ({"tol": -1.0}, "tol"),
                      ({"max_iter": -1}, "max_iter"), ({"n_": 0}, "indptr")]:
        with pytest.raises(ValueError, match=match):
            call(**kw)


def test_graph_without_edges_returns_y(omp_core):
    import scipy.sparse as sp

    for n, c in ((1, 1), (40, 3)):
        s = sp.csr_array((n, n), dtype=np.float32)
        labels = np.full(n, -1, dtype=np.int64)
        labels[:c] = np.arange(c)
        z, info = run(omp_core, s, labels, num_classes=c)
        np.testing.assert_allclose(z, rhs(labels, c), rtol=1e-7, atol=0)
        assert (info.iterations == 1).all() and (info.residuals == 0).all()
