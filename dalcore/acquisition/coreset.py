"""Core-set acquisition (Sener & Savarese): greedy k-center on the features.

The features of labeled + pool go to :func:`dalcore.kcenter` with the labelled rows as the
initial centres; its picks (rows, in pick order) map back to train indices. When the model runs
on a CUDA device and this build has CUDA kernels, the features go to the GPU path of the kernel.
Under torchrun each rank extracts its shard of the rows and :func:`dalcore.distributed.kcenter`
makes the same picks from the shards (no rank holds all features).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import cuda_available, distributed, kcenter
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
    start = np.arange(ctx.labeled.size, dtype=np.int64)
    start_arg = start if start.size else None
    if distributed.world_size() > 1:  # under torchrun: each rank its shard of the rows
        _, _, local = ctx.shard()
        picks = np.asarray(distributed.kcenter(local, b, labeled=start_arg), dtype=np.int64)
        return _checked(ctx, order, picks, b)
    feats = ctx.features(order)
    if torch.device(ctx.device).type == "cuda" and cuda_available():
        out = kcenter(torch.from_numpy(feats).to(ctx.device), b, labeled=start_arg)
        picks = out.cpu().numpy().astype(np.int64)
    else:
        picks = np.asarray(kcenter(feats, b, labeled=start_arg), dtype=np.int64)
    return _checked(ctx, order, picks, b)


def _checked(ctx: AcquisitionContext, order: np.ndarray, picks: np.ndarray, b: int) -> Selection:
    if picks.size != b or picks.min() < ctx.labeled.size or np.unique(picks).size != b:
        raise RuntimeError(
            f"kcenter returned {picks.size} picks that are not {b} distinct pool rows"
        )
    return Selection(indices=order[picks])
