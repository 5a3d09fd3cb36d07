"""ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022): greedy maximum coverage.

On L2-normalised features, point ``x`` covers the points of its ball ``{y : |x - y| < delta}``.
Starting with the balls of the labelled points covered, each pick is the pool point whose ball
holds the most still-uncovered points (ties to the lowest row); once everything is covered the
remaining picks are drawn uniformly from the pool with the seeded generator.

``delta`` is chosen by purity: with k-means pseudo-labels (``num_clusters``, the number of
classes), a ball is pure when all its points share the centre's pseudo-label, and ``delta`` is
the largest radius whose fraction of pure balls is at least ``alpha`` (0.95). A ball around
``x`` is pure iff ``delta <= d_out(x)``, the distance from ``x`` to the nearest point of another
cluster, so that radius is exactly an order statistic of ``d_out`` (the reference code scans a
grid of radii instead); ``d_out`` is computed exactly with one faiss search per cluster against
the points outside it (O(N d) memory).

The coverage graph is sparse, built on :func:`dalcore.knn`: each ball is cut to the point
itself and its ``k`` nearest neighbours within ``delta`` (O(N k) memory, never an N x N
matrix; the reference code's dense blocks of 500 rows, which also drop the last rows, are not
reproduced). With ``k >= N - 1`` the balls are exact; :func:`ball_graph` reports how many balls
were cut.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from .. import knn
from .._arrays import as_features, as_index_vector, check_float, check_int
from . import register
from ._base import AcquisitionContext, Selection, check_budget
from .typiclust import kmeans_labels

__all__ = [
    "ball_graph",
    "greedy_coverage",
    "nearest_other_cluster",
    "probcover_delta",
    "probcover_select",
    "select_probcover",
]

#: Default neighbours kept per ball (memory N x K_BALL).
K_BALL = 100
#: Default purity threshold of the paper.
ALPHA = 0.95


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def nearest_other_cluster(x: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64, (N,)) from every row to the nearest row of another cluster
    (inf when there is only one cluster), one exact search per cluster: faiss ``IndexFlatL2``,
    or scikit-learn's brute-force ``NearestNeighbors`` (chunked rows) without faiss."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.full(x.shape[0], np.inf)
    for c in np.unique(clusters):
        inside = clusters == c
        if inside.all():
            break
        out[inside] = _nearest_distance(x[~inside], x[inside])
    return out


def _nearest_distance(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance from each query to its nearest row of ``base`` (exact, float64)."""
    try:
        import faiss
    except ImportError:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(base)
        return nn.kneighbors(queries)[0][:, 0].astype(np.float64)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    sq, _ = index.search(queries, 1)
    return np.sqrt(np.maximum(sq[:, 0].astype(np.float64), 0.0))


def probcover_delta(features: Any, clusters: Any, alpha: float = ALPHA) -> float:
    """The largest radius whose balls (on L2-normalised ``features``) are pure w.r.t.
    ``clusters`` for at least a fraction ``alpha`` of the points (inf with one cluster)."""
    x = _normalise(as_features(features, "features", min_rows=1))
    c = as_index_vector(clusters, "clusters", x.shape[0], unique=False)
    if c.size != x.shape[0]:
        raise ValueError(f"clusters: expected one cluster id per point ({x.shape[0]}), "
                         f"got {c.size}")
    a = check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True)
    d_out = np.sort(nearest_other_cluster(x, c))
    n = d_out.size
    impure = int(np.floor((1.0 - a) * n + 1e-9))  # balls allowed to be impure
    return float(d_out[min(impure, n - 1)])


def ball_graph(x: np.ndarray, delta: float, k: int = K_BALL) -> tuple[sp.csr_array, int]:
    """Sparse (N, N) 0/1 CSR: row i holds i and its (at most k) nearest neighbours closer than
    ``delta``; also the number of balls cut at k (their k-th neighbour is still within delta)."""
    n = x.shape[0]
    kk = min(int(k), n - 1)
    if kk < 1:
        return sp.csr_array((np.ones(n, np.int8), np.arange(n), np.arange(n + 1)), (n, n)), 0
    sq, idx = knn(x, kk, metric="l2")
    inside = np.sqrt(np.maximum(sq.astype(np.float64), 0.0)) < delta
    cut = int(inside[:, -1].sum()) if kk < n - 1 else 0
    cols = np.concatenate([np.arange(n)[:, None], idx], axis=1)
    keep = np.concatenate([np.ones((n, 1), bool), inside], axis=1)
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    graph = sp.csr_array((np.ones(int(indptr[-1]), np.int8), cols[keep], indptr), (n, n))
    return graph, cut


def greedy_coverage(graph: sp.csr_array, labeled: np.ndarray, candidates: np.ndarray,
                    budget: int, rng: Optional[np.random.Generator]) -> np.ndarray:
    """Greedy maximum coverage: ``budget`` picks among ``candidates`` (rows of ``graph``),
    the balls of ``labeled`` covered first; random candidates once all is covered."""
    n = graph.shape[0]
    incoming = graph.T.tocsr()  # row y: the balls that contain y
    covered = np.zeros(n, dtype=bool)
    if labeled.size:
        covered[graph[labeled].indices] = True
    gain = graph @ (~covered).astype(np.int64)  # uncovered points in each ball
    score = np.full(n, -1, dtype=np.int64)
    score[candidates] = gain[candidates]
    picks: list[int] = []
    while len(picks) < budget:
        c = int(np.argmax(score))
        if score[c] <= 0:
            break
        picks.append(c)
        ball = graph.indices[graph.indptr[c]:graph.indptr[c + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        drop = np.bincount(incoming[new].indices, minlength=n)
        score[candidates] -= drop[candidates]
        score[c] = -1
    rest = budget - len(picks)
    if rest:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng: expected a numpy Generator (random picks once all is covered)")
        left = np.setdiff1d(candidates, np.asarray(picks, dtype=np.int64))
        picks.extend(int(v) for v in rng.choice(left, size=rest, replace=False))
    return np.asarray(picks, dtype=np.int64)


def probcover_select(
    features: Any,
    labeled: Any,
    budget: int,
    *,
    rng: Optional[np.random.Generator] = None,
    delta: Optional[float] = None,
    num_clusters: Optional[int] = None,
    clusters: Any = None,
    alpha: float = ALPHA,
    k: int = K_BALL,
) -> np.ndarray:
    """ProbCover selection of ``budget`` rows of ``features`` outside ``labeled``.

    Parameters
    ----------
    features : (N, d) array
        Features of the labelled points and the pool; L2-normalised here.
    labeled : array of int or None
        Rows already labelled (their balls count as covered).
    budget : int
        Points to select, 1 <= budget <= N - len(labeled).
    rng : numpy Generator, optional
        Seeds k-means and the picks made once everything is covered.
    delta : float, optional
        Ball radius; by default chosen by purity (:func:`probcover_delta`).
    num_clusters : int, optional
        k-means pseudo-classes for the purity (the number of classes; default ``budget``).
    clusters : (N,) int array, optional
        Given pseudo-labels instead of k-means.
    alpha : float
        Purity threshold in (0, 1].
    k : int
        Neighbours kept per ball (memory N x k).

    Returns
    -------
    np.ndarray
        int64 rows, distinct, none labelled, in pick order.
    """
    x = _normalise(as_features(features, "features", min_rows=1))
    n = int(x.shape[0])
    lab = as_index_vector(np.asarray([], np.int64) if labeled is None else labeled, "labeled", n)
    b = check_int(budget, "budget", low=1)
    if b > n - lab.size:
        raise ValueError(f"budget: {b} exceeds the {n - lab.size} unlabeled points")
    k = check_int(k, "k", low=1)
    if delta is None:
        if clusters is None:
            if not isinstance(rng, np.random.Generator):
                raise TypeError("rng: expected a numpy Generator (it seeds k-means)")
            num = check_int(b if num_clusters is None else num_clusters, "num_clusters", low=1)
            clusters = kmeans_labels(x, min(num, n), int(rng.integers(0, 2**31 - 1)))
        delta = probcover_delta(x, clusters, alpha)
    else:
        delta = check_float(delta, "delta", low=0.0)
    graph, _ = ball_graph(x, delta, k)
    candidates = np.setdiff1d(np.arange(n, dtype=np.int64), lab)
    return greedy_coverage(graph, lab, candidates, b, rng)


@register("probcover")
def select_probcover(ctx: AcquisitionContext, budget: int) -> Selection:
    """ProbCover on the current model's features of labelled + pool, ``num_classes`` k-means
    pseudo-classes for the purity (see the module doc)."""
    b = check_budget(ctx, budget)
    order = np.concatenate([ctx.labeled, ctx.pool])
    rows = probcover_select(ctx.features(order), np.arange(ctx.labeled.size), b, rng=ctx.rng,
                            num_clusters=ctx.num_classes)
    return Selection(indices=order[rows])
