"""TypiClust against a float64 brute-force reference, and on real data (digits pixels)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dalcore.acquisition import STRATEGIES, AcquisitionContext
from dalcore.acquisition.initial import select_initial
from dalcore.acquisition.typiclust import typiclust_select


def blobs(rng: np.random.Generator, sizes: list[int], d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of the given sizes (float32 points, int64 blob ids), shuffled."""
    centres = rng.standard_normal((len(sizes), d)) * 6
    x = np.concatenate([c + rng.standard_normal((s, d)) for c, s in zip(centres, sizes)])
    ids = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(ids.size)
    return x[perm].astype(np.float32), ids[perm].astype(np.int64)


def ref_mean_knn_dist(x: np.ndarray, cand: np.ndarray, k: int = 20) -> np.ndarray:
    """Mean Euclidean distance of each candidate to its min(k, m // 2) nearest other candidates."""
    p = x[cand].astype(np.float64)
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    kk = max(1, min(k, cand.size // 2))
    return np.sort(d, axis=1)[:, :kk].mean(axis=1)


def ref_cluster_sequence(clusters: np.ndarray, labeled: np.ndarray, budget: int,
                         min_size: int = 5) -> list[int]:
    """Clusters visited: big ones (> min_size) by (labelled count, -size, id), cyclically."""
    ids = np.unique(clusters)
    key = {c: ((clusters[labeled] == c).sum(), -(clusters == c).sum(), c) for c in ids}
    big = sorted((c for c in ids if (clusters == c).sum() > min_size), key=key.__getitem__)
    return [int(big[i % len(big)]) for i in range(budget)]


@pytest.mark.parametrize("seed,budget", [(0, 6), (1, 9), (2, 14)])
def test_picks_the_most_typical_point_of_each_uncovered_cluster(seed: int, budget: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [60, 45, 45, 30, 25, 4, 80, 12]  # the cluster of 4 is too small to be visited
    x, clusters = blobs(rng, sizes)
    labeled = np.sort(rng.choice(np.flatnonzero(clusters >= 6), size=3, replace=False))
    picks = typiclust_select(x, labeled, budget, clusters=clusters)
    assert picks.dtype == np.int64 and picks.shape == (budget,)
    assert np.unique(picks).size == budget and not np.isin(picks, labeled).any()
    taken = set(labeled.tolist())
    for pick, c in zip(picks, ref_cluster_sequence(clusters, labeled, budget)):
        assert clusters[pick] == c
        cand = np.array([i for i in np.flatnonzero(clusters == c) if i not in taken])
        mean_dist = ref_mean_knn_dist(x, cand)
        got = mean_dist[np.flatnonzero(cand == pick)[0]]
        assert got <= mean_dist.min() * (1 + 1e-5), (pick, got, mean_dist.min())
        taken.add(int(pick))


def test_typicality_uses_twenty_neighbours_within_the_cluster() -> None:
    # One cluster: a tight core of 25 points plus a point at the centre of a sparser ring of 30;
    # with 20 neighbours the core point is most typical, with 1 neighbour the ring's centre
    # (nearest neighbour at 1e-4) wins.
    rng = np.random.default_rng(5)
    core = rng.standard_normal((25, 2)) * 0.05
    ang = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang)], 1) * 0.5 + 3
    twin = np.array([[3.0, 3.0], [3.0, 3.0001]])
    x = np.concatenate([core, ring, twin]).astype(np.float32)
    clusters = np.zeros(len(x), dtype=np.int64)
    pick = typiclust_select(x, None, 1, clusters=clusters)[0]
    ref = ref_mean_knn_dist(x, np.arange(len(x)))
    assert pick < 25 and ref[pick] == pytest.approx(ref.min(), rel=1e-5)
    assert np.argmin(ref_mean_knn_dist(x, np.arange(len(x)), k=1)) >= 55  # k matters here


def test_kmeans_path_is_seeded_and_valid() -> None:
    rng = np.random.default_rng(11)
    x, _ = blobs(rng, [50, 40, 30, 60])
    labeled = np.arange(0, 180, 30)
    a = typiclust_select(x, labeled, 8, rng=np.random.default_rng(3))
    b = typiclust_select(x, labeled, 8, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.unique(a).size == 8 and not np.isin(a, labeled).any() and a.max() < len(x)
    # the whole pool can be taken
    every = typiclust_select(x, labeled, len(x) - labeled.size, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(np.sort(every), np.setdiff1d(np.arange(len(x)), labeled))


def test_bad_input_names_the_argument() -> None:
    x = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="budget"):
        typiclust_select(x, np.arange(10), 21, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget"):
        typiclust_select(x, None, 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="labeled"):
        typiclust_select(x, [3, 3], 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="clusters"):
        typiclust_select(x, None, 2, clusters=np.zeros(29, np.int64))
    with pytest.raises(TypeError, match="rng"):
        typiclust_select(x, None, 2, rng=0)
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="features"):
        typiclust_select(bad, None, 2, rng=np.random.default_rng(0))


class Probe(torch.nn.Module):
    """A fixed linear 'network' returning (logits, L2-normalised features)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.v = torch.randn(d, 8, generator=g)

    def forward(self, x: torch.Tensor):
        f = torch.nn.functional.normalize(x.flatten(1) @ self.v, dim=1)
        return f[:, :3], f


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_registered_strategy_selects_from_the_pool(name: str) -> None:
    rng = np.random.default_rng(4)
    data = SimpleNamespace(x_train=torch.from_numpy(rng.standard_normal((200, 1, 4, 4),
                                                                        dtype=np.float32)),
                           num_classes=3)
    labeled = np.sort(rng.choice(200, 15, replace=False))
    pool = np.setdiff1d(np.arange(200), labeled)

    def run() -> np.ndarray:
        ctx = AcquisitionContext(model=Probe(16), data=data, labeled=labeled, pool=pool, cycle=0,
                                 rng=np.random.default_rng(9))
        return STRATEGIES[name](ctx, 12).indices

    a, b = run(), run()
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and np.unique(a).size == 12 and np.isin(a, pool).all()


def test_digits_typiclust_covers_more_classes_than_random() -> None:
    """Real data: on the pixels of digits, 10 picks from TypiClust span more classes on average
    over a fixed set of seeds than 10 uniform random picks (no label is read to select)."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    seeds = range(8)
    typ = [np.unique(y[select_initial("typiclust", 10, features=x, n=len(x),
                                      rng=np.random.default_rng(s))]).size for s in seeds]
    rnd = [np.unique(y[np.random.default_rng(1000 + s).choice(len(x), 10, replace=False)]).size
           for s in seeds]
    assert np.mean(typ) > np.mean(rnd), (typ, rnd)


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_registered_strategy_budget_errors_and_whole_pool(name: str) -> None:
    rng = np.random.default_rng(6)
    data = SimpleNamespace(x_train=torch.from_numpy(rng.standard_normal((40, 1, 4, 4),
                                                                        dtype=np.float32)),
                           num_classes=3)
    ctx = AcquisitionContext(model=Probe(16), data=data, labeled=np.arange(30),
                             pool=np.arange(30, 40), cycle=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget"):
        STRATEGIES[name](ctx, 11)
    with pytest.raises(TypeError, match="budget"):
        STRATEGIES[name](ctx, 2.0)
    np.testing.assert_array_equal(np.sort(STRATEGIES[name](ctx, 10).indices), ctx.pool)
