"""Float64 dense references of the label-propagation pipeline, shared by the SEMI and jLP tests."""

from __future__ import annotations

import numpy as np


def ref_knn(x, k, *, metric="ip"):
    """Exact k-NN by inner product, self excluded, ties to the lowest index (float64)."""
    x = np.asarray(x, dtype=np.float64)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1).astype(np.float32), idx.astype(np.int64)


def ref_graph_dense(knn, *, gamma, mode):
    """Dense D^-1/2 W D^-1/2 from k-NN lists, reciprocal or union (float64)."""
    s, idx = (np.asarray(a) for a in knn)
    n = s.shape[0]
    member = np.zeros((n, n), dtype=bool)
    w = np.zeros((n, n))
    rows = np.repeat(np.arange(n), idx.shape[1])
    member[rows, idx.ravel()] = True
    w[rows, idx.ravel()] = np.maximum(s.ravel().astype(np.float64), 0.0) ** gamma
    if mode == "reciprocal":
        w = np.where(member & member.T, w, 0.0)
    else:
        w = w + w.T
    d = w.sum(axis=1)
    dinv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    return dinv[:, None] * w * dinv[None, :]
