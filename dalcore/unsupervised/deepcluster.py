"""DeepCluster pre-training (Caron et al., ECCV 2018) of the 13-layer ConvNet, without labels.

Every epoch, on all training images:

1. extract the L2-normalised 128-d features of every image (eval mode, no augmentation);
2. k-means them into ``num_clusters`` clusters (faiss, seeded; on the GPU when the model is on
   CUDA and faiss has GPUs) and record the NMI of the clustering against the true labels (for
   monitoring only: the labels never reach the loss);
3. re-initialise the classifier for the new pseudo-classes (cluster ids are arbitrary from one
   epoch to the next) and drop its momentum;
4. train one epoch with cross-entropy on the cluster assignments, with augmentation (the
   dataset's, but always at least a random shift of 1/16 of the image side).
   As in DeepCluster, the epoch's N samples are drawn *uniformly over the non-empty clusters*
   (each contributes N / K' images, drawn with replacement), so that a few huge clusters cannot
   dominate and the trivial "one big cluster" solution is not rewarded.

The optimiser (SGD with the momentum, Nesterov flag, weight decay and learning rate of ``cfg``)
persists over epochs for the backbone; the learning rate follows ``cfg.lr_rampdown`` ("cosine":
half-cosine from ``cfg.lr`` to 0 over all pre-training steps, else constant). Only the backbone
(everything but the final linear classifier) is returned: it initialises the model of every cycle
through ``model.load_backbone``.

Differences from the original DeepCluster: no Sobel filtering and no PCA-whitening (the ConvNet's
128-d features are already low-dimensional and L2-normalised); the batch size is ``cfg.batch_size``;
the loss is the cross-entropy of the logits divided by a temperature 0.1 (the weight-normalised
classifier on unit features has nearly flat logits after each re-initialisation, and without the
temperature the loss does not move from log(K) within an epoch on small data sets).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["cluster_features", "load_or_pretrain", "nmi", "pretrain"]

_CACHE_FORMAT = 1
#: Temperature of the pre-training loss: CE(logits / tau) with tau = 0.1. The weight-normalised
#: classifier on unit-norm features starts with logits of magnitude < 1 (|g| ~ 0.6), too flat for
#: 5C pseudo-classes to be learnt in one epoch after every re-initialisation; measured on digits
#: (16x16, width 0.25, 8 epochs) the loss stays at log(5C) without it.
_LOGIT_SCALE = 10.0


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic-mean normalisation, as scikit-learn's default).

    Parameters
    ----------
    a, b : np.ndarray
        Two labelings of the same points (non-negative integers), equal lengths.

    Returns
    -------
    float
        ``I(a; b) / ((H(a) + H(b)) / 2)`` in [0, 1]; 1.0 when both labelings are constant.
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError("nmi: expected two non-empty labelings of equal length, "
                         f"got {a.shape} and {b.shape}")
    if a.min() < 0 or b.min() < 0:
        raise ValueError("nmi: labels must be non-negative integers")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    n = a.size
    joint = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.float64)
    np.add.at(joint, (ia, ib), 1.0)
    joint /= n
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    nz = joint > 0
    mi = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])))
    ha = float(-np.sum(pa[pa > 0] * np.log(pa[pa > 0])))
    hb = float(-np.sum(pb[pb > 0] * np.log(pb[pb > 0])))
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = 0.5 * (ha + hb)
    return float(max(0.0, min(1.0, mi / denom))) if denom > 0 else 0.0


def cluster_features(features: np.ndarray, num_clusters: int, *, seed: int, niter: int = 20,
                     gpu: bool = False) -> np.ndarray:
    """k-means (faiss) of L2-normalised features; returns the cluster id (int64) of every row.

    Parameters
    ----------
    features : np.ndarray
        (N, d) features; rows are L2-normalised here (zero rows stay zero).
    num_clusters : int
        Number of clusters, 1 <= num_clusters <= N.
    seed : int
        faiss k-means seed (initial centroids).
    niter : int
        k-means iterations.
    gpu : bool
        Run faiss k-means on the GPU (requires a faiss build with GPUs).
    """
    import faiss

    x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features: expected a non-empty (N, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features: contain NaN or inf")
    if not (1 <= int(num_clusters) <= x.shape[0]):
        raise ValueError(f"num_clusters: expected 1 <= num_clusters <= N={x.shape[0]}, "
                         f"got {num_clusters}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], int(num_clusters), niter=int(niter), seed=int(seed) & 0x7FFFFFFF,
                      gpu=bool(gpu), max_points_per_centroid=10_000_000, min_points_per_centroid=1,
                      verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign.ravel().astype(np.int64)


def _uniform_over_clusters(assign: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N sample indices with every non-empty cluster drawn equally often (with replacement)."""
    n = assign.size
    order = np.argsort(assign, kind="stable")
    ids, starts, counts = np.unique(assign[order], return_index=True, return_counts=True)
    k = ids.size
    per = np.full(k, n // k, dtype=np.int64)
    per[: n % k] += 1
    out = np.empty(n, dtype=np.int64)
    pos = 0
    for s, c, m in zip(starts, counts, per):
        out[pos:pos + m] = order[s + rng.integers(0, c, size=m)]
        pos += m
    rng.shuffle(out)
    return out


def _pretrain_translate(data: Any) -> int:
    """Shift (px) of the pre-training augmentation: the dataset's, but at least 1/16 of the side."""
    side = int(data.x_train.shape[-1])
    return max(int(getattr(data, "translate", 0) or 0), side // 16)


def _classifier_names(model: torch.nn.Module) -> list[str]:
    """State-dict keys of ``model`` that are not part of its backbone (the final classifier)."""
    backbone = set(model.backbone_state_dict().keys())
    return [k for k in model.state_dict().keys() if k not in backbone]


def pretrain(data: Any, *, width: float, epochs: int, num_clusters: int, device: Any, seed: int,
             cfg: Any, progress: bool = True, log: Callable[[dict], None] | None = None,
             translate: int | None = None,
             checkpoint: str | os.PathLike | None = None) -> tuple[dict, list[float]]:
    """DeepCluster pre-training of a ``ConvNet13`` on all training images, without labels.

    Parameters
    ----------
    data : dalcore.data.Dataset
        The training images ``x_train`` are used; ``y_train`` only to report the NMI.
    width : float
        Width multiplier of the ConvNet (must match the model the backbone will initialise).
    epochs : int
        Number of cluster-then-train epochs (>= 1); the paper uses 400.
    num_clusters : int
        k of k-means (the paper: 5 x number of classes).
    device : torch.device or str
        Where the model trains.
    seed : int
        Fixes model initialisation, k-means, sampling, augmentation and dropout.
    cfg : dalcore.training.TrainConfig
        Optimiser settings: lr, momentum, weight_decay, nesterov, lr_rampdown, batch_size,
        eval_batch_size.
    progress : bool
        Show a progress bar over epochs.
    log : callable, optional
        Called after every epoch with ``{"epoch", "nmi", "loss", "clusters"}``.
    translate : int, optional
        Random shift (px, reflection padding) of the training augmentation; default: the
        dataset's ``translate``, but at least ``side // 16`` (1 px at 16x16, 2 px at 32x32) even
        for data sets trained without augmentation (digits): without any augmentation the network
        memorises the cluster assignments. Flips follow ``data.flip``.
    checkpoint : path, optional
        Where the full training state (model, optimiser, every random generator, NMIs) is
        written atomically every ``max(1, epochs // 10)`` epochs (so at least every 10 % of
        them). When it already holds the state of a run with the same settings, pre-training
        resumes from it and ends with the same weights as an uninterrupted run. It is read with
        ``torch.load(weights_only=True)``; an unreadable one is ignored (warning) and overwritten.

    Returns
    -------
    backbone : dict
        ``model.backbone_state_dict()`` moved to the CPU.
    nmi_per_epoch : list of float
        NMI between each epoch's clustering and the true labels.
    """

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    n = int(data.x_train.shape[0])
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) \
            or not 2 <= num_clusters <= n:
        raise ValueError(f"num_clusters: expected an integer in [2, N={n}], got {num_clusters!r}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width: expected a positive number, got {width!r}")
    device = torch.device(device)
    seed = int(seed)
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    # Model init and dropout draw from torch's global RNG: seed it inside a fork so that the
    # caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        ckpt = None
        if checkpoint is not None:
            meta = _meta(data, width=width, epochs=epochs, num_clusters=num_clusters, seed=seed,
                         cfg=cfg, translate=translate)
            ckpt = _Checkpoint(pathlib.Path(checkpoint), meta, int(epochs))
        return _pretrain(data, width=float(width), epochs=int(epochs),
                         num_clusters=int(num_clusters), device=device, seed=seed, cfg=cfg,
                         progress=progress, log=log, translate=translate, ckpt=ckpt)


def _pretrain(data: Any, *, width: float, epochs: int, num_clusters: int, device: torch.device,
              seed: int, cfg: Any, progress: bool, log: Callable[[dict], None] | None,
              translate: int | None, ckpt: _Checkpoint | None = None) -> tuple[dict, list[float]]:
    from dalcore.models import ConvNet13
    from dalcore.training import extract

    n = int(data.x_train.shape[0])
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)

    in_ch = int(data.x_train.shape[1])
    model = ConvNet13(in_channels=in_ch, num_classes=int(num_clusters), width=float(width))
    model = model.to(device)
    head = set(_classifier_names(model))
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg.lr), momentum=float(cfg.momentum),
                          weight_decay=float(cfg.weight_decay), nesterov=bool(cfg.nesterov))
    x_all = data.x_train.to(device)
    y_true = data.y_train.detach().cpu().numpy()
    bs = int(cfg.batch_size)
    steps_per_epoch = math.ceil(n / bs)
    total_steps = steps_per_epoch * int(epochs)
    cosine = str(getattr(cfg, "lr_rampdown", "cosine")) == "cosine"
    use_gpu_kmeans = False
    if device.type == "cuda":
        try:
            import faiss
            use_gpu_kmeans = faiss.get_num_gpus() > 0
        except (ImportError, AttributeError):
            use_gpu_kmeans = False
    eval_bs = int(getattr(cfg, "eval_batch_size", 512))
    translate = _pretrain_translate(data) if translate is None else int(translate)
    flip = bool(getattr(data, "flip", False))
    augment = None
    if translate > 0 or flip:
        from dalcore.data import augment

    nmis: list[float] = []
    step, start = 0, 0
    if ckpt is not None:
        start, step, nmis = ckpt.restore(model, opt, rng, gen, device)
    it = range(start, int(epochs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(it, desc="deepcluster", leave=False)
        it = bar
    for epoch in it:
        _, feats = extract(model, x_all, device=device, batch_size=eval_bs)
        assign = cluster_features(feats.numpy(), int(num_clusters), seed=seed * 1000 + epoch,
                                  gpu=use_gpu_kmeans)
        score = nmi(assign, y_true)
        nmis.append(score)

        # New pseudo-classes: a fresh classifier (initialised as a new ConvNet13's), no momentum.
        fresh = ConvNet13(in_channels=in_ch, num_classes=int(num_clusters), width=float(width))
        fresh_sd = fresh.state_dict()
        model.load_state_dict({k: fresh_sd[k] for k in head}, strict=False)
        for name, p in model.named_parameters():
            if name in head:
                opt.state.pop(p, None)

        targets = torch.from_numpy(assign).to(device)
        order = torch.from_numpy(_uniform_over_clusters(assign, rng)).to(device)
        model.train()
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            if idx.numel() == 0:
                break
            ramp = 0.5 * (1.0 + math.cos(math.pi * step / total_steps)) if cosine else 1.0
            lr = float(cfg.lr) * ramp
            for group in opt.param_groups:
                group["lr"] = lr
            xb = x_all[idx]
            if augment is not None:
                xb = augment(xb, translate=translate, flip=flip, generator=gen)
            logits, _ = model(xb)
            loss = torch.nn.functional.cross_entropy(logits * _LOGIT_SCALE, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            step += 1
        mean_loss = total / n
        if bar is not None:
            bar.set_postfix(nmi=f"{score:.3f}", loss=f"{mean_loss:.3f}")
        if ckpt is not None:
            ckpt.save(epoch, step, nmis, model, opt, rng, gen, device)
        if log is not None:
            log({"epoch": epoch, "nmi": score, "loss": mean_loss,
                 "clusters": int(np.unique(assign).size)})
    if bar is not None:
        bar.close()
    state = {k: v.detach().cpu().clone() for k, v in model.backbone_state_dict().items()}
    return state, nmis


class _Checkpoint:
    """The resumable state of a pre-training, saved every ``max(1, epochs // 10)`` epochs."""

    def __init__(self, path: pathlib.Path, meta: dict, epochs: int) -> None:
        self.path, self.meta, self.epochs = path, meta, epochs
        self.every = max(1, epochs // 10)

    def save(self, epoch: int, step: int, nmis: list[float], model: Any, opt: Any,
             rng: np.random.Generator, gen: torch.Generator, device: torch.device) -> None:
        """Write the state after ``epoch`` when it is due (not after the last epoch)."""
        done = epoch + 1
        if done % self.every or done >= self.epochs:
            return
        cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
        state = {
            "meta": self.meta, "epoch": done, "step": step, "nmi": list(nmis),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "numpy_rng": json.dumps(rng.bit_generator.state), "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(), "cuda_rng": cuda,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(self, model: Any, opt: Any, rng: np.random.Generator, gen: torch.Generator,
                device: torch.device) -> tuple[int, int, list[float]]:
        """(first epoch to run, step, NMIs so far); (0, 0, []) without a usable checkpoint."""
        if not self.path.is_file():
            return 0, 0, []
        try:
            s = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(s, dict) or s.get("meta") != self.meta:
                warnings.warn(f"{self.path}: checkpoint of a pre-training with other settings; "
                              "starting again", stacklevel=3)
                return 0, 0, []
            model.load_state_dict(s["model"])
            opt.load_state_dict(s["optimizer"])
            rng.bit_generator.state = json.loads(s["numpy_rng"])
            gen.set_state(s["generator"])
            torch.set_rng_state(s["torch_rng"])
            if device.type == "cuda" and s["cuda_rng"]:
                torch.cuda.set_rng_state_all(s["cuda_rng"])
            return int(s["epoch"]), int(s["step"]), [float(v) for v in s["nmi"]]
        except Exception as exc:  # corrupt or foreign file: start again
            warnings.warn(f"{self.path}: unreadable pre-training checkpoint ({exc}); starting "
                          "again", stacklevel=3)
            return 0, 0, []


def _meta(data: Any, *, width: float, epochs: int, num_clusters: int, seed: int, cfg: Any,
          translate: int | None) -> dict:
    return {
        "format": _CACHE_FORMAT,
        "dataset": str(getattr(data, "name", "?")),
        "n_train": int(data.x_train.shape[0]),
        "shape": [int(s) for s in data.x_train.shape[1:]],
        "width": float(width),
        "epochs": int(epochs),
        "num_clusters": int(num_clusters),
        "seed": int(seed),
        "lr": float(cfg.lr),
        "batch_size": int(cfg.batch_size),
        "translate": _pretrain_translate(data) if translate is None else int(translate),
        "flip": bool(getattr(data, "flip", False)),
    }


def load_or_pretrain(path: str | os.PathLike, data: Any, *, width: float, epochs: int,
                     num_clusters: int, device: Any, seed: int, cfg: Any, progress: bool = True,
                     log: Callable[[dict], None] | None = None,
                     translate: int | None = None) -> tuple[dict, list[float]]:
    """:func:`pretrain`, cached in ``path`` (``torch.save``).

    If ``path`` holds a result made with the same settings (dataset name and size, image shape,
    width, epochs, clusters, seed, lr, batch size, augmentation), it is loaded instead of
    pre-training again; otherwise (missing, unreadable or made with other settings) the model
    is pre-trained, checkpointed as it goes in ``<path>.partial`` (an interrupted pre-training
    resumes from there, see :func:`pretrain`), and ``path`` is written atomically. Every file
    is read with ``torch.load(weights_only=True)``. Returns ``(backbone_state_dict,
    nmi_per_epoch)`` like :func:`pretrain`.
    """
    path = pathlib.Path(path)
    meta = _meta(data, width=width, epochs=epochs, num_clusters=num_clusters, seed=seed, cfg=cfg,
                 translate=translate)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(saved, dict) and saved.get("meta") == meta:
                return saved["backbone"], list(saved["nmi"])
            warnings.warn(f"{path}: pre-training cache made with other settings; "
                          "pre-training again", stacklevel=2)
        except Exception as exc:  # corrupt or foreign file: recompute
            warnings.warn(f"{path}: unreadable pre-training cache ({exc}); pre-training again",
                          stacklevel=2)
    t0 = time.perf_counter()
    partial = path.with_name(path.name + ".partial")
    state, nmis = pretrain(data, width=width, epochs=epochs, num_clusters=num_clusters,
                           device=device, seed=seed, cfg=cfg, progress=progress, log=log,
                           translate=translate, checkpoint=partial)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"meta": meta, "backbone": state, "nmi": nmis, "seconds": seconds}, tmp)
    os.replace(tmp, path)
    partial.unlink(missing_ok=True)
    return state, nmis
