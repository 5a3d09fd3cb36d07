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
    _prune: bool | str = True,
    _projection: int | None = None,
) -> Any:
    """Exact greedy k-center: farthest-first traversal in Euclidean distance.

    Each pick maximises the distance to the nearest of the ``labeled`` points and the picks so
    far (Gonzalez; the core-set of Sener & Savarese). Ties go to the lowest index. With nothing
    labeled the first pick is the point farthest from the mean. No N x N or N x budget matrix is
    ever formed; on the CPU, groups of points the new centre cannot affect are skipped by the
    triangle inequality, and single points by a lower bound from the pool's projection on its
    top principal directions (same picks and min-distances, far fewer rows read).

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
        Only with ``return_radius``: a float for CPU input, a 0-d float64 tensor on the device
        for CUDA input (reading it synchronises; the selection itself does not).

    Notes
    -----
    ``_prune`` and ``_projection`` are private (tests and benches): ``_prune=False`` computes
    every distance of every pick (the plain pass), ``"always"`` takes the pruned path even for a
    pool small enough to stay in cache; ``_projection`` is the width of the projection (None:
    automatic, 0: none). None of them changes a pick. On CUDA, ``_prune=False`` turns the
    projection off; there is no triangle-inequality pruning on the GPU path.

    Features of any finite scale give the picks of their float64 reference: where float32
    squared distances would overflow (about 1e19) or underflow (subnormal features), the
    features are first multiplied by a power of two (exact) and the radius scaled back.

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
        return _run_gpu_path(_core, features, budget, labeled, return_radius=return_radius,
                             _projection=_projection if _prune else 0)
    x = _arrays.as_features(features, "features", check_finite=False)  # _rescaled checks
    lab = _labeled(labeled, x.shape[0])
    b = _budget(budget, x.shape[0], lab.size)
    x, e = _rescaled(x)
    proj = _projection_for(x, _projection) if _prune else None
    idx, radius, _ = _core.kcenter(
        x, b, lab, prune=bool(_prune), return_radius=bool(return_radius), projection=proj,
        prune_small=_prune == "always",
    )
    out = _arrays.like(features, idx)
    return (out, float(np.ldexp(radius, e))) if return_radius else out


# Squared distances are float32 sums of d squared differences: they overflow once the features
# reach about 2^62 / sqrt(d) (x 1e19 gives inf everywhere) and lose every bit below about 2^-60
# (subnormal features give 0 everywhere). Outside that range the features are multiplied by a
# power of two that brings their largest magnitude into [1/2, 1): exact, so no pick changes.
_SAFE_EXP = 60


def _scale_exponent(amax: float, d: int) -> int:
    """e such that features * 2**-e are safe for float32 squared distances (0: unchanged)."""
    if not np.isfinite(amax) or amax == 0.0:
        return 0
    e = int(np.frexp(amax)[1])
    if e >= -_SAFE_EXP and 4.0 * d * amax * amax <= 2.0 ** (2 * _SAFE_EXP):
        return 0
    return e


def _rescaled(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(features scaled by 2**-e, e): see _SAFE_EXP. ValueError on NaN or inf (the features'
    finiteness check: one pass fewer than as_features' own)."""
    lo, hi = _arrays.check_extremes(x, "features")
    e = _scale_exponent(max(hi, -lo), x.shape[1])
    if e == 0:
        return x, 0
    return np.ldexp(x, -e).astype(np.float32), e


# The projection bound: m principal directions from a seeded subsample of rows (their quality
# only decides how much is skipped, never a pick: the kernel checks the basis is orthonormal,
# projects the pool itself and bounds every rounding). Used from _MIN_DIM columns and _MIN_WORK
# floats on.
_PCA_ROWS = 4096
_MIN_DIM = 48
_MIN_WORK = 1 << 20


def _auto_dim(n: int, d: int) -> int:
    """Projection width for an (n, d) pool: about d / 4, 8 to 32 (0: no projection). The full
    passes test every row on its first 16 components (an int8 copy) and only the few rows left
    on all m: 32 instead of 16 read 3.4x fewer full rows of Fashion-MNIST PCA-128 (1000 picks of
    60,000 rows: 0.115 s against 0.135 s; its DeepCluster features 0.086 s against 0.082 s)."""
    if d < _MIN_DIM or n * d < _MIN_WORK:
        return 0
    return int(min(32, max(8, 8 * round(d / 32))))


def _pca(x: np.ndarray, m: int, n_rows: int = _PCA_ROWS) -> tuple[np.ndarray, np.ndarray, float]:
    """(basis, mean, captured): the top-m principal directions of a seeded subsample of the rows
    (float64, orthonormal rows, largest variance first), the subsample's mean (float64; all rows
    below _PCA_ROWS), and the fraction of the subsample's variance those m directions hold.
    Nothing reads all rows here (a mean of all rows cost a third of this on isotropic data, where
    the answer is "no projection"): the kernel takes any centre, it only shifts the bound's
    error radii."""
    mean, cov = _sample_cov(x, n_rows)
    with _one_blas_thread():
        val, vec = np.linalg.eigh(cov)  # all of them: faster than LAPACK's subset driver here
    total = float(np.trace(cov))
    captured = float(val[-m:].sum()) / total if total > 0 else 1.0
    return np.ascontiguousarray(vec[:, ::-1][:, :m].T), mean, captured


def _sample_cov(x: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scatter matrix) of a seeded subsample of n_rows rows (all rows below), as float64;
    the mean summed in float64, the product in float32 (2.4x faster; the directions only decide
    how much the bound clears, the kernel measures the basis it is given)."""
    n = x.shape[0]
    if n > n_rows:
        rows = np.sort(np.random.default_rng(0).choice(n, size=n_rows, replace=False))
        sample = x[rows]
    else:
        sample = x
    mean = sample.mean(axis=0, dtype=np.float64)
    centred = sample - mean.astype(np.float32)
    with _one_blas_thread():
        cov = (centred.T @ centred).astype(np.float64)
        if not np.isfinite(cov).all():  # features near float32's range: the product in float64
            c64 = sample.astype(np.float64) - mean
            cov = c64.T @ c64
    return mean, cov


def _captured(x: np.ndarray, m: int, n_rows: int) -> float:
    """The fraction of a seeded n_rows-row subsample's variance its top m principal directions
    hold (eigenvalues only: the screen of _projection_for, 0.6 ms on 50,000 x 128 where _pca
    took 2.5 ms)."""
    _, cov = _sample_cov(x, n_rows)
    with _one_blas_thread():  # LAPACK's threads would spin on beside the kernel's
        val = np.linalg.eigvalsh(cov)
    total = float(val.sum())
    return float(val[-m:].sum()) / total if total > 0 else 1.0


def _pca_basis(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(basis, mean) of _pca."""
    basis, mean, _ = _pca(x, m)
    return basis, mean


def _one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (threadpoolctl when installed): these products
    are small, and BLAS threads spinning beside the kernel's OpenMP threads on a loaded machine
    made them 5-50x slower (4096 x 784 covariance: 0.1 s on one thread, 5-8 s on two)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


# The bound clears a row when the projected distance alone reaches its min-distance: it needs
# the m directions to hold most of the spread. Where they hold less than _MIN_CAPTURED of the
# variance (isotropic data: about m / d; pixels and network features hold 0.8-1.0 at the
# automatic m), building the copy (N d m products) and reading it before the hand-over to the
# plain pass only cost: the automatic choice is then no projection.
_MIN_CAPTURED = 0.5
# A first look on _SCREEN_ROWS rows: a small sample overstates what the top m directions hold
# (on isotropic data about m / d * (1 + sqrt(d / rows))^2), so a screen below _MIN_CAPTURED
# means no projection without the full PCA (on 50,000 x 128: the screen 2.3 ms, the full PCA
# 5.1 ms; pools that pass the screen pay both, 2.3 ms more than before).
_SCREEN_ROWS = 512


def _projection_for(x: np.ndarray, m: int | None) -> tuple | None:
    """The projection argument of _core.kcenter: m None = automatic, 0 = none."""
    d = x.shape[1]
    if m is None:
        m = _auto_dim(x.shape[0], d)
        if not m or _captured(x, m, _SCREEN_ROWS) < _MIN_CAPTURED:
            return None
        basis, mean, captured = _pca(x, m)
        return (basis, mean) if captured >= _MIN_CAPTURED else None
    m = _arrays.check_int(m, "_projection", low=0)
    if m > d:
        raise ValueError(f"_projection: expected at most {d} (the feature dimension), got {m}")
    return _pca_basis(x, m) if m else None


def _projection_width(features: Any) -> int:
    """The projection width the automatic choice gives these features (0: none; benches)."""
    x = _arrays.as_features(features, "features", check_finite=False)  # _rescaled checks
    proj = _projection_for(_rescaled(x)[0], None)
    return 0 if proj is None else int(proj[0].shape[0])


def _kcenter_stats(
    features: Any, budget: int, labeled: Any = None, *, prune: bool = True,
    projection: int | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """CPU k-center that also returns the work done (for the benches): rows read in full
    (``full_rows``), projections read, members visited by the pruned sweeps, full passes."""
    x = _arrays.as_features(features, "features", check_finite=False)  # _rescaled checks
    lab = _labeled(labeled, x.shape[0])
    b = _budget(budget, x.shape[0], lab.size)
    x, _ = _rescaled(x)
    proj = _projection_for(x, projection) if prune else None
    idx, _, stats = _core.kcenter(x, b, lab, prune=prune, projection=proj, return_stats=True)
    return idx, dict(stats)


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


# The GPU path takes the projection where its setup (a host eigendecomposition of a d x d
# covariance and a pass over the pool) is small beside the picks: from _GPU_MIN_READS floats read
# by the plain passes (budget x N x d; about 0.1 s of reads at 3 TB/s). A guess to be checked on
# a device: tools/gpu_check.sh times both.
_GPU_MIN_READS = 1 << 36


def _gpu_auto_dim(n: int, d: int, budget: int) -> int:
    """Projection width of the GPU path (0: none), automatic: about d / 8, 8 to 32 (the GPU path
    has no int8 copy and reads all m values of every row per pick; not yet timed on a device)."""
    if not _auto_dim(n, d) or budget * n * d < _GPU_MIN_READS:
        return 0
    return int(min(32, max(8, 8 * round(d / 64))))


def _gpu_width(n: int, d: int, budget: int, m: int | None) -> int:
    if m is None:
        return _gpu_auto_dim(n, d, budget)
    m = _arrays.check_int(m, "_projection", low=0)
    if m > d:
        raise ValueError(f"_projection: expected at most {d} (the feature dimension), got {m}")
    return m


def _top_directions(sample: np.ndarray, m: int) -> np.ndarray:
    """The top-m principal directions (rows, float64, largest variance first) of centred rows."""
    import scipy.linalg

    d = sample.shape[1]
    with _one_blas_thread():
        _, vec = scipy.linalg.eigh(sample.T @ sample, subset_by_index=[d - m, d - 1])
    return np.ascontiguousarray(vec[:, ::-1].T)


def _cuda_basis(x: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(basis, mean) of a CUDA tensor as _pca_basis: the mean of all rows (float64, on the
    device), a seeded subsample of _PCA_ROWS rows copied to the host (one synchronisation)."""
    torch = _arrays.torch_module()
    n = int(x.shape[0])
    mean = x.mean(dim=0, dtype=torch.float64)
    if n > _PCA_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(n, size=_PCA_ROWS, replace=False))
        x = x[torch.from_numpy(rows).to(x.device)]
    sample = (x.to(torch.float64) - mean).cpu().numpy()
    return _top_directions(sample, m), mean.cpu().numpy()


def _run_gpu_path(
    core: ModuleType,
    features: Any,
    budget: int,
    labeled: Any = None,
    *,
    return_radius: bool = False,
    _projection: int | None = None,
    _reference: bool = False,
    _graph: int = -1,
    _stats: dict[str, int] | None = None,
) -> Any:
    """Run the GPU-path algorithm through ``core.gpu.kcenter``.

    ``core`` is ``dalcore._core`` (CUDA tensor in: device arrays, torch's current stream) or
    the test-only ``dalcore._core_omp`` (numpy or CPU tensor in: host arrays), whose ``gpu``
    submodule is the same source compiled on the OpenMP backend. The arrays themselves
    cross into C++, which checks them (dtype, shape, contiguity, device, stream).

    Private options (tests, benches, tools/gpu_check.sh): ``_projection`` the projection width
    (None: automatic, 0: none), ``_reference`` runs the Thrust reference form instead of the
    tiled kernels, ``_graph`` -1/0/1 captures the pick loop into a CUDA graph (auto/no/yes),
    ``_stats`` (a dict) receives ``full_rows``, the rows the picks read in full (synchronises).
    """
    if _arrays.is_cuda(features):
        return _run_cuda(core, features, budget, labeled, return_radius,
                         (_projection, _reference, _graph, _stats))
    if core.gpu.backend == "cuda":
        raise TypeError("features: the CUDA GPU path needs a CUDA tensor")
    xh = _arrays.as_features(features, "features", check_finite=False)  # _rescaled checks
    n = xh.shape[0]
    lab_host = _labeled(labeled, n)
    b = _budget(budget, n, lab_host.size)
    xh, e = _rescaled(xh)
    m = 0 if _reference else _gpu_width(n, xh.shape[1], b, _projection)
    basis, mean = _pca_basis(xh, m) if m else (None, None)
    out_h = np.empty(b, dtype=np.int64)
    rad_h = np.zeros((), dtype=np.float64)
    _call(core, (xh, lab_host, out_h, rad_h if return_radius else None, 0), basis, mean,
          (_reference, _graph, _stats))
    res = _arrays.like(features, out_h)
    return (res, float(np.ldexp(rad_h, e))) if return_radius else res


def _call(core: ModuleType, args: tuple, basis: Any, mean: Any, opts: tuple) -> None:
    """core.gpu.kcenter (or kcenter_reference) on the checked arrays ``args``."""
    reference, graph, stats = opts
    if reference:
        core.gpu.kcenter_reference(*args)
        return
    full = core.gpu.kcenter(*args, basis=basis, mean=mean, graph=graph,
                            count_full_rows=stats is not None)
    if stats is not None:
        stats["full_rows"] = int(full)


def _run_cuda(core: ModuleType, features: Any, budget: int, labeled: Any,
              return_radius: bool, opts: tuple = (None, False, -1, None)) -> Any:
    torch = _arrays.torch_module()
    projection, reference, graph, stats = opts
    x = _arrays.as_torch_features(features, "features")
    n, d = int(x.shape[0]), int(x.shape[1])
    lab_host = _labeled(labeled, n)
    b = _budget(budget, n, lab_host.size)
    e = _scale_exponent(float(x.abs().amax()), d)
    if e:
        x = torch.ldexp(x, torch.tensor(-e, device=x.device)).to(torch.float32)
    m = 0 if reference else _gpu_width(n, d, b, projection)
    basis, mean = _cuda_basis(x, m) if m else (None, None)
    lab = torch.from_numpy(lab_host).to(x.device)
    out = torch.empty(b, dtype=torch.int64, device=x.device)
    radius = torch.empty((), dtype=torch.float64, device=x.device) if return_radius else None
    _call(core, (x, lab, out, radius, _arrays.cuda_stream_handle(x)), basis, mean,
          (reference, graph, stats))
    # x and lab stay referenced until here; torch's caching allocator orders their reuse on
    # the current stream, so the asynchronous kernels never see freed memory.
    if radius is not None and e:
        radius.mul_(2.0**e)
    return (out, radius) if return_radius else out
