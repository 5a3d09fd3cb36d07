"""An honest accuracy estimate for a project: k-fold cross-validation over its labels.

The labeled images are split into ``folds`` folds, stratified by class (within a class the order
is a seeded permutation, dealt round-robin). Each fold is held out in turn: the same training as
the query's (same preset, SEMI and PRE settings; under SEMI the held-out images join the
unlabeled pool) runs on the other folds and predicts the held-out images. The estimate is the
accuracy over all held-out predictions, with the standard deviation of the per-fold accuracies.
Each fold trains a model of its own, so a query with ``--cv K`` trains K + 1 models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CrossValidation", "cross_validate", "stratified_folds"]

#: Fewest labels for which cross-validation is attempted.
MIN_LABELS = 6


@dataclass
class CrossValidation:
    """The estimate: pooled accuracy, std over folds, folds used, labels held out."""

    mean: float | None
    std: float | None
    folds: int
    labels: int

    def line(self) -> str:
        if self.mean is None:
            return (f"accuracy estimate: not enough labels for cross-validation "
                    f"({self.labels}; at least {MIN_LABELS})")
        return (f"accuracy estimate: {100 * self.mean:.1f} % ± {100 * self.std:.1f} "
                f"({self.folds}-fold cross-validation over {self.labels} labels, each fold "
                "trained like this query's model)")


def stratified_folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number (0..folds-1) of each label, as balanced over classes as possible."""
    fold = np.empty(y.size, dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        members = members[rng.permutation(members.size)]
        fold[members] = (offset + np.arange(members.size)) % folds
        offset += members.size
    return fold


def cross_validate(settings: Any, pd: Any, *, folds: int, device: Any, seed: int,
                   backbone: dict | None = None,
                   progress: Callable[[float], None] | None = None) -> CrossValidation:
    """K-fold cross-validation of :func:`dalcore.loop.fit` on the labeled rows of ``pd``."""
    import dataclasses

    import torch

    from ..experiment import derive_seed
    from ..loop import fit
    from ..training import extract

    data, labeled = pd.data, pd.labeled
    y = data.y_train.numpy()[labeled]
    k = min(int(folds), labeled.size)
    if labeled.size < MIN_LABELS or k < 2:
        return CrossValidation(None, None, 0, int(labeled.size))
    fold = stratified_folds(y, k, np.random.default_rng(seed))
    settings = dataclasses.replace(settings, progress=False)
    correct = np.zeros(labeled.size, dtype=bool)
    accs = []
    for f in range(k):
        train, held = labeled[fold != f], labeled[fold == f]
        y_blind = data.y_train.clone()
        y_blind[torch.from_numpy(held)] = -1  # held-out labels are invisible to the training
        fitted = fit(settings, dataclasses.replace(data, y_train=y_blind), train, device=device,
                     init_seed=derive_seed(seed, "init", f),
                     train_seed=derive_seed(seed, "train", f), backbone=backbone)
        probs, _ = extract(fitted.model, data.x_train, device=device, indices=held)
        hit = probs.numpy().argmax(axis=1) == y[fold == f]
        correct[fold == f] = hit
        accs.append(float(hit.mean()))
        if progress is not None:
            progress((f + 1) / k)
    return CrossValidation(float(correct.mean()), float(np.std(accs)), k, int(labeled.size))
