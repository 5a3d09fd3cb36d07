"""Label propagation by block conjugate gradient, and pseudo-labels from its scores.

:func:`propagate` solves ``(I - alpha S) Z = Y`` for every class at once (Zhou et al. 2004, as
used by Iscen et al. CVPR 2019 and Siméoni et al. ICPR 2020); :func:`pseudo_labels` turns ``Z``
into labels, certainty weights and class weights as the LP-DeepSSL code does.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._arrays import (
    as_features,
    as_torch_features,
    check_float,
    check_int,
    cuda_stream_handle,
    is_cuda,
    is_torch,
    to_numpy,
    torch_module,
)

__all__ = ["PropagateInfo", "propagate", "pseudo_labels"]

# The symmetry test (randomised, one definition) runs in C++ for both paths:
# csrc/include/dalcore/detail/propagate_ops.h.
_PRECISIONS = ("float32", "float64")


class PropagateInfo(NamedTuple):
    """Convergence report of :func:`propagate` (numpy arrays, whatever the input kind).

    Attributes
    ----------
    iterations : np.ndarray
        (C,) int64: conjugate-gradient iterations each column ran before it met ``tol``
        (or ``max_iter``).
    residuals : np.ndarray
        (C,) float64: final relative residual ``||r_c|| / ||b_c||`` of each column (the
        recursively updated residual of CG).
    """

    iterations: np.ndarray
    residuals: np.ndarray


# ---------------------------------------------------------------------------- validation
def _check_params(num_classes: Any, alpha: Any, tol: Any, max_iter: Any,
                  precision: Any) -> tuple[int, float, float, int, bool]:
    c = check_int(num_classes, "num_classes", low=1)
    a = check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    t = check_float(tol, "tol", low=0.0)
    m = check_int(max_iter, "max_iter", low=0)
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: expected one of {_PRECISIONS}, got {precision!r}")
    return c, a, t, m, precision == "float64"


def _is_triple(graph: Any) -> bool:
    return isinstance(graph, (tuple, list)) and len(graph) == 3


def check_csr_parts(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                    name: str) -> None:
    """The dtype and shape checks of a CSR triple's parts (shared with dalcore.distributed)."""
    for part, what in ((indptr, "indptr"), (indices, "indices")):
        if part.dtype.kind not in "iu":
            raise TypeError(f"{name}: {what} must have an integer dtype, got {part.dtype}")
        if part.ndim != 1:
            raise ValueError(f"{name}: {what} must be 1-D, got shape {part.shape}")
    if data.dtype.kind not in "iuf":
        raise TypeError(f"{name}: data must be real numbers, got dtype {data.dtype}")
    if data.ndim != 1 or data.shape[0] != indices.shape[0]:
        raise ValueError(f"{name}: data and indices must be 1-D of the same length, got "
                         f"{data.shape} and {indices.shape}")


def _host_csr(graph: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(indptr int64, indices int32, data float32, n) of a scipy matrix or a host CSR triple."""
    import scipy.sparse as sp

    if sp.issparse(graph):
        if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
            raise ValueError(f"graph: expected a square matrix, got shape {graph.shape}")
        g = graph.tocsr()
        indptr, indices, data = g.indptr, g.indices, g.data
        name = "graph"
    elif _is_triple(graph):
        indptr, indices, data = (to_numpy(a, f"graph[{i}]") for i, a in enumerate(graph))
        name = "graph (indptr, indices, data)"
    else:
        raise TypeError(
            "graph: expected a scipy.sparse matrix/array or a CSR triple (indptr, indices, data),"
            f" got {type(graph).__name__}"
        )
    check_csr_parts(indptr, indices, data, name)
    n = indptr.shape[0] - 1
    if n < 1:
        raise ValueError(f"{name}: expected at least one row (indptr of length >= 2)")
    if n >= 2**31 - 1:
        raise ValueError(f"{name}: at most 2**31 - 2 rows are supported, got {n}")
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    nnz = indices.shape[0]
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise ValueError(f"{name}: indptr must start at 0 and end at nnz={nnz}, got "
                         f"{int(indptr[0])} ... {int(indptr[-1])}")
    if n > 0 and np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr must be non-decreasing")
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"{name}: column indices must be in [0, {n}), got [{lo}, {hi}]")
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(f"{name}: data contains {bad} NaN or inf value(s)")
    return indptr, indices, data, n


def _host_labels(labels: Any, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, class counts int64) validated against n rows and num_classes."""
    a = to_numpy(labels, "labels")
    if a.dtype.kind not in "iu":
        raise TypeError(f"labels: expected integer class labels (-1 = unlabeled), got dtype "
                        f"{a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"labels: expected a 1-D vector, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"labels: expected one label per graph node ({n}), got {a.shape[0]}")
    _check_class_count(num_classes, n)
    a = np.ascontiguousarray(a, dtype=np.int64)
    lo, hi = int(a.min()), int(a.max())
    if lo < -1:
        raise ValueError(f"labels: expected -1 (unlabeled) or a class >= 0, got {lo}")
    if hi >= num_classes:
        raise ValueError(f"labels: expected classes < num_classes={num_classes}, got {hi}")
    count = np.bincount(a[a >= 0], minlength=num_classes).astype(np.int64)
    _check_counts(count)
    return a, count


def _check_class_count(num_classes: int, n: int) -> None:
    """Every class needs a labeled node, so num_classes <= n (also keeps huge values, such as
    2**63, from reaching an allocation or an int64 conversion)."""
    if num_classes > n:
        raise ValueError(f"num_classes: expected at most {n} (one labeled node per class among "
                         f"the {n} graph nodes), got {num_classes}")


def _check_counts(count: np.ndarray) -> None:
    empty = np.flatnonzero(count == 0)
    if empty.size:
        raise ValueError(f"labels: class {int(empty[0])} has no labeled example "
                         f"({empty.size} class(es) without one: {empty[:10].tolist()})")


def _host_x0(x0: Any, n: int, num_classes: int) -> np.ndarray | None:
    if x0 is None:
        return None
    a = as_features(x0, "x0")
    if a.shape != (n, num_classes):
        raise ValueError(f"x0: expected shape ({n}, {num_classes}), got {a.shape}")
    return a


# ---------------------------------------------------------------------------- propagate
def propagate(graph: Any, labels: Any, *, num_classes: int, alpha: float = 0.99,
              tol: float = 1e-6, max_iter: int = 20, x0: Any = None,
              return_info: bool = False, precision: str = "float32") -> Any:
    """Label propagation: solve ``(I - alpha S) Z = Y`` for all classes by block CG.

    ``Y[i, c] = 1 / |L_c|`` for each labeled node ``i`` of class ``c`` (``L_c`` = the nodes
    labeled ``c``), else 0. Every class is a column of one block conjugate gradient: a single
    CSR sparse-times-dense product per iteration reads the graph once for all ``C`` columns,
    while each column keeps its own CG scalars and stops updating once its relative residual
    ``||r_c|| / ||b_c||`` is at most ``tol``. Dot products accumulate in float64.

    Parameters
    ----------
    graph : scipy.sparse matrix/array, or (indptr, indices, data)
        The symmetric, normalised affinity ``S`` (e.g. ``D^-1/2 W D^-1/2`` from
        :func:`dalcore.knn_graph`), N x N. Any scipy sparse format (converted to CSR; column
        order within a row is free; duplicates are summed), or a CSR triple of numpy arrays /
        CPU tensors (CPU kernel) or of CUDA tensors (GPU kernel, on torch's current stream).
        Data must be finite; symmetry is checked by a randomised test.
    labels : array of int, shape (N,)
        Class of each node in ``[0, num_classes)``, or -1 for unlabeled. Every class needs at
        least one labeled node.
    num_classes : int
        Number of classes ``C`` (>= 1).
    alpha : float
        Propagation weight, ``0 < alpha < 1``.
    tol : float
        Per-column relative-residual target (>= 0). ``tol=0`` runs exactly ``max_iter``
        iterations (the paper's fixed 20 CG iterations), unless a residual reaches exactly 0.
    max_iter : int
        Maximum CG iterations (>= 0); LP-DeepSSL uses 20. 0 returns the start vector (``x0``,
        or zeros).
    x0 : array (N, C), optional
        Warm start (e.g. the previous solution); default zeros.
    return_info : bool
        Also return a :class:`PropagateInfo` (iterations and final residual per column).
    precision : {"float32", "float64"}
        dtype of the CG vectors. float32 (default) halves the memory traffic and reaches about
        ``kappa * 6e-8`` relative accuracy with ``kappa ~ 2 / (1 - alpha)`` (about 1e-6 at
        alpha=0.99); use float64 for alpha very close to 1 with a tight ``tol``.

    Returns
    -------
    Z : (N, C) float32, numpy / torch (CPU) / CUDA tensor like the input
    info : PropagateInfo, only with ``return_info=True``

    Raises
    ------
    TypeError
        graph of an unsupported kind, non-integer labels or indices, complex data.
    ValueError
        alpha outside (0, 1), tol < 0, max_iter < 0, num_classes > N, labels of the wrong
        length or out of
        range, a class with no labeled node, non-square / malformed / non-finite /
        asymmetric graph, x0 of the wrong shape, or a graph for which ``I - alpha S`` is
        not positive definite (detected by CG breakdown).
    """
    C, alpha, tol, max_iter, double = _check_params(num_classes, alpha, tol, max_iter,
                                                    precision)
    if _is_triple(graph) and any(is_cuda(a) for a in graph):
        return _propagate_cuda(graph, labels, C, alpha, tol, max_iter, x0, return_info, double)
    if is_cuda(labels) or is_cuda(x0):
        raise TypeError("labels/x0: CUDA tensors need the graph as a CSR triple of CUDA tensors")
    z, info = _propagate_host(graph, labels, C, alpha, tol, max_iter, x0, double)
    as_torch = is_torch(labels) or (_is_triple(graph) and any(is_torch(a) for a in graph))
    if as_torch:
        z = torch_module().from_numpy(z)
    if return_info:
        return z, info
    return z


def _propagate_host(graph: Any, labels: Any, C: int, alpha: float, tol: float, max_iter: int,
                    x0: Any, double: bool, reorder: int = -1) -> tuple[np.ndarray, PropagateInfo]:
    """CPU kernel on validated host buffers. ``reorder``: -1 auto (breadth-first renumbering
    for cache locality when an N x C vector exceeds 1 MiB), 0 never, 1 always."""
    indptr, indices, data, n = _host_csr(graph)
    lab, _ = _host_labels(labels, n, C)
    x0a = _host_x0(x0, n, C)  # symmetry: checked by the kernel, in one pass over the graph
    z, iters, relres = _core.propagate(indptr, indices, data, lab, C, x0a, alpha, tol,
                                       max_iter, double, reorder)
    return z, PropagateInfo(iters, relres)


def _propagate_cuda(graph: Any, labels: Any, C: int, alpha: float, tol: float, max_iter: int,
                    x0: Any, return_info: bool, double: bool) -> Any:
    """GPU path: CSR triple of CUDA tensors; validated with torch on the device."""
    torch = torch_module()
    if not bool(getattr(_core, "cuda_built", False)) or not hasattr(_core, "gpu"):
        raise RuntimeError("dalcore was built without CUDA: pass the graph on the CPU")
    if not all(is_cuda(a) for a in graph):
        raise TypeError("graph: the CSR triple (indptr, indices, data) must be all CUDA tensors "
                        "or all host arrays")
    indptr, indices, data = graph
    device = data.device
    if indptr.device != device or indices.device != device:
        raise ValueError("graph: indptr, indices and data must be on the same device")
    for part, what in ((indptr, "indptr"), (indices, "indices")):
        if part.dtype.is_floating_point or part.dtype.is_complex or part.dtype == torch.bool:
            raise TypeError(f"graph: {what} must have an integer dtype, got {part.dtype}")
        if part.dim() != 1:
            raise ValueError(f"graph: {what} must be 1-D, got shape {tuple(part.shape)}")
    if data.dtype.is_complex:
        raise TypeError(f"graph: data must be real numbers, got {data.dtype}")
    if data.dim() != 1 or data.shape[0] != indices.shape[0]:
        raise ValueError("graph: data and indices must be 1-D of the same length")
    n = indptr.shape[0] - 1
    if n < 1:
        raise ValueError("graph: expected at least one row (indptr of length >= 2)")
    nnz = indices.shape[0]
    indptr = indptr.to(torch.int64).contiguous()
    indices = indices.to(torch.int32).contiguous()
    data = data.to(torch.float32).contiguous()
    if int(indptr[0]) != 0 or int(indptr[-1]) != nnz:
        raise ValueError(f"graph: indptr must start at 0 and end at nnz={nnz}")
    if bool((indptr[1:] < indptr[:-1]).any()):
        raise ValueError("graph: indptr must be non-decreasing")
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"graph: column indices must be in [0, {n}), got [{lo}, {hi}]")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("graph: data contains NaN or inf value(s)")
        # symmetry: tested by the kernel (the same test as the CPU path's)
    lab = labels if is_torch(labels) else torch.as_tensor(np.asarray(labels))
    if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
        raise TypeError(f"labels: expected integer class labels (-1 = unlabeled), got "
                        f"{lab.dtype}")
    if lab.dim() != 1 or lab.shape[0] != n:
        raise ValueError(f"labels: expected one label per graph node ({n}), got shape "
                         f"{tuple(lab.shape)}")
    _check_class_count(C, n)
    lab = lab.to(device=device, dtype=torch.int64).contiguous()
    lo, hi = int(lab.min()), int(lab.max())
    if lo < -1:
        raise ValueError(f"labels: expected -1 (unlabeled) or a class >= 0, got {lo}")
    if hi >= C:
        raise ValueError(f"labels: expected classes < num_classes={C}, got {hi}")
    count = torch.bincount(lab[lab >= 0], minlength=C)
    _check_counts(count.cpu().numpy())
    x0t = None
    if x0 is not None:
        if not is_torch(x0):
            x0 = torch.as_tensor(np.asarray(x0))
        x0t = as_torch_features(x0.to(device), "x0")
        if tuple(x0t.shape) != (n, C):
            raise ValueError(f"x0: expected shape ({n}, {C}), got {tuple(x0t.shape)}")
    z = torch.empty((n, C), dtype=torch.float32, device=device)
    iters = torch.empty(C, dtype=torch.int64, device=device)
    relres = torch.empty(C, dtype=torch.float64, device=device)
    # the arrays cross into C++, which checks them and makes their device current
    broken = _core.gpu.propagate(indptr, indices, data, lab, count, x0t, alpha, tol, max_iter,
                                 double, z, iters, relres, cuda_stream_handle(z))
    _check_breakdown(broken)
    if return_info:
        return z, PropagateInfo(iters.cpu().numpy(), relres.cpu().numpy())
    return z


def _check_breakdown(broken: int) -> None:
    if broken:
        raise ValueError(f"graph: conjugate gradient broke down (p.Ap <= 0) in {broken} "
                         "column(s): I - alpha*S is not positive definite; pass a symmetric, "
                         "normalised affinity (D^-1/2 W D^-1/2)")


def _propagate_host_gpu_path(gpu: Any, graph: Any, labels: Any, *, num_classes: int,
                             alpha: float = 0.99, tol: float = 1e-6, max_iter: int = 20,
                             x0: Any = None, precision: str = "float32"
                             ) -> tuple[np.ndarray, PropagateInfo]:
    """Run the GPU-path kernel of module ``gpu`` on host buffers (tests: ``_core_omp.gpu``).

    Same validation as :func:`propagate`; the kernel receives host pointers, which is what the
    Thrust/OpenMP twin of the CUDA code expects.
    """
    C, alpha, tol, max_iter, double = _check_params(num_classes, alpha, tol, max_iter,
                                                    precision)
    indptr, indices, data, n = _host_csr(graph)
    lab, count = _host_labels(labels, n, C)
    x0a = _host_x0(x0, n, C)
    z = np.empty((n, C), dtype=np.float32)
    iters = np.empty(C, dtype=np.int64)
    relres = np.empty(C, dtype=np.float64)
    broken = gpu.propagate(indptr, indices, data, lab, count, x0a, alpha, tol, max_iter, double,
                           z, iters, relres, 0)
    _check_breakdown(broken)
    return z, PropagateInfo(iters, relres)


# ---------------------------------------------------------------------------- pseudo-labels
def pseudo_labels(Z: Any) -> tuple[Any, Any, Any]:
    """Pseudo-labels, certainty weights and class weights from propagated scores.

    As in Iscen et al. (CVPR 2019) and their LP-DeepSSL code: negative scores are clipped to
    0 and each row is L2-normalised, then L1-normalised into probabilities ``p``;
    ``weight = 1 - H(p) / log(C)`` (entropy in nats), and the weights are divided by their
    maximum, as LP-DeepSSL does (so the most certain node gets weight 1); ``label =
    argmax(p)`` (ties to the lowest class). Rows with no positive score (isolated or
    unreachable nodes) get weight 0 (and label 0). ``class_weights[c] = (N / C) / count_c``
    with ``count_c`` the number of pseudo-labels of class ``c`` (inverse class frequency); a
    class that no node is pseudo-labeled with gets class weight 0 (LP-DeepSSL would divide by
    zero), as it has no example to weigh. LP-DeepSSL then overwrites labeled nodes with their
    true label and weight 1: that is the caller's job (this function sees no labels).

    Parameters
    ----------
    Z : (N, C) array, C >= 2
        Scores, e.g. from :func:`propagate`. numpy / CPU tensor / CUDA tensor (computed with
        torch on its device).

    Returns
    -------
    labels : (N,) int64
    weights : (N,) float32 in [0, 1]
    class_weights : (C,) float32
    """
    if is_torch(Z):
        return _pseudo_labels_torch(Z)
    z = to_numpy(Z, "Z")
    if z.dtype.kind not in "iuf":
        raise TypeError(f"Z: expected real scores, got dtype {z.dtype}")
    _check_scores_shape(z.shape)
    z = np.asarray(z, dtype=np.float64)
    if not np.isfinite(z).all():
        raise ValueError("Z: contains NaN or inf value(s)")
    n, c = z.shape
    z = np.maximum(z, 0.0)
    # divided by the row maximum first: z * z neither overflows (1e200) nor underflows
    # (subnormals); the L2-normalised row is the same
    top = z.max(axis=1, keepdims=True)
    z = np.divide(z, top, out=np.zeros_like(z), where=top > 0)
    norm = np.sqrt((z * z).sum(axis=1, keepdims=True))
    z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)
    s = z.sum(axis=1, keepdims=True)
    p = np.divide(z, s, out=np.zeros_like(z), where=s > 0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    w = 1.0 - (-plogp.sum(axis=1)) / np.log(c)
    w[s[:, 0] <= 0] = 0.0
    w = np.clip(w, 0.0, 1.0)
    wmax = w.max()
    if wmax > 0:
        w = w / wmax
    lab = np.argmax(p, axis=1).astype(np.int64)
    count = np.bincount(lab, minlength=c).astype(np.float64)
    cw = np.divide(n / c, count, out=np.zeros_like(count), where=count > 0)
    return lab, w.astype(np.float32), cw.astype(np.float32)


def _check_scores_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"Z: expected a 2-D array (N, C), got shape {tuple(shape)}")
    if shape[0] < 1:
        raise ValueError("Z: expected at least one row")
    if shape[1] < 2:
        raise ValueError(f"Z: expected at least 2 classes (columns), got {shape[1]}")


def _pseudo_labels_torch(Z: Any) -> tuple[Any, Any, Any]:
    torch = torch_module()
    if Z.dtype.is_complex or Z.dtype == torch.bool:
        raise TypeError(f"Z: expected real scores, got dtype {Z.dtype}")
    _check_scores_shape(tuple(Z.shape))
    z = Z.detach().to(torch.float64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError("Z: contains NaN or inf value(s)")
    n, c = z.shape
    z = z.clamp_min(0.0)
    top = z.amax(dim=1, keepdim=True)  # as the numpy path: no overflow or underflow in z * z
    z = torch.where(top > 0, z / top.clamp_min(torch.finfo(torch.float64).tiny),
                    torch.zeros_like(z))
    norm = z.norm(dim=1, keepdim=True)
    z = torch.where(norm > 0, z / norm.clamp_min(torch.finfo(torch.float64).tiny),
                    torch.zeros_like(z))
    s = z.sum(dim=1, keepdim=True)
    p = torch.where(s > 0, z / s.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(z))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))),
                        torch.zeros_like(p))
    w = 1.0 - (-plogp.sum(dim=1)) / float(np.log(c))
    w = torch.where(s[:, 0] > 0, w, torch.zeros_like(w)).clamp(0.0, 1.0)
    wmax = w.max()
    w = torch.where(wmax > 0, w / wmax.clamp_min(torch.finfo(torch.float64).tiny), w)
    lab = torch.argmax(p, dim=1)
    count = torch.bincount(lab, minlength=c).to(torch.float64)
    cw = torch.where(count > 0, (n / c) / count.clamp_min(1.0), torch.zeros_like(count))
    return lab.to(torch.int64), w.to(torch.float32), cw.to(torch.float32)
