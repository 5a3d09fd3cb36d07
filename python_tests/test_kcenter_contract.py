"""kcenter on both paths (CPU kernel and the GPU path's Thrust/OpenMP twin) at extreme but finite
scales, with bfloat16 / float16 tensors, and with one radius convention, against a float64
farthest-first reference."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import dalcore
from dalcore._kcenter import _run_gpu_path

torch = pytest.importorskip("torch")


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def ref_kcenter(x: np.ndarray, budget: int, labeled=()) -> tuple[list[int], float]:
    """Greedy farthest-first in float64 (ties to the lowest index), and the covering radius."""
    x = np.asarray(x, dtype=np.float64)
    picks: list[int] = []
    md = np.full(x.shape[0], np.inf)
    for j in labeled:
        md = np.minimum(md, ((x - x[j]) ** 2).sum(1))
    centres = set(int(j) for j in labeled)
    if not centres:
        first = int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))
        picks.append(first)
        centres.add(first)
        md = np.minimum(md, ((x - x[first]) ** 2).sum(1))
    while len(picks) < budget:
        m = md.copy()
        m[list(centres)] = -1.0
        c = int(np.argmax(m))
        picks.append(c)
        centres.add(c)
        md = np.minimum(md, ((x - x[c]) ** 2).sum(1))
    md[list(centres)] = 0.0
    return picks, float(np.sqrt(md.max()))


def both(omp_core, x, budget, labeled=None):
    cpu = dalcore.kcenter(x, budget, labeled, return_radius=True)
    twin = _run_gpu_path(omp_core, x, budget, labeled, return_radius=True)
    return [("cpu", cpu), ("twin", twin)]


@pytest.mark.parametrize("scale", [1e19, 3e37, 1e-39, 1e-44 * 2**20])
def test_extreme_scales_pick_like_float64(omp_core, scale):
    rng = seeded(f"scale-{scale}")
    x = (rng.standard_normal((600, 24)) * scale).astype(np.float32)
    assert np.isfinite(x).all() and np.count_nonzero(x) > x.size // 2
    lab = [3, 77, 401]
    for labeled in (None, lab):
        want, radius = ref_kcenter(x, 20, labeled or ())
        for name, (picks, r) in both(omp_core, x, 20, labeled):
            assert list(np.asarray(picks)) == want, (name, scale)
            assert r == pytest.approx(radius, rel=1e-5), (name, scale)
            assert isinstance(r, float)


@pytest.mark.parametrize("shift", [100, -140, 60, -100])
def test_exact_power_of_two_scales_keep_the_picks(omp_core, shift):
    """Digits pixels (small integers) scaled by 2**shift are exact in float32 (subnormal at
    2**-140): the picks are those of the unscaled digits and of the float64 reference."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32)
    xs = np.ldexp(x, shift).astype(np.float32)
    assert (np.ldexp(xs.astype(np.float64), -shift) == x).all()  # exact
    lab = list(seeded(f"digits-{shift}").choice(x.shape[0], 5, replace=False))
    want, radius = ref_kcenter(x, 30, lab)
    for name, (picks, r) in both(omp_core, xs, 30, lab):
        assert list(np.asarray(picks)) == want, name
        assert r == pytest.approx(radius * 2.0**shift, rel=1e-6), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_tensors_converted_losslessly(omp_core, dtype):
    rng = seeded(f"half-{dtype}")
    xt = torch.from_numpy(rng.standard_normal((400, 16)).astype(np.float32)).to(
        getattr(torch, dtype))
    x32 = xt.float().numpy()
    want, _ = ref_kcenter(x32, 12, [0, 5])
    got = dalcore.kcenter(xt, 12, [0, 5])
    assert torch.is_tensor(got) and got.tolist() == want
    assert list(_run_gpu_path(omp_core, xt, 12, [0, 5])) == want
    # knn, knn_graph and pseudo_labels take the same tensors
    sims, idx = dalcore.knn(xt, 8)
    s32, i32 = dalcore.knn(torch.from_numpy(x32), 8)
    assert torch.equal(idx, i32)
    g = dalcore.knn_graph((sims.to(getattr(torch, dtype)), idx))
    g32 = dalcore.knn_graph((sims.to(getattr(torch, dtype)).float(), idx))
    assert (g != g32).nnz == 0
    lab, w, _ = dalcore.pseudo_labels(xt[:, :5])
    lab32, w32, _ = dalcore.pseudo_labels(xt[:, :5].float())
    assert torch.equal(lab, lab32) and torch.allclose(w, w32)


def test_radius_convention_is_shared(omp_core):
    rng = seeded("radius")
    x = rng.standard_normal((500, 10)).astype(np.float32)
    (_, (pc, rc)), (_, (pt, rt)) = both(omp_core, x, 25, [1, 2])
    assert list(pc) == list(pt)
    assert isinstance(rc, float) and isinstance(rt, float)
    assert rc == pytest.approx(rt, rel=1e-6)
    assert rc == pytest.approx(ref_kcenter(x, 25, [1, 2])[1], rel=1e-5)


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_knn_refuses_scales_float32_cannot_rank(scale):
    x = (seeded("knn").standard_normal((50, 8)) * scale).astype(np.float32)
    with pytest.raises(ValueError, match="features: values .* float32 inner products"):
        dalcore.knn(x, 5)
    with pytest.raises(ValueError, match="features"):
        dalcore.knn(torch.from_numpy(x), 5)
    with pytest.raises(ValueError, match="features"):
        dalcore.knn_graph(x, k=5)
    # just inside the range: accepted, and the ranking of the float64 reference
    ok = (seeded("knn").standard_normal((50, 8)) * 1e15).astype(np.float32)
    _, idx = dalcore.knn(ok, 5)
    s = ok.astype(np.float64) @ ok.astype(np.float64).T
    np.fill_diagonal(s, -np.inf)
    np.testing.assert_array_equal(idx, np.argsort(-s, axis=1, kind="stable")[:, :5])


@pytest.mark.gpu
def test_cuda_path_same_contract():
    rng = seeded("cuda")
    x = (rng.standard_normal((3000, 32)) * 1e19).astype(np.float32)
    want, radius = ref_kcenter(x, 25, [4, 8])
    picks, r = dalcore.kcenter(torch.from_numpy(x).cuda(), 25, [4, 8], return_radius=True)
    assert picks.is_cuda and picks.tolist() == want
    assert r.is_cuda and r.dtype == torch.float64 and r.dim() == 0
    assert float(r) == pytest.approx(radius, rel=1e-5)
    xb = torch.from_numpy(x / 1e19).to(torch.bfloat16).cuda()
    assert dalcore.kcenter(xb, 10).tolist() == dalcore.kcenter(xb.float(), 10).tolist()
    # the CUDA bindings take CUDA arrays only, checked in C++
    gpu = dalcore._core.gpu
    with pytest.raises(TypeError, match="features: expected a CUDA array"):
        gpu.kcenter(x, np.empty(0, np.int64), np.empty(3, np.int64), None, 0)
    with pytest.raises(TypeError, match="features: expected a CUDA array"):
        gpu.kcenter(x.ctypes.data, np.empty(0, np.int64), np.empty(3, np.int64), None, 0)
