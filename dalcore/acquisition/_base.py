"""The acquisition context (with its cached extraction) and the selection it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import distributed
from .._arrays import as_index_vector, check_int
from ..training import PseudoLabels, extract

__all__ = ["AcquisitionContext", "Selection", "check_budget", "entropy"]


@dataclass
class Selection:
    """What a strategy returns.

    Attributes
    ----------
    indices : np.ndarray
        int64 train indices to label: distinct, all in the pool, ``budget`` of them, in the
        order the strategy chose them.
    pseudo : PseudoLabels or None
        Pool samples to train on with pseudo-labels in the next training (CEAL).
    context : AcquisitionContext or None
        Set by :func:`dalcore.loop.select`: the context (cached probabilities and features of
        labeled + pool) the strategy ran on, for a driver that reports on the pool.
    """

    indices: np.ndarray
    pseudo: Optional[PseudoLabels] = None
    context: Optional[Any] = field(default=None, repr=False)


@dataclass
class AcquisitionContext:
    """Everything a strategy may look at, with one cached extraction.

    Attributes
    ----------
    model : torch.nn.Module
        The model trained in this cycle (returns ``(logits, features)``).
    data : Dataset
        The dataset (``x_train``, ``num_classes``, ...).
    labeled : np.ndarray
        Labelled train indices.
    pool : np.ndarray
        Unlabelled train indices, sorted (disjoint from ``labeled``).
    cycle : int
        Active-learning cycle (0 = after training on the initial labelled set).
    rng : np.random.Generator
        Seeded generator for random choices.
    device : str or torch.device
        Where to run the model.
    batch_size : int
        Extraction batch size.
    """

    model: Any
    data: Any
    labeled: np.ndarray
    pool: np.ndarray
    cycle: int
    rng: np.random.Generator
    device: Any = "cpu"
    batch_size: int = 512
    _rows: Optional[np.ndarray] = field(default=None, init=False, repr=False)
    _probs: Optional[np.ndarray] = field(default=None, init=False, repr=False)
    _feats: Optional[np.ndarray] = field(default=None, init=False, repr=False)
    _shard: Optional[tuple] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n = int(self.data.x_train.shape[0])
        self.labeled = as_index_vector(self.labeled, "labeled", n)
        self.pool = as_index_vector(self.pool, "pool", n)
        if self.pool.size > 1 and np.any(np.diff(self.pool) <= 0):
            self.pool = np.sort(self.pool)
        if np.intersect1d(self.labeled, self.pool).size:
            raise ValueError("pool: must not contain labeled indices")
        self.cycle = check_int(self.cycle, "cycle", low=0)
        if not isinstance(self.rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy Generator, got {type(self.rng).__name__}")

    @property
    def num_classes(self) -> int:
        return int(self.data.num_classes)

    def _extract(self) -> None:
        if self._probs is not None:
            return
        n = int(self.data.x_train.shape[0])
        order = np.concatenate([self.labeled, self.pool])
        rows = np.full(n, -1, dtype=np.int64)
        rows[order] = np.arange(order.size)
        if distributed.world_size() > 1:  # under torchrun: every rank's shard, all-gathered
            _, probs_l, feats_l = self.shard()
            self._probs = distributed.gather_scores(probs_l)
            self._feats = distributed.gather_scores(feats_l)
        else:
            probs, feats = extract(
                self.model, self.data.x_train, device=self.device, batch_size=self.batch_size,
                indices=order,
            )
            self._probs, self._feats = probs.numpy(), feats.numpy()
        self._rows = rows

    def shard(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(lo, probs, feats)`` of this rank's contiguous share ``[lo, lo + len(probs))`` of
        the rows labeled + pool (in that order); every row, ``lo = 0``, in one process.

        Under torchrun each rank extracts only its share (no collective but the one that hands
        rank 0's BatchNorm statistics to all): strategies that score rows one by one, or run a
        sharded kernel (:func:`dalcore.distributed.kcenter`), gather only their scores."""
        if distributed.world_size() <= 1:
            self._extract()
            return 0, self._probs, self._feats
        if self._shard is None:
            distributed.sync_buffers(self.model)
            order = np.concatenate([self.labeled, self.pool])
            lo, hi = distributed.shard_rows(order.size)
            with distributed.one_process():  # this rank's rows only
                probs, feats = extract(self.model, self.data.x_train, device=self.device,
                                       batch_size=self.batch_size, indices=order[lo:hi])
            self._shard = (lo, probs.numpy(), feats.numpy())
        return self._shard

    def pool_scores(self, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``score(probs)`` of the pool rows, in pool order: ``score`` maps probabilities
        (m, C) to one row of scores per input row (m, ...). Under torchrun each rank scores its
        share of the rows and only the scores are gathered (the same result: row by row)."""
        if distributed.world_size() <= 1:
            return score(self.probs(self.pool))
        lo, probs, _ = self.shard()
        return distributed.gather_scores(score(probs[max(self.labeled.size - lo, 0):]))

    def _take(self, table: np.ndarray, idx: Any) -> np.ndarray:
        idx = as_index_vector(idx, "idx", self._rows.size, unique=False)
        r = self._rows[idx]
        if r.size and r.min() < 0:
            raise ValueError("idx: contains indices outside labeled + pool")
        return table[r]

    def probs(self, idx: Any) -> np.ndarray:
        """Softmax probabilities (len(idx), C) float32 of train indices in labeled + pool."""
        self._extract()
        return self._take(self._probs, idx)

    def features(self, idx: Any) -> np.ndarray:
        """Features (len(idx), d) float32 (L2-normalised) of train indices in labeled + pool."""
        self._extract()
        return self._take(self._feats, idx)


def check_budget(ctx: AcquisitionContext, budget: Any) -> int:
    """``budget`` as an int in [1, len(pool)] (ValueError naming budget otherwise)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget: expected an integer, got {type(budget).__name__}")
    b = int(budget)
    if b < 1:
        raise ValueError(f"budget: expected at least 1, got {b}")
    if b > ctx.pool.size:
        raise ValueError(f"budget: {b} exceeds the pool of {ctx.pool.size} unlabeled points")
    return b


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row, computed in float64; 0 log 0 = 0."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def top_entropy(ctx: AcquisitionContext, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool entropies and the positions (into ctx.pool) of the ``budget`` highest, stable."""
    h = ctx.pool_scores(entropy)
    return h, np.argsort(-h, kind="stable")[:budget]
