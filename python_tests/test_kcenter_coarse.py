"""The int8 copy of the projection that the full passes of dalcore.kcenter test first
(csrc/cpu/kcenter_coarse.cpp; "The coarse test" in kcenter_projection.h, its integer form in
kcenter_coarse.h): on real data, on data built to sit at the bound's margins, on odd sizes and
thread counts, with AVX-512 VNNI and with the portable integer loop, the same picks as the
float64 brute-force greedy and picks and covering radii bit-identical to the plain pass."""

from __future__ import annotations

import numpy as np
import pytest
from test_kcenter_projection import digits, fashion_pixels, labels, pca, same_as_plain

import dalcore
from dalcore import _core
from dalcore._kcenter import _kcenter_stats


@pytest.fixture(params=["vnni", "generic"])
def isa(request):
    """The coarse passes on AVX-512 VNNI (skipped where the CPU lacks it) or on the portable
    integer loop."""
    if request.param == "vnni":
        _core._kcenter_vnni(True)
        if not _core._kcenter_vnni():
            pytest.skip("this CPU has no AVX-512 VNNI")
    else:
        _core._kcenter_vnni(False)
    yield request.param
    _core._kcenter_vnni(True)


def check_coarse(x, budget, labeled, m):
    """same_as_plain, and the full passes did test rows on the int8 copy."""
    stats = same_as_plain(x, budget, labeled, m)
    assert stats["dense_picks"] > 0, stats
    assert stats["coarse_rows"] > 0, stats
    return stats


def test_fashion_pca_full_passes_read_the_int8_copy(isa):
    x = pca(fashion_pixels(12_000, seed=31), 128)
    lab = labels(len(x), 100, 32)
    stats = check_coarse(x, 300, lab, 16)
    # it clears most rows: fewer float32 projections read than int8 rows tested
    assert stats["projected_rows"] < 0.5 * stats["coarse_rows"]


def test_fashion_pixels_default_width(isa):
    x = fashion_pixels(6000, seed=33)
    check_coarse(x, 200, labels(len(x), 50, 34), None)  # automatic width, 32 for d = 784


@pytest.mark.parametrize("m", [8, 24, 40])
def test_widths_padded_to_16(m, isa):
    # z rows are padded to a multiple of 16 floats (zeros): 8 -> 16, 24 -> 32, 40 -> 48
    x = pca(fashion_pixels(5000, seed=35), 96)
    check_coarse(x, 150, labels(len(x), 30, 36), m)


def test_quantisation_at_its_coarsest():
    # One huge row sets the int8 scale: every other row's projection rounds to a handful of
    # integer steps (coarse bound loose, the float32 test and the full rows must take over).
    x = pca(fashion_pixels(6000, seed=38), 64)
    x[17] *= 200.0
    check_coarse(x, 200, labels(len(x), 20, 39), 16)


def test_points_at_half_steps_of_the_int8_grid(rng, isa):
    # Data inside the projected subspace on a grid of half-integer steps of the int8 scale: the
    # quantisation errors are all exactly +-0.5 step (the worst case h covers), and distances
    # tie exactly. Only the margins of the bound keep it from skipping a row it must update.
    n, d = 4000, 32
    x = np.zeros((n, d), dtype=np.float32)
    x[:, :8] = rng.integers(-120, 120, size=(n, 8)) + 0.5
    x[5, 0] = 127.0  # the largest |z|: scale 1, every other value half a step off the grid
    basis = np.eye(d)[:16].copy()
    lab = labels(n, 10, 40)
    got, r, st = _core.kcenter(x, 300, lab, return_radius=True, projection=(basis, np.zeros(d)),
                               return_stats=True)
    plain, r_plain, _ = _core.kcenter(x, 300, lab, return_radius=True, prune=False)
    np.testing.assert_array_equal(got, plain)
    assert r == r_plain
    assert st["coarse_rows"] > 0
    from test_kcenter import check_greedy

    check_greedy(x, got, lab)


def test_duplicates_far_from_origin(isa):
    base = pca(fashion_pixels(1500, seed=41), 64)
    rng = np.random.default_rng(42)
    x = base[rng.integers(0, len(base), 6000)] + np.float32(3e3)  # each row about 4 times
    lab = labels(len(x), 10, 43)
    check_coarse(x, 250, lab, 16)
    done = set(lab.tolist())
    for i in dalcore.kcenter(x, 250, lab, _projection=16).tolist():
        twins = np.flatnonzero((x == x[i]).all(axis=1))
        assert set(twins[twins < i].tolist()) <= done, f"pick {i}: a lower duplicate was free"
        done.add(i)


@pytest.mark.parametrize("exponent", [-50, 40])
def test_scaled_data(exponent):
    x = np.ldexp(pca(fashion_pixels(4000, seed=44), 64), exponent).astype(np.float32)
    check_coarse(x, 150, labels(len(x), 10, 45), 16)


def test_beyond_the_int8_range_no_copy():
    # |z| below 2^-55 * 127: no int8 copy (s^2 would not be a normal float); the float32 test
    # runs alone, with the same picks.
    x = np.ldexp(pca(fashion_pixels(4000, seed=46), 64), -62).astype(np.float32)
    stats = same_as_plain(x, 150, labels(len(x), 10, 47), 16)
    assert stats["dense_picks"] > 0 and stats["coarse_rows"] == 0


def test_odd_sizes_and_threads(isa):
    # Row ranges that start and end off the 16-row blocks (odd N, chunks of any size): the rows
    # before the first block and after the last take the float32 test one by one.
    x = pca(fashion_pixels(5003, seed=48), 64)
    lab = labels(len(x), 30, 49)
    ref = dalcore.kcenter(x, 200, lab, _prune=False)
    threads = _core.build_info()["threads"]
    try:
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            picks, stats = _kcenter_stats(x, 200, lab, projection=16)
            np.testing.assert_array_equal(picks, ref)
            assert stats["coarse_rows"] > 0
    finally:
        _core.set_num_threads(threads)


def test_digits_pixels():
    x = digits()
    check_coarse(x, 600, labels(len(x), 10, 50), 16)


def test_vnni_and_portable_loop_read_the_same_rows():
    # The same integers either way: identical picks and identical counts of the rows each
    # test could not clear (Fashion-MNIST PCA-128, 32 projected components, 16 in the copy).
    if not _core._kcenter_vnni():
        pytest.skip("this CPU has no AVX-512 VNNI")
    x = pca(fashion_pixels(8000, seed=51), 128)
    lab = labels(len(x), 60, 52)
    got = {}
    try:
        for allow in (True, False):
            _core._kcenter_vnni(allow)
            got[allow] = _kcenter_stats(x, 250, lab, projection=32)
    finally:
        _core._kcenter_vnni(True)
    np.testing.assert_array_equal(got[True][0], got[False][0])
    assert got[True][1] == got[False][1]
    assert got[True][1]["coarse_rows"] > 0


def test_random_configurations_pick_as_the_plain_pass():
    # Fresh random pools of every kind the bound meets (isotropic, clustered, low-rank, duplicated
    # rows far from the origin; scales 1e-3 to 1e3), 2^20 floats and more (the pruned path),
    # random labeled sets, budgets, projection widths, thread counts and ISA: the picks of the
    # plain pass every time, and most cases through the int8 copy's full passes.
    rng = np.random.default_rng(1000)
    threads = _core.build_info()["threads"]
    coarse = 0
    try:
        for _ in range(12):
            x, lab, budget, m = random_case(rng)
            _core.set_num_threads(int(rng.integers(1, 4)))
            _core._kcenter_vnni(bool(rng.integers(0, 2)))
            got, st = _kcenter_stats(x, budget, lab, projection=m)
            np.testing.assert_array_equal(got, dalcore.kcenter(x, budget, lab, _prune=False))
            coarse += st["coarse_rows"] > 0
    finally:
        _core.set_num_threads(threads)
        _core._kcenter_vnni(True)
    assert coarse >= 6, f"only {coarse} of 12 cases reached the int8 copy's full passes"


def random_case(rng):
    """(x, labeled, budget, m): a random pool of one of four kinds, n d >= 2^20."""
    n, d = int(rng.integers(17_000, 25_000)), int(rng.choice([64, 96, 128]))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        x = rng.standard_normal((n, d))
    elif kind == 1:
        c = rng.standard_normal((int(rng.integers(5, 200)), d)) * rng.uniform(1, 20)
        x = c[rng.integers(0, len(c), n)] + rng.uniform(0.01, 1) * rng.standard_normal((n, d))
    elif kind == 2:
        r = int(rng.integers(2, 40))
        x = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
        x += 0.01 * rng.standard_normal((n, d))
    else:
        base = rng.standard_normal((n // 4, d)) * np.exp(rng.standard_normal(d))
        x = base[rng.integers(0, len(base), n)] + rng.uniform(-1e3, 1e3)
    x = (x * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
    nl = int(rng.choice([0, 1, 5, 50, 300]))
    lab = rng.choice(n, nl, replace=False) if nl else None
    return x, lab, int(rng.integers(1, 300)), [None, 8, 16, 32, 48][int(rng.integers(0, 5))]
