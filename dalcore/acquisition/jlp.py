"""jLP acquisition: pick the pool points that propagation from the labelled set reaches least.

A class-agnostic label propagation on the k-NN graph of the current model's features (labelled
set + pool): one right-hand side, ``Y`` = indicator of the seed set (normalised by its size, as
``dalcore.propagate`` does per class), solved for ``(I - alpha S) z = Y``. ``z_i`` measures how
strongly point ``i`` is connected to the seeds. ``budget`` times: the pool point with the lowest
score (ties: lowest train index) joins the seeds and the system is solved again, warm-started from
the previous solution (rescaled to the new seed-set size). Points in components without a seed
score 0 and are therefore picked first, lowest index first.

Under torchrun every rank runs the one-process selection on the all-gathered features: the
sharded :func:`dalcore.distributed.propagate` agrees with :func:`dalcore.propagate` only within
float rounding (its sums run in another order), and an arg-min over such scores could break a
near-tie differently from one process; the picks must be the one-process picks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import register
from ._base import AcquisitionContext, Selection, check_budget

__all__ = ["JLP_DEFAULTS", "jlp_select", "select_jlp"]

#: Graph and solver settings used by the registered strategy (those of the SEMI setting).
JLP_DEFAULTS: dict[str, Any] = {"k": 50, "gamma": 3.0, "alpha": 0.99, "iters": 20,
                                "mode": "reciprocal"}


def _column(z: Any) -> np.ndarray:
    if hasattr(z, "detach"):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(z.shape[0], -1)[:, 0]


def jlp_select(features: np.ndarray, seeds: np.ndarray, budget: int, *, k: int = 50,
               gamma: float = 3.0, alpha: float = 0.99, iters: int = 20,
               mode: str = "reciprocal") -> np.ndarray:
    """Rows of ``features`` chosen by jLP, in pick order.

    Parameters
    ----------
    features : np.ndarray
        (N, d) float32 features (L2-normalised: the graph uses inner products).
    seeds : np.ndarray
        Rows of the initially labelled points (may be empty).
    budget : int
        Number of rows to pick, in [1, N - len(seeds)].
    k, gamma, alpha, iters, mode
        k-NN graph (k clipped to N - 1, edge weight ``max(0, s)^gamma``, reciprocal or union) and
        propagation (``alpha``, CG iterations) settings.

    Returns
    -------
    np.ndarray
        ``budget`` distinct int64 rows, none of them in ``seeds``.
    """
    import dalcore

    x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features: expected an (N, d) array with N >= 2, got shape {x.shape}")
    n = x.shape[0]
    seeds = np.asarray(seeds, dtype=np.int64).ravel()
    if seeds.size and (seeds.min() < 0 or seeds.max() >= n or np.unique(seeds).size != seeds.size):
        raise ValueError(f"seeds: expected distinct rows in [0, {n})")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) \
            or not 1 <= budget <= n - seeds.size:
        raise ValueError(f"budget: expected an integer in [1, {n - seeds.size}], got {budget!r}")
    kk = min(int(k), n - 1)
    graph = dalcore.knn_graph(dalcore.knn(x, kk, metric="ip"), k=kk, gamma=float(gamma),
                              mode=mode)
    is_seed = np.zeros(n, dtype=bool)
    is_seed[seeds] = True
    picks = np.empty(int(budget), dtype=np.int64)
    x0 = None
    for t in range(int(budget)):
        m = int(is_seed.sum())
        if m:
            y = np.where(is_seed, 0, -1).astype(np.int64)
            z = dalcore.propagate(graph, y, num_classes=1, alpha=float(alpha),
                                  max_iter=int(iters), x0=x0)
            score = _column(z)
            x0 = np.asarray(score * (m / (m + 1.0)), dtype=np.float32).reshape(n, 1)
        else:
            score = np.zeros(n, dtype=np.float64)
        score = np.where(is_seed, np.inf, score)
        r = int(np.argmin(score))  # first minimum: the lowest row
        picks[t] = r
        is_seed[r] = True
    return picks


@register("jlp")
def select_jlp(ctx: AcquisitionContext, budget: int) -> Selection:
    """``budget`` pool indices chosen by jLP on the features of labelled + pool.

    Rows are the labelled set followed by the pool in increasing index, so ties between pool
    points go to the lowest train index.
    """
    b = check_budget(ctx, budget)
    order = np.concatenate([ctx.labeled, ctx.pool])
    feats = ctx.features(order)
    seeds = np.arange(ctx.labeled.size, dtype=np.int64)
    picks = jlp_select(feats, seeds, b, **JLP_DEFAULTS)
    if picks.min() < ctx.labeled.size or np.unique(picks).size != b:
        raise RuntimeError(f"jLP returned picks that are not {b} distinct pool rows")
    return Selection(indices=order[picks])
