"""The GPU path of kcenter: the Thrust source on the OpenMP backend (``omp_core``), against the
same float64 reference as the CPU kernel and against the CPU kernel; on a CUDA device, CUDA
tensors in and out (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
from test_kcenter import DATASETS, REL, check_greedy, clustered, gaussian

import dalcore
from dalcore._kcenter import _run_gpu_path


def agree_within_rounding(x, a, b, labeled=None, margin=2e-5):
    """Two greedy sequences agree up to the first pick whose reference maximum is not unique by
    a relative ``margin`` (where float32 rounding may legitimately choose differently). Exact
    duplicates of the farthest point tie exactly in both (same row, same arithmetic): the lowest
    index must win there. Returns the number of picks compared."""
    x = np.asarray(x, dtype=np.float64)
    lab = [] if labeled is None else list(labeled)
    if lab:
        md = np.min([((x - x[i]) ** 2).sum(1) for i in lab], axis=0)
    else:
        md = ((x - x.mean(0)) ** 2).sum(1)
    md[lab] = -np.inf
    for t in range(len(a)):
        score = np.sqrt(np.maximum(md, 0))
        far = int(np.argmax(score))
        other = score[(x != x[far]).any(axis=1) & (md >= 0)]
        if other.size and score[far] - other.max() <= margin * score[far]:
            return t  # near-tie: the sequences may diverge from here
        assert a[t] == b[t], f"pick {t}: {a[t]} vs {b[t]}"
        d_new = ((x - x[a[t]]) ** 2).sum(1)
        md = d_new if t == 0 and not lab else np.minimum(md, d_new)
        md[lab + list(a[: t + 1])] = -np.inf
    return len(a)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("with_labels", [False, True])
def test_gpu_path_against_reference_and_cpu(omp_core, name, with_labels, rng):
    x = DATASETS[name](rng)
    n = x.shape[0]
    labeled = rng.choice(n, 25, replace=False) if with_labels else None
    budget = 150 if name == "duplicates" else 40
    picks = _run_gpu_path(omp_core, x, budget, labeled)
    assert isinstance(picks, np.ndarray) and picks.dtype == np.int64 and picks.shape == (budget,)
    check_greedy(x, picks, labeled)
    cpu = dalcore.kcenter(x, budget, labeled)
    agree_within_rounding(x, picks, cpu, labeled)


def test_gpu_path_unaligned_rows(omp_core, rng):
    # d % 4 != 0 takes the scalar row loop; a misaligned base address too.
    x = gaussian(rng, n=900, d=13)
    check_greedy(x, _run_gpu_path(omp_core, x, 30))
    buf = np.empty(900 * 16 + 1, dtype=np.float32)
    xm = buf[1:].reshape(900, 16)
    xm[:] = gaussian(rng, n=900, d=16)
    assert xm.ctypes.data % 16 != 0
    check_greedy(xm, _run_gpu_path(omp_core, xm, 30, [5, 6]), [5, 6])


def test_gpu_path_radius_and_ties(omp_core, rng):
    x = clustered(rng, n=1200, d=8)
    lab = rng.choice(1200, 7, replace=False)
    picks, radius = _run_gpu_path(omp_core, x, 25, lab, return_radius=True)
    md = check_greedy(x, picks, lab)
    assert radius == pytest.approx(np.sqrt(md.max()), rel=REL)
    ones = np.ones((40, 3), dtype=np.float32)
    np.testing.assert_array_equal(_run_gpu_path(omp_core, ones, 5, [0, 2]), [1, 3, 4, 5, 6])
    picks, radius = _run_gpu_path(omp_core, ones, 38, [0, 2], return_radius=True)
    assert radius == 0.0 and sorted(picks.tolist()) == [i for i in range(40) if i not in (0, 2)]


def test_gpu_path_validates(omp_core, rng):
    x = gaussian(rng, n=30, d=4)
    with pytest.raises(ValueError, match="budget"):
        _run_gpu_path(omp_core, x, 31)
    with pytest.raises(ValueError, match="labeled"):
        _run_gpu_path(omp_core, x, 2, [30])
    with pytest.raises(ValueError, match="features"):
        _run_gpu_path(omp_core, np.full((5, 2), np.nan), 2)
    # The binding checks sizes itself.
    none = np.empty(0, dtype=np.int64)
    with pytest.raises(ValueError, match="budget"):
        omp_core.gpu.kcenter(x, none, np.empty(31, dtype=np.int64), None, 0)
    with pytest.raises(ValueError, match="labeled"):
        omp_core.gpu.kcenter(x, np.arange(30, dtype=np.int64), np.empty(1, np.int64), None, 0)


@pytest.mark.gpu
def test_cuda_tensor_in_cuda_tensor_out(rng):
    torch = pytest.importorskip("torch")
    x = clustered(rng, n=5000, d=64)
    lab = rng.choice(5000, 20, replace=False)
    xt = torch.from_numpy(x).cuda()
    picks = dalcore.kcenter(xt, 50, torch.from_numpy(lab).cuda())
    assert picks.is_cuda and picks.dtype == torch.int64 and picks.device == xt.device
    p = picks.cpu().numpy()
    check_greedy(x, p, lab)
    agree_within_rounding(x, p, dalcore.kcenter(x, 50, lab), lab)
    picks, radius = dalcore.kcenter(xt, 50, lab, return_radius=True)
    assert radius.is_cuda
    md = check_greedy(x, picks.cpu().numpy(), lab)
    assert float(radius) == pytest.approx(np.sqrt(md.max()), rel=REL)


@pytest.mark.gpu
def test_cuda_no_labels_and_side_stream(rng):
    torch = pytest.importorskip("torch")
    x = gaussian(rng, n=4000, d=30)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xt = torch.from_numpy(x).cuda()
        picks = dalcore.kcenter(xt, 40)
    s.synchronize()
    p = picks.cpu().numpy()
    check_greedy(x, p)
    agree_within_rounding(x, p, dalcore.kcenter(x, 40))
