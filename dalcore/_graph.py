"""k-NN affinity graph: k-NN lists -> symmetric normalised sparse affinity D^-1/2 W D^-1/2."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._arrays import (
    check_float,
    check_int,
    cuda_stream_handle,
    is_cuda,
    is_torch,
    kernel_array,
    torch_module,
    torch_to_numpy,
)
from ._knn import knn

__all__ = ["knn_graph"]

_MODES = ("reciprocal", "union")
_DEFAULT_K = 50


def knn_graph(
    data: Any,
    *,
    k: int | None = None,
    gamma: float = 3.0,
    mode: str = "reciprocal",
) -> Any:
    """Symmetric, normalised k-NN affinity ``S = D^-1/2 W D^-1/2`` in CSR form.

    Parameters
    ----------
    data : (similarities, indices) tuple or (N, d) features
        Either the result of :func:`dalcore.knn` (``metric="ip"``): two (N, k) arrays, float
        similarities and integer neighbour indices in ``[0, N)`` (or -1: none), best first
        (bfloat16 / float16 tensors are converted losslessly); or a feature
        matrix, whose inner-product k-NN lists are computed with ``knn(features, k)``.
    k : int, optional
        Neighbours per point. Features: default 50, ``1 <= k < N``. k-NN lists: default their
        width; a smaller k keeps the first (nearest) k columns.
    gamma : float
        Edge weight exponent: the directed weight is ``a_ij = max(0, s_ij) ** gamma``, > 0.
    mode : {"reciprocal", "union"}
        ``"reciprocal"``: i ~ j only when each lists the other (mutual k-NN), with the
        symmetric weight ``w_ij = (a_ij + a_ji) / 2`` (the mean of both directions).
        ``"union"``: ``W + W^T`` as in LP-DeepSSL and the paper's code, ``w_ij = a_ij + a_ji``
        (a direction that is not listed counts 0).

    Returns
    -------
    scipy.sparse.csr_array or (indptr, indices, data)
        CPU input: an (N, N) ``csr_array`` (float32 data, sorted column indices, canonical;
        int32 indices, int64 only when nnz >= 2**31).
        CUDA input: a CSR triple of CUDA tensors (indptr int64, indices int32, data float32),
        built by the GPU kernel on the current stream.

    Notes
    -----
    ``S`` is exactly symmetric; entries listing the point itself are ignored (no self loops),
    and so are entries with index -1 (faiss's "no neighbour", whose similarity is not read);
    edges of weight 0 (``s <= 0``, or a reciprocal mean that rounds to 0) are not stored;
    ``d_i = sum_j w_ij`` and an isolated point (``d_i = 0``) keeps an empty row. A row listing
    the same neighbour twice, or an index outside ``[0, N)`` other than -1, is a ValueError.
    ``S`` does not depend on the scale of the similarities: where ``max(s) ** gamma`` would
    overflow or underflow float32, they are first divided by a power of two (exact). The CPU
    and CUDA paths accept and refuse the same inputs and build the same graph.
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode: expected 'reciprocal' or 'union', got {mode!r}")
    gamma = check_float(gamma, "gamma", low=0.0, low_open=True)
    if isinstance(data, (tuple, list)):
        sims, idx = _as_knn_result(data, k)
    else:
        n = _rows(data)
        kk = _DEFAULT_K if k is None else k
        kk = check_int(kk, "k", low=1, high=max(1, n - 1))
        if n < 2 or kk >= n:
            raise ValueError(f"k: expected 1 <= k < N = {n} (number of points), got {kk}")
        sims, idx = knn(data, kk, metric="ip")
        if is_torch(sims) and not is_cuda(sims):
            sims, idx = torch_to_numpy(sims), torch_to_numpy(idx)
    sims = scale_similarities(sims, idx, gamma)
    if is_cuda(sims):
        return _knn_graph_gpu(sims, idx, gamma, mode)
    indptr, indices, values = _core.knn_graph(sims, idx, gamma, mode)
    return _csr(indptr, indices, values, sims.shape[0])


# max(s)^gamma is kept within [2^-_WEIGHT_EXP, 2^_WEIGHT_EXP]: float32 weights then neither
# overflow (a graph of NaN) nor underflow (an empty graph) for any finite similarities.
_WEIGHT_EXP = 60.0


def scale_similarities(sims: Any, idx: Any, gamma: float) -> Any:
    """The similarities divided by a power of two when ``max(s) ** gamma`` would leave
    ``[2**-60, 2**60]`` (float32 weights that overflow or underflow); else unchanged.

    ``S = D^-1/2 W D^-1/2`` does not depend on the scale of ``W``, and a power of two scales
    exactly, so the graph is the one of the unscaled similarities computed without overflow.
    Entries with index -1 (no neighbour) are left out of the maximum. Tensors: computed on their
    device without a host synchronisation (the factor stays a device tensor).
    """
    if is_torch(sims):
        torch = torch_module()
        top = torch.where(idx >= 0, sims, torch.zeros_like(sims)).amax().to(torch.float64)
        top = torch.where(torch.isfinite(top) & (top > 0), top, torch.ones_like(top))
        mant, exp = torch.frexp(top)
        del mant
        big = (gamma * torch.log2(top)).abs() > _WEIGHT_EXP
        factor = torch.where(big, torch.ldexp(torch.ones_like(top), -exp), torch.ones_like(top))
        return sims * factor.to(torch.float32)
    top = float(np.max(sims))  # one pass; the -1 entries are masked only when it matters
    if np.isfinite(top) and (top <= 0.0 or abs(gamma * np.log2(top)) <= _WEIGHT_EXP):
        return sims
    top = float(np.max(np.where(idx >= 0, sims, 0.0)))
    if not np.isfinite(top) or top <= 0.0 or abs(gamma * np.log2(top)) <= _WEIGHT_EXP:
        return sims  # NaN/inf are reported by the kernel
    return np.ldexp(sims, -np.frexp(top)[1]).astype(np.float32)


def _rows(data: Any) -> int:
    shape = getattr(data, "shape", None)
    if shape is None:
        data = np.asarray(data)
        shape = data.shape
    if len(shape) != 2:
        raise ValueError(
            f"data: expected a (similarities, indices) tuple or an (N, d) feature matrix, "
            f"got shape {tuple(shape)}"
        )
    return int(shape[0])


def _as_knn_result(data: Any, k: int | None) -> tuple[Any, Any]:
    """Validate a (similarities, indices) pair; CUDA tensors stay on the device."""
    if len(data) != 2:
        raise ValueError(
            f"knn_result: expected a (similarities, indices) pair, got {len(data)} item(s)"
        )
    sims, idx = data
    if is_torch(sims) != is_torch(idx) or is_cuda(sims) != is_cuda(idx):
        raise TypeError("knn_result: similarities and indices must be the same kind of array")
    if is_torch(sims):
        torch = torch_module()
        if sims.device != idx.device:
            raise TypeError("knn_result: similarities and indices are on different devices")
        if not (sims.dtype.is_floating_point or sims.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"knn_result: expected float similarities, got {sims.dtype}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"knn_result: expected integer indices, got {idx.dtype}")
        if not is_cuda(sims):
            sims, idx = torch_to_numpy(sims), torch_to_numpy(idx)
    else:
        sims, idx = np.asarray(sims), np.asarray(idx)
        if sims.dtype.kind not in "fiu":
            raise TypeError(f"knn_result: expected float similarities, got {sims.dtype}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"knn_result: expected integer indices, got {idx.dtype}")
    if sims.ndim != 2 or tuple(sims.shape) != tuple(idx.shape):
        raise ValueError(
            "knn_result: expected similarities and indices of the same shape (N, k), got "
            f"{tuple(sims.shape)} and {tuple(idx.shape)}"
        )
    n, width = int(sims.shape[0]), int(sims.shape[1])
    if n < 2 or width < 1:
        raise ValueError(f"knn_result: expected N >= 2 rows and k >= 1 columns, got {(n, width)}")
    if width >= n:
        raise ValueError(f"knn_result: expected k < N, got k = {width} for N = {n}")
    if k is not None:
        k = check_int(k, "k", low=1)
        if k > width:
            raise ValueError(f"k: expected at most {width} (the width of knn_result), got {k}")
        sims, idx = sims[:, :k], idx[:, :k]
    if is_cuda(sims):
        torch = torch_module()
        return sims.to(torch.float32).contiguous(), idx.to(torch.int64).contiguous()
    # Range, NaN/inf and repeated neighbours are checked by the kernel (one pass, GIL released).
    return (
        np.ascontiguousarray(sims, dtype=np.float32),
        np.ascontiguousarray(idx, dtype=np.int64),
    )


def _csr(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n: int) -> Any:
    import scipy.sparse as sp

    if int(indptr[-1]) <= np.iinfo(np.int32).max:
        # int32 indptr too (N + 1 values): scipy then keeps the kernel's arrays without copies.
        indptr = indptr.astype(np.int32)
    g = sp.csr_array((values, indices, indptr), shape=(n, n))
    g.has_sorted_indices = True
    g.has_canonical_format = True
    return g


def _knn_graph_gpu(sims: Any, idx: Any, gamma: float, mode: str, core: Any = None) -> Any:
    """GPU path: count (indptr, nnz) then fill, on the current CUDA stream.

    ``core`` is the ``gpu`` submodule to run (default ``_core.gpu``); tests pass the OpenMP twin
    ``_core_omp.gpu`` with CPU tensors (handed over as numpy views of host memory). The arrays
    cross into C++, which checks them (dtype, shape, contiguity, device, stream).
    """
    torch = torch_module()
    if core is None:
        core = getattr(_core, "gpu", None)
        if core is None:
            raise RuntimeError("dalcore was built without CUDA: knn_graph needs CPU arrays here")
    n, k = int(sims.shape[0]), int(sims.shape[1])
    dev = sims.device
    stream = cuda_stream_handle(sims) if is_cuda(sims) else 0
    ws = torch.empty(core.knn_graph_workspace_bytes(n, k, mode), dtype=torch.uint8, device=dev)
    indptr = torch.empty(n + 1, dtype=torch.int64, device=dev)
    nnz = core.knn_graph_count(kernel_array(sims), kernel_array(idx), gamma, mode,
                               kernel_array(ws), kernel_array(indptr), stream)
    indices = torch.empty(nnz, dtype=torch.int32, device=dev)
    data = torch.empty(nnz, dtype=torch.float32, device=dev)
    core.knn_graph_fill(k, mode, kernel_array(ws), kernel_array(indptr), kernel_array(indices),
                        kernel_array(data), stream)
    return indptr, indices, data
