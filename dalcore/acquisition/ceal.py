"""CEAL (Wang et al. 2017): uncertain samples to the annotator, confident ones pseudo-labelled.

The ``budget`` pool images of highest entropy are selected for labelling. Of the other pool
images, those whose normalised entropy ``H / log C`` is below ``delta = 0.1 - 0.00033 * cycle``
(the threshold and decay of the released code of Siméoni et al.) are candidates for a
pseudo-label: their arg-max class, weight 1, for the next training only (the next cycle's model
chooses them again, as in Wang et al.). Unlike the released code of Siméoni et al., these
pseudo-labels are used by the training (``Selection.pseudo``).

Why a cap (``ceal``) and the uncapped variant (``ceal-uncapped``)
------------------------------------------------------------------
Taking every candidate (Wang et al.'s rule, kept as ``ceal-uncapped``) collapses at small budgets:
measured on digits (cpu preset, seed 0) the candidates below the threshold are few classes the
model already knows (at 80 true labels, 265 pseudo-labels of only two classes, 81.5 % right), they
outnumber the true labels 3 to 1, the next model predicts those classes everywhere and test
accuracy falls from 91 % to 49-54 % (docs/evidence/ceal_diagnosis.md). ``ceal`` therefore never
lets the pseudo-labels outweigh the true labels: in each class it keeps at most as many
candidates as that class has true labels, the most confident first (lowest entropy, ties to the
lowest index). The threshold, the decay and the per-cycle re-selection are unchanged.
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


def _labeled_class_counts(ctx: AcquisitionContext) -> np.ndarray:
    """True labels per class in ``ctx.labeled`` (int64, length ``num_classes``)."""
    y = ctx.data.y_train
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)[ctx.labeled].astype(np.int64)
    return np.bincount(y, minlength=ctx.num_classes)[: ctx.num_classes]


def cap_per_class(labels: np.ndarray, h: np.ndarray, indices: np.ndarray,
                  limit: np.ndarray) -> np.ndarray:
    """Positions of the kept candidates: per class ``c`` at most ``limit[c]`` of them, lowest
    entropy ``h`` first, ties to the lowest ``indices``; returned sorted by index."""
    order = np.lexsort((indices, h, labels))  # by class, then entropy, then index
    lab = labels[order]
    starts = np.searchsorted(lab, lab, side="left")
    rank = np.arange(order.size) - starts  # rank within the class
    keep = order[rank < limit[lab]]
    return keep[np.argsort(indices[keep], kind="stable")]


def _select(ctx: AcquisitionContext, budget: int, capped: bool) -> Selection:
    b = check_budget(ctx, budget)
    h, top = top_entropy(ctx, b)
    probs = ctx.probs(ctx.pool)
    confident = h / math.log(ctx.num_classes) < ceal_delta(ctx.cycle)
    confident[top] = False
    pos = np.flatnonzero(confident)
    labels = probs[pos].argmax(axis=1).astype(np.int64)
    if capped:
        keep = cap_per_class(labels, h[pos], ctx.pool[pos], _labeled_class_counts(ctx))
        pos, labels = pos[keep], labels[keep]
    pseudo = PseudoLabels(
        indices=ctx.pool[pos].astype(np.int64),
        labels=labels,
        weights=np.ones(pos.size, dtype=np.float32),
    )
    return Selection(indices=ctx.pool[top].astype(np.int64), pseudo=pseudo)


@register("ceal")
def select_ceal(ctx: AcquisitionContext, budget: int) -> Selection:
    """Highest-entropy pool indices plus pseudo-labels for the confident rest of the pool,
    at most as many per class as the class has true labels (see the module docstring)."""
    return _select(ctx, budget, capped=True)


@register("ceal-uncapped")
def select_ceal_uncapped(ctx: AcquisitionContext, budget: int) -> Selection:
    """CEAL with every confident pool image pseudo-labelled (Wang et al.'s rule, no cap)."""
    return _select(ctx, budget, capped=False)
