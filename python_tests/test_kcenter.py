"""dalcore.kcenter (CPU kernel) against a float64 numpy replay of the greedy traversal."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dalcore

REL = 1e-5  # relative tolerance of a pick's distance against the reference maximum
MARGIN = 1e-3  # relative gap above which the reference arg-max is unambiguous in float32


def _sq_dists(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return ((x - q) ** 2).sum(axis=1)


def check_greedy(x: np.ndarray, picks: np.ndarray, labeled=None) -> np.ndarray:
    """Replays ``picks`` in float64 and checks every one of them is a greedy farthest pick.

    Returns the reference squared min-distances after the last pick.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    picks = np.asarray(picks)
    assert picks.dtype == np.int64
    assert picks.size > 0, "no pick to check: a replay of zero picks proves nothing"
    lab = [] if labeled is None else [int(i) for i in labeled]
    assert len(set(picks.tolist())) == picks.size, "a point was picked twice"
    assert not set(picks.tolist()) & set(lab), "a labeled point was picked"
    eligible = np.ones(n, dtype=bool)
    eligible[lab] = False
    if lab:
        md = np.full(n, np.inf)
        for i in lab:
            np.minimum(md, _sq_dists(x, x[i]), out=md)
    else:
        md = None
    for t, p in enumerate(picks.tolist()):
        if md is None:  # first pick without labels: farthest from the mean
            score = np.sqrt(_sq_dists(x, x.mean(axis=0)))
        else:
            score = np.sqrt(md)
        cand = np.where(eligible, score, -np.inf)
        best = cand.max()
        assert score[p] >= best * (1 - REL) - 1e-12, (
            f"pick {t}: index {p} at distance {score[p]}, the farthest is {best}"
        )
        order = np.argsort(-cand, kind="stable")
        if n - len(lab) - t > 1 and cand[order[0]] - cand[order[1]] > MARGIN * best:
            assert p == order[0], f"pick {t}: {p} instead of the unique farthest {order[0]}"
        if best == 0:  # only exact ties left: the lowest eligible index
            assert p == int(np.flatnonzero(eligible)[0]), f"pick {t}: tie not broken low"
        eligible[p] = False
        d_new = _sq_dists(x, x[p])
        md = d_new if md is None else np.minimum(md, d_new)
    return md


def gaussian(rng, n=3000, d=32):
    return rng.standard_normal((n, d)).astype(np.float32)


def clustered(rng, n=3000, d=24):
    # Tight clusters far from the origin: min-distances become small relative to the norms.
    centres = rng.standard_normal((20, d)) * 10 + 100
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, d))
    return x.astype(np.float32)


def duplicates(rng, n=1500, d=8):
    base = rng.standard_normal((120, d)).astype(np.float32)
    return base[rng.integers(0, 120, n)]


def digits():
    from sklearn.datasets import load_digits

    return load_digits().data  # float64 pixel counts: converted to float32


DATASETS = {
    "gaussian": gaussian,
    "clustered": clustered,
    "duplicates": duplicates,
    "highdim": lambda rng: gaussian(rng, n=700, d=1024),
    "digits": lambda rng: digits(),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("with_labels", [False, True])
def test_greedy_against_reference(name, with_labels, rng):
    x = DATASETS[name](rng)
    n = x.shape[0]
    labeled = rng.choice(n, 25, replace=False) if with_labels else None
    budget = 150 if name == "duplicates" else 40  # duplicates: more picks than distinct rows
    picks = dalcore.kcenter(x, budget, labeled, _prune="always")
    assert isinstance(picks, np.ndarray) and picks.shape == (budget,)
    check_greedy(x, picks, labeled)
    # The pruned and the unpruned pass compute the same min-distances: same picks, exactly.
    np.testing.assert_array_equal(picks, dalcore.kcenter(x, budget, labeled, _prune=False))


def test_pruned_equals_unpruned_many_picks(rng):
    # Many centres: most groups are pruned; the picks must not change.
    x = clustered(rng, n=6000, d=16)
    for labeled in (None, rng.choice(6000, 50, replace=False)):
        a = dalcore.kcenter(x, 600, labeled, _prune="always")
        b = dalcore.kcenter(x, 600, labeled, _prune=False)
        np.testing.assert_array_equal(a, b)
    check_greedy(x[:, :], a, labeled)


def test_first_pick_is_farthest_from_mean(rng):
    x = gaussian(rng, n=500, d=5)
    x[123] += 50.0  # an obvious outlier
    assert int(dalcore.kcenter(x, 1)[0]) == 123
    x = gaussian(rng, n=400, d=3)
    ref = int(np.argmax(_sq_dists(x.astype(np.float64), x.astype(np.float64).mean(axis=0))))
    assert int(dalcore.kcenter(x, 1)[0]) == ref


def test_return_radius_matches_reference(rng):
    x = clustered(rng, n=1500, d=12)
    for labeled in (None, rng.choice(1500, 10, replace=False)):
        for prune in (True, "always", False):
            picks, radius = dalcore.kcenter(x, 30, labeled, return_radius=True, _prune=prune)
            assert isinstance(radius, float)
            md = check_greedy(x, picks, labeled)
            assert radius == pytest.approx(np.sqrt(md.max()), rel=REL)


def test_radius_zero_when_everything_is_picked(rng):
    x = gaussian(rng, n=30, d=4)
    picks, radius = dalcore.kcenter(x, 25, np.arange(5), return_radius=True, _prune="always")
    assert sorted(picks.tolist()) == list(range(5, 30))
    assert radius == 0.0


def test_all_identical_points_pick_lowest_indices():
    x = np.ones((50, 7), dtype=np.float32)
    np.testing.assert_array_equal(dalcore.kcenter(x, 10), np.arange(10))
    lab = np.array([0, 3, 4])
    np.testing.assert_array_equal(dalcore.kcenter(x, 4, lab, _prune="always"), [1, 2, 5, 6])
    np.testing.assert_array_equal(dalcore.kcenter(x, 4, lab, _prune=False), [1, 2, 5, 6])


def test_torch_cpu_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    x = gaussian(rng, n=800, d=10)
    lab = torch.tensor([3, 7, 11])
    out = dalcore.kcenter(torch.from_numpy(x), 20, lab)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.device.type == "cpu"
    np.testing.assert_array_equal(out.numpy(), dalcore.kcenter(x, 20, lab.numpy()))
    out, radius = dalcore.kcenter(torch.from_numpy(x).double(), 5, return_radius=True)
    assert isinstance(out, torch.Tensor) and isinstance(radius, float)


def test_converted_inputs(rng):
    x = gaussian(rng, n=600, d=9)
    ref = dalcore.kcenter(x, 15)
    np.testing.assert_array_equal(dalcore.kcenter(x.astype(np.float64), 15), ref)
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(dalcore.kcenter(xt, 15), ref)
    wide = np.zeros((600, 18), dtype=np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(dalcore.kcenter(wide[:, ::2], 15), ref)  # strided view
    xi = rng.integers(-50, 50, size=(300, 6))
    check_greedy(xi, dalcore.kcenter(xi, 20))
    np.testing.assert_array_equal(dalcore.kcenter(x, 15, [1, 2], return_radius=False),
                                  dalcore.kcenter(x, 15, np.array([1, 2], dtype=np.int32)))


def test_releases_the_gil(rng):
    x = rng.standard_normal((200_000, 64)).astype(np.float32)
    count = [0]
    stop = threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1

    th = threading.Thread(target=counter)
    th.start()
    try:
        before = count[0]
        dalcore.kcenter(x, 60, _prune=False)  # a few hundred ms
        during = count[0] - before
    finally:
        stop.set()
        th.join()
    assert during > 1000, f"the counter thread advanced only {during} times during the call"


BAD = [
    (lambda x: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), 3, None),
     ValueError, "features"),
    (lambda x: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), 3, None),
     ValueError, "features"),
    (lambda x: (np.where(np.arange(x.size).reshape(x.shape) == 7, -np.inf, x), 3, None),
     ValueError, "features"),
    (lambda x: (x[0], 3, None), ValueError, "features"),
    (lambda x: (x[None], 3, None), ValueError, "features"),
    (lambda x: (x[:0], 1, None), ValueError, "features"),
    (lambda x: (x.astype(np.complex64), 3, None), TypeError, "features"),
    (lambda x: (x.astype(str), 3, None), TypeError, "features"),
    (lambda x: (x, 0, None), ValueError, "budget"),
    (lambda x: (x, -2, None), ValueError, "budget"),
    (lambda x: (x, 3.0, None), TypeError, "budget"),
    (lambda x: (x, "3", None), TypeError, "budget"),
    (lambda x: (x, True, None), TypeError, "budget"),
    (lambda x: (x, 41, None), ValueError, "budget"),
    (lambda x: (x, 39, [0, 1]), ValueError, "budget"),
    (lambda x: (x, 1, np.arange(40)), ValueError, "labeled"),
    (lambda x: (x, 2, [0, 40]), ValueError, "labeled"),
    (lambda x: (x, 2, [-1, 3]), ValueError, "labeled"),
    (lambda x: (x, 2, [3, 3]), ValueError, "labeled"),
    (lambda x: (x, 2, [1.0, 2.0]), TypeError, "labeled"),
    (lambda x: (x, 2, [[1, 2]]), ValueError, "labeled"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input(case, rng):
    make, err, name = BAD[case]
    x = gaussian(rng, n=40, d=3)
    features, budget, labeled = make(x)
    with pytest.raises(err, match=name):
        dalcore.kcenter(features, budget, labeled)


def test_core_validates_directly(rng):
    from dalcore import _core

    x = gaussian(rng, n=20, d=3)
    lab = np.array([1, 2], dtype=np.int64)
    with pytest.raises(ValueError, match="labeled"):
        _core.kcenter(x, 2, np.array([1, 20], dtype=np.int64))
    with pytest.raises(ValueError, match="labeled"):
        _core.kcenter(x, 2, np.array([4, 4], dtype=np.int64))
    with pytest.raises(ValueError, match="budget"):
        _core.kcenter(x, 19, lab)
    with pytest.raises(TypeError, match="features"):
        _core.kcenter(x.astype(np.float64), 2, lab)
    with pytest.raises(TypeError, match="labeled"):
        _core.kcenter(x, 2, lab.astype(np.int32))
    with pytest.raises(ValueError, match="contiguous"):
        _core.kcenter(np.asfortranarray(x), 2, lab)


def test_reference_check_rejects_non_greedy_picks(rng):
    # The replay above must be able to fail: a valid sequence, reordered, is not greedy.
    x = gaussian(rng, n=300, d=4)
    picks = dalcore.kcenter(x, 10)
    with pytest.raises(AssertionError):
        check_greedy(x, picks[::-1].copy())
    with pytest.raises(AssertionError):
        check_greedy(x, np.arange(10, dtype=np.int64))


def test_picks_do_not_depend_on_thread_count(rng):
    from dalcore import _core

    x = clustered(rng, n=20_000, d=8)  # several chunks per pass
    lab = rng.choice(20_000, 30, replace=False)
    ref = {p: dalcore.kcenter(x, 80, lab, _prune=p) for p in ("always", False)}
    threads = _core.build_info()["threads"]
    try:
        _core.set_num_threads(1)
        for p in ("always", False):
            np.testing.assert_array_equal(dalcore.kcenter(x, 80, lab, _prune=p), ref[p])
        _core.set_num_threads(3)
        for p in ("always", False):
            np.testing.assert_array_equal(dalcore.kcenter(x, 80, lab, _prune=p), ref[p])
    finally:
        _core.set_num_threads(threads)
    np.testing.assert_array_equal(ref["always"], ref[False])


def test_pruned_path_on_data_it_cannot_prune(rng):
    # Isotropic, high-dimensional: the triangle inequality skips nothing and the pruned path
    # hands over to the plain pass after a while; the picks must stay the same and greedy.
    x = gaussian(rng, n=2000, d=256)
    lab = rng.choice(2000, 10, replace=False)
    picks, radius = dalcore.kcenter(x, 100, lab, return_radius=True, _prune="always")
    np.testing.assert_array_equal(picks, dalcore.kcenter(x, 100, lab, _prune=False))
    md = check_greedy(x, picks, lab)
    assert radius == pytest.approx(np.sqrt(md.max()), rel=REL)


def _screening_cases(rng):
    # Tight clusters far from the origin (norms >> distances: the dot-product form is at its
    # loosest), d and the labeled count off the 16-wide blocks.
    far = (rng.standard_normal((30, 24)) * 5 + 300)[rng.integers(0, 30, 2500)]
    far = (far + 0.05 * rng.standard_normal(far.shape)).astype(np.float32)
    yield far, rng.choice(2500, 37, replace=False)
    # Labeled points in mirror pairs (x_0 negated): every point with x_0 = 0 is exactly as far
    # from both (ties in the nearest labeled point); and exact copies of labeled points.
    base = rng.integers(-3, 4, (600, 20)).astype(np.float32)
    mirror = base.copy()
    mirror[:, 0] = -mirror[:, 0]
    pick = rng.choice(600, 20, replace=False)
    sym = np.vstack([base, mirror, base[pick[:10]]])
    assert np.sum(sym[:, 0] == 0) > 50
    yield sym, np.r_[pick, 600 + pick]
    # Many labeled points in wide rows (several screening panels and a partial one).
    wide = rng.standard_normal((3000, 130)).astype(np.float32)
    yield wide, rng.choice(3000, 300, replace=False)


def test_screened_distances_to_labeled_equal_exact():
    # The pruned path screens the distances to the labeled set with dot products and computes
    # only the candidates exactly; the unpruned path computes every pair. Same min-distances:
    # the same picks and, after them, the same covering radius, bit for bit.
    rng = np.random.default_rng(7)
    for x, lab in _screening_cases(rng):
        for budget in (1, 60):
            a, ra = dalcore.kcenter(x, budget, lab, return_radius=True, _prune="always")
            b, rb = dalcore.kcenter(x, budget, lab, return_radius=True, _prune=False)
            np.testing.assert_array_equal(a, b)
            assert ra == rb
        check_greedy(x, a, lab)


def test_screening_when_the_approximation_overflows():
    # Points far from the labeled mean but close to a labeled point: |x - mean|^2 overflows
    # float32 in the screening's dot-product form, the exact distances do not.
    rng = np.random.default_rng(3)
    sign = np.where(rng.random(400) < 0.5, -1.0, 1.0)[:, None]
    x = (sign * 1.5e19 + 1e15 * rng.standard_normal((400, 8))).astype(np.float32)
    assert np.isfinite(x).all()
    lab = np.r_[np.flatnonzero(sign[:, 0] > 0)[:6], np.flatnonzero(sign[:, 0] < 0)[:6]]
    a, ra = dalcore.kcenter(x, 30, lab, return_radius=True, _prune="always")
    b, rb = dalcore.kcenter(x, 30, lab, return_radius=True, _prune=False)
    np.testing.assert_array_equal(a, b)
    assert ra == rb and np.isfinite(ra)


@pytest.mark.parametrize("kind", ["isotropic", "clustered"])
def test_first_pick_decides_the_plain_pass_without_a_sweep(kind, rng):
    # Without a projection, the first pick tells from the labeled groups alone whether the
    # triangle inequality can pay: on isotropic data it cannot (the sweep would visit every
    # candidate), and the plain pass runs from the first pick without building groups or
    # sweeping them (nothing visited); on clustered data the sweeps run. The picks are the
    # float64 greedy's and the plain pass's either way.
    n, d = 20_000, 64  # 2^20 floats and more: the pruned path
    if kind == "isotropic":
        x = rng.standard_normal((n, d)).astype(np.float32)
    else:
        centres = rng.standard_normal((40, d)) * 10
        x = (centres[rng.integers(0, 40, n)] + 0.2 * rng.standard_normal((n, d))).astype(
            np.float32)
    from dalcore._kcenter import _kcenter_stats

    lab = rng.choice(n, 50, replace=False)
    picks, stats = _kcenter_stats(x, 30, lab, projection=0)
    np.testing.assert_array_equal(picks, dalcore.kcenter(x, 30, lab, _prune=False))
    check_greedy(x, picks, lab)
    if kind == "isotropic":
        assert stats["visited"] == 0 and stats["dense_picks"] == 29, stats
    else:
        assert stats["visited"] > 0 and stats["dense_picks"] < 29, stats
