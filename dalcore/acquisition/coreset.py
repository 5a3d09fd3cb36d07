"""Core-set acquisition (Sener & Savarese): greedy k-center on the features.

The features of labeled + pool go to :func:`dalcore.kcenter` with the labelled rows as the
initial centres; its picks (rows, in pick order) map back to train indices.
"""

from __future__ import annotations

import numpy as np

from .. import kcenter
from . import register
from ._base import AcquisitionContext, Selection, check_budget


@register("coreset")
def select_coreset(ctx: AcquisitionContext, budget: int) -> Selection:
    """``budget`` pool indices by farthest-first traversal from the labelled set.

    Each pick maximises the Euclidean distance (128-d L2-normalised features) to the nearest
    labelled point or earlier pick; ties go to the lowest row, rows being ordered labelled
    first, then the pool in increasing index.
    """
    b = check_budget(ctx, budget)
    order = np.concatenate([ctx.labeled, ctx.pool])
    feats = ctx.features(order)
    start = np.arange(ctx.labeled.size, dtype=np.int64)
    picks = np.asarray(kcenter(feats, b, labeled=start if start.size else None), dtype=np.int64)
    if picks.size != b or picks.min() < ctx.labeled.size or np.unique(picks).size != b:
        raise RuntimeError(
            f"kcenter returned {picks.size} picks that are not {b} distinct pool rows"
        )
    return Selection(indices=order[picks])
