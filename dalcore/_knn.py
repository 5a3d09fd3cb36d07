"""Exact k nearest neighbours (self excluded): faiss when installed, else a blocked fallback."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_features, as_torch_features, check_int, is_cuda, is_torch, torch_module

__all__ = ["knn"]

_METRICS = ("ip", "l2")

# Private switch: tests set it to True to exercise the blocked matmul + top-k fallback even
# where faiss is installed.
_FORCE_FALLBACK = False

# Elements of one block of the (rows x N) similarity matrix in the fallback (64 MiB of float32).
_BLOCK_ELEMENTS = 1 << 24

_gpu_resources: Any = None


def _faiss() -> Any:
    """The faiss module, or None when it is absent or the fallback is forced."""
    if _FORCE_FALLBACK:
        return None
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn(features: Any, k: int, *, metric: str = "ip") -> tuple[Any, Any]:
    """Exact k nearest neighbours of every row of ``features`` among the others.

    Parameters
    ----------
    features : (N, d) array or tensor
        numpy array or torch tensor (CPU or CUDA); converted to float32, must be finite.
    k : int
        Neighbours per point, ``1 <= k < N``.
    metric : {"ip", "l2"}
        ``"ip"``: inner product, neighbours by decreasing similarity. ``"l2"``: Euclidean,
        neighbours by increasing distance; the values returned are **squared** L2 distances.

    Returns
    -------
    values : (N, k) float32
        Similarities (``"ip"``) or squared distances (``"l2"``), best first.
    indices : (N, k) int64
        Neighbour indices. The point itself is never listed (a duplicate of it may be);
        ties go to the lowest index.

    Same kind as the input: numpy in -> numpy out, torch in -> torch out on the same device.
    Features whose float32 inner products would overflow (``d * max|x|^2`` beyond ~8e37) or
    underflow (``max|x|^2`` below float32's smallest normal) are refused with a ValueError: the
    k-NN lists would silently be the lowest indices.
    Uses faiss (``IndexFlatIP`` / ``IndexFlatL2``; a GPU index for CUDA input when faiss has GPU
    support) when installed, else a blocked matrix product + top-k (torch on the tensor's
    device, numpy for arrays).
    """
    if not isinstance(metric, str) or metric not in _METRICS:
        raise ValueError(f"metric: expected 'ip' or 'l2', got {metric!r}")
    if is_torch(features):
        x = as_torch_features(features, "features", min_rows=2)
    else:
        x = as_features(features, "features", min_rows=2)
    n = int(x.shape[0])
    k = check_int(k, "k", low=1, high=n - 1)
    _check_scale(float(x.abs().amax()) if is_torch(x) else max(float(x.max()), -float(x.min())),
                 int(x.shape[1]))
    faiss = _faiss()
    if is_cuda(x):
        if faiss is not None and hasattr(faiss, "StandardGpuResources") and k + 1 <= 2048:
            return _knn_faiss_gpu(faiss, x, k, metric)
        return _knn_torch(x, k, metric)
    if is_torch(x):
        torch = torch_module()
        if faiss is None:
            return _knn_torch(x, k, metric)
        v, i = _knn_faiss_cpu(faiss, x.numpy(), k, metric)
        return torch.from_numpy(v), torch.from_numpy(i)
    if faiss is None:
        return _knn_numpy(x, k, metric)
    return _knn_faiss_cpu(faiss, x, k, metric)


_F32 = np.finfo(np.float32)


def _check_scale(amax: float, d: int) -> None:
    """Refuse features whose float32 inner products overflow or underflow.

    faiss and the fallback compute float32 dot products: with entries up to ``amax``, a product
    can reach ``d * amax**2``, which overflows past float32's maximum (every score inf or NaN,
    and the lowest indices returned silently); below float32's smallest normal number the
    products are subnormal or 0 and the ranking is lost. Both are refused, naming the scale.
    """
    if amax == 0.0:
        return
    top = d * amax * amax
    if top > float(_F32.max) / 4:  # l2 adds two norms and a doubled product
        raise ValueError(
            f"features: values up to {amax:.3g} make float32 inner products overflow "
            f"(d * max^2 = {top:.3g}); divide the features by a common scale first"
        )
    if amax * amax < float(_F32.tiny):
        raise ValueError(
            f"features: values at most {amax:.3g} make float32 inner products underflow "
            "(subnormal or 0); multiply the features by a common scale first"
        )


def _order_rows(values: Any, indices: Any, metric: str, lib: Any) -> tuple[Any, Any]:
    """Sort each row best first, ties by increasing index (two stable sorts)."""
    if lib is np:
        o = np.argsort(indices, axis=1, kind="stable")
        values = np.take_along_axis(values, o, 1)
        indices = np.take_along_axis(indices, o, 1)
        o = np.argsort(-values if metric == "ip" else values, axis=1, kind="stable")
        return np.take_along_axis(values, o, 1), np.take_along_axis(indices, o, 1)
    indices, o = lib.sort(indices, dim=1, stable=True)
    values = lib.gather(values, 1, o)
    values, o = lib.sort(values, dim=1, descending=metric == "ip", stable=True)
    return values, lib.gather(indices, 1, o)


def _drop_self(values: Any, indices: Any, lib: Any) -> tuple[Any, Any]:
    """From m results per row, remove the query itself wherever it is (the last result when it is
    absent: more points tie with it than were returned), keeping m - 1 others in order."""
    n, m = indices.shape
    if lib is np:
        is_self = indices == np.arange(n)[:, None]
        is_self[:, m - 1] |= ~is_self.any(axis=1)
    else:
        is_self = indices == lib.arange(n, device=indices.device)[:, None]
        is_self[:, m - 1] |= ~is_self.any(dim=1)
    keep = ~is_self
    return values[keep].reshape(n, m - 1), indices[keep].reshape(n, m - 1)


def _from_index_search(x: Any, values: Any, indices: Any, k: int, metric: str, lib: Any):
    """k results per row from an index searched for min(k + 2, N): drop self, order best first
    with ties by index, and redo exactly (full row, stable) the rare rows whose k-th value ties
    with the next one, where the index may have kept a higher index among equal scores."""
    values, indices = _drop_self(values, indices, lib)
    values, indices = _order_rows(values, indices, metric, lib)
    if indices.shape[1] > k:
        tied = values[:, k - 1] == values[:, k]
        found = indices
        values, indices = values[:, :k], indices[:, :k]
        if lib is np:
            rows = np.nonzero(tied)[0]
            step = _block_rows(x.shape[0])
            for lo in range(0, rows.size, step):  # blocks: (rows x N) scores stay bounded
                r = rows[lo : lo + step]
                values[r], indices[r] = _numpy_rows(x, r, k, metric, found[r])
        elif bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            values[rows], indices[rows] = _torch_rows(x, rows, k, metric)
    return values, indices


def _knn_faiss_cpu(faiss: Any, x: np.ndarray, k: int, metric: str) -> tuple[Any, Any]:
    index = faiss.IndexFlatIP(x.shape[1]) if metric == "ip" else faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    values, indices = index.search(x, min(k + 2, x.shape[0]))
    values, indices = _from_index_search(
        x, values, indices.astype(np.int64, copy=False), k, metric, np
    )
    return np.ascontiguousarray(values, np.float32), np.ascontiguousarray(indices, np.int64)


def _knn_faiss_gpu(faiss: Any, x: Any, k: int, metric: str) -> tuple[Any, Any]:
    """faiss GPU flat index on the tensor's device (torch interop of faiss.contrib)."""
    global _gpu_resources
    import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch tensors)

    torch = torch_module()
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = x.device.index if x.device.index is not None else torch.cuda.current_device()
    cls = faiss.GpuIndexFlatIP if metric == "ip" else faiss.GpuIndexFlatL2
    index = cls(_gpu_resources, x.shape[1], cfg)
    index.add(x)
    values, indices = index.search(x, min(k + 2, x.shape[0]))
    values, indices = _from_index_search(x, values, indices.to(torch.int64), k, metric, torch)
    return values.contiguous(), indices.contiguous()


def _block_rows(n: int) -> int:
    return max(1, min(n, _BLOCK_ELEMENTS // n))


def _topk_numpy(
    scores: np.ndarray, k: int, hint: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """k largest per row of ``scores`` (b, N), ties to the lowest column, best first.

    ``hint`` (b, m >= k): distinct columns per row, none of them -inf (an index's answer). The
    k-th largest of their scores bounds the row's k-th value from below, so only the entries
    at or above it (few, unless nearly all tie) are sorted, and no row-wide selection is needed.
    """
    b, n = scores.shape
    if hint is not None:
        m = hint.shape[1]
        lb = np.partition(np.take_along_axis(scores, hint, 1), m - k, axis=1)[:, m - k]
        if m > 1:  # a repeated column could lift the bound above the k-th value: no bound there
            h = np.sort(hint, axis=1)
            lb[np.any(h[:, 1:] == h[:, :-1], axis=1) | (h[:, 0] < 0)] = -np.inf
    else:
        lb = np.partition(scores, n - k, axis=1)[:, n - k]  # the k-th largest
    flat = np.flatnonzero(scores >= lb[:, None])  # >= k candidates per row, cols ascending
    rows, cols = np.divmod(flat, n)
    vals = scores.ravel()[flat]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = np.searchsorted(rows, np.arange(b))
    take = (start[:, None] + np.arange(k)[None, :]).ravel()
    return vals[take].reshape(b, k), cols[take].reshape(b, k)


def _numpy_rows(
    x: np.ndarray, rows: np.ndarray, k: int, metric: str, hint: np.ndarray | None = None
) -> tuple[Any, Any]:
    """Exact k-NN of the points ``rows`` (a block) by a matrix product + top-k; ``hint``: see
    :func:`_topk_numpy` (columns an index returned for these rows, themselves excluded)."""
    s = x[rows] @ x.T
    if metric == "l2":  # score = -(squared distance)
        sq = np.einsum("ij,ij->i", x, x)
        s = 2.0 * s - sq[rows, None] - sq[None, :]
    s[np.arange(rows.size), rows] = -np.inf
    v, i = _topk_numpy(s, k, hint)
    return (np.maximum(-v, 0.0) if metric == "l2" else v), i


def _knn_numpy(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    values = np.empty((n, k), np.float32)
    indices = np.empty((n, k), np.int64)
    step = _block_rows(n)
    for lo in range(0, n, step):  # blocks of rows, not points: O(N / step) iterations
        hi = min(n, lo + step)
        values[lo:hi], indices[lo:hi] = _numpy_rows(x, np.arange(lo, hi), k, metric)
    return values, indices


def _torch_rows(x: Any, rows: Any, k: int, metric: str) -> tuple[Any, Any]:
    """Exact k-NN of the points ``rows`` on the tensor's device: topk, then the rows whose k-th
    score ties with a score left out are redone by a stable full sort (ties to lowest index)."""
    torch = torch_module()
    s = x[rows] @ x.T
    if metric == "l2":
        sq = (x * x).sum(1)
        s = 2.0 * s - sq[rows, None] - sq[None, :]
    s[torch.arange(rows.numel(), device=x.device), rows] = -torch.inf
    v, i = torch.topk(s, k, dim=1)
    tied = (s >= v[:, -1:]).sum(1) > k
    if bool(tied.any()):
        t = tied.nonzero().squeeze(1)
        sv, si = torch.sort(s[t], dim=1, descending=True, stable=True)
        v[t], i[t] = sv[:, :k], si[:, :k]
    v, i = _order_rows(v, i, "ip", torch)
    return ((-v).clamp_min(0.0) if metric == "l2" else v), i


def _knn_torch(x: Any, k: int, metric: str) -> tuple[Any, Any]:
    """Blocked x @ x.T + topk on the tensor's device."""
    torch = torch_module()
    n = x.shape[0]
    values = torch.empty((n, k), dtype=torch.float32, device=x.device)
    indices = torch.empty((n, k), dtype=torch.int64, device=x.device)
    step = _block_rows(n)
    for lo in range(0, n, step):  # blocks of rows: O(N / step) iterations
        hi = min(n, lo + step)
        rows = torch.arange(lo, hi, device=x.device)
        values[lo:hi], indices[lo:hi] = _torch_rows(x, rows, k, metric)
    return values, indices
