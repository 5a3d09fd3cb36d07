"""The single border between callers and the native core.

Every public function checks its arrays here once and hands plain, contiguous buffers to
``_core``. numpy in -> numpy out; a torch tensor in -> a torch tensor out on the same device.
torch is optional: nothing here imports it unless the caller passed a tensor.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = [
    "is_torch",
    "is_cuda",
    "torch_module",
    "to_numpy",
    "torch_to_numpy",
    "like",
    "as_features",
    "as_torch_features",
    "as_index_vector",
    "check_int",
    "check_float",
    "cuda_stream_handle",
    "kernel_array",
]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def torch_module() -> Any:
    """The torch module if it is already imported (never imports it)."""
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch)."""
    t = torch_module()
    return t is not None and isinstance(x, t.Tensor)


def is_cuda(x: Any) -> bool:
    """True for a torch tensor on a CUDA device."""
    return is_torch(x) and x.is_cuda


def torch_to_numpy(t: Any) -> np.ndarray:
    """numpy view of a CPU tensor; bfloat16 (which numpy lacks) converted losslessly to float32."""
    t = t.detach()
    if t.dtype == torch_module().bfloat16:
        t = t.float()
    return t.numpy()


def to_numpy(x: Any, name: str) -> np.ndarray:
    """numpy view/copy of an array-like or a CPU torch tensor (CUDA tensors are refused)."""
    if is_torch(x):
        if x.is_cuda:
            raise TypeError(f"{name}: expected a CPU array here, got a CUDA tensor")
        return torch_to_numpy(x)
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # ragged lists, objects
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}") from e


def like(ref: Any, out: np.ndarray) -> Any:
    """Return ``out`` as the same kind as ``ref``: numpy stays numpy, a CPU tensor gets a tensor."""
    if is_torch(ref):
        return torch_module().from_numpy(np.ascontiguousarray(out))
    return out


def _check_numeric_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric dtype (float or int), got {dtype}")


def as_features(x: Any, name: str = "features", *, min_rows: int = 1,
                check_finite: bool = True) -> np.ndarray:
    """Validate and convert an (N, d) host array to C-contiguous float32.

    float64, integer and non-contiguous inputs are converted; complex, object and string
    dtypes raise TypeError; wrong rank, too few rows, zero columns, NaN or inf raise ValueError
    (``check_finite=False``: the caller checks finiteness itself, with :func:`check_extremes`).
    """
    if is_cuda(x):
        raise TypeError(f"{name}: expected a CPU array here, got a CUDA tensor")
    if is_torch(x):
        if x.dtype.is_complex:
            raise TypeError(f"{name}: expected a real numeric dtype, got {x.dtype}")
        a = torch_to_numpy(x)
    else:
        a = to_numpy(x, name)
    _check_numeric_dtype(a.dtype, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (N, d), got shape {tuple(a.shape)}")
    if a.shape[0] < min_rows:
        raise ValueError(
            f"{name}: expected at least {min_rows} row(s), got shape {tuple(a.shape)}"
        )
    if a.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one column, got shape {tuple(a.shape)}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if check_finite and not np.isfinite(a).all():
        _raise_nonfinite(a, name)
    return a


def _raise_nonfinite(a: np.ndarray, name: str) -> None:
    bad = int(np.count_nonzero(~np.isfinite(a)))
    raise ValueError(f"{name}: contains {bad} NaN or inf value(s)")


def check_extremes(a: np.ndarray, name: str = "features") -> tuple[float, float]:
    """(min, max) of a float array, ValueError naming it on NaN or inf: the finiteness check of
    as_features folded into two reductions that a caller needs anyway (NaN propagates through
    both, an infinity reaches one)."""
    if a.size == 0:
        return 0.0, 0.0
    lo, hi = float(a.min()), float(a.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _raise_nonfinite(a, name)
    return lo, hi


def as_torch_features(x: Any, name: str = "features", *, min_rows: int = 1) -> Any:
    """Validate a torch tensor (any device) as (N, d) float32, contiguous, finite."""
    torch = torch_module()
    if x.dtype.is_complex:
        raise TypeError(f"{name}: expected a real numeric dtype, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor (N, d), got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{name}: expected at least {min_rows} row(s), got shape {tuple(x.shape)}"
        )
    if x.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one column, got shape {tuple(x.shape)}")
    t = x.detach().to(dtype=torch.float32).contiguous()
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name}: contains {bad} NaN or inf value(s)")
    return t


def as_index_vector(
    x: Any, name: str, n: int, *, unique: bool = True, allow_empty: bool = True
) -> np.ndarray:
    """Validate a 1-D vector of indices into range(n) and return it as C-contiguous int64.

    Floats holding whole numbers are refused (TypeError): indices must have an integer dtype.
    """
    a = torch_to_numpy(x.detach().cpu()) if is_torch(x) else to_numpy(x, name)
    if a.size == 0:
        a = a.astype(np.int64).reshape(-1)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer indices, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector of indices, got shape {tuple(a.shape)}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one index")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError(f"{name}: indices must be >= 0, got {lo}")
        if hi >= n:
            raise ValueError(f"{name}: indices must be < {n} (number of points), got {hi}")
        if unique and np.unique(a).size != a.size:
            raise ValueError(f"{name}: contains duplicated indices")
    return a


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer argument within [low, high] (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    v = int(value)
    if not _INT64_MIN <= v <= _INT64_MAX:  # the core's integers are int64 (no OverflowError)
        raise ValueError(f"{name}: expected an integer in the int64 range, got {v}")
    if low is not None and v < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name}: expected an integer <= {high}, got {v}")
    return v


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real argument within the given bounds (open or closed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name}: expected {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name}: expected {'<' if high_open else '<='} {high}, got {v}")
    return v


def cuda_stream_handle(t: Any) -> int:
    """The raw cudaStream_t of torch's current stream on ``t``'s device."""
    torch = torch_module()
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def kernel_array(a: Any) -> Any:
    """An array as the GPU-path bindings take it: a CUDA tensor as is (C++ reads its
    ``__cuda_array_interface__``), a CPU tensor as a numpy view of the same memory (the OpenMP
    twin reads ``__array_interface__``), numpy as is."""
    if is_torch(a):
        return a.detach() if a.is_cuda else a.detach().numpy()
    return a
