"""CEAL (Wang et al. 2017): uncertain samples to the annotator, confident ones pseudo-labelled.

The ``budget`` pool images of highest entropy are selected for labelling. Of the other pool
images, those whose normalised entropy ``H / log C`` is below ``delta = 0.1 - 0.00033 * cycle``
get their arg-max class as a pseudo-label (weight 1) for the next training. Unlike the released
code of Siméoni et al., these pseudo-labels are used by the training (``Selection.pseudo``).
"""

from __future__ import annotations

import math

import numpy as np

from ..training import PseudoLabels
from . import register
from ._base import AcquisitionContext, Selection, check_budget, top_entropy

#: Initial threshold on the normalised entropy and its decrease per cycle.
DELTA0 = 0.1
DELTA_DECAY = 0.00033


def ceal_delta(cycle: int) -> float:
    """Threshold on the normalised entropy at ``cycle``."""
    return DELTA0 - DELTA_DECAY * cycle


@register("ceal")
def select_ceal(ctx: AcquisitionContext, budget: int) -> Selection:
    """Highest-entropy pool indices plus pseudo-labels for the confident rest of the pool."""
    b = check_budget(ctx, budget)
    h, top = top_entropy(ctx, b)
    probs = ctx.probs(ctx.pool)
    confident = h / math.log(ctx.num_classes) < ceal_delta(ctx.cycle)
    confident[top] = False
    pos = np.flatnonzero(confident)
    pseudo = PseudoLabels(
        indices=ctx.pool[pos].astype(np.int64),
        labels=probs[pos].argmax(axis=1).astype(np.int64),
        weights=np.ones(pos.size, dtype=np.float32),
    )
    return Selection(indices=ctx.pool[top].astype(np.int64), pseudo=pseudo)
