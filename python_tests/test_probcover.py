"""ProbCover against float64 brute-force references, its memory bound, and real data (digits)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dalcore.acquisition.probcover import (
    ball_graph,
    greedy_coverage,
    probcover_delta,
    probcover_select,
)
from dalcore.acquisition.typiclust import kmeans_labels


def unit64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pairwise64(x: np.ndarray) -> np.ndarray:
    u = unit64(x)
    return np.sqrt(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1))


def safe_delta(d: np.ndarray, q: float) -> float:
    """A radius near the q-quantile of the pairwise distances, in the middle of a gap between two
    of them (no pair sits on the boundary, so float32 and float64 agree on every ball)."""
    v = np.unique(d[np.triu_indices_from(d, 1)])
    i = int(q * (v.size - 1))
    gaps = np.diff(v[i:i + 50])
    j = i + int(np.argmax(gaps))
    return float((v[j] + v[j + 1]) / 2)


def ref_balls(d: np.ndarray, delta: float, k: int | None = None) -> np.ndarray:
    """Boolean (N, N): row i = i and the points within delta among its k nearest (ties by index)."""
    n = d.shape[0]
    inside = d < delta
    if k is not None:
        dd = d.copy()
        np.fill_diagonal(dd, np.inf)
        order = np.lexsort((np.tile(np.arange(n), (n, 1)), dd), axis=1)[:, :k]
        near = np.zeros_like(inside)
        np.put_along_axis(near, order, True, axis=1)
        inside &= near
    np.fill_diagonal(inside, True)
    return inside


def ref_greedy(balls: np.ndarray, labeled: np.ndarray, budget: int) -> list[int]:
    """Brute force: at each step evaluate every candidate's count of newly covered points."""
    n = balls.shape[0]
    covered = balls[labeled].any(axis=0) if labeled.size else np.zeros(n, bool)
    cand = np.setdiff1d(np.arange(n), labeled)
    picks: list[int] = []
    while len(picks) < budget:
        gains = np.array([(balls[c] & ~covered).sum() if c not in picks else -1 for c in cand])
        if gains.max() <= 0:
            break
        c = int(cand[int(np.argmax(gains))])  # the first maximum: lowest index
        picks.append(c)
        covered |= balls[c]
    return picks


@pytest.mark.parametrize("seed,k", [(0, None), (1, None), (2, 6), (3, 12)])
def test_greedy_coverage_is_maximal_at_each_step(seed: int, k: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = 90
    x = (rng.standard_normal((n, 4)) + rng.integers(0, 3, (n, 1)) * 1.5).astype(np.float32)
    d = pairwise64(x)
    delta = safe_delta(d, 0.08)
    labeled = np.sort(rng.choice(n, 4, replace=False))
    ref = ref_greedy(ref_balls(d, delta, k), labeled, 25)
    assert len(ref) >= 5  # the test exercises several steps
    got = probcover_select(x, labeled, len(ref), delta=delta, k=n - 1 if k is None else k,
                           rng=np.random.default_rng(0))
    np.testing.assert_array_equal(got, ref)


def test_picks_after_full_coverage_are_random_from_the_pool() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    d = pairwise64(x)
    delta = safe_delta(d, 0.5)
    ref = ref_greedy(ref_balls(d, delta), np.array([], np.int64), 40)
    got = probcover_select(x, None, 30, delta=delta, k=39, rng=np.random.default_rng(1))
    assert len(ref) < 30
    np.testing.assert_array_equal(got[:len(ref)], ref)
    assert np.unique(got).size == 30
    again = probcover_select(x, None, 30, delta=delta, k=39, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(got, again)


def ref_delta(d: np.ndarray, clusters: np.ndarray, alpha: float) -> float:
    """The largest pairwise distance used as radius whose share of pure balls is >= alpha."""
    same = clusters[:, None] == clusters[None, :]
    best = 0.0
    for delta in np.unique(d[np.triu_indices_from(d, 1)]):
        pure = np.all(same | (d >= delta), axis=1).mean()
        if pure >= alpha:
            best = float(delta)
    return best


@pytest.mark.parametrize("seed,alpha", [(0, 0.95), (1, 0.95), (2, 0.8), (3, 0.5)])
def test_delta_is_the_largest_radius_of_purity_alpha(seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    centres = rng.standard_normal((4, 6)) * 2
    truth = rng.integers(0, 4, n)
    x = (centres[truth] + rng.standard_normal((n, 6))).astype(np.float32)
    clusters = np.where(rng.random(n) < 0.1, rng.integers(0, 4, n), truth)  # noisy pseudo-labels
    d = pairwise64(x)
    want = ref_delta(d, clusters, alpha)
    assert want > 0
    assert probcover_delta(x, clusters, alpha) == pytest.approx(want, rel=1e-5)


def test_delta_with_one_cluster_covers_everything() -> None:
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    assert probcover_delta(x, np.zeros(20, np.int64)) == np.inf


def test_memory_is_o_n_k_at_twenty_thousand_points() -> None:
    """N = 20,000: an N x N float32 matrix would be 1.6 GB, a 500-row block of float64 80 MB;
    the whole selection peaks under 64 MB of (numpy-traced) allocations (30 MB measured)."""
    rng = np.random.default_rng(20)
    n, k = 20_000, 20
    x = (rng.standard_normal((n, 16)) + rng.integers(0, 10, (n, 1))).astype(np.float32)
    tracemalloc.start()
    try:
        picks = probcover_select(x, np.arange(50), 100, num_clusters=10, k=k,
                                 rng=np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    assert np.unique(picks).size == 100 and picks.min() >= 50
    graph, _ = ball_graph(x / np.linalg.norm(x, axis=1, keepdims=True), 0.3, k)
    assert graph.nnz <= n * (k + 1)


def test_bad_input_names_the_argument() -> None:
    x = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="alpha"):
        probcover_delta(x, np.zeros(30, np.int64), 0.0)
    with pytest.raises(ValueError, match="alpha"):
        probcover_delta(x, np.zeros(30, np.int64), 1.5)
    with pytest.raises(ValueError, match="clusters"):
        probcover_delta(x, np.zeros(31, np.int64))
    with pytest.raises(ValueError, match="delta"):
        probcover_select(x, None, 3, delta=-0.1, rng=rng)
    with pytest.raises(ValueError, match="budget"):
        probcover_select(x, np.arange(25), 6, rng=rng)
    with pytest.raises(ValueError, match="num_clusters"):
        probcover_select(x, None, 3, num_clusters=0, rng=rng)
    with pytest.raises(TypeError, match="rng"):
        probcover_select(x, None, 3)
    with pytest.raises(ValueError, match="k"):
        probcover_select(x, None, 3, k=0, rng=rng)


def test_digits_picks_cover_more_than_random_picks() -> None:
    """Real data (digits pixels): with delta chosen by purity on 10 k-means clusters, the balls
    of ProbCover's 20 picks cover more images (brute-force float64 distances) than those of 20
    uniform random picks, for every seed of a fixed set."""
    x, _ = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    d = pairwise64(x)
    for seed in range(4):
        clusters = kmeans_labels(unit64(x).astype(np.float32), 10, seed)
        delta = probcover_delta(x, clusters)
        picks = probcover_select(x, None, 20, delta=delta, k=len(x) - 1,
                                 rng=np.random.default_rng(seed))
        rand = np.random.default_rng(100 + seed).choice(len(x), 20, replace=False)
        cover = (d[picks] < delta).any(axis=0).mean()
        cover_rand = (d[rand] < delta).any(axis=0).mean()
        assert cover > cover_rand, (seed, cover, cover_rand)


def test_greedy_coverage_refuses_a_missing_rng_only_when_needed() -> None:
    x = np.random.default_rng(3).standard_normal((30, 3)).astype(np.float32)
    graph, cut = ball_graph(x / np.linalg.norm(x, axis=1, keepdims=True), 5.0, 29)
    assert cut == 0 and graph.nnz == 30 * 30
    first = greedy_coverage(graph, np.array([], np.int64), np.arange(30), 1, None)
    assert first.tolist() == [0]  # every ball covers everything: tie to the lowest row
    with pytest.raises(TypeError, match="rng"):
        greedy_coverage(graph, np.array([], np.int64), np.arange(30), 2, None)


def test_without_faiss_same_radius_and_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn stands in for faiss (k-means, the exact nearest other-cluster search) and
    dalcore.knn falls back to its blocked product: the same brute-force references hold."""
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    rng = np.random.default_rng(30)
    n = 100
    truth = rng.integers(0, 3, n)
    x = (rng.standard_normal((3, 5))[truth] * 2 + rng.standard_normal((n, 5))).astype(np.float32)
    clusters = np.where(rng.random(n) < 0.1, rng.integers(0, 3, n), truth)
    d = pairwise64(x)
    assert probcover_delta(x, clusters, 0.9) == pytest.approx(ref_delta(d, clusters, 0.9),
                                                              rel=1e-5)
    delta = safe_delta(d, 0.1)
    ref = ref_greedy(ref_balls(d, delta), np.arange(3), 20)
    got = probcover_select(x, np.arange(3), len(ref), delta=delta, k=n - 1,
                           rng=np.random.default_rng(0))
    np.testing.assert_array_equal(got, ref)
    picks = probcover_select(x, np.arange(3), 10, num_clusters=3, rng=np.random.default_rng(0))
    assert np.unique(picks).size == 10 and picks.min() >= 3
    from dalcore.acquisition.typiclust import typiclust_select

    typ = typiclust_select(x, np.arange(3), 10, rng=np.random.default_rng(0))
    assert np.unique(typ).size == 10 and typ.min() >= 3
