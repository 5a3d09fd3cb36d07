"""CEAL (Wang et al. 2017): uncertain samples to the annotator, confident ones pseudo-labelled.

The ``budget`` pool images of highest entropy are selected for labelling. Of the other pool
images, those whose normalised entropy ``H / log C`` is below ``delta = 0.1 - 0.00033 * cycle``
(the threshold and decay of the released code of Siméoni et al.) are candidates for a
pseudo-label: their arg-max class, weight 1, for the next training only (the next cycle's model
chooses them again, as in Wang et al.). Unlike the released code of Siméoni et al., these
pseudo-labels are used by the training (``Selection.pseudo``).

Why a balanced cap (``ceal``) and the uncapped variant (``ceal-uncapped``)
--------------------------------------------------------------------------
Taking every candidate (Wang et al.'s rule, kept as ``ceal-uncapped``) collapses at small budgets:
measured on digits (cpu preset, 3 repetitions) the candidates below the threshold all belong to
the one class the model finds easiest (110-260 pseudo-labels, often 95-100 % right), they
outnumber the true labels 2.5-6 to 1, the next model predicts that class far too often and mean
test accuracy falls to 45-53 % (docs/evidence/ceal_diagnosis.md). Capping each
class at its number of true labels is not enough: the candidates still come from one or two
classes, whose weight then doubles, and a repetition still lost 17 points. ``ceal`` therefore keeps
the pseudo-labels from changing the class balance of the training set or outweighing the true
labels: it takes the same number ``k`` of candidates in every class, the most confident first
(lowest entropy, ties to the lowest index), with ``k`` the smallest over the classes of (the
class's candidates, the class's true labels). While some class has no confident candidate (a
young model is confident about a few easy classes only) no pseudo-label is added and the cycle
trains on the true labels, as uncertainty sampling does. The threshold, its decay and the
per-cycle re-selection by the current model are unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ..training import PseudoLabels
from . import register
from ._base import AcquisitionContext, Selection, check_budget, entropy

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


def balanced_cap(labels: np.ndarray, h: np.ndarray, indices: np.ndarray,
                 true_counts: np.ndarray) -> np.ndarray:
    """Positions of the kept candidates: ``k`` per class, ``k = min_c min(candidates_c,
    true_counts_c)`` over all classes, lowest entropy ``h`` first, ties to the lowest
    ``indices``; returned sorted by index (empty when some class has no candidate)."""
    num_classes = true_counts.size
    cand = np.bincount(labels, minlength=num_classes)[:num_classes]
    k = int(np.minimum(cand, true_counts).min()) if num_classes else 0
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((indices, h, labels))  # by class, then entropy, then index
    lab = labels[order]
    rank = np.arange(order.size) - np.searchsorted(lab, lab, side="left")
    keep = order[rank < k]
    return keep[np.argsort(indices[keep], kind="stable")]


def _entropy_and_class(probs: np.ndarray) -> np.ndarray:
    """(m, 2) float64: each row's entropy and arg-max class (exact: a class is < 2^53)."""
    return np.column_stack([entropy(probs), probs.argmax(axis=1).astype(np.float64)])


def _select(ctx: AcquisitionContext, budget: int, capped: bool) -> Selection:
    b = check_budget(ctx, budget)
    scores = ctx.pool_scores(_entropy_and_class)  # under torchrun: scored per shard, gathered
    h = scores[:, 0]
    top = np.argsort(-h, kind="stable")[:b]  # as top_entropy
    confident = h / math.log(ctx.num_classes) < ceal_delta(ctx.cycle)
    confident[top] = False
    pos = np.flatnonzero(confident)
    labels = scores[pos, 1].astype(np.int64)
    if capped:
        keep = balanced_cap(labels, h[pos], ctx.pool[pos], _labeled_class_counts(ctx))
        pos, labels = pos[keep], labels[keep]
    pseudo = PseudoLabels(
        indices=ctx.pool[pos].astype(np.int64),
        labels=labels,
        weights=np.ones(pos.size, dtype=np.float32),
    )
    return Selection(indices=ctx.pool[top].astype(np.int64), pseudo=pseudo)


@register("ceal")
def select_ceal(ctx: AcquisitionContext, budget: int) -> Selection:
    """Highest-entropy pool indices plus pseudo-labels for the confident rest of the pool, the
    same number in every class and never more than a class's true labels (module docstring)."""
    return _select(ctx, budget, capped=True)


@register("ceal-uncapped")
def select_ceal_uncapped(ctx: AcquisitionContext, budget: int) -> Selection:
    """CEAL with every confident pool image pseudo-labelled (Wang et al.'s rule, no cap)."""
    return _select(ctx, budget, capped=False)
