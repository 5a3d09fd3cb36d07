"""The tiled GPU-path kcenter kernels (csrc/cuda/kcenter.cu) through the OpenMP twin:

- bit-identical picks and min-distances to an independent numpy float32 replay of the same
  summation order (python_tests/tile_replay.py), and greedy under the float64 reference;
- the same picks as the Thrust reference form (gpu.kcenter_reference) wherever float32 rounding
  cannot decide a pick (exactly on digits and ties, up to near-ties on non-integer data);
- the projection lower bound: picks and radius bit-identical to the plain tiled pass, fewer rows
  read in full;
- on a CUDA device (marked gpu): the same, device against twin, bit for bit.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from test_kcenter import check_greedy
from test_kcenter_gpu_path import agree_within_rounding
from test_kcenter_projection import fashion_pixels
from tile_replay import replay

import dalcore
from dalcore._kcenter import _pca_basis, _run_gpu_path


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def gaussian(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((2500, 45)).astype(np.float32)  # d = 45: a partial last chunk


def duplicates(rng: np.random.Generator) -> np.ndarray:
    base = rng.standard_normal((90, 40)).astype(np.float32)
    return base[rng.integers(0, 90, 1500)]


def ties(rng: np.random.Generator) -> np.ndarray:
    # Points on a small integer lattice: many exactly equal distances (exact arithmetic).
    return rng.integers(0, 3, size=(1200, 33)).astype(np.float32)


def far_offset(rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((1500, 64)) * 0.01 + 1000.0).astype(np.float32)


def fashion(rng: np.random.Generator) -> np.ndarray:
    return fashion_pixels(3000, seed=int(rng.integers(1 << 30)))


DATA = {"digits": lambda rng: digits(), "gaussian": gaussian, "duplicates": duplicates,
        "ties": ties, "far_offset": far_offset, "fashion": fashion}
EXACT = {"digits", "ties"}  # float32 sums exact: every order gives the same bits


def tiled(core, x, budget, labeled=None, **kw):
    return _run_gpu_path(core, x, budget, labeled, return_radius=True, **kw)


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("with_labels", [False, True])
def test_tiled_bit_identical_to_replay(omp_core, name, with_labels):
    rng = seeded(f"tiles-{name}-{with_labels}")
    x = DATA[name](rng)
    labeled = rng.choice(x.shape[0], 40, replace=False) if with_labels else None
    picks, radius = tiled(omp_core, x, 60, labeled, _projection=0)
    want, md = replay(x, 60, labeled)
    assert picks.tolist() == want
    assert radius == float(np.sqrt(np.float64(md.max())))
    check_greedy(x, picks, labeled)


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("with_labels", [False, True])
def test_tiled_matches_thrust_reference(omp_core, name, with_labels):
    rng = seeded(f"reference-{name}-{with_labels}")
    x = DATA[name](rng)
    labeled = rng.choice(x.shape[0], 40, replace=False) if with_labels else None
    new, r_new = tiled(omp_core, x, 80, labeled, _projection=0)
    ref, r_ref = tiled(omp_core, x, 80, labeled, _reference=True)
    if name in EXACT:
        assert new.tolist() == ref.tolist() and r_new == r_ref
    else:
        assert agree_within_rounding(x, new, ref, labeled) >= 10
        assert r_new == pytest.approx(r_ref, rel=1e-5)


def pca_features(rng: np.random.Generator) -> np.ndarray:
    """Fashion-MNIST pixels on their first 96 principal directions (BLAS on one thread: on a
    loaded machine its threads spin against the test's)."""
    from threadpoolctl import threadpool_limits

    x = fashion_pixels(4000, seed=int(rng.integers(1 << 30)))
    with threadpool_limits(1, user_api="blas"):
        basis, mean = _pca_basis(x, 96)
        return ((x - mean) @ basis.T).astype(np.float32)


PROJECTED = {
    "digits-8": (lambda rng: digits(), 8),
    "fashion-32": (fashion, 32),
    "pca-16": (pca_features, 16),
    "duplicates-8": (duplicates, 8),
    "ties-4": (ties, 4),
    "far_offset-16": (far_offset, 16),
}


@pytest.mark.parametrize("case", sorted(PROJECTED))
@pytest.mark.parametrize("with_labels", [False, True])
def test_projection_bit_identical_to_plain(omp_core, case, with_labels):
    make, m = PROJECTED[case]
    rng = seeded(f"projection-{case}-{with_labels}")
    x = make(rng)
    labeled = rng.choice(x.shape[0], 30, replace=False) if with_labels else None
    plain_stats: dict[str, int] = {}
    proj_stats: dict[str, int] = {}
    plain = tiled(omp_core, x, 70, labeled, _projection=0, _stats=plain_stats)
    proj = tiled(omp_core, x, 70, labeled, _projection=m, _stats=proj_stats)
    assert proj[0].tolist() == plain[0].tolist() and proj[1] == plain[1]
    assert proj_stats["full_rows"] <= plain_stats["full_rows"]
    check_greedy(x, proj[0], labeled)
    if case.startswith(("fashion", "pca")):  # real data: the bound skips most rows
        assert proj_stats["full_rows"] < 0.3 * plain_stats["full_rows"], (proj_stats, plain_stats)


def test_projection_on_data_inside_the_subspace(omp_core):
    """Rows inside the projected subspace: the bound is tight (q = |x - c|^2 up to rounding);
    whatever it skips must still leave the picks of the plain pass."""
    rng = seeded("inside")
    basis = np.linalg.qr(rng.standard_normal((48, 6)))[0].T  # 6 orthonormal rows in R^48
    x = (rng.standard_normal((2000, 6)) @ basis).astype(np.float32)
    mean = x.mean(0, dtype=np.float64)
    out = {}
    for m in (0, 6):
        picks = np.empty(50, np.int64)
        rad = np.zeros((), np.float64)
        b, mu = (basis, mean) if m else (None, None)
        omp_core.gpu.kcenter(x, np.arange(3, dtype=np.int64), picks, rad, 0, basis=b, mean=mu)
        out[m] = (picks.tolist(), float(rad))
    assert out[0] == out[6]
    assert out[0][0] == replay(x, 50, [0, 1, 2])[0]


def test_projection_basis_checked(omp_core):
    rng = seeded("bad-basis")
    x = rng.standard_normal((300, 20)).astype(np.float32)
    lab = np.zeros(0, np.int64)
    out = np.empty(5, np.int64)
    good, mean = _pca_basis(x, 4)
    with pytest.raises(ValueError, match="projection.*orthonormal"):
        omp_core.gpu.kcenter(x, lab, out, None, 0, basis=2 * good, mean=mean)
    with pytest.raises(ValueError, match="projection"):
        omp_core.gpu.kcenter(x, lab, out, None, 0, basis=good[:, :10], mean=mean)
    with pytest.raises(ValueError, match="projection"):
        omp_core.gpu.kcenter(x, lab, out, None, 0, basis=good, mean=None)
    with pytest.raises(ValueError, match="projection"):
        omp_core.gpu.kcenter(x, lab, out, None, 0, basis=good, mean=np.full(20, np.nan))
    with pytest.raises(ValueError, match="graph"):
        omp_core.gpu.kcenter(x, lab, out, None, 0, graph=3)
    with pytest.raises(ValueError, match="_projection"):
        _run_gpu_path(omp_core, x, 5, _projection=21)


def test_tiled_many_labeled_chunks(omp_core):
    """More labeled points than one chunk of the (point, labeled) tiles (32): several chunks
    per point, combined by the atomic minimum."""
    rng = seeded("chunks")
    x = rng.standard_normal((1500, 40)).astype(np.float32)
    lab = rng.choice(1500, 333, replace=False)
    picks, radius = tiled(omp_core, x, 40, lab, _projection=0)
    want, md = replay(x, 40, lab)
    assert picks.tolist() == want and radius == float(np.sqrt(np.float64(md.max())))


@pytest.mark.gpu
@pytest.mark.parametrize("m", [0, 16])
def test_cuda_tiled_bit_identical_to_twin_and_reference(omp_core, m):
    """On a device: the CUDA kernels give the twin's picks and radius bit for bit (same tile
    order), and the Thrust reference's picks where rounding cannot decide."""
    torch = pytest.importorskip("torch")
    rng = seeded(f"cuda-{m}")
    x = (rng.standard_normal((20000, 100)) * np.linspace(4, 0.2, 100)).astype(np.float32)
    lab = rng.choice(x.shape[0], 100, replace=False)
    xt = torch.from_numpy(x).cuda()
    labt = torch.from_numpy(lab).cuda()
    for graph in (0, 1):
        p, r = dalcore._kcenter._run_gpu_path(dalcore._core, xt, 100, labt, return_radius=True,
                                               _projection=m, _graph=graph)
        tp, tr = tiled(omp_core, x, 100, lab, _projection=m)
        assert p.cpu().numpy().tolist() == tp.tolist() and float(r) == tr
    ref, _ = dalcore._kcenter._run_gpu_path(dalcore._core, xt, 100, labt, return_radius=True,
                                             _reference=True)
    assert agree_within_rounding(x, tp, ref.cpu().numpy(), lab) >= 10


@pytest.mark.parametrize("d", [1, 31, 32, 33, 100])
def test_tiled_any_width(omp_core, d):
    """Widths around the tile's 32 lanes (partial last chunk, a single column)."""
    rng = seeded(f"width-{d}")
    x = rng.standard_normal((700, d)).astype(np.float32)
    for labeled in (None, rng.choice(700, 5, replace=False)):
        picks, radius = tiled(omp_core, x, 25, labeled, _projection=0)
        want, md = replay(x, 25, labeled)
        assert picks.tolist() == want and radius == float(np.sqrt(np.float64(md.max())))


def test_tiled_several_rows_per_tile(omp_core):
    """Beyond 16384 rows a tile covers several consecutive rows (and the last tile fewer)."""
    rng = seeded("rows-per-tile")
    x = (rng.standard_normal((40001, 12)) * np.linspace(3, 0.3, 12)).astype(np.float32)
    lab = rng.choice(40001, 9, replace=False)
    for labeled in (None, lab):
        picks, radius = tiled(omp_core, x, 30, labeled, _projection=0)
        want, md = replay(x, 30, labeled)
        assert picks.tolist() == want and radius == float(np.sqrt(np.float64(md.max())))
        proj = tiled(omp_core, x, 30, labeled, _projection=3)
        assert proj[0].tolist() == want and proj[1] == radius


def test_tiled_tiny_pools(omp_core):
    x = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    picks, radius = tiled(omp_core, x, 1, [0], _projection=0)
    assert picks.tolist() == [1] and radius == 0.0
    picks, radius = tiled(omp_core, x, 1, None, _projection=0)  # a tie with the mean: index 0
    assert picks.tolist() == [0] and radius == 5.0
    picks, radius = tiled(omp_core, x, 2, None, _projection=0)
    assert picks.tolist() == [0, 1] and radius == 0.0
