"""dalcore.propagate / dalcore.pseudo_labels against float64 scipy references.

Graphs are built here with scipy/numpy only (random sparse, k-NN-like with isolated nodes, and
a k-NN graph of sklearn's digits); references: scipy.sparse.linalg.spsolve in float64 (direct)
and scipy.sparse.linalg.cg (same iteration count), and a numpy pseudo-label reference written
from the LP-DeepSSL recipe.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import scipy.stats

import dalcore

# ------------------------------------------------------------------ graphs built in the test


def normalise(w: sp.csr_array) -> sp.csr_array:
    """D^-1/2 W D^-1/2 as float32 CSR; isolated nodes keep an empty row."""
    w = sp.csr_array(w, dtype=np.float64)
    w.setdiag(0)
    w.eliminate_zeros()
    d = np.asarray(w.sum(axis=1)).ravel()
    dinv = np.zeros_like(d)
    dinv[d > 0] = 1.0 / np.sqrt(d[d > 0])
    s = sp.diags_array(dinv) @ w @ sp.diags_array(dinv)
    s = sp.csr_array(s)
    s.data = s.data.astype(np.float32)
    return s


def random_graph(rng: np.random.Generator, n: int, density: float) -> sp.csr_array:
    w = sp.random_array((n, n), density=density, rng=rng, format="csr")
    return normalise(w + w.T)


def knn_like_graph(rng: np.random.Generator, n: int, k: int, n_isolated: int) -> sp.csr_array:
    """Union k-NN graph of clustered Gaussian points; `n_isolated` nodes lose all their edges."""
    centers = rng.normal(size=(8, 5)) * 4
    x = centers[rng.integers(0, 8, n)] + rng.normal(size=(n, 5))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn = np.argsort(d2, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    vals = np.exp(-d2[rows, nn.ravel()] / 4.0)
    w = sp.csr_array((vals, (rows, nn.ravel())), shape=(n, n))
    w = (w + w.T).tolil()
    for i in rng.choice(n, n_isolated, replace=False):
        w[i, :] = 0
        w[:, i] = 0
    return normalise(sp.csr_array(w))


def digits_graph(k: int = 10, gamma: float = 3.0) -> tuple[sp.csr_array, np.ndarray]:
    """Union k-NN cosine graph of sklearn's digits, weights max(0, s)^gamma (LP-DeepSSL)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x - x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argpartition(-s, k, axis=1)[:, :k]
    n = x.shape[0]
    rows = np.repeat(np.arange(n), k)
    vals = np.maximum(s[rows, nn.ravel()], 0.0) ** gamma
    w = sp.csr_array((vals, (rows, nn.ravel())), shape=(n, n))
    return normalise(w + w.T), y


def pick_labels(rng: np.random.Generator, classes: np.ndarray, per_class: int) -> np.ndarray:
    """-1 everywhere but `per_class` random nodes of each class of `classes`."""
    labels = -np.ones(classes.shape[0], dtype=np.int64)
    for c in np.unique(classes):
        labels[rng.choice(np.flatnonzero(classes == c), per_class, replace=False)] = c
    return labels


def rhs(labels: np.ndarray, num_classes: int) -> np.ndarray:
    y = np.zeros((labels.shape[0], num_classes))
    for c in range(num_classes):
        y[labels == c, c] = 1.0 / np.count_nonzero(labels == c)
    return y


def system(s: sp.csr_array, alpha: float) -> sp.csc_array:
    return sp.csc_array(sp.eye_array(s.shape[0]) - alpha * s.astype(np.float64))


def direct(s: sp.csr_array, labels: np.ndarray, num_classes: int, alpha: float) -> np.ndarray:
    z = spl.spsolve(system(s, alpha), rhs(labels, num_classes))
    return np.asarray(z).reshape(s.shape[0], num_classes)


def col_rel_err(z: np.ndarray, ref: np.ndarray) -> float:
    """Largest per-column relative error ||z_c - ref_c|| / ||ref_c||."""
    z = np.asarray(z, dtype=np.float64)
    return float((np.linalg.norm(z - ref, axis=0) / np.linalg.norm(ref, axis=0)).max())


@pytest.fixture(scope="module")
def digits():
    return digits_graph()


def cases(rng: np.random.Generator, digits) -> list[tuple[str, sp.csr_array, np.ndarray, int]]:
    out = []
    s = random_graph(rng, 400, 0.02)
    out.append(("random", s, pick_labels(rng, rng.integers(0, 5, 400), 3), 5))
    s = knn_like_graph(rng, 300, 6, n_isolated=7)
    lab = pick_labels(rng, rng.integers(0, 4, 300), 4)
    out.append(("knn+isolated", s, lab, 4))
    s, y = digits
    out.append(("digits", s, pick_labels(rng, y, 5), 10))
    return out


# ------------------------------------------------------------------ against direct solves


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_matches_direct_solve(rng, digits, precision):
    for name, s, labels, c in cases(rng, digits):
        ref = direct(s, labels, c, 0.99)
        z, info = dalcore.propagate(s, labels, num_classes=c, tol=1e-8, max_iter=3000,
                                    return_info=True, precision=precision)
        assert z.dtype == np.float32 and z.shape == ref.shape, name
        assert col_rel_err(z, ref) <= 1e-5, (name, col_rel_err(z, ref))
        assert (info.residuals <= 1e-8).all(), name
        assert info.iterations.dtype == np.int64 and (info.iterations >= 1).all(), name


def test_isolated_nodes_keep_their_label_mass(rng):
    s = knn_like_graph(rng, 200, 5, n_isolated=10)
    isolated = np.flatnonzero(np.diff(s.indptr) == 0)
    assert isolated.size >= 10
    labels = pick_labels(rng, rng.integers(0, 3, 200), 5)
    labels[isolated[0]] = 1
    z = dalcore.propagate(s, labels, num_classes=3, tol=1e-9, max_iter=2000)
    y = rhs(labels, 3)
    np.testing.assert_allclose(z[isolated], y[isolated], rtol=1e-5, atol=0)


def test_alpha_changes_solution_like_the_reference(rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 3)
    for alpha in (0.5, 0.9):
        z = dalcore.propagate(s, labels, num_classes=10, alpha=alpha, tol=1e-9, max_iter=500)
        assert col_rel_err(z, direct(s, labels, 10, alpha)) <= 1e-5


# ------------------------------------------------------------------ against scipy's CG


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_matches_scipy_cg_at_equal_iterations(rng, digits, precision):
    for name, s, labels, c in cases(rng, digits):
        a = system(s, 0.99)
        y = rhs(labels, c)
        ref = np.stack([spl.cg(a, y[:, j], rtol=1e-30, atol=0.0, maxiter=5)[0]
                        for j in range(c)], axis=1)
        z, info = dalcore.propagate(s, labels, num_classes=c, tol=1e-30, max_iter=5,
                                    return_info=True, precision=precision)
        assert (info.iterations == 5).all(), name
        assert col_rel_err(z, ref) <= 1e-4, (name, col_rel_err(z, ref))
        # the reported residual is the residual of the returned iterate
        true = np.linalg.norm(y - a @ z.astype(np.float64), axis=0) / np.linalg.norm(y, axis=0)
        np.testing.assert_allclose(info.residuals, true, rtol=1e-3)


# ------------------------------------------------------------------ warm start, stopping


def test_warm_start_needs_fewer_iterations(rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 5)
    cold, info_cold = dalcore.propagate(s, labels, num_classes=10, tol=1e-7, max_iter=1000,
                                        return_info=True)
    # a few more labels, as after an active-learning cycle: warm start from the old solution
    more = labels.copy()
    for c in range(10):
        more[rng.choice(np.flatnonzero((y == c) & (labels < 0)), 1)] = c
    ref = direct(s, more, 10, 0.99)
    z_cold, i_cold = dalcore.propagate(s, more, num_classes=10, tol=1e-7, max_iter=1000,
                                       return_info=True)
    z_warm, i_warm = dalcore.propagate(s, more, num_classes=10, tol=1e-7, max_iter=1000,
                                       x0=cold, return_info=True)
    assert i_warm.iterations.sum() < i_cold.iterations.sum()
    assert col_rel_err(z_warm, ref) <= 1e-5 and col_rel_err(z_cold, ref) <= 1e-5


def test_warm_start_at_the_solution_does_nothing(rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 4)
    ref = direct(s, labels, 10, 0.99).astype(np.float32)
    z, info = dalcore.propagate(s, labels, num_classes=10, tol=1e-4, x0=ref, return_info=True)
    assert (info.iterations == 0).all()
    assert np.array_equal(z, ref)


def two_speed_problem(rng):
    """Class 0's only labeled node sits in a 3-node component (CG converges in <= 3 steps);
    the other classes live on a larger k-NN graph and need many more iterations."""
    big = knn_like_graph(rng, 300, 6, n_isolated=0)
    tri = sp.csr_array(np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.float64))
    s = normalise(sp.block_diag([tri, big], format="csr"))
    labels = np.full(303, -1, dtype=np.int64)
    labels[0] = 0
    labels[3:] = pick_labels(rng, rng.integers(1, 4, 300), 3)
    return s, labels


def test_columns_stop_independently(rng):
    s, labels = two_speed_problem(rng)
    ref = direct(s, labels, 4, 0.99)
    z, info = dalcore.propagate(s, labels, num_classes=4, tol=1e-6, max_iter=1000,
                                return_info=True)
    assert info.iterations[0] <= 3 < info.iterations[1:].min()
    assert (info.residuals <= 1e-6).all()
    assert col_rel_err(z, ref) <= 1e-5
    # the early column is frozen: running longer leaves it bit-identical, and stopping at its
    # own iteration count gives the very same column
    z_short = dalcore.propagate(s, labels, num_classes=4, tol=1e-6,
                                max_iter=int(info.iterations[0]))
    assert np.array_equal(z_short[:, 0], z[:, 0])


def test_max_iter_caps_every_column(rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 2)
    z, info = dalcore.propagate(s, labels, num_classes=10, tol=1e-12, max_iter=3,
                                return_info=True)
    assert (info.iterations == 3).all() and (info.residuals > 1e-12).all()


# ------------------------------------------------------------------ input kinds


def test_input_kinds(rng):
    s = knn_like_graph(rng, 150, 5, n_isolated=3)
    labels = pick_labels(rng, rng.integers(0, 3, 150), 3)
    ref = direct(s, labels, 3, 0.99)
    coo = sp.coo_matrix(s)
    perm = rng.permutation(coo.nnz)  # unsorted columns within rows once converted
    shuffled = sp.csr_matrix((coo.data[perm], (coo.row[perm], coo.col[perm])), shape=s.shape)
    shuffled.has_sorted_indices = False
    graphs = [s, sp.csr_matrix(s), sp.csc_array(s), coo, shuffled,
              sp.csr_array(s.astype(np.float64)),
              (s.indptr, s.indices, s.data), (s.indptr.astype(np.int32), s.indices, s.data)]
    for g in graphs:
        z = dalcore.propagate(g, labels, num_classes=3, tol=1e-9, max_iter=1000)
        assert isinstance(z, np.ndarray) and z.dtype == np.float32
        assert col_rel_err(z, ref) <= 1e-5
    assert col_rel_err(dalcore.propagate(s, labels.astype(np.int32), num_classes=3, tol=1e-9,
                                         max_iter=1000), ref) <= 1e-5


def test_torch_cpu_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    s = knn_like_graph(rng, 120, 5, n_isolated=2)
    labels = pick_labels(rng, rng.integers(0, 3, 120), 2)
    ref = direct(s, labels, 3, 0.99)
    triple = tuple(torch.from_numpy(a) for a in (s.indptr.astype(np.int64), s.indices, s.data))
    z = dalcore.propagate(triple, torch.from_numpy(labels), num_classes=3, tol=1e-9,
                          max_iter=1000)
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
    assert col_rel_err(z.numpy(), ref) <= 1e-5


# ------------------------------------------------------------------ pseudo-labels


def pseudo_reference(z: np.ndarray):
    """LP-DeepSSL (db_semisuper.py) recipe in float64, with the documented edge cases."""
    z = np.array(z, dtype=np.float64)
    n, c = z.shape
    z[z < 0] = 0
    norms = np.linalg.norm(z, axis=1)
    probs = np.zeros_like(z)
    ok = norms > 0
    probs[ok] = z[ok] / norms[ok, None]
    weights = np.zeros(n)
    weights[ok] = 1 - scipy.stats.entropy(probs[ok].T) / np.log(c)
    weights /= weights.max()
    labels = np.argmax(probs, axis=1)
    class_weights = np.zeros(c)
    for k in range(c):
        count = np.count_nonzero(labels == k)
        if count:
            class_weights[k] = (n / c) / count
    return labels, weights, class_weights


def check_pseudo(z: np.ndarray, got) -> None:
    lab, w, cw = (np.asarray(a) for a in got)
    rl, rw, rcw = pseudo_reference(z)
    assert lab.dtype == np.int64 and w.dtype == np.float32 and cw.dtype == np.float32
    np.testing.assert_array_equal(lab, rl)
    np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cw, rcw, rtol=1e-6)


def test_pseudo_labels_random(rng):
    z = rng.normal(size=(500, 7)).astype(np.float32)
    z[:5] = -np.abs(z[:5])  # rows with no positive score: weight 0, label 0
    z[5] = 0.0
    z[6] = [0.3, 0.3, 0.1, 0, 0, 0, 0]  # tie: lowest class
    z[:, 6] = np.minimum(z[:, 6], -1)  # class 6 never wins: class weight 0
    lab, w, cw = dalcore.pseudo_labels(z)
    check_pseudo(z, (lab, w, cw))
    assert (w[:6] == 0).all() and (lab[:6] == 0).all() and lab[6] == 0
    assert cw[6] == 0 and w.max() == 1.0


def test_pseudo_labels_from_propagation(rng, digits):
    s, y = digits
    labels = pick_labels(rng, y, 5)
    z = dalcore.propagate(s, labels, num_classes=10)
    lab, w, cw = dalcore.pseudo_labels(z)
    check_pseudo(z, (lab, w, cw))
    assert (lab == y).mean() > 0.8  # label propagation on digits is accurate


def test_pseudo_labels_torch_cpu(rng):
    torch = pytest.importorskip("torch")
    z = rng.normal(size=(300, 5)).astype(np.float32)
    z[0] = -1
    got = dalcore.pseudo_labels(torch.from_numpy(z))
    assert all(isinstance(a, torch.Tensor) for a in got)
    assert got[0].dtype == torch.int64 and got[1].dtype == torch.float32
    check_pseudo(z, [a.numpy() for a in got])


@pytest.mark.parametrize("z, exc, match", [
    (np.zeros((4, 1)), ValueError, "at least 2 classes"),
    (np.zeros(4), ValueError, "2-D"),
    (np.zeros((0, 3)), ValueError, "at least one row"),
    (np.full((2, 3), np.nan), ValueError, "NaN"),
    (np.zeros((2, 3), dtype=complex), TypeError, "real"),
])
def test_pseudo_labels_bad_input(z, exc, match):
    with pytest.raises(exc, match=match):
        dalcore.pseudo_labels(z)


# ------------------------------------------------------------------ bad input


def bad_calls(s: sp.csr_array, labels: np.ndarray):
    n = s.shape[0]
    nan = s.copy()
    nan.data[3] = np.nan
    inf = s.copy()
    inf.data[0] = np.inf
    asym = s.tolil()
    asym[0, 1] = 5.0
    asym[1, 0] = 0.0
    raw = sp.csr_array(s.astype(np.float64) * 50)  # not normalised: I - alpha S indefinite
    raw = sp.csr_array(raw + raw.T)
    one_class_missing = labels.copy()
    one_class_missing[one_class_missing == 2] = -1
    bad_ptr = (s.indptr[::-1].copy(), s.indices, s.data)
    bad_idx = (s.indptr, np.where(np.arange(s.nnz) == 0, n, s.indices), s.data)
    kw = {"num_classes": 3}
    return [
        ((s, labels), dict(kw, alpha=0.0), ValueError, "alpha"),
        ((s, labels), dict(kw, alpha=1.0), ValueError, "alpha"),
        ((s, labels), dict(kw, alpha=float("nan")), ValueError, "alpha"),
        ((s, labels), dict(kw, tol=float("nan")), ValueError, "tol"),
        ((s, labels), dict(kw, tol=-1.0), ValueError, "tol"),
        ((s, labels), dict(kw, max_iter=-1), ValueError, "max_iter"),
        ((s, labels), dict(kw, max_iter=2.5), TypeError, "max_iter"),
        ((s, labels), {"num_classes": 0}, ValueError, "num_classes"),
        ((s, labels), {"num_classes": 3.0}, TypeError, "num_classes"),
        ((s, labels), dict(kw, precision="half"), ValueError, "precision"),
        ((s, labels[:-1]), kw, ValueError, "labels"),
        ((s, labels.reshape(-1, 1)), kw, ValueError, "labels"),
        ((s, np.where(labels == 0, 3, labels)), kw, ValueError, "labels"),
        ((s, np.where(labels == 0, -2, labels)), kw, ValueError, "labels"),
        ((s, labels.astype(np.float64)), kw, TypeError, "labels"),
        ((s, one_class_missing), kw, ValueError, "class 2 has no labeled"),
        ((sp.csr_array(s[:, :-1]), labels), kw, ValueError, "square"),
        ((sp.csr_array(s[:-1, :-1]), labels), kw, ValueError, "labels"),
        ((nan, labels), kw, ValueError, "NaN or inf"),
        ((inf, labels), kw, ValueError, "NaN or inf"),
        ((sp.csr_array(asym), labels), kw, ValueError, "symmetric"),
        ((raw, labels), kw, ValueError, "positive definite"),
        ((s.toarray(), labels), kw, TypeError, "graph"),
        (((s.indptr, s.indices), labels), kw, TypeError, "graph"),
        ((bad_ptr, labels), kw, ValueError, "indptr"),
        ((bad_idx, labels), kw, ValueError, "indices"),
        (((s.indptr, s.indices.astype(np.float32), s.data), labels), kw, TypeError, "indices"),
        (((s.indptr, s.indices, s.data.astype(complex)), labels), kw, TypeError, "data"),
        ((s, labels), dict(kw, x0=np.zeros((n, 2))), ValueError, "x0"),
        ((s, labels), dict(kw, x0=np.full((n, 3), np.nan)), ValueError, "x0"),
    ]


def small_problem(rng):
    s = knn_like_graph(rng, 60, 5, n_isolated=0)
    return s, pick_labels(rng, rng.integers(0, 3, 60), 2)


def test_bad_input(rng):
    s, labels = small_problem(rng)
    for args, kwargs, exc, match in bad_calls(s, labels):
        with pytest.raises(exc, match=match):
            dalcore.propagate(*args, **kwargs)


# ------------------------------------------------------------------ real GPU


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_cuda_matches_direct_solve(rng, digits, precision):
    import torch

    for name, s, labels, c in cases(rng, digits):
        ref = direct(s, labels, c, 0.99)
        triple = tuple(torch.from_numpy(np.ascontiguousarray(a)).cuda()
                       for a in (s.indptr.astype(np.int64), s.indices, s.data))
        z, info = dalcore.propagate(triple, torch.from_numpy(labels).cuda(), num_classes=c,
                                    tol=1e-8, max_iter=3000, return_info=True,
                                    precision=precision)
        assert z.is_cuda and z.dtype == torch.float32
        assert col_rel_err(z.cpu().numpy(), ref) <= 1e-5, name
        assert (info.residuals <= 1e-8).all()
        x0 = torch.from_numpy(ref.astype(np.float32)).cuda()
        _, info = dalcore.propagate(triple, torch.from_numpy(labels).cuda(), num_classes=c,
                                    tol=1e-4, x0=x0, return_info=True, precision=precision)
        assert (info.iterations == 0).all()


@pytest.mark.gpu
def test_cuda_pseudo_labels(rng):
    import torch

    z = rng.normal(size=(1000, 10)).astype(np.float32)
    z[0] = -1
    got = dalcore.pseudo_labels(torch.from_numpy(z).cuda())
    assert all(a.is_cuda for a in got)
    check_pseudo(z, [a.cpu().numpy() for a in got])


@pytest.mark.gpu
def test_cuda_bad_input(rng):
    import torch

    s, labels = small_problem(rng)
    triple = tuple(torch.from_numpy(np.ascontiguousarray(a)).cuda()
                   for a in (s.indptr.astype(np.int64), s.indices, s.data))
    lab = torch.from_numpy(labels).cuda()
    with pytest.raises(ValueError, match="class 2 has no labeled"):
        dalcore.propagate(triple, torch.where(lab == 2, -1, lab), num_classes=3)
    with pytest.raises(ValueError, match="labels"):
        dalcore.propagate(triple, lab[:-1], num_classes=3)
    with pytest.raises(TypeError, match="labels"):
        dalcore.propagate(triple, lab.float(), num_classes=3)
    bad = (triple[0], triple[1], triple[2].clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        dalcore.propagate(bad, lab, num_classes=3)


# ------------------------------------------------------------------ locality reordering


@pytest.mark.parametrize("reorder", [0, 1])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_reordering_on_and_off(rng, digits, reorder, precision):
    """The CPU kernel's breadth-first renumbering (automatic for large N x C) forced on and off:
    both match the direct solve, warm starts included, in the caller's node order."""
    from dalcore._propagate import _propagate_host

    for name, s, labels, c in cases(rng, digits):
        ref = direct(s, labels, c, 0.99)
        z, info = _propagate_host(s, labels, c, 0.99, 1e-8, 3000, None, precision == "float64",
                                  reorder)
        assert col_rel_err(z, ref) <= 1e-5, (name, reorder)
        _, warm = _propagate_host(s, labels, c, 0.99, 1e-4, 3000, ref.astype(np.float32),
                                  precision == "float64", reorder)
        assert (warm.iterations == 0).all()


def test_result_does_not_depend_on_thread_count(rng, tmp_path):
    """Reductions use a fixed row-block partition: 1 and 2 OpenMP threads give identical bits."""
    import os
    import subprocess
    import sys

    s = random_graph(rng, 3000, 0.01)
    labels = pick_labels(rng, rng.integers(0, 5, 3000), 3)
    sp.save_npz(tmp_path / "g.npz", s)
    np.save(tmp_path / "labels.npy", labels)
    script = (
        "import sys, numpy as np, scipy.sparse as sp, dalcore\n"
        "s = sp.load_npz(sys.argv[2]); lab = np.load(sys.argv[3])\n"
        "z = dalcore.propagate(s, lab, num_classes=5, tol=1e-9, max_iter=200)\n"
        "np.save(sys.argv[1], z)\n"
    )
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"z{threads}.npy"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "g.npz"),
                        str(tmp_path / "labels.npy")], env=env, check=True)
        outs.append(np.load(out))
    assert np.array_equal(outs[0], outs[1])
    assert col_rel_err(outs[0], direct(s, labels, 5, 0.99)) <= 1e-5


def test_graph_without_edges_returns_y(rng):
    """S = 0: A = I, so Z = Y exactly, after one iteration per column (also with one class)."""
    for n, c in ((1, 1), (50, 1), (50, 4)):
        s = sp.csr_array((n, n), dtype=np.float32)
        labels = np.full(n, -1, dtype=np.int64)
        labels[:c] = np.arange(c)
        labels[rng.choice(np.arange(c, n), min(n - c, 5), replace=False)] = rng.integers(
            0, c, min(n - c, 5))
        z, info = dalcore.propagate(s, labels, num_classes=c, return_info=True)
        np.testing.assert_allclose(z, rhs(labels, c), rtol=1e-7, atol=0)
        assert (info.iterations == 1).all() and (info.residuals == 0).all()
