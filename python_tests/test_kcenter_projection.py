"""The projection lower bound of dalcore.kcenter (csrc/cpu/kcenter_projection.cpp) on real and
adversarial data: the same picks as the float64 brute-force greedy, and picks and covering radii
bit-identical to the plain pass (``_prune=False``, every distance computed), which is what a
bound that never skips a point it should update gives."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from test_kcenter import check_greedy

import dalcore
from dalcore import _core
from dalcore._kcenter import _auto_dim, _kcenter_stats, _pca_basis, _projection_width

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def fashion_pixels(n: int, seed: int) -> np.ndarray:
    """n seeded random Fashion-MNIST training images, pixels scaled to [0, 1]."""
    if not FASHION.exists():
        pytest.skip("Fashion-MNIST IDX files not installed (/usr/share/datasets/fashion-mnist)")
    with gzip.open(FASHION) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)
    rows = np.sort(np.random.default_rng(seed).choice(raw.shape[0], size=n, replace=False))
    return raw[rows].astype(np.float32) / 255.0


def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def pca(x: np.ndarray, k: int) -> np.ndarray:
    """x projected on its top-k principal components (float64 SVD), as float32."""
    c = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return (c @ vt[:k].T).astype(np.float32)


def trained_features(seed: int) -> np.ndarray:
    """Hidden ReLU features (64-d) of a small network trained on 300 digits labels: features
    that cluster by class, as a trained dalcore model's do."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    data = load_digits()
    x = data.data / 16.0
    rows = np.random.default_rng(seed).choice(x.shape[0], size=300, replace=False)
    net = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    net.fit(x[rows], data.target[rows])
    return np.maximum(x @ net.coefs_[0] + net.intercepts_[0], 0.0).astype(np.float32)


def same_as_plain(x, budget, labeled, m):
    """Runs the projection path with width m, checks it against the plain pass (picks and
    radius bit-identical) and the float64 reference; returns the work counts."""
    picks, stats = _kcenter_stats(x, budget, labeled, projection=m)
    plain, r_plain = dalcore.kcenter(x, budget, labeled, return_radius=True, _prune=False)
    np.testing.assert_array_equal(picks, plain)
    _, r = dalcore.kcenter(x, budget, labeled, return_radius=True, _projection=m)
    assert r == r_plain  # the max of the min-distances: bit-identical, not close
    check_greedy(x, picks, labeled)
    return stats


def labels(n, k, seed):
    return np.random.default_rng(seed).choice(n, size=k, replace=False)


@pytest.mark.parametrize("m", [4, 8, 16, 24])
def test_digits_pixels(m):
    x = digits()
    stats = same_as_plain(x, 150, labels(len(x), 10, m), m)
    assert stats["projected_rows"] > 0


def test_fashion_pixels_default_path():
    x = fashion_pixels(6000, seed=3)
    lab = labels(len(x), 100, 4)
    stats = same_as_plain(x, 200, lab, None)  # automatic width (32 for d = 784)
    # reads little: the bound clears most points (plain pass: every row of every pick)
    assert stats["full_rows"] < 0.2 * 200 * (len(x) - len(lab))


def test_fashion_pca_projection():
    x = pca(fashion_pixels(5000, seed=5), 128)
    same_as_plain(x, 200, labels(len(x), 50, 6), 16)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_trained_network_features():
    x = trained_features(seed=7)
    same_as_plain(x, 200, labels(len(x), 20, 8), 8)


def test_no_labels_first_pick_from_mean():
    x = digits()
    same_as_plain(x, 60, None, 8)


def test_duplicates_and_ties():
    base = digits()[:300]
    rng = np.random.default_rng(9)
    x = base[rng.integers(0, 300, 1200)]  # every row repeated about 4 times
    lab = labels(len(x), 5, 10)
    stats = same_as_plain(x, 250, lab, 8)
    assert stats["projected_rows"] > 0
    # exact ties: a pick's lower-index duplicates are all labeled or picked before it
    done = set(lab.tolist())
    for i in dalcore.kcenter(x, 250, lab, _projection=8).tolist():
        twins = np.flatnonzero((x == x[i]).all(axis=1))
        assert set(twins[twins < i].tolist()) <= done, f"pick {i}: a lower duplicate was free"
        done.add(i)


@pytest.mark.parametrize("offset", [1e3, 1e5, -3e4])
def test_far_from_origin(offset):
    x = digits() + np.float32(offset)
    same_as_plain(x, 100, labels(len(x), 10, 11), 8)


def test_data_inside_the_projected_subspace():
    # The bound is tight here (|P(x - c)| = |x - c| up to rounding): only the rounding margins
    # keep it from skipping a point it must update. Integer grid points give exact float ties.
    rng = np.random.default_rng(12)
    x = np.zeros((3000, 32), dtype=np.float32)
    x[:, :8] = rng.integers(-6, 7, size=(3000, 8))
    basis = np.eye(32)[:8].copy()
    mean = np.zeros(32)
    lab = labels(3000, 10, 13)
    got, r, _ = _core.kcenter(x, 400, lab, return_radius=True, projection=(basis, mean))
    plain, r_plain, _ = _core.kcenter(x, 400, lab, return_radius=True, prune=False)
    np.testing.assert_array_equal(got, plain)
    assert r == r_plain
    check_greedy(x, got, lab)


def test_any_orthonormal_basis_gives_the_same_picks(rng):
    # A random basis bounds poorly but never wrongly.
    x = fashion_pixels(2000, seed=14)
    q, _ = np.linalg.qr(rng.standard_normal((784, 16)))
    lab = labels(len(x), 30, 15)
    got, r, _ = _core.kcenter(x, 120, lab, return_radius=True,
                              projection=(np.ascontiguousarray(q.T), rng.standard_normal(784)))
    plain, r_plain, _ = _core.kcenter(x, 120, lab, return_radius=True, prune=False)
    np.testing.assert_array_equal(got, plain)
    assert r == r_plain


def test_pca_basis_is_orthonormal_and_principal():
    x = digits()
    basis, mean = _pca_basis(x, 8)
    np.testing.assert_allclose(basis @ basis.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
    # the same directions as the float64 SVD's top 8 (all rows used: n < 4096), to the accuracy
    # of the float32 scatter product it is computed from (about 1e-6 here; only the share of
    # rows the bound clears depends on it)
    _, _, vt = np.linalg.svd(x.astype(np.float64) - mean, full_matrices=False)
    np.testing.assert_allclose(np.abs(basis @ vt[:8].T), np.eye(8), atol=1e-5)


@pytest.mark.parametrize(
    "projection, match",
    [
        ((np.full((4, 64), 0.5), np.zeros(64)), "orthonormal"),
        ((np.eye(64)[:4] * np.nan, np.zeros(64)), "projection"),
        ((np.eye(64)[:4].copy(), np.full(64, np.inf)), "projection"),
        ((np.eye(63)[:4].copy(), np.zeros(63)), "projection"),
        ((np.eye(64)[:4].copy(),), "projection"),
    ],
)
def test_bad_projection_refused(projection, match):
    x = digits()
    with pytest.raises(ValueError, match=match):
        _core.kcenter(x, 5, np.arange(3, dtype=np.int64), projection=projection)


def test_bad_projection_dtype_refused():
    x = digits()
    with pytest.raises(TypeError, match="projection"):
        _core.kcenter(x, 5, np.arange(3, dtype=np.int64),
                      projection=(np.eye(64)[:4].astype(np.float32), np.zeros(64)))


@pytest.mark.parametrize("m, exc", [(-1, ValueError), (65, ValueError), (2.5, TypeError)])
def test_bad_projection_width(m, exc):
    with pytest.raises(exc, match="_projection"):
        dalcore.kcenter(digits(), 5, [0, 1], _projection=m)


def test_isotropic_default_path(rng):
    # No direction dominates: the automatic choice takes no projection (it would clear few rows)
    # and the pruned sweeps hand over to the plain pass; the picks are those of the plain pass
    # and of the float64 reference all the same.
    x = rng.standard_normal((8192, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    stats = same_as_plain(x, 60, labels(len(x), 20, 16), None)
    assert stats["dense_picks"] > 0
    assert stats["projected_rows"] == 0
    # forced, the projection still gives the same picks, and hands back as well
    stats = same_as_plain(x, 60, labels(len(x), 20, 16), 16)
    assert stats["dense_picks"] > 0


def captured_variance(x: np.ndarray, m: int) -> float:
    """Fraction of the variance of all rows that the top m principal directions hold (float64)."""
    c = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    w = np.linalg.eigvalsh(c.T @ c)
    return float(w[-m:].sum() / w.sum())


def low_rank(rng, n: int, d: int) -> np.ndarray:
    z = rng.standard_normal((40, 6))[rng.integers(0, 40, n)] * 3 + rng.standard_normal((n, 6))
    basis = np.linalg.qr(rng.standard_normal((d, 6)))[0].T
    return (z @ basis + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("kind", ["isotropic", "low-rank", "fashion-pca"])
def test_automatic_width_follows_the_captured_variance(rng, kind):
    # The automatic choice keeps the projection where its m directions hold at least half the
    # variance, and only there; the picks are the plain pass's either way.
    if kind == "isotropic":
        x = rng.standard_normal((10_000, 128)).astype(np.float32)
    elif kind == "low-rank":
        x = low_rank(rng, 10_000, 128)
    else:
        x = pca(fashion_pixels(10_000, seed=21), 128)
    m = _auto_dim(*x.shape)
    frac = captured_variance(x, m)
    assert abs(frac - 0.5) > 0.1  # far from the threshold: a subsample cannot flip the choice
    width = _projection_width(x)
    assert width == (m if frac >= 0.5 else 0)
    stats = same_as_plain(x, 40, labels(len(x), 30, 22), None)
    assert (stats["projected_rows"] > 0) == (width > 0)


@pytest.mark.parametrize("exponent", [-58, -20, 20, 55])
def test_extreme_scales(exponent):
    # Exact power-of-two scales near both ends of the range the kernel runs unscaled: the error
    # radii and slacks of the bound scale with the data, the picks must not move.
    x = np.ldexp(digits(), exponent).astype(np.float32)
    same_as_plain(x, 80, labels(len(x), 10, 17), 8)
    np.testing.assert_array_equal(
        dalcore.kcenter(x, 80, labels(len(x), 10, 17), _projection=8),
        dalcore.kcenter(digits(), 80, labels(len(x), 10, 17), _prune=False),
    )


def test_picks_do_not_depend_on_thread_count():
    x = fashion_pixels(3000, seed=18)
    lab = labels(len(x), 20, 19)
    ref = dalcore.kcenter(x, 100, lab, _prune=False)
    threads = _core.build_info()["threads"]
    try:
        for t in (1, 3):
            _core.set_num_threads(t)
            np.testing.assert_array_equal(dalcore.kcenter(x, 100, lab, _projection=16), ref)
    finally:
        _core.set_num_threads(threads)


@pytest.mark.parametrize("top_share", [0.1, 0.3, 0.4, 0.6, 0.75, 0.9])
def test_automatic_projection_follows_the_variance_share(top_share: float) -> None:
    # Gaussian rows whose m leading directions (the automatic width; a random rotation) hold
    # `top_share` of the variance, by construction: the automatic choice (a 512-row screen,
    # then the PCA of 4,096 rows) projects exactly when that share reaches one half, so the
    # cheap screen never turns the projection down where the full PCA would take it
    n, d = 20_000, 128
    m = _auto_dim(n, d)
    rng = np.random.default_rng(int(top_share * 1000))
    var = np.r_[np.full(m, top_share / m), np.full(d - m, (1 - top_share) / (d - m))]
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = ((rng.standard_normal((n, d)) * np.sqrt(var)) @ rot.T).astype(np.float32)
    assert _projection_width(x) == (m if top_share >= 0.5 else 0)
