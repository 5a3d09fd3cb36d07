"""Independent float64 scipy reference of knn_graph, built from the same k-NN lists."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def reference_graph(sims: np.ndarray, idx: np.ndarray, gamma: float, mode: str) -> sp.csr_array:
    """S = D^-1/2 W D^-1/2 in float64 with scipy: union W = A + A^T; reciprocal W = (A + A^T)/2
    restricted to mutually listed pairs; self entries dropped; zero weights not stored."""
    n, k = sims.shape
    rows = np.repeat(np.arange(n), k)
    cols = np.asarray(idx, dtype=np.int64).ravel()
    a = np.maximum(np.asarray(sims, dtype=np.float64).ravel(), 0.0) ** gamma
    off = rows != cols
    rows, cols, a = rows[off], cols[off], a[off]
    A = sp.csr_array((a, (rows, cols)), shape=(n, n))
    W = A + A.T
    if mode == "reciprocal":
        listed = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, n))
        mutual = listed.multiply(listed.T)  # 1 where both directions are listed
        W = (0.5 * W).multiply(mutual)
    W = sp.csr_array(W)
    W.data[W.data <= 0] = 0.0
    W.eliminate_zeros()
    d = np.asarray(W.sum(axis=1)).ravel()
    dinv = np.zeros(n)
    dinv[d > 0] = 1.0 / np.sqrt(d[d > 0])
    S = sp.csr_array(sp.diags_array(dinv) @ W @ sp.diags_array(dinv))
    S.sort_indices()
    return S


def assert_graph_matches(g: sp.csr_array, ref: sp.csr_array, atol: float = 1e-6) -> None:
    """Same shape and sparsity pattern, values within atol, exactly symmetric, no self loops,
    sorted canonical columns, float32 data."""
    n = ref.shape[0]
    assert g.shape == (n, n)
    assert g.data.dtype == np.float32
    indptr = np.asarray(g.indptr, dtype=np.int64)
    indices = np.asarray(g.indices, dtype=np.int64)
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    if ref.nnz:
        assert np.max(np.abs(g.data.astype(np.float64) - ref.data)) <= atol
    rows = np.repeat(np.arange(n), np.diff(indptr))
    assert not np.any(rows == indices), "self loop"
    # columns strictly increasing within each row
    same_row = rows[1:] == rows[:-1]
    assert np.all(indices[1:][same_row] > indices[:-1][same_row])
    # exact symmetry: the transpose has identical entries
    t = sp.csr_array((g.data, g.indices, g.indptr), shape=(n, n)).T.tocsr()
    t.sort_indices()
    np.testing.assert_array_equal(np.asarray(t.indptr, np.int64), indptr)
    np.testing.assert_array_equal(np.asarray(t.indices, np.int64), indices)
    np.testing.assert_array_equal(t.data, g.data)
    assert np.all(np.isfinite(g.data))


def clustered_features(
    rng: np.random.Generator, n: int = 400, d: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm points in 4 tight clusters, a few exact duplicates, and outliers in random
    directions (no cluster point lists them). Returns (features, outlier rows)."""
    centers = rng.standard_normal((4, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    n_out = 5
    m = n - n_out
    x = centers[rng.integers(0, 4, m)] + 0.15 * rng.standard_normal((m, d))
    x[10:20] = x[0:10]  # exact duplicates
    out = rng.standard_normal((n_out, d))
    x = np.vstack([x, out])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(n)
    x = x[perm]
    outliers = np.nonzero(perm >= m)[0]
    return x.astype(np.float32), outliers


def random_lists(
    rng: np.random.Generator, n: int, k: int, n_isolated: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random distinct neighbour lists (some rows list themselves), similarities in [-0.4, 1];
    `n_isolated` nodes that nobody lists and whose own similarities are all <= 0."""
    isolated = rng.choice(n, n_isolated, replace=False)
    allowed = np.setdiff1d(np.arange(n), isolated)
    scores = rng.random((n, allowed.size))
    scores[allowed, np.arange(allowed.size)] = 2.0  # never list yourself here
    idx = allowed[np.argsort(scores, axis=1)[:, :k]]
    # a few rows list themselves in place of a neighbour (must be ignored)
    selfish = rng.choice(allowed, 10, replace=False)
    idx[selfish, rng.integers(0, k, 10)] = selfish
    sims = rng.uniform(-0.4, 1.0, (n, k)).astype(np.float32)
    sims[isolated] = -np.abs(sims[isolated])
    return sims, idx.astype(np.int64), isolated
