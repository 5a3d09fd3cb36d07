"""One contract for both paths of propagate: the CPU kernel and the GPU path (its Thrust/OpenMP
twin _core_omp) take tol=0 as "exactly max_iter iterations", max_iter=0 as "the start vector",
and share one symmetry test; pseudo_labels at extreme scales; integer arguments beyond int64."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from test_propagate import col_rel_err, digits_graph, pick_labels, rhs, system

import dalcore
from dalcore._propagate import _propagate_host_gpu_path


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.fixture(scope="module")
def digits():
    return digits_graph()


def paths(omp_core):
    """(name, solve(graph, labels, **kw) -> (z, info)) for the CPU kernel and the twin."""
    def cpu(g, labels, **kw):
        return dalcore.propagate(g, labels, return_info=True, **kw)

    def twin(g, labels, **kw):
        return _propagate_host_gpu_path(omp_core.gpu, g, labels, **kw)

    return [("cpu", cpu), ("twin", twin)]


@pytest.mark.parametrize("iters", [1, 7, 20])
def test_tol_zero_runs_exactly_max_iter(omp_core, digits, iters):
    s, y = digits
    labels = pick_labels(seeded(f"tol0-{iters}"), y, 3)
    a = system(s, 0.99)
    b = rhs(labels, 10)
    ref = np.stack([spl.cg(a, b[:, j], rtol=1e-30, atol=0.0, maxiter=iters)[0]
                    for j in range(10)], axis=1)
    for name, solve in paths(omp_core):
        z, info = solve(s, labels, num_classes=10, tol=0.0, max_iter=iters, precision="float64")
        assert (info.iterations == iters).all(), name
        assert col_rel_err(z, ref) <= 1e-5, (name, col_rel_err(z, ref))


def test_max_iter_zero_returns_the_start_vector(omp_core, digits):
    s, y = digits
    rng = seeded("max_iter0")
    labels = pick_labels(rng, y, 2)
    x0 = rng.standard_normal((s.shape[0], 10)).astype(np.float32)
    for name, solve in paths(omp_core):
        z, info = solve(s, labels, num_classes=10, max_iter=0)
        assert (z == 0).all() and (info.iterations == 0).all(), name
        z, info = solve(s, labels, num_classes=10, max_iter=0, x0=x0)
        np.testing.assert_array_equal(z, x0)
        # the start residual ||b - A x0|| / ||b||, against float64
        r = rhs(labels, 10) - system(s, 0.99) @ x0.astype(np.float64)
        want = np.linalg.norm(r, axis=0) / np.linalg.norm(rhs(labels, 10), axis=0)
        np.testing.assert_allclose(info.residuals, want, rtol=1e-5)


def perturbed(s: sp.csr_array, rng: np.random.Generator, eps: float) -> sp.csr_array:
    """s with a relative perturbation eps on the upper triangle only (asymmetric)."""
    g = sp.csr_array(s, copy=True)
    coo = g.tocoo()
    up = coo.row < coo.col
    data = coo.data.copy()
    data[up] *= 1.0 + eps * rng.uniform(0.5, 1.0, up.sum())
    return sp.csr_array((data.astype(np.float32), (coo.row, coo.col)), shape=g.shape)


def test_one_symmetry_test_for_both_paths(omp_core, digits):
    s, y = digits
    rng = seeded("symmetry")
    labels = pick_labels(rng, y, 2)
    # exactly symmetric, and symmetric up to float32 rounding: accepted by both
    s64 = sp.csr_array(s.astype(np.float64), copy=True)
    s64.data *= 1 + 1e-7 * rng.standard_normal(s64.nnz)
    near = sp.csr_array(((s64 + s64.T) / 2).astype(np.float32))
    for g in (s, near):
        for _, solve in paths(omp_core):
            solve(g, labels, num_classes=10)
    # a 10% one-sided perturbation, and a strictly triangular graph: refused by both, same words
    tri = sp.csr_array(sp.triu(s, k=1))
    for g in (perturbed(s, rng, 0.1), tri):
        for _name, solve in paths(omp_core):
            with pytest.raises(ValueError, match=r"graph: expected a symmetric affinity.*u'Sv"):
                solve(g, labels, num_classes=10)


@pytest.mark.parametrize("value", [2**63, 2**64 + 1, -(2**63) - 1])
def test_integers_beyond_int64_are_value_errors(omp_core, digits, value):
    s, y = digits
    labels = pick_labels(seeded("int64"), y, 2)
    for _name, solve in paths(omp_core):
        with pytest.raises(ValueError, match="num_classes"):
            solve(s, labels, num_classes=value)
        with pytest.raises(ValueError, match="max_iter"):
            solve(s, labels, num_classes=10, max_iter=value)
    x = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="budget"):
        dalcore.kcenter(x, value)
    with pytest.raises(ValueError, match="k"):
        dalcore.knn(x, value)


def test_num_classes_above_n_refused(omp_core, digits):
    s, y = digits
    labels = pick_labels(seeded("classes"), y, 2)
    for _name, solve in paths(omp_core):
        with pytest.raises(ValueError, match="num_classes: expected at most 1797"):
            solve(s, labels, num_classes=1798)


def pseudo_reference(z: np.ndarray):
    """float64 reference from mpmath-free exact reasoning: labels and weights are scale
    invariant per row, so compute them on the row divided by its maximum (in float64)."""
    z = np.maximum(np.asarray(z, np.float64), 0.0)
    top = z.max(axis=1, keepdims=True)
    u = np.divide(z, top, out=np.zeros_like(z), where=top > 0)
    p = u / np.where(u.sum(1, keepdims=True) > 0, u.sum(1, keepdims=True), 1.0)
    ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1)
    w = np.where(top[:, 0] > 0, 1.0 - ent / np.log(z.shape[1]), 0.0)
    return np.argmax(u, axis=1), w / w.max()


@pytest.mark.parametrize("scale", [1e200, 1e-300, 5e-320, 1.0])
def test_pseudo_labels_do_not_depend_on_scale(scale):
    torch = pytest.importorskip("torch")
    rng = seeded(f"pseudo-{scale}")
    z = rng.standard_normal((300, 6))
    z[:5] = -1.0  # rows with no positive score
    zs = z * scale
    base_lab, base_w = pseudo_reference(z)
    for got in (dalcore.pseudo_labels(zs), dalcore.pseudo_labels(torch.from_numpy(zs))):
        lab, w, _ = (np.asarray(a) for a in got)
        if scale < 1e-310:  # subnormal rows keep few bits: labels exact, weights roughly
            np.testing.assert_array_equal(lab[5:], base_lab[5:])
            np.testing.assert_allclose(w, base_w, atol=0.05)
        else:
            np.testing.assert_array_equal(lab[5:], base_lab[5:])
            np.testing.assert_allclose(w, base_w, rtol=1e-5, atol=1e-6)
        assert (w[:5] == 0).all()


@pytest.mark.gpu
def test_cuda_path_same_contract(digits):
    torch = pytest.importorskip("torch")
    s, y = digits
    labels = pick_labels(seeded("cuda"), y, 3)
    triple = tuple(torch.from_numpy(np.ascontiguousarray(a)).cuda()
                   for a in (s.indptr.astype(np.int64), s.indices, s.data))
    lab = torch.from_numpy(labels).cuda()
    a, b = system(s, 0.99), rhs(labels, 10)
    ref = np.stack([spl.cg(a, b[:, j], rtol=1e-30, atol=0.0, maxiter=20)[0]
                    for j in range(10)], axis=1)
    z, info = dalcore.propagate(triple, lab, num_classes=10, tol=0.0, max_iter=20,
                                return_info=True, precision="float64")
    assert (info.iterations == 20).all()
    assert col_rel_err(z.cpu().numpy(), ref) <= 1e-5
    z, info = dalcore.propagate(triple, lab, num_classes=10, max_iter=0, return_info=True)
    assert (z == 0).all().item() and (info.iterations == 0).all()
    tri = sp.csr_array(sp.triu(s, k=1))
    tri_t = tuple(torch.from_numpy(np.ascontiguousarray(a)).cuda()
                  for a in (tri.indptr.astype(np.int64), tri.indices, tri.data))
    with pytest.raises(ValueError, match="graph: expected a symmetric affinity"):
        dalcore.propagate(tri_t, lab, num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        dalcore.propagate(triple, lab, num_classes=2**63)
