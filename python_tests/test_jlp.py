"""jLP acquisition: least-reached pool points first, against a float64 dense greedy reference;
distinct pool indices through the registry; an unreached blob is explored first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lp_reference import ref_graph_dense, ref_knn

from dalcore.acquisition import AcquisitionContext, get_strategy
from dalcore.acquisition.jlp import jlp_select


def _ref_solve(S, seeds, alpha):
    y = np.zeros(S.shape[0])
    y[seeds] = 1.0 / seeds.sum()
    return np.linalg.solve(np.eye(S.shape[0]) - alpha * S, y)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ref_jlp(x, seeds, budget, *, k, gamma, alpha, mode):
    """Greedy jLP with exact float64 dense solves."""
    S = ref_graph_dense(ref_knn(x, k), gamma=gamma, mode=mode)
    is_seed = np.zeros(x.shape[0], dtype=bool)
    is_seed[seeds] = True
    picks, gaps = [], []
    for _ in range(budget):
        z = _ref_solve(S, is_seed, alpha) if is_seed.any() else np.zeros(x.shape[0])
        z[is_seed] = np.inf
        r = int(np.argmin(z))
        s = np.sort(z)
        gaps.append(s[1] - s[0])
        picks.append(r)
        is_seed[r] = True
    return np.array(picks), np.array(gaps)


def _normalised(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_unreached_blob_is_picked_first(rng):
    d = 8
    a = np.eye(d)[0] + rng.normal(0, 0.05, size=(30, d))
    b = np.eye(d)[1] + rng.normal(0, 0.05, size=(30, d))
    x = np.concatenate([a, b])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    perm = rng.permutation(60)  # blobs interleaved in index order
    x = x[perm]
    in_b = perm >= 30
    seed = int(np.flatnonzero(~in_b)[0])
    picks = jlp_select(x, np.array([seed]), 3, k=5, gamma=3.0, alpha=0.99, iters=50)
    assert in_b[picks[0]], "first pick must come from the blob the labeled point cannot reach"
    # Nothing in blob B is reached: the tie goes to the lowest index of B.
    assert picks[0] == np.flatnonzero(in_b)[0]
    assert np.unique(picks).size == 3 and seed not in picks


def test_matches_dense_greedy_reference(rng):
    x = _normalised(rng, 80, 6)
    seeds = np.sort(rng.choice(80, 5, replace=False))
    for mode in ("reciprocal", "union"):
        ref, gaps = _ref_jlp(x, seeds, 6, k=8, gamma=3.0, alpha=0.9, mode=mode)
        got = jlp_select(x, seeds, 6, k=8, gamma=3.0, alpha=0.9, iters=300, mode=mode)
        # Compare up to the first step whose decision is a numerical near-tie.
        upto = int(np.argmax(gaps < 1e-6)) if (gaps < 1e-6).any() else gaps.size
        np.testing.assert_array_equal(got[:upto], ref[:upto])


def test_no_seed_starts_from_lowest_index(rng):
    x = _normalised(rng, 30, 4)
    picks = jlp_select(x, np.array([], dtype=np.int64), 2, k=5)
    assert picks[0] == 0 and picks[1] != 0


def test_bad_arguments(rng):
    x = _normalised(rng, 10, 4)
    with pytest.raises(ValueError, match="budget"):
        jlp_select(x, np.array([0, 1]), 9, k=3)
    with pytest.raises(ValueError, match="budget"):
        jlp_select(x, np.array([0]), 0, k=3)
    with pytest.raises(ValueError, match="seeds"):
        jlp_select(x, np.array([10]), 1, k=3)
    with pytest.raises(ValueError, match="features"):
        jlp_select(x[:1], np.array([], dtype=np.int64), 1, k=3)


def test_registered_strategy_on_digits():
    from dalcore.data import class_balanced_indices, load_dataset
    from dalcore.models import ConvNet13

    d = load_dataset("digits", image_size=16)
    n = d.x_train.shape[0]
    labeled = class_balanced_indices(d.y_train.numpy(), 20, 10, np.random.default_rng(0))
    pool = np.setdiff1d(np.arange(n), labeled)
    torch.manual_seed(0)
    model = ConvNet13(in_channels=1, num_classes=10, width=0.125)
    ctx = AcquisitionContext(model=model, data=d, labeled=labeled, pool=pool, cycle=0,
                             rng=np.random.default_rng(0))
    sel = get_strategy("jlp")(ctx, 15)
    idx = sel.indices
    assert idx.dtype == np.int64 and idx.size == 15
    assert np.unique(idx).size == 15
    assert np.isin(idx, pool).all() and not np.isin(idx, labeled).any()
    assert sel.pseudo is None
    with pytest.raises(ValueError, match="budget"):
        get_strategy("jlp")(ctx, pool.size + 1)
