"""TypiClust (Hacohen, Dekel and Weinshall, ICML 2022): typical points of uncovered clusters.

The labelled points and the pool are clustered by k-means (faiss) into ``|L| + B`` clusters
(at most ``max_clusters``, 500 as in the reference code). Clusters with more than
``min_cluster_size`` points are visited in the order (fewest labelled points, largest, lowest
id), cyclically when the budget exceeds their number; in each the still-unlabelled member of
highest typicality is picked. Typicality = 1 / mean Euclidean distance to the ``K = 20``
nearest neighbours (``min(20, m // 2)`` for a cluster of ``m`` candidates), the neighbours being
taken among the cluster's unlabelled, not yet picked members, as in the reference code
(avihu111/TypiClust, ``deep-al/pycls/al/typiclust.py``). The reference computes the mean of
*squared* distances (faiss ``IndexFlatL2``); we follow the paper's definition (distances).

Memory: k-means is O(N d + K d); typicality is computed per visited cluster with
:func:`dalcore.knn`, O(m K) for a cluster of m points. No N x N matrix.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import knn
from .._arrays import as_features, as_index_vector, check_int
from . import register
from ._base import AcquisitionContext, Selection, check_budget

__all__ = ["kmeans_labels", "most_typical", "select_typiclust", "typiclust_select"]

#: Neighbours of the typicality (the paper's K).
K_NN = 20


def kmeans_labels(features: np.ndarray, num_clusters: int, seed: int, *,
                  niter: int = 50) -> np.ndarray:
    """faiss k-means of the rows of ``features`` into ``num_clusters``: int64 assignment (N,).

    Every point takes part in the training (no subsampling); ``seed`` fixes the initial
    centroids. Without faiss, scikit-learn's ``KMeans`` (one k-means++ start) does the same.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    try:
        import faiss
    except ImportError:
        from sklearn.cluster import KMeans

        km = KMeans(int(num_clusters), n_init=1, max_iter=int(niter),
                    random_state=int(seed) & 0x7FFFFFFF)
        return km.fit_predict(x).astype(np.int64)
    km = faiss.Kmeans(x.shape[1], int(num_clusters), niter=int(niter), seed=int(seed) & 0x7FFFFFFF,
                      max_points_per_centroid=1 << 30, min_points_per_centroid=1,
                      verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign.ravel().astype(np.int64)


def most_typical(features: np.ndarray, candidates: np.ndarray, k: int = K_NN) -> int:
    """The candidate (a row of ``features``) with the smallest mean distance to its
    ``min(k, m // 2)`` nearest other candidates; ties to the first of ``candidates``."""
    m = candidates.size
    if m == 1:
        return int(candidates[0])
    kk = max(1, min(k, m // 2))
    sq, _ = knn(features[candidates], kk, metric="l2")
    mean_dist = np.sqrt(np.maximum(sq.astype(np.float64), 0.0)).mean(axis=1)
    return int(candidates[int(np.argmin(mean_dist))])


def _cluster_order(clusters: np.ndarray, labeled: np.ndarray, num_clusters: int,
                   min_cluster_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(eligible clusters, all non-empty clusters), each sorted by (labelled count, -size, id)."""
    size = np.bincount(clusters, minlength=num_clusters)
    n_lab = np.bincount(clusters[labeled], minlength=num_clusters)
    ids = np.arange(num_clusters)
    order = np.lexsort((ids, -size, n_lab))
    nonempty = order[size[order] > 0]
    return nonempty[size[nonempty] > min_cluster_size], nonempty


def _check_inputs(features: Any, labeled: Any, budget: Any,
                  clusters: Any) -> tuple[np.ndarray, np.ndarray, int, Optional[np.ndarray]]:
    x = as_features(features, "features", min_rows=1)
    n = int(x.shape[0])
    lab = as_index_vector(np.asarray([], np.int64) if labeled is None else labeled, "labeled", n)
    b = check_int(budget, "budget", low=1)
    if b > n - lab.size:
        raise ValueError(f"budget: {b} exceeds the {n - lab.size} unlabeled points")
    if clusters is not None:
        c = as_index_vector(clusters, "clusters", n, unique=False)
        if c.size != n:
            raise ValueError(f"clusters: expected one cluster id per point ({n}), got {c.size}")
        clusters = c
    return x, lab, b, clusters


def typiclust_select(
    features: Any,
    labeled: Any,
    budget: int,
    *,
    rng: Optional[np.random.Generator] = None,
    clusters: Any = None,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    k: int = K_NN,
) -> np.ndarray:
    """TypiClust selection of ``budget`` rows of ``features`` outside ``labeled``.

    Parameters
    ----------
    features : (N, d) array
        Features of the labelled points and the pool (any real dtype; finite).
    labeled : array of int or None
        Rows already labelled (may be empty).
    budget : int
        Points to select, 1 <= budget <= N - len(labeled).
    rng : numpy Generator, optional
        Seeds k-means (required unless ``clusters`` is given).
    clusters : (N,) int array, optional
        A given clustering (cluster ids in [0, N)) instead of k-means.
    max_clusters, min_cluster_size, k : int
        At most this many k-means clusters; clusters of at most ``min_cluster_size`` points are
        visited only once the others have no candidate left; neighbours of the typicality.

    Returns
    -------
    np.ndarray
        int64 rows, distinct, none labelled, in pick order.
    """
    x, lab, b, assign = _check_inputs(features, labeled, budget, clusters)
    n = int(x.shape[0])
    check_int(max_clusters, "max_clusters", low=1)
    check_int(min_cluster_size, "min_cluster_size", low=0)
    check_int(k, "k", low=1)
    if assign is None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng: expected a numpy Generator (it seeds k-means)")
        num = min(lab.size + b, max_clusters, n)
        assign = kmeans_labels(x, num, int(rng.integers(0, 2**31 - 1)))
    num = int(assign.max()) + 1
    eligible, nonempty = _cluster_order(assign, lab, num, min_cluster_size)
    available = np.ones(n, dtype=bool)
    available[lab] = False
    members = np.argsort(assign, kind="stable")  # rows grouped by cluster, increasing within
    starts = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=num))])
    order, picks, pos, misses = (eligible if eligible.size else nonempty), [], 0, 0
    while len(picks) < b:
        c = int(order[pos % order.size])
        pos += 1
        rows = members[starts[c]:starts[c + 1]]
        cand = rows[available[rows]]
        if cand.size == 0:
            misses += 1
            if misses >= order.size:  # every eligible cluster exhausted: visit all clusters
                order, pos, misses = nonempty, 0, 0
            continue
        misses = 0
        pick = most_typical(x, cand, k)
        available[pick] = False
        picks.append(pick)
    return np.asarray(picks, dtype=np.int64)


@register("typiclust")
def select_typiclust(ctx: AcquisitionContext, budget: int) -> Selection:
    """TypiClust on the current model's features of labelled + pool (see the module doc)."""
    b = check_budget(ctx, budget)
    order = np.concatenate([ctx.labeled, ctx.pool])
    rows = typiclust_select(ctx.features(order), np.arange(ctx.labeled.size), b, rng=ctx.rng)
    return Selection(indices=order[rows])
