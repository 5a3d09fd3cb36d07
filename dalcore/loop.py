"""One active-learning step, shared by every driver.

A step fits a model on the labeled images (plus CEAL's pseudo-labeled ones, plus the whole
unlabeled pool under SEMI, from a DeepCluster backbone under PRE), then scores the pool and
selects the next batch. The simulator (:mod:`dalcore.experiment`, whose oracle is the dataset's
known labels) and the human loop (:mod:`dalcore.project`, whose oracle is the annotator's answers
in the project database) both call :func:`fit` and :func:`select`; they differ only in where the
labels come from and where the results go.

The data object is a :class:`dalcore.data.Dataset` (or anything with ``x_train``, ``y_train``,
``num_classes``, ``translate``, ``flip``). ``y_train`` must hold the true label of every index in
``labeled``; other entries are never read for training or selection (the human loop stores -1
there). Seeds are the driver's: every random choice of a step comes from the seeds it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .presets import Preset

__all__ = ["FitResult", "StepSettings", "fit", "pretrained_backbone", "select", "train_config"]


@dataclass(frozen=True)
class StepSettings:
    """How a step trains: everything but the data, the labels and the seeds.

    Attributes
    ----------
    preset : Preset
        Input size, training length, batch size, learning rate, pre-training schedule.
    width : float
        ConvNet width multiplier (the preset's unless overridden).
    epochs : int or None
        ``--epochs``: epochs per cycle instead of the preset's rule.
    semi : bool
        Label propagation over the pool every epoch (SEMI).
    graph : str
        ``reciprocal`` or ``union`` k-NN graph of SEMI.
    class_balance : bool
        Class-balanced pseudo-label weights in SEMI.
    input_graph : str
        What SEMI's graph is built on besides the model's features
        (:class:`~dalcore.semi.label_propagation.LabelPropagationRefresh`): ``none`` (the
        paper's), ``first`` (the images for the first refresh), ``always`` (model and images side
        by side) or ``only`` (the images alone).
    progress : bool
        Progress bars over epochs.
    """

    preset: Preset
    width: float
    epochs: int | None = None
    semi: bool = False
    graph: str = "reciprocal"
    class_balance: bool = False
    input_graph: str = "none"
    progress: bool = True


@dataclass
class FitResult:
    """A trained model and, under SEMI, the label propagation that trained it.

    Attributes
    ----------
    model : torch.nn.Module
        The trained ConvNet (``model(x) -> (logits, features)``), on the step's device.
    refresh : LabelPropagationRefresh or None
        SEMI's refresh; ``refresh.last`` holds the final pseudo-labels and weights of every image.
    history : dict
        What :func:`dalcore.training.train_model` returned (losses, learning rates, seconds).
    """

    model: Any
    refresh: Any
    history: dict


def train_config(settings: StepSettings, n_fit: int, n_pool: int):
    """The :class:`~dalcore.training.TrainConfig` of a step on ``n_fit`` training images (labeled
    plus CEAL's pseudo-labeled) with ``n_pool`` unlabeled images."""
    from .training import TrainConfig, semi_batches_per_epoch

    preset = settings.preset
    return TrainConfig(
        epochs=preset.epochs_for(n_fit, semi=settings.semi, override=settings.epochs,
                                 semi_batches=semi_batches_per_epoch(n_pool)),
        batch_size=preset.batch_for(n_fit), lr=preset.lr, augment=preset.augment,
    )


def pretrained_backbone(settings: StepSettings, data: Any, device: Any, path: Any, seed: int,
                        num_clusters: int, log: Callable[[str], None] | None = None) -> dict:
    """DeepCluster backbone on ``data.x_train`` (no label is read for training), cached in
    ``path`` and reused when it was made with the same settings."""
    from .unsupervised.deepcluster import load_or_pretrain

    preset = settings.preset
    cfg = dataclasses.replace(train_config(settings, 1, 0), epochs=preset.pretrain_epochs,
                              lr=preset.pretrain_lr, batch_size=preset.pretrain_batch_size)
    state, nmi = load_or_pretrain(
        path, data, width=settings.width, epochs=preset.pretrain_epochs,
        num_clusters=int(num_clusters), device=device, seed=seed, cfg=cfg,
        progress=settings.progress,
    )
    if nmi and log is not None:
        log(f"pre-trained backbone (seed {seed}): NMI {nmi[-1]:.3f} after {len(nmi)} epochs")
    return state


def fit(settings: StepSettings, data: Any, labeled: np.ndarray, *, device: Any, init_seed: int,
        train_seed: int, pseudo: Any = None, backbone: dict | None = None, desc: str = "",
        on_epoch: Callable[[int, int], None] | None = None) -> FitResult:
    """Build a ConvNet (seeded by ``init_seed``, from ``backbone`` when given) and train it.

    Parameters
    ----------
    settings : StepSettings
        The training settings.
    data : Dataset
        Images (``x_train``) and the labels of ``labeled`` (``y_train``).
    labeled : np.ndarray
        Sorted distinct indices of the labeled images (at least one).
    device : torch.device
        Where to train.
    init_seed, train_seed : int
        Seeds of the weight initialisation and of the training (batches, draws, augmentation,
        dropout).
    pseudo : PseudoLabels, optional
        CEAL's pseudo-labeled images (ignored under SEMI, whose propagation supersedes them).
    backbone : dict, optional
        Pre-trained backbone weights (PRE).
    desc : str
        Label of the progress bar.
    on_epoch : callable, optional
        ``on_epoch(epoch, epochs)`` before each epoch (progress for a driver's own display).

    Returns
    -------
    FitResult
    """
    import torch

    from .models import ConvNet13
    from .training import train_model

    pseudo = None if settings.semi else pseudo
    n_fit = len(labeled) + (0 if pseudo is None else len(pseudo.indices))
    n_pool = int(data.x_train.shape[0]) - len(labeled)
    train_cfg = train_config(settings, n_fit, n_pool)
    torch.manual_seed(init_seed)
    model = ConvNet13(in_channels=int(data.x_train.shape[1]), num_classes=int(data.num_classes),
                      width=settings.width)
    if backbone is not None:
        model.load_backbone(backbone)
    model = model.to(device)
    refresh = None
    if settings.semi:
        from .semi.label_propagation import make_refresh

        refresh = make_refresh(data, labeled, num_classes=int(data.num_classes), device=device,
                               mode=settings.graph, class_balance=settings.class_balance,
                               input_graph=settings.input_graph)
    history = train_model(
        model, data, labeled, train_cfg, device=device, seed=train_seed, pseudo=pseudo,
        refresh=_with_progress(refresh, on_epoch, train_cfg.epochs),
        pseudo_fraction=0.5 if refresh is not None else None,
        progress=settings.progress, desc=desc,
    )
    if refresh is None and on_epoch is not None:
        on_epoch(train_cfg.epochs, train_cfg.epochs)
    return FitResult(model=model, refresh=refresh, history=history)


def _with_progress(refresh: Any, on_epoch: Callable[[int, int], None] | None, epochs: int):
    """``refresh`` wrapped so that each call also reports the epoch (SEMI only)."""
    if refresh is None or on_epoch is None:
        return refresh

    def wrapped(model: Any, epoch: int) -> Any:
        on_epoch(epoch, epochs)
        return refresh(model, epoch)

    return wrapped


def select(fitted: FitResult, data: Any, labeled: np.ndarray, pool: np.ndarray, *, method: str,
           budget: int, cycle: int, seed: int, device: Any):
    """Score ``pool`` with the fitted model and choose ``budget`` images by ``method``.

    Returns the strategy's :class:`~dalcore.acquisition.Selection` (indices in pick order, and
    CEAL's pseudo-labels), after checking that it is ``budget`` distinct pool indices. The
    :class:`~dalcore.acquisition.AcquisitionContext` (with its cached probabilities and features)
    is ``selection.context`` for a driver that reports on the pool.
    """
    from .acquisition import AcquisitionContext, get_strategy

    ctx = AcquisitionContext(model=fitted.model, data=data, labeled=labeled, pool=pool,
                             cycle=cycle, rng=np.random.default_rng(seed), device=device)
    sel = get_strategy(method)(ctx, budget)
    picked = np.asarray(sel.indices, dtype=np.int64)
    if (len(picked) != budget or len(np.unique(picked)) != len(picked)
            or not np.isin(picked, ctx.pool).all()):
        raise RuntimeError(
            f"acquisition {method!r} returned an invalid selection "
            f"({len(picked)} indices for a budget of {budget})"
        )
    sel.indices = picked
    sel.context = ctx
    return sel
