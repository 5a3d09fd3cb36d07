"""Random acquisition: ``budget`` pool indices drawn uniformly without replacement."""

from __future__ import annotations

import numpy as np

from . import register
from ._base import AcquisitionContext, Selection, check_budget


@register("random")
def select_random(ctx: AcquisitionContext, budget: int) -> Selection:
    """Uniform draw without replacement from ``ctx.pool`` with ``ctx.rng`` (no model needed)."""
    b = check_budget(ctx, budget)
    picks = ctx.rng.choice(ctx.pool, size=b, replace=False)
    return Selection(indices=np.asarray(picks, dtype=np.int64))
