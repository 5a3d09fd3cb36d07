"""Greedy k-center (core-set) selection: validation and CPU/CUDA dispatch."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import _arrays, _core

__all__ = ["kcenter"]


def kcenter(
    features: Any,
    budget: int,
    labeled: Any = None,
    *,
    return_radius: bool = False,
    _prune: bool = True,
) -> Any:
    """Exact greedy k-center: farthest-first traversal in Euclidean distance.

    Each pick maximises the distance to the nearest of the ``labeled`` points and the picks so
    far (Gonzalez; the core-set of Sener & Savarese). Ties go to the lowest index. With nothing
    labeled the first pick is the point farthest from the mean. No N x N or N x budget matrix is
    ever formed; on the CPU, groups of points the new centre cannot affect are skipped by the
    triangle inequality (same picks, less work).

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (N, d)
        Real-valued points. float64, integer and non-contiguous inputs are converted to
        C-contiguous float32; NaN or inf raise ValueError. A CUDA tensor is processed on its
        device, on torch's current stream.
    budget : int
        Number of points to pick, 1 <= budget <= N - len(labeled).
    labeled : array-like of int, optional
        Indices of the already labeled points (distinct, in [0, N)). None = nothing labeled.
    return_radius : bool, default False
        Also return the covering radius after the last pick: the largest distance of any point
        to its nearest labeled point or pick.

    Returns
    -------
    indices : numpy.ndarray or torch.Tensor, int64, shape (budget,)
        The picks in order, the same kind (and device) as ``features``.
    radius : float or torch.Tensor
        Only with ``return_radius``: a float for CPU input, a 0-d float32 tensor on the device
        for CUDA input (reading it synchronises; the selection itself does not).

    Raises
    ------
    TypeError
        Non-numeric features, non-integer ``labeled`` or ``budget``.
    ValueError
        Wrong rank, NaN/inf, ``labeled`` out of range or duplicated, no unlabeled point left,
        ``budget`` < 1 or larger than the number of unlabeled points.
    """
    if _arrays.is_cuda(features):
        if not bool(getattr(_core, "cuda_built", False)):
            raise RuntimeError(
                "kcenter: got a CUDA tensor but this dalcore build has no CUDA kernels"
            )
        return _run_gpu_path(_core, features, budget, labeled, return_radius=return_radius)
    x = _arrays.as_features(features, "features")
    lab = _labeled(labeled, x.shape[0])
    b = _budget(budget, x.shape[0], lab.size)
    idx, radius = _core.kcenter(x, b, lab, prune=bool(_prune), return_radius=bool(return_radius))
    out = _arrays.like(features, idx)
    return (out, float(radius)) if return_radius else out


def _labeled(labeled: Any, n: int) -> np.ndarray:
    """labeled -> int64 vector of distinct indices in [0, n), and at least one point left."""
    if labeled is None:
        lab = np.zeros(0, dtype=np.int64)
    else:
        lab = _arrays.as_index_vector(labeled, "labeled", n, unique=True)
    if lab.size >= n:
        raise ValueError(
            f"labeled: all {n} points are labeled, no unlabeled point is left to pick"
        )
    return lab


def _budget(budget: Any, n: int, n_labeled: int) -> int:
    b = _arrays.check_int(budget, "budget", low=1)
    if b > n - n_labeled:
        raise ValueError(
            f"budget: expected at most {n - n_labeled} (the number of unlabeled points: "
            f"{n} points, {n_labeled} labeled), got {b}"
        )
    return b


def _run_gpu_path(
    core: ModuleType,
    features: Any,
    budget: int,
    labeled: Any = None,
    *,
    return_radius: bool = False,
) -> Any:
    """Run the GPU-path algorithm through ``core.gpu.kcenter``.

    ``core`` is ``dalcore._core`` (CUDA tensor in: device pointers, torch's current stream) or
    the test-only ``dalcore._core_omp`` (numpy or CPU tensor in: host pointers), whose ``gpu``
    submodule is the same Thrust source compiled on the OpenMP backend.
    """
    if _arrays.is_cuda(features):
        torch = _arrays.torch_module()
        x = _arrays.as_torch_features(features, "features")
        n, d = int(x.shape[0]), int(x.shape[1])
        lab_host = _labeled(labeled, n)
        b = _budget(budget, n, lab_host.size)
        lab = torch.from_numpy(lab_host).to(x.device)
        out = torch.empty(b, dtype=torch.int64, device=x.device)
        radius = torch.empty((), dtype=torch.float32, device=x.device) if return_radius else None
        with torch.cuda.device(x.device):  # the kernels' scratch goes to x's device
            core.gpu.kcenter(
                x.data_ptr(), n, d, lab.data_ptr() if lab.numel() else 0, int(lab.numel()), b,
                out.data_ptr(), radius.data_ptr() if radius is not None else 0,
                _arrays.cuda_stream_handle(x),
            )
        # x and lab stay referenced until here; torch's caching allocator orders their reuse on
        # the current stream, so the asynchronous kernels never see freed memory.
        return (out, radius) if return_radius else out
    if core.gpu.backend == "cuda":
        raise TypeError("features: the CUDA GPU path needs a CUDA tensor")
    xh = _arrays.as_features(features, "features")
    n, d = xh.shape
    lab_host = _labeled(labeled, n)
    b = _budget(budget, n, lab_host.size)
    out_h = np.empty(b, dtype=np.int64)
    rad_h = np.zeros(1, dtype=np.float32)
    core.gpu.kcenter(
        xh.ctypes.data, n, d, lab_host.ctypes.data if lab_host.size else 0, lab_host.size, b,
        out_h.ctypes.data, rad_h.ctypes.data if return_radius else 0, 0,
    )
    res = _arrays.like(features, out_h)
    return (res, float(rad_h[0])) if return_radius else res
