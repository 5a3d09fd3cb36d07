"""knn_graph (CPU kernel) against a float64 scipy reference built from the same k-NN lists."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from graph_reference import assert_graph_matches, clustered_features, random_lists, reference_graph

import dalcore

MODES = ["reciprocal", "union"]


@pytest.mark.parametrize("mode", MODES)
def test_clustered_features_with_duplicates(rng, mode):
    x, _ = clustered_features(rng)
    sims, idx = dalcore.knn(x, 12)
    g = dalcore.knn_graph((sims, idx), gamma=3.0, mode=mode)
    assert isinstance(g, sp.csr_array)
    assert g.has_canonical_format
    assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gamma", [1.0, 2.5])
def test_random_lists_isolated_nodes_and_self_entries(rng, mode, gamma):
    sims, idx, isolated = random_lists(rng, 300, 9)
    g = dalcore.knn_graph((sims, idx), gamma=gamma, mode=mode)
    ref = reference_graph(sims, idx, gamma, mode)
    assert_graph_matches(g, ref)
    lengths = np.diff(g.indptr)
    assert np.all(lengths[isolated] == 0)
    assert np.all(np.asarray(g.sum(axis=1))[isolated] == 0)
    assert np.any(lengths > 0)


@pytest.mark.parametrize("k", [1, 16, 17, 40, 64, 65, 90])
def test_every_list_width(rng, k):
    # k <= 64: rows sorted in registers by rank (1 to 4 vectors of 16); k > 64: comparison sort
    sims, idx, isolated = random_lists(rng, 200, k)
    for mode in MODES:
        g = dalcore.knn_graph((sims, idx), gamma=3.0, mode=mode)
        assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))
        assert np.all(np.diff(g.indptr)[isolated] == 0)


@pytest.mark.parametrize("k", [5, 50, 70])
def test_repeated_neighbour_found_anywhere_in_the_row(rng, k):
    sims, idx, _ = random_lists(rng, 120, k, n_isolated=0)
    r = next(r for r in range(120) if r not in idx[r])
    order = np.argsort(idx[r])
    lo, hi = order[0], order[-1]  # positions of the smallest and largest index
    for dst, src in ((lo, order[1]), (hi, order[-2]), (order[k // 2], lo)):
        bad = idx.copy()
        bad[r, dst] = bad[r, src]
        with pytest.raises(ValueError, match=f"row {r} lists neighbour {bad[r, src]} more than"):
            dalcore.knn_graph((sims, bad))
    # a row listing itself twice is not an error: self entries are ignored
    ok = idx.copy()
    ok[r, :2] = r
    assert_graph_matches(dalcore.knn_graph((sims, ok), mode="union"),
                         reference_graph(sims, ok, 3.0, "union"))


def test_union_sums_both_directions_and_reciprocal_keeps_mutual_pairs():
    # 0 <-> 1 mutual, 2 -> 0 one-way, 3 -> 1 one-way; hand-computed in float64.
    idx = np.array([[1], [0], [0], [1]])
    sims = np.array([[0.5], [0.7], [0.9], [0.4]], np.float32)
    a = np.maximum(sims.astype(np.float64).ravel(), 0) ** 2
    g = dalcore.knn_graph((sims, idx), gamma=2.0, mode="union").toarray()
    w = np.zeros((4, 4))
    w[0, 1] = w[1, 0] = a[0] + a[1]
    w[0, 2] = w[2, 0] = a[2]
    w[1, 3] = w[3, 1] = a[3]
    d = w.sum(1)
    np.testing.assert_allclose(g, w / np.sqrt(np.outer(d, d)), rtol=1e-6, atol=1e-7)
    r = dalcore.knn_graph((sims, idx), gamma=2.0, mode="reciprocal").toarray()
    np.testing.assert_allclose(r[[0, 1], [1, 0]], [1.0, 1.0], rtol=1e-6)  # single mutual edge
    assert np.count_nonzero(r) == 2


@pytest.mark.parametrize("mode", MODES)
def test_digits_features(mode):
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float32)
    g = dalcore.knn_graph(x, k=10, gamma=3.0, mode=mode)
    sims, idx = dalcore.knn(x, 10)
    assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))
    # brute-force float64 check of the lists feeding the graph
    s64 = x.astype(np.float64) @ x.T.astype(np.float64)
    np.testing.assert_allclose(sims, np.take_along_axis(s64, idx, 1), atol=1e-5)


def test_k_selects_first_columns_and_default_width(rng):
    x, _ = clustered_features(rng, n=200)
    sims, idx = dalcore.knn(x, 15)
    g5 = dalcore.knn_graph((sims, idx), k=5, mode="union")
    assert_graph_matches(g5, reference_graph(sims[:, :5], idx[:, :5], 3.0, "union"))
    g15 = dalcore.knn_graph((sims, idx), mode="union")
    assert_graph_matches(g15, reference_graph(sims, idx, 3.0, "union"))


def test_torch_and_other_dtypes_accepted(rng):
    torch = pytest.importorskip("torch")
    sims, idx, _ = random_lists(rng, 120, 6)
    ref = reference_graph(sims, idx, 3.0, "union")
    g = dalcore.knn_graph((torch.from_numpy(sims), torch.from_numpy(idx)), mode="union")
    assert_graph_matches(g, ref)
    g = dalcore.knn_graph((sims.astype(np.float64), idx.astype(np.int32)), mode="union")
    assert_graph_matches(g, reference_graph(sims.astype(np.float32), idx, 3.0, "union"))
    g = dalcore.knn_graph([np.asfortranarray(sims), idx[:, ::1]], mode="union")
    assert_graph_matches(g, ref)
    x, _ = clustered_features(rng, n=150)
    s, i = dalcore.knn(x, 8)
    g = dalcore.knn_graph(torch.from_numpy(x), k=8)
    assert isinstance(g, sp.csr_array)
    assert_graph_matches(g, reference_graph(s, i, 3.0, "reciprocal"))


def _lists(rng, n=50, k=4):
    sims, idx, _ = random_lists(rng, n, k, n_isolated=0)
    return sims, idx


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"mode": "mutual"}, ValueError, "mode"),
        ({"mode": None}, ValueError, "mode"),
        ({"gamma": 0.0}, ValueError, "gamma"),
        ({"gamma": -1.0}, ValueError, "gamma"),
        ({"gamma": float("nan")}, ValueError, "gamma"),
        ({"gamma": float("inf")}, ValueError, "gamma"),
        ({"gamma": "3"}, TypeError, "gamma"),
        ({"k": 0}, ValueError, "k"),
        ({"k": 5}, ValueError, "k"),  # wider than the lists
        ({"k": 2.0}, TypeError, "k"),
    ],
)
def test_bad_arguments(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dalcore.knn_graph(_lists(rng), **kwargs)


def test_bad_knn_result(rng):
    sims, idx = _lists(rng)
    with pytest.raises(ValueError, match="knn_result"):
        dalcore.knn_graph((sims, idx[:, :3]))
    with pytest.raises(ValueError, match="knn_result"):
        dalcore.knn_graph((sims, idx, idx))
    with pytest.raises(ValueError, match="knn_result"):
        dalcore.knn_graph((sims.ravel(), idx.ravel()))
    with pytest.raises(TypeError, match="knn_result"):
        dalcore.knn_graph((sims, idx.astype(np.float64)))
    with pytest.raises(TypeError, match="knn_result"):
        dalcore.knn_graph((sims.astype(np.complex64), idx))
    for value in (50, -2):  # -1 is faiss's "no neighbour": accepted (test_graph_contract.py)
        bad = idx.copy()
        bad[7, 2] = value
        with pytest.raises(ValueError, match=r"knn_result.*\[0, 50\).*row 7"):
            dalcore.knn_graph((sims, bad))
    for value in (np.nan, np.inf):
        bad = sims.copy()
        bad[3, 1] = value
        with pytest.raises(ValueError, match="knn_result.*NaN or inf.*row 3"):
            dalcore.knn_graph((bad, idx))
    bad = idx.copy()
    r = next(r for r in range(50) if r not in bad[r])  # a row that does not list itself
    bad[r, 1] = bad[r, 3]
    with pytest.raises(ValueError, match=f"knn_result: row {r} lists neighbour .* more than once"):
        dalcore.knn_graph((sims, bad))
    wide_s = rng.random((4, 4)).astype(np.float32)
    wide_i = np.tile(np.arange(4), (4, 1))
    with pytest.raises(ValueError, match="knn_result.*k < N"):
        dalcore.knn_graph((wide_s, wide_i))


def test_bad_features(rng):
    x = rng.standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="k"):
        dalcore.knn_graph(x, k=20)
    with pytest.raises(ValueError, match="k"):
        dalcore.knn_graph(x)  # default k = 50 >= N
    bad = x.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="features"):
        dalcore.knn_graph(bad, k=3)
    with pytest.raises(ValueError, match="data"):
        dalcore.knn_graph(x.ravel(), k=3)
    with pytest.raises(ValueError, match="k"):
        dalcore.knn_graph(x[:1], k=1)


@pytest.mark.parametrize("mode", MODES)
def test_large_enough_for_several_threads(rng, mode):
    # >= 2^16 list entries per thread: the parallel passes run with 2+ threads
    # wherever OMP_NUM_THREADS allows it
    x, _ = clustered_features(rng, n=12000, d=8)
    sims, idx = dalcore.knn(x, 48)
    g = dalcore.knn_graph((sims, idx), mode=mode)
    assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))


@pytest.mark.parametrize("mode", MODES)
def test_hub_nodes_at_partition_edges(rng, mode):
    # Hubs (listed by almost every row: transposed lists ~n long against k-long own lists) at the
    # first and last rows of the kernel's 256-row partitions and at the very last row, rows whose
    # neighbours all lie below or above their own middle entry, and zero weights (s <= 0).
    # >= 2^16 entries per thread, so neighbouring partitions are merged concurrently.
    n, k = 3000, 48
    hubs = np.array([0, 255, 256, 511, 2815, n - 1])
    idx = np.empty((n, k), dtype=np.int64)
    for r in range(n):
        others = rng.choice(np.setdiff1d(np.arange(n), np.r_[hubs, r]), k - hubs.size,
                            replace=False)
        idx[r] = rng.permutation(np.r_[hubs[hubs != r], others, r][:k])
    lows = rng.choice(n, 40, replace=False)
    for r in lows:  # lists only indices far below or far above r's middle neighbour
        pool = np.setdiff1d(np.arange(200) if r % 2 else np.arange(n - 200, n), [r])
        idx[r] = rng.choice(pool, k, replace=False)
    sims = rng.uniform(-0.3, 1.0, (n, k)).astype(np.float32)
    g = dalcore.knn_graph((sims, idx), gamma=3.0, mode=mode)
    assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))
    lengths = np.diff(g.indptr)
    assert lengths[hubs].min() > (n // 2 if mode == "union" else 0)


def _spread_lists(rng, n, k, span):
    """Distinct neighbours (never the row itself) spread over about `span` indices around each
    row, in random order, with similarities in [-0.3, 1]."""
    step = (span - 1) // k
    offsets = 1 + step * np.arange(k) + rng.integers(0, step, (n, k))  # increasing, in [1, span)
    rows = np.arange(n)[:, None]
    if span >= n:
        idx = (rows + offsets) % n
    else:
        base = np.clip(rows - span // 2, 0, n - span)
        idx = base + offsets - 1
        idx[idx == rows] = base[(idx == rows).any(axis=1)].ravel() + span - 1  # keep them distinct
    idx = rng.permuted(idx, axis=1)
    sims = rng.uniform(-0.3, 1.0, (n, k)).astype(np.float32)
    return sims, idx.astype(np.int64)


@pytest.mark.parametrize("k", [24, 64])
def test_rows_spanning_more_and_less_than_2_16_indices(rng, k):
    # n > 2^16: rows whose indices span >= 2^16 - 1 are ranked on 32-bit keys, the others
    # (local rows) on 16-bit keys; both kinds, interleaved, and a repeated neighbour in each
    n = 70000
    s_wide, i_wide = _spread_lists(rng, n, k, n)
    s_local, i_local = _spread_lists(rng, n, k, 60000)
    sims = np.where(np.arange(n)[:, None] % 2 == 0, s_wide, s_local)
    idx = np.where(np.arange(n)[:, None] % 2 == 0, i_wide, i_local)
    wide = np.ptp(idx, axis=1) >= 0xFFFF
    assert 10000 < wide.sum() < n - 10000
    for mode in MODES:
        g = dalcore.knn_graph((sims, idx), gamma=3.0, mode=mode)
        assert_graph_matches(g, reference_graph(sims, idx, 3.0, mode))
    for r in (np.flatnonzero(wide)[-1], np.flatnonzero(~wide)[-1]):  # a wide row, a local one
        bad = idx.copy()
        bad[r, k - 1] = bad[r, 0]
        with pytest.raises(ValueError, match=f"row {r} lists neighbour {bad[r, 0]} more than"):
            dalcore.knn_graph((sims, bad))
