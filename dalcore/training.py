"""Training epochs (supervised, CEAL-weighted, semi-supervised with pseudo-labels) and extraction.

Everything an epoch touches stays on ``device``: the dataset tensor is indexed there by whole
index tensors, augmentation is batched there, and the loss is accumulated there (one host
synchronisation per epoch). Random choices come from generators seeded by ``seed``; dropout uses
torch's global generator, which :func:`train_model` seeds inside a fork of the RNG state, so the
caller's global RNG state is left as it was.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from ._arrays import as_index_vector, check_float, check_int

__all__ = [
    "TrainConfig", "PseudoLabels", "train_model", "extract", "evaluate", "lr_at",
    "semi_batches_per_epoch",
]


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: the paper's).

    Attributes
    ----------
    epochs : int
        Epochs per training (200 in the paper). In semi-supervised mode an epoch is one pass
        over the pseudo-labelled samples drawn for it.
    batch_size : int
        Batch of the supervised (and CEAL) mode.
    lr, momentum, weight_decay, nesterov
        SGD settings.
    lr_rampdown : str
        "cosine" (lr * (1 + cos(pi * t / epochs)) / 2 with t the fractional epoch, updated every
        iteration) or "none" (constant).
    semi_batch_labeled, semi_batch_pseudo : int
        Composition of a semi-supervised batch (50 labelled + 78 pseudo-labelled).
    eval_batch_size : int
        Batch of :func:`extract` / :func:`evaluate` when called by the experiment.
    augment : bool
        Apply the dataset's augmentation (its ``translate`` and ``flip``); False trains on the
        images as they are.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = True
    lr_rampdown: str = "cosine"
    semi_batch_labeled: int = 50
    semi_batch_pseudo: int = 78
    eval_batch_size: int = 512
    augment: bool = True

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field."""
        check_int(self.epochs, "cfg.epochs", low=1)
        check_int(self.batch_size, "cfg.batch_size", low=1)
        check_float(self.lr, "cfg.lr", low=0.0, low_open=True)
        check_float(self.momentum, "cfg.momentum", low=0.0, high=1.0, high_open=True)
        check_float(self.weight_decay, "cfg.weight_decay", low=0.0)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("cfg.nesterov: Nesterov momentum needs cfg.momentum > 0")
        if self.lr_rampdown not in ("cosine", "none"):
            raise ValueError(
                f"cfg.lr_rampdown: expected 'cosine' or 'none', got {self.lr_rampdown!r}"
            )
        check_int(self.semi_batch_labeled, "cfg.semi_batch_labeled", low=1)
        check_int(self.semi_batch_pseudo, "cfg.semi_batch_pseudo", low=1)
        check_int(self.eval_batch_size, "cfg.eval_batch_size", low=1)
        if not isinstance(self.augment, bool):
            raise TypeError(f"cfg.augment: expected a bool, got {type(self.augment).__name__}")


@dataclass
class PseudoLabels:
    """Pseudo-labelled training samples.

    Attributes
    ----------
    indices : np.ndarray
        int64 train indices (distinct).
    labels : np.ndarray
        int64 pseudo-labels, one per index.
    weights : np.ndarray
        float32 per-sample weights (>= 0): scale the sample's cross-entropy, and in
        semi-supervised mode its probability of being drawn.
    class_weights : np.ndarray or None
        float32 per-class weights (length num_classes) multiplying the loss of samples
        pseudo-labelled with that class, or None.
    """

    indices: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    class_weights: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.indices = _int_vector(self.indices, "pseudo.indices")
        self.labels = _int_vector(self.labels, "pseudo.labels")
        self.weights = np.ascontiguousarray(_to_numpy(self.weights), dtype=np.float32).reshape(-1)
        if not (self.indices.size == self.labels.size == self.weights.size):
            raise ValueError(
                "pseudo: indices, labels and weights must have the same length, got "
                f"{self.indices.size}, {self.labels.size}, {self.weights.size}"
            )
        if self.weights.size and (not np.all(np.isfinite(self.weights)) or self.weights.min() < 0):
            raise ValueError("pseudo.weights: expected finite weights >= 0")
        if self.class_weights is not None:
            cw = np.ascontiguousarray(_to_numpy(self.class_weights), dtype=np.float32)
            if cw.ndim != 1 or not np.all(np.isfinite(cw)) or (cw.size and cw.min() < 0):
                raise ValueError(
                    "pseudo.class_weights: expected a 1-D vector of finite weights >= 0"
                )
            self.class_weights = cw

    def __len__(self) -> int:
        return int(self.indices.size)

    def sample_weights(self) -> np.ndarray:
        """Per-sample loss weights: weights times the class weight of the label (float32)."""
        if self.class_weights is None:
            return self.weights.copy()
        return (self.weights * self.class_weights[self.labels]).astype(np.float32)


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _int_vector(a: Any, name: str) -> np.ndarray:
    a = _to_numpy(a)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector, got shape {tuple(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


def lr_at(cfg: TrainConfig, t: float) -> float:
    """Learning rate at fractional epoch ``t`` in [0, cfg.epochs]."""
    if cfg.lr_rampdown == "none":
        return float(cfg.lr)
    frac = min(max(t, 0.0), cfg.epochs) / cfg.epochs
    return float(cfg.lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def _check_pseudo(p: PseudoLabels, n: int, num_classes: int, name: str) -> None:
    if not isinstance(p, PseudoLabels):
        raise TypeError(f"{name}: expected PseudoLabels, got {type(p).__name__}")
    as_index_vector(p.indices, f"{name}.indices", n)
    if p.labels.size and (p.labels.min() < 0 or p.labels.max() >= num_classes):
        raise ValueError(f"{name}.labels: expected labels in [0, {num_classes})")
    if p.class_weights is not None and p.class_weights.size != num_classes:
        raise ValueError(
            f"{name}.class_weights: expected {num_classes} entries, got {p.class_weights.size}"
        )


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda" or torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


class _Augmenter:
    """Batched augmentation on the device (identity when the dataset asks for none)."""

    def __init__(self, data: Any, device: torch.device, seed: int, enabled: bool = True) -> None:
        self.translate = int(getattr(data, "translate", 0) or 0) if enabled else 0
        self.flip = bool(getattr(data, "flip", False)) and enabled
        self.fn = None
        if self.translate > 0 or self.flip:
            from .data import augment  # the DATA side's batched, device-resident augmentation

            self.fn = augment
            self.gen = torch.Generator(device=device)
            self.gen.manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fn is None:
            return x
        return self.fn(x, translate=self.translate, flip=self.flip, generator=self.gen)


def semi_batches_per_epoch(n_pseudo: int, cfg: TrainConfig | None = None,
                           pseudo_fraction: float = 0.5) -> int:
    """Batches in one semi-supervised epoch of :func:`train_model` over ``n_pseudo`` drawable
    pseudo-labeled samples: ``ceil(round(pseudo_fraction * n_pseudo) / cfg.semi_batch_pseudo)``,
    at least 1 (``cfg`` None: the default batch composition of :class:`TrainConfig`)."""
    batch_pseudo = TrainConfig.semi_batch_pseudo if cfg is None else cfg.semi_batch_pseudo
    n_draw = int(round(pseudo_fraction * max(0, int(n_pseudo))))
    return max(1, -(-n_draw // batch_pseudo))


def train_model(
    model: nn.Module,
    data: Any,
    labeled: np.ndarray,
    cfg: TrainConfig,
    *,
    device: Any,
    seed: int,
    pseudo: PseudoLabels | None = None,
    refresh: Callable[[nn.Module, int], PseudoLabels | None] | None = None,
    pseudo_fraction: float | None = None,
    progress: bool = True,
    desc: str = "",
) -> dict:
    """Train ``model`` in place on the labelled set (plus pseudo-labels).

    Parameters
    ----------
    model : nn.Module
        Returns ``(logits, features)``; moved to ``device``. Built (and seeded) by the caller.
    data : Dataset
        ``x_train`` (N, C, H, W) float32, ``y_train`` (N,) int64, ``num_classes``,
        ``translate``, ``flip``. Best already on ``device``.
    labeled : np.ndarray
        Distinct train indices with their true labels (at least one).
    cfg : TrainConfig
        Optimisation settings.
    device : str or torch.device
        Where to train.
    seed : int
        Fixes batch order, draws, augmentation and dropout.
    pseudo : PseudoLabels, optional
        CEAL mode: these samples join the labelled set for this training, each with loss weight
        ``weights * class_weights[label]`` (labelled samples weigh 1). They must not overlap
        ``labeled``. Combined with ``refresh`` they are part of the labelled half of the batches.
    refresh : callable, optional
        Semi-supervised mode: ``refresh(model, epoch)`` is called at the start of every epoch
        (before the first one and after each epoch that another follows) and returns the
        pseudo-labels of the pool (samples in ``labeled`` or ``pseudo`` are ignored), or None
        to keep the previous ones (an epoch without any runs supervised). Each epoch draws
        ``round(pseudo_fraction * len)`` of them without replacement with probability
        proportional to their weight; batches hold ``cfg.semi_batch_labeled`` labelled samples
        (cycling through reshuffled passes of the labelled set) and ``cfg.semi_batch_pseudo``
        drawn ones; loss = mean CE(labelled) + mean over the pseudo samples of
        ``weight * class_weight * CE``.
    pseudo_fraction : float, optional
        Fraction of the pseudo-labelled pool drawn per epoch (default 0.5); only with ``refresh``.
    progress : bool
        Show a tqdm bar over epochs.
    desc : str
        Label of the bar.

    Returns
    -------
    dict
        ``loss`` (mean batch loss per epoch), ``lr`` (at the end of each epoch), ``iterations``
        and ``pseudo`` (pseudo samples drawn per epoch) lists, and ``seconds``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    seed = check_int(seed, "seed", low=0)
    device = torch.device(device)
    x_all, y_all = data.x_train, data.y_train
    n = int(x_all.shape[0])
    num_classes = int(data.num_classes)
    labeled = as_index_vector(labeled, "labeled", n, allow_empty=False)
    if pseudo is not None:
        _check_pseudo(pseudo, n, num_classes, "pseudo")
        if np.intersect1d(pseudo.indices, labeled).size:
            raise ValueError("pseudo.indices: must not overlap labeled")
    if refresh is None:
        if pseudo_fraction is not None:
            raise ValueError("pseudo_fraction: only meaningful together with refresh")
    else:
        if not callable(refresh):
            raise TypeError(f"refresh: expected a callable, got {type(refresh).__name__}")
        pseudo_fraction = check_float(
            0.5 if pseudo_fraction is None else pseudo_fraction, "pseudo_fraction",
            low=0.0, high=1.0, low_open=True,
        )

    x_all = x_all.to(device)
    y_all = y_all.to(device)
    model.to(device)
    # The "base" set: labelled samples (weight 1) and CEAL's pseudo-labelled ones.
    y_lab = y_all[torch.from_numpy(labeled).to(device)]
    if pseudo is not None and len(pseudo):
        base_idx = np.concatenate([labeled, pseudo.indices])
        base_y = torch.cat([y_lab, torch.from_numpy(pseudo.labels).to(device)])
        base_w = torch.cat([
            torch.ones(labeled.size, device=device),
            torch.from_numpy(pseudo.sample_weights()).to(device),
        ])
    else:
        base_idx = labeled
        base_y = y_lab
        base_w = torch.ones(labeled.size, device=device)
    base_idx_d = torch.from_numpy(base_idx).to(device)
    in_base = np.zeros(n, dtype=bool)
    in_base[base_idx] = True

    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
    )
    gen = torch.Generator()  # CPU: batch order and draws (device-independent)
    gen.manual_seed(seed)
    augment = _Augmenter(data, device, seed + 1, cfg.augment)

    history: dict = {"loss": [], "lr": [], "iterations": [], "pseudo": []}
    t0 = time.perf_counter()
    semi: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    net = distributed.wrap_ddp(model)  # DDP under torchrun: each rank a slice of every batch

    def step(t: float, xb: torch.Tensor, loss_fn: Callable[..., torch.Tensor]) -> torch.Tensor:
        lr = lr_at(cfg, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        xa = augment(xb)  # the whole batch on every rank: the same draws as one process
        share = distributed.batch_slice(int(xa.shape[0]))
        if share is None:
            logits, _ = model(xa)
            loss = loss_fn(logits)
        else:
            rows = torch.from_numpy(share[0]).to(xa.device)
            logits, _ = net(xa[rows])
            loss = loss_fn(logits, rows, share[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed + 2)  # dropout
        model.train()
        bar = tqdm(range(cfg.epochs), desc=desc or "train", leave=False, disable=not progress)
        for epoch in bar:
            if refresh is not None:
                new = refresh(model, epoch)
                model.train()
                if new is not None:
                    _check_pseudo(new, n, num_classes, "refresh()")
                    keep = ~in_base[new.indices]
                    w = new.sample_weights()[keep]
                    semi = (
                        torch.from_numpy(new.indices[keep]).to(device),
                        torch.from_numpy(new.labels[keep]).to(device),
                        torch.from_numpy(w).to(device),
                        torch.from_numpy(new.weights[keep].astype(np.float64)),  # draw probs
                    )
            loss_sum = torch.zeros((), device=device)
            n_draw = 0
            if semi is not None:
                p_idx, p_y, p_w, p_draw = semi
                positive = int((p_draw > 0).sum())
                n_draw = min(positive, int(round(pseudo_fraction * p_draw.numel())))
            if n_draw > 0:
                drawn = torch.multinomial(p_draw, n_draw, replacement=False, generator=gen)
                drawn = drawn.to(device)
                bl, bp = cfg.semi_batch_labeled, cfg.semi_batch_pseudo
                iters = -(-n_draw // bp)
                passes = -(-(iters * bl) // base_idx.size)
                lab_order = torch.cat(
                    [torch.randperm(base_idx.size, generator=gen) for _ in range(passes)]
                )[: iters * bl].to(device)
                for it in range(iters):
                    lsel = lab_order[it * bl:(it + 1) * bl]
                    psel = drawn[it * bp:(it + 1) * bp]
                    nl = lsel.numel()
                    xb = x_all[torch.cat([base_idx_d[lsel], p_idx[psel]])]
                    yl, wl = base_y[lsel], base_w[lsel]
                    yp, wp = p_y[psel], p_w[psel]

                    def loss_fn(logits: torch.Tensor, rows: Any = None, scale: float = 1.0,
                                nl=nl, yl=yl, wl=wl, yp=yp, wp=wp) -> torch.Tensor:
                        if rows is not None:  # this rank's slice of the batch (DDP)
                            return _share_semi(logits, rows, scale, yl, wl, yp, wp)
                        ce_l = F.cross_entropy(logits[:nl], yl, reduction="none")
                        ce_p = F.cross_entropy(logits[nl:], yp, reduction="none")
                        return (wl * ce_l).mean() + (wp * ce_p).mean()

                    loss_sum += step(epoch + it / iters, xb, loss_fn)
            else:
                m = base_idx.size
                iters = -(-m // cfg.batch_size)
                order = torch.randperm(m, generator=gen)
                short = iters * cfg.batch_size - m
                if m > cfg.batch_size and short > 0:
                    # Every batch is full: the last one is topped up from the start of the
                    # pass, so BatchNorm never sees a batch of a handful of images.
                    order = torch.cat([order, order[:short]])
                order = order.to(device)
                for it in range(iters):
                    sel = order[it * cfg.batch_size:(it + 1) * cfg.batch_size]
                    yb, wb = base_y[sel], base_w[sel]

                    def loss_fn(logits: torch.Tensor, rows: Any = None, scale: float = 1.0,
                                yb=yb, wb=wb) -> torch.Tensor:
                        if rows is not None:  # this rank's slice of the batch (DDP)
                            ce = F.cross_entropy(logits, yb[rows], reduction="none")
                            return scale * (wb[rows] * ce).sum() / yb.numel()
                        return (wb * F.cross_entropy(logits, yb, reduction="none")).mean()

                    loss_sum += step(epoch + it / iters, x_all[base_idx_d[sel]], loss_fn)
            mean_loss = float(loss_sum) / iters
            if not math.isfinite(mean_loss):
                raise RuntimeError(f"training diverged: mean loss {mean_loss} at epoch {epoch}")
            history["loss"].append(mean_loss)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            history["iterations"].append(iters)
            history["pseudo"].append(n_draw)
            if progress:
                bar.set_postfix(loss=f"{mean_loss:.4f}")
        bar.close()
    distributed.sync_buffers(model)  # the ranks' BatchNorm statistics: rank 0's
    history["seconds"] = time.perf_counter() - t0
    return history


def _share_semi(logits: torch.Tensor, rows: torch.Tensor, scale: float, yl: torch.Tensor,
                wl: torch.Tensor, yp: torch.Tensor, wp: torch.Tensor) -> torch.Tensor:
    """A rank's share of the semi-supervised batch loss mean(wl ce_l) + mean(wp ce_p): its rows
    (labelled first, then pseudo-labelled, as in the batch) each weighted by its half's size."""
    y, w = torch.cat([yl, yp])[rows], torch.cat([wl, wp])[rows]
    div = torch.where(rows < yl.numel(), float(yl.numel()), float(yp.numel()))
    return scale * (w * F.cross_entropy(logits, y, reduction="none") / div).sum()


def _batches(model: nn.Module, x: torch.Tensor, device: Any, batch_size: int,
             indices: np.ndarray | None):
    device = torch.device(device)
    batch_size = check_int(batch_size, "batch_size", low=1)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError("x: expected a (N, C, H, W) tensor")
    n = int(x.shape[0]) if indices is None else int(indices.size)
    idx_d = None if indices is None else torch.from_numpy(indices).to(x.device)
    model.to(device)
    for s in range(0, n, batch_size):
        xb = x[s:s + batch_size] if idx_d is None else x[idx_d[s:s + batch_size]]
        yield s, model(xb.to(device, non_blocking=True))


def extract(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: Any,
    batch_size: int = 512,
    indices: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N, C) and features (N, d) of ``x`` (or of ``x[indices]``).

    Eval mode (BatchNorm running statistics, no dropout), no augmentation, no grad; the
    model's training mode is restored afterwards. Both results are float32 on the CPU.
    """
    if indices is not None:
        indices = as_index_vector(indices, "indices", int(x.shape[0]), unique=False)
    if distributed.world_size() > 1:  # under torchrun: each rank a shard, then all-gathered
        distributed.sync_buffers(model)
        n = int(x.shape[0]) if indices is None else int(indices.size)
        lo, hi = distributed.shard_rows(n)
        mine = np.arange(lo, hi, dtype=np.int64) if indices is None else indices[lo:hi]
        probs, feats = _extract_rows(model, x, device, batch_size, mine)
        return distributed.gather_rows(probs), distributed.gather_rows(feats)
    return _extract_rows(model, x, device, batch_size, indices)


def _extract_rows(model: nn.Module, x: torch.Tensor, device: Any, batch_size: int,
                  indices: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    if indices is not None and indices.size == 0:  # an empty shard: the shapes of one row
        p, f = _extract_rows(model, x, device, batch_size, np.zeros(1, dtype=np.int64))
        return p[:0], f[:0]
    was_training = model.training
    model.eval()
    probs, feats = [], []
    try:
        with torch.no_grad():
            for _, (logits, f) in _batches(model, x, device, batch_size, indices):
                probs.append(torch.softmax(logits.float(), dim=1))
                feats.append(f.float())
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("x: expected at least one image")
    return torch.cat(probs).cpu(), torch.cat(feats).cpu()


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: Any, batch_size: int = 512
) -> float:
    """Top-1 accuracy of ``model`` on (x, y) in [0, 1] (eval mode, no augmentation)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError("y: expected a 1-D label tensor with one label per image of x")
    if y.shape[0] == 0:
        raise ValueError("x: expected at least one image")
    was_training = model.training
    model.eval()
    correct = None
    try:
        with torch.no_grad():
            for s, (logits, _) in _batches(model, x, device, batch_size, None):
                yb = y[s:s + logits.shape[0]].to(logits.device)
                c = (logits.argmax(dim=1) == yb).sum()
                correct = c if correct is None else correct + c
    finally:
        model.train(was_training)
    return float(correct) / int(y.shape[0])
