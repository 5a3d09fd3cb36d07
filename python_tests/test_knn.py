"""knn against float64 brute force: both metrics, faiss and the blocked fallback, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

import dalcore
from dalcore import _knn

BACKENDS = ["faiss", "fallback"]
METRICS = ["ip", "l2"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "faiss":
        pytest.importorskip("faiss")
    else:
        monkeypatch.setattr(_knn, "_FORCE_FALLBACK", True)
    return request.param


def brute_force(x: np.ndarray, metric: str) -> np.ndarray:
    """Scores (larger is better) in float64: similarity, or minus the squared distance; self
    at -inf."""
    x = x.astype(np.float64)
    if metric == "ip":
        s = x @ x.T
    else:
        s = -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(s, -np.inf)
    return s


def check_against_brute_force(x, values, indices, k, metric, tol=1e-5):
    n = x.shape[0]
    s = brute_force(x, metric)
    sign = 1.0 if metric == "ip" else -1.0
    assert values.shape == (n, k) and indices.shape == (n, k)
    assert values.dtype == np.float32 and indices.dtype == np.int64
    assert not np.any(indices == np.arange(n)[:, None]), "self listed"
    assert all(np.unique(r).size == k for r in indices), "repeated neighbour"
    # each value is the true score of the index it comes with
    np.testing.assert_allclose(sign * values, np.take_along_axis(s, indices, 1), atol=tol)
    # best first, and exactly the k best values
    ref = -np.sort(-s, axis=1)
    np.testing.assert_allclose(sign * values, ref[:, :k], atol=tol)
    assert np.all(np.diff(sign * values.astype(np.float64), axis=1) <= tol)
    # the same index set wherever the k-th and (k+1)-th scores are clearly apart
    clear = ref[:, k - 1] - ref[:, k] > 10 * tol
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    for i in np.nonzero(clear)[0]:
        assert set(indices[i]) == set(order[i])
    assert clear.mean() > 0.5


@pytest.mark.parametrize("metric", METRICS)
def test_random_features(backend, rng, metric):
    x = rng.standard_normal((300, 12)).astype(np.float32)
    if metric == "ip":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    values, indices = dalcore.knn(x, 7, metric=metric)
    check_against_brute_force(x, values, indices, 7, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_digits(backend, metric):
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0
    x = x[:600]
    if metric == "ip":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    values, indices = dalcore.knn(x, 10, metric=metric)
    check_against_brute_force(x, values, indices, 10, metric, tol=1e-4 if metric == "l2" else 1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_ties_go_to_lowest_index(backend, rng, metric):
    # small integers: every score is exact in float32, so duplicates tie exactly
    base = rng.integers(-2, 3, (40, 5)).astype(np.float32)
    x = np.vstack([base, base[:10], base[:10], base[5:8]])  # points with 1-3 copies
    x = x[rng.permutation(x.shape[0])]
    k = 6
    values, indices = dalcore.knn(x, k, metric=metric)
    s = brute_force(x, metric)
    n = x.shape[0]
    expected = np.lexsort((np.tile(np.arange(n), (n, 1)), -s), axis=1)[:, :k]
    np.testing.assert_array_equal(indices, expected)
    sign = 1.0 if metric == "ip" else -1.0
    np.testing.assert_array_equal(
        sign * values.astype(np.float64), np.take_along_axis(s, expected, 1)
    )


def test_tie_redo_bound_from_index_columns(rng):
    # the exact redo of tied rows takes a lower bound on the k-th score from the columns the
    # index returned; a hint that repeats a column (or holds -1) must not lift the bound
    n_rows, n_cols, k = 30, 40, 7
    scores = rng.permuted(np.tile(np.repeat(np.arange(20.0), 2), (n_rows, 1)), axis=1)
    scores = scores.astype(np.float32)  # every value twice: ties at every rank
    order = np.lexsort((np.tile(np.arange(n_cols), (n_rows, 1)), -scores), axis=1)
    expected = order[:, :k]
    good = order[:, : k + 1]
    bad = good.copy()
    bad[::2, 6:8] = good[::2, 0:2]  # repeats: the k-th largest of the hint is above the row's
    bad[1::2, 6:8] = -1
    for hint in (None, good, rng.permuted(good, axis=1), bad):
        v, i = _knn._topk_numpy(scores, k, hint)
        np.testing.assert_array_equal(i, expected)
        np.testing.assert_array_equal(v, np.take_along_axis(scores, expected, 1))


def test_more_duplicates_than_k(backend):
    # 6 copies of one point, k = 2: every copy lists the two lowest other copies
    x = np.vstack([np.ones((6, 3)), -np.arange(1.0, 13.0).reshape(4, 3)]).astype(np.float32)
    for metric in METRICS:
        _, indices = dalcore.knn(x, 2, metric=metric)
        for i in range(6):
            assert list(indices[i]) == [j for j in range(6) if j != i][:2]


def test_torch_in_torch_out(backend, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((150, 6)).astype(np.float32)
    for metric in METRICS:
        v, i = dalcore.knn(torch.from_numpy(x), 5, metric=metric)
        assert isinstance(v, torch.Tensor) and isinstance(i, torch.Tensor)
        assert v.dtype == torch.float32 and i.dtype == torch.int64
        check_against_brute_force(x, v.numpy(), i.numpy(), 5, metric, tol=2e-5)


def test_inputs_converted(backend, rng):
    x = rng.standard_normal((80, 4))
    v, i = dalcore.knn(x, 3)  # float64 in: converted to float32
    check_against_brute_force(x.astype(np.float32), v, i, 3, "ip")
    v2, i2 = dalcore.knn(np.asfortranarray(x), 3)
    np.testing.assert_array_equal(i2, i)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.zeros((10, 3), np.float32), 0), {}, ValueError, "k"),
        ((np.zeros((10, 3), np.float32), 10), {}, ValueError, "k"),
        ((np.zeros((10, 3), np.float32), 2.0), {}, TypeError, "k"),
        ((np.zeros((10, 3), np.float32), 2), {"metric": "cosine"}, ValueError, "metric"),
        ((np.zeros(10, np.float32), 2), {}, ValueError, "features"),
        ((np.zeros((1, 3), np.float32), 1), {}, ValueError, "features"),
        ((np.zeros((10, 0), np.float32), 2), {}, ValueError, "features"),
        ((np.zeros((10, 3), np.complex64), 2), {}, TypeError, "features"),
        ((np.array([["a"] * 3] * 10), 2), {}, TypeError, "features"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dalcore.knn(*args, **kwargs)


def test_nan_and_inf_rejected():
    for bad in (np.nan, np.inf):
        x = np.ones((10, 3), np.float32)
        x[2, 1] = bad
        with pytest.raises(ValueError, match="features.*NaN or inf"):
            dalcore.knn(x, 2)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("force_fallback", [False, True])
def test_cuda(rng, monkeypatch, metric, force_fallback):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_knn, "_FORCE_FALLBACK", force_fallback)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    v, i = dalcore.knn(torch.from_numpy(x).cuda(), 8, metric=metric)
    assert v.is_cuda and i.is_cuda
    check_against_brute_force(x, v.cpu().numpy(), i.cpu().numpy(), 8, metric, tol=5e-5)


def test_torch_paths_break_exact_ties_to_lowest_index(rng, monkeypatch):
    # the torch fallback (CUDA without faiss GPU) and the torch post-processing of a faiss GPU
    # search, run here on CPU tensors
    torch = pytest.importorskip("torch")
    base = rng.integers(-2, 3, (30, 4)).astype(np.float32)
    x = np.vstack([base, base[:8], base[:8], base[3:5]])
    n, k = x.shape[0], 5
    xt = torch.from_numpy(x)
    for metric in METRICS:
        s = brute_force(x, metric)
        expected = np.lexsort((np.tile(np.arange(n), (n, 1)), -s), axis=1)[:, :k]
        v, i = _knn._knn_torch(xt, k, metric)
        np.testing.assert_array_equal(i.numpy(), expected)
        faiss = pytest.importorskip("faiss")
        index = faiss.IndexFlatIP(4) if metric == "ip" else faiss.IndexFlatL2(4)
        index.add(x)
        fv, fi = index.search(x, k + 2)
        v, i = _knn._from_index_search(
            xt, torch.from_numpy(fv), torch.from_numpy(fi), k, metric, torch
        )
        np.testing.assert_array_equal(i.numpy(), expected)
