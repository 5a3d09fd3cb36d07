"""The usual Python implementations of exact greedy k-center, the k-center bench's peers.

All farthest-first from the same labeled set:
  numpy   float32 loop, one GEMV per pick (|x|^2 + |c|^2 - 2 X c, then minimum, argmax)
  sklearn pairwise_distances to the new centre per pick, as google/active-learning's
          kcenter_greedy.py (core-set) does
  scipy   scipy.spatial.distance_matrix to the new centre per pick, as in the original paper's
          code
  torch   the GEMV loop in torch on the CPU (and on CUDA where present)

With ``timed_picks`` a peer runs only that many picks and returns (seconds of the labeled-set
initialisation, seconds per pick) instead of the picks.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

__all__ = ["PEERS", "numpy_kcenter", "scipy_kcenter", "sklearn_kcenter", "torch_kcenter"]


def numpy_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray,
                  timed_picks: Optional[int] = None) -> Any:
    """The numpy GEMV loop (float32)."""
    t0 = time.perf_counter()
    sq = np.einsum("ij,ij->i", x, x)
    md = np.full(x.shape[0], np.inf, dtype=np.float32)
    for s in range(0, len(labeled), 256):  # blocked GEMM against the labeled set
        lab = labeled[s : s + 256]
        d2 = sq[:, None] + sq[lab][None, :] - 2.0 * (x @ x[lab].T)
        np.minimum(md, d2.min(axis=1), out=md)
    md[labeled] = -1.0
    t1 = time.perf_counter()
    out = np.empty(budget, dtype=np.int64)
    for t in range(budget if timed_picks is None else timed_picks):
        c = int(np.argmax(md))
        out[t] = c
        np.minimum(md, sq + sq[c] - 2.0 * (x @ x[c]), out=md)
        md[c] = -1.0  # stays below every d2 (>= -rounding) from here on
    if timed_picks is not None:
        return t1 - t0, (time.perf_counter() - t1) / max(timed_picks, 1)
    return out


def _stepwise(init, step, x, budget, labeled, timed_picks=None):
    t0 = time.perf_counter()
    md = init(x, labeled)
    t1 = time.perf_counter()
    out = []
    for _ in range(budget if timed_picks is None else timed_picks):
        c = int(np.argmax(md))
        out.append(c)
        md = step(x, md, c)
    if timed_picks is not None:
        return t1 - t0, (time.perf_counter() - t1) / max(timed_picks, 1)
    return np.asarray(out, dtype=np.int64)


def _sklearn_init(x, labeled):
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(x, x[labeled], metric="euclidean").min(axis=1).reshape(-1, 1)


def _sklearn_step(x, md, c):
    from sklearn.metrics import pairwise_distances

    return np.minimum(md, pairwise_distances(x, x[[c]], metric="euclidean"))


def sklearn_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray,
                    timed_picks: Optional[int] = None) -> Any:
    """google/active-learning's kcenter_greedy.update_distances (scikit-learn)."""
    return _stepwise(_sklearn_init, _sklearn_step, x, budget, labeled, timed_picks)


def _scipy_init(x, labeled):
    from scipy.spatial import distance_matrix

    return distance_matrix(x, x[labeled]).min(axis=1)


def _scipy_step(x, md, c):
    from scipy.spatial import distance_matrix

    return np.minimum(md, distance_matrix(x, x[[c]]).ravel())


def scipy_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray,
                  timed_picks: Optional[int] = None) -> Any:
    """The original paper's code: scipy.spatial.distance_matrix to the new centre each pick."""
    return _stepwise(_scipy_init, _scipy_step, x, budget, labeled, timed_picks)


def torch_kcenter(x: Any, budget: int, labeled: Any, timed_picks: Optional[int] = None) -> Any:
    """The GEMV loop in torch, on ``x``'s device."""
    import torch

    t0 = time.perf_counter()
    sq = (x * x).sum(1)
    md = torch.full((x.shape[0],), float("inf"), device=x.device)
    for s in range(0, len(labeled), 256):
        lab = labeled[s : s + 256]
        d2 = sq[:, None] + sq[lab][None, :] - 2.0 * (x @ x[lab].T)
        md = torch.minimum(md, d2.min(dim=1).values)
    md[labeled] = -1.0
    out = torch.empty(budget, dtype=torch.int64, device=x.device)
    on_cpu = x.device.type == "cpu"
    if not on_cpu:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    for t in range(budget if timed_picks is None else timed_picks):
        c = torch.argmax(md)
        if on_cpu:
            c = int(c)  # cheap on the CPU; on CUDA the index stays on the device
        out[t] = c
        d2 = torch.addmv(sq + sq[c], x, x[c], alpha=-2.0)
        torch.minimum(md, d2, out=md)
        md[c] = -1.0
    if timed_picks is not None:
        if not on_cpu:
            torch.cuda.synchronize()
        return t1 - t0, (time.perf_counter() - t1) / max(timed_picks, 1)
    return out


# peer name -> (function, module it needs)
PEERS = {"numpy": (numpy_kcenter, "numpy"), "sklearn": (sklearn_kcenter, "sklearn"),
         "scipy": (scipy_kcenter, "scipy"), "torch": (torch_kcenter, "torch")}
