"""Uncertainty acquisition: the pool images of highest softmax entropy."""

from __future__ import annotations

from . import register
from ._base import AcquisitionContext, Selection, check_budget, top_entropy


@register("uncertainty")
def select_uncertainty(ctx: AcquisitionContext, budget: int) -> Selection:
    """The ``budget`` pool indices of highest entropy (float64), ties to the lowest index."""
    b = check_budget(ctx, budget)
    _, top = top_entropy(ctx, b)
    return Selection(indices=ctx.pool[top].astype("int64"))
