"""Network features of Fashion-MNIST for the k-center bench, made once and cached.

- ``convnet``: the 128-d features of a dalcore ConvNet (the ``cpu`` preset: 16x16 input, width
  0.25, 200 gradient steps) trained on 200 class-balanced labelled training images, for all
  60,000 training images.
- ``deepcluster``: the 128-d features of the DeepCluster backbone (PRE: the ``cpu`` preset's
  settings, 50 clusters, no label read; its 20 pre-training epochs unless ``epochs`` says fewer)
  for all 60,000 training images; with ``subset`` the pre-training sees only a class-blind
  random subset of that many training images (seeded), the features are still extracted for
  all 60,000.

Both are L2-normalised (the network's own feature layer) float32 arrays, saved as ``.npy`` in the
cache folder (``--cache-dir``, else ``$DALCORE_BENCH_CACHE``, else ``~/.cache/dalcore/bench``)
and reused by later runs; the DeepCluster pre-training is checkpointed there as it goes, so an
interrupted one resumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["KINDS", "cache_dir", "network_features"]

KINDS = ("convnet", "deepcluster")
N_LABELS = 200


def cache_dir(path: Optional[str | os.PathLike] = None) -> Path:
    """The bench cache folder (created): ``path``, $DALCORE_BENCH_CACHE or
    ~/.cache/dalcore/bench."""
    p = Path(path or os.environ.get("DALCORE_BENCH_CACHE") or
             Path.home() / ".cache" / "dalcore" / "bench")
    p.mkdir(parents=True, exist_ok=True)
    return p


def _settings() -> Any:
    from ..loop import StepSettings
    from ..presets import get_preset

    preset = get_preset("cpu")
    return StepSettings(preset=preset, width=preset.width, progress=False)


def _convnet(data: Any, seed: int) -> Any:
    from ..data import class_balanced_indices
    from ..loop import fit

    labeled = np.sort(class_balanced_indices(
        np.asarray(data.y_train), N_LABELS, int(data.num_classes),
        np.random.default_rng(seed))).astype(np.int64)
    return fit(_settings(), data, labeled, device="cpu", init_seed=seed,
               train_seed=seed + 1).model


def _subset(data: Any, size: int, seed: int) -> Any:
    """``data`` with only ``size`` of its training images, drawn at random without looking at
    a label (seeded, in index order)."""
    import dataclasses

    n = int(data.x_train.shape[0])
    if size >= n:
        return data
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return dataclasses.replace(data, x_train=data.x_train[rows], y_train=data.y_train[rows])


def _deepcluster(data: Any, seed: int, folder: Path, epochs: Optional[int],
                 subset: Optional[int] = None) -> Any:
    import dataclasses

    from ..loop import pretrained_backbone
    from ..models import ConvNet13

    settings = _settings()
    if epochs is not None:
        settings = dataclasses.replace(settings, preset=dataclasses.replace(
            settings.preset, pretrain_epochs=int(epochs)))
    sub = f"-sub{subset}" if subset else ""
    path = folder / f"fashion-deepcluster-e{settings.preset.pretrain_epochs}{sub}-s{seed}.pt"
    train = _subset(data, subset, seed) if subset else data
    backbone = pretrained_backbone(settings, train, "cpu", path, seed,
                                   num_clusters=5 * int(data.num_classes), log=print)
    model = ConvNet13(in_channels=int(data.x_train.shape[1]), num_classes=int(data.num_classes),
                      width=settings.width)
    model.load_backbone(backbone)
    return model


def network_features(kind: str, data_dir: Optional[str | os.PathLike] = None, *,
                     cache: Optional[str | os.PathLike] = None, seed: int = 0,
                     epochs: Optional[int] = None, subset: Optional[int] = None,
                     log: Any = print) -> np.ndarray:
    """(60000, 128) float32 features of Fashion-MNIST's training images (see the module);
    ``epochs``: DeepCluster pre-training epochs (None: the cpu preset's 20); ``subset``: the
    number of training images the DeepCluster pre-training sees (None: all).

    Raises ValueError for an unknown ``kind`` or bad ``epochs``/``subset``;
    dalcore.data.DataError when Fashion-MNIST is missing; ImportError without torch.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1):
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    if subset is not None and (isinstance(subset, bool) or int(subset) != subset or subset < 100):
        raise ValueError(f"subset: expected an integer >= 100, got {subset!r}")
    folder = cache_dir(cache)
    tag = ""
    if kind == "deepcluster":
        tag = f"-e{epochs or _settings().preset.pretrain_epochs}"
        tag += f"-sub{int(subset)}" if subset else ""
    path = folder / f"fashion-{kind}{tag}-s{seed}.npy"
    if path.is_file():
        return np.load(path)
    import torch

    from ..data import load_dataset
    from ..training import extract

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cpu preset's: small convolutions, a shared machine
    try:
        data = load_dataset("fashion-mnist", data_dir, image_size=16)
        log(f"# making the {kind} features of Fashion-MNIST (once; cached in {path})")
        model = (_convnet(data, seed) if kind == "convnet"
                 else _deepcluster(data, seed, folder, epochs,
                                   None if subset is None else int(subset)))
        _, feats = extract(model, data.x_train, device="cpu")
    finally:
        torch.set_num_threads(threads)
    x = np.ascontiguousarray(feats.numpy(), dtype=np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)
    return x
