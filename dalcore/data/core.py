"""The dataset container, its error type, and the helpers every loader shares.

A loader reads its files into uint8 (or [0, 1] float) numpy arrays of shape (N, C, H, W) and hands
them to :func:`build_dataset`, which pads 28x28 inputs to 32x32 with zeros, resizes when asked,
converts to float32 and normalises every channel with the train set's mean and standard deviation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DataError",
    "Dataset",
    "PathLike",
    "build_dataset",
    "class_balanced_indices",
    "find_file",
    "scaled_translate",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Side of the network input in the paper (28x28 inputs are padded to it).
BASE_SIZE = 32


class DataError(ValueError):
    """A dataset's files are missing, unreadable or not in the expected format.

    The message names the files expected and where to obtain them.
    """


@dataclasses.dataclass
class Dataset:
    """A whole labelled image data set held as tensors.

    Attributes
    ----------
    name : str
        Registry name ("digits", "mnist", ...).
    x_train, x_test : torch.Tensor
        (N, C, H, W) float32, every channel normalised with the *train* mean and std.
    y_train, y_test : torch.Tensor
        (N,) int64 class labels in [0, num_classes).
    num_classes : int
        Number of classes.
    translate : int
        Largest random shift in pixels for training augmentation (0: none).
    flip : bool
        Whether random horizontal flips are label-preserving (used by augmentation).
    mean, std : list of float
        Per-channel statistics of the train images in [0, 1] pixel units (before normalisation).
    classes : list of str, optional
        Class names where the format provides them.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    translate: int
    flip: bool
    mean: list[float]
    std: list[float]
    classes: Optional[list[str]] = None

    def __post_init__(self) -> None:
        for xn, yn in (("x_train", "y_train"), ("x_test", "y_test")):
            x, y = getattr(self, xn), getattr(self, yn)
            if x.ndim != 4:
                raise ValueError(f"Dataset.{xn}: expected (N, C, H, W), got shape {tuple(x.shape)}")
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"Dataset.{yn}: expected shape ({x.shape[0]},), got {tuple(y.shape)}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                "Dataset: train and test images differ in shape: "
                f"{tuple(self.x_train.shape[1:])} vs {tuple(self.x_test.shape[1:])}"
            )

    @property
    def in_channels(self) -> int:
        """Number of image channels C."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Image side H (images are square)."""
        return int(self.x_train.shape[2])

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.x_train.device

    def to(self, device: Union[str, torch.device]) -> Dataset:
        """A copy with every tensor on ``device`` (the same object's tensors when already there)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def subset_train(self, indices: Union[np.ndarray, torch.Tensor, Sequence[int]]) -> Dataset:
        """A copy whose train set is ``x_train[indices]`` (test set, mean and std unchanged).

        Parameters
        ----------
        indices : array of int
            Distinct train indices in [0, len(x_train)); their order is kept.
        """
        idx = _as_index_array(indices, "indices")
        n = int(self.x_train.shape[0])
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(
                f"indices: expected values in [0, {n}), got [{idx.min()}, {idx.max()}]"
            )
        if np.unique(idx).size != idx.size:
            raise ValueError("indices: expected distinct train indices, got duplicates")
        t = torch.from_numpy(idx).to(self.x_train.device)
        return dataclasses.replace(self, x_train=self.x_train[t], y_train=self.y_train[t])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, "
            f"translate={self.translate}, flip={self.flip}, device={self.device})"
        )


def _as_index_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of indices, got shape {a.shape}")
    if a.size == 0:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected integer indices, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def class_balanced_indices(
    y: Union[np.ndarray, torch.Tensor], n: int, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` distinct indices whose classes are as equal in number as possible.

    Every class gets ``min(count_c, L)`` samples for the largest level ``L`` that fits, and the
    remaining ``r < #{c : count_c > L}`` samples go one each to ``r`` classes drawn at random
    among those with samples left; so any two classes differ by at most one unless the smaller
    one is exhausted. Within a class the samples are drawn uniformly without replacement.

    Parameters
    ----------
    y : (N,) integer array or tensor
        Labels in [0, num_classes).
    n : int
        Number of indices, 0 <= n <= N.
    num_classes : int
        Number of classes (> 0).
    rng : numpy.random.Generator
        Source of every random choice (same state -> same result).

    Returns
    -------
    numpy.ndarray
        (n,) int64 indices, sorted ascending.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes: expected an int, got {type(num_classes).__name__}")
    if num_classes <= 0:
        raise ValueError(f"num_classes: expected > 0, got {num_classes}")
    labels = _as_index_array(y, "y")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 0 or n > labels.size:
        raise ValueError(f"n: expected 0 <= n <= len(y) = {labels.size}, got {n}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"y: expected labels in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    counts = np.bincount(labels, minlength=num_classes)
    # Largest level L with sum_c min(count_c, L) <= n (binary search over 0..max count).
    lo, hi = 0, int(counts.max(initial=0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(counts, mid).sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(counts, lo)
    rest = n - int(quota.sum())
    if rest:
        open_classes = np.flatnonzero(counts > lo)
        quota[rng.choice(open_classes, size=rest, replace=False)] += 1
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)))
    chosen = [
        rng.choice(order[starts[c] : starts[c + 1]], size=int(quota[c]), replace=False)
        for c in range(num_classes)
        if quota[c]
    ]
    out = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return np.sort(out.astype(np.int64, copy=False))


def scaled_translate(translate: int, size: int) -> int:
    """Shift for an image of side ``size`` given the paper's shift at 32x32 (at least 1 if > 0)."""
    if translate <= 0:
        return 0
    t = max(1, int(round(translate * size / BASE_SIZE)))
    return min(t, size - 1)


def _check_image_size(image_size: Optional[int]) -> Optional[int]:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size: expected an int or None, got {type(image_size).__name__}")
    if image_size < 4:
        raise ValueError(f"image_size: expected >= 4, got {image_size}")
    return int(image_size)


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 -> [0, 1] float32; floating arrays are taken as already in [0, 1]."""
    if not images.flags.writeable:  # e.g. np.frombuffer: torch warns on read-only memory
        images = np.array(images)
    if images.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    if np.issubdtype(images.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    raise TypeError(f"images: expected uint8 or float pixels, got {images.dtype}")


def _resize(x: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    down = size < x.shape[-1]
    parts = [
        F.interpolate(
            x[i : i + chunk],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=down,
        )
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else x.new_zeros((0, x.shape[1], size, size))


def _geometry(
    x: torch.Tensor, image_size: Optional[int], upsample_to: Optional[int], pad28: bool
) -> torch.Tensor:
    """Pad 28x28 to 32x32 (zeros), upsample small images to ``upsample_to``, then resize."""
    h, w = x.shape[-2:]
    if pad28 and h == 28 and w == 28:
        x = F.pad(x, (2, 2, 2, 2), value=0.0)
    elif upsample_to is not None and image_size is None:
        x = _resize(x, upsample_to)
    if image_size is not None:
        x = _resize(x, image_size)
    return x


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std over (N, H, W) (float64 results).

    torch's float32 reductions are cascaded; they agree with a float64 pass to ~1e-7 here.
    """
    var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    mean = mean.to(torch.float64)
    std = var.to(torch.float64).clamp_min(0.0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean, std


def _int_labels(name: str, split: str, labels: Any) -> np.ndarray:
    """Labels as an int64 vector; DataError for labels that are not integers (strings, 1.5,
    NaN, objects) instead of a silent truncation or a numpy traceback."""
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError):
        raise DataError(f"{name}: the {split} labels are not a vector of integers") from None
    if y.dtype.kind in "iu":
        return y.astype(np.int64).reshape(-1)
    if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.rint(y)):
        return y.astype(np.int64).reshape(-1)
    if y.dtype.kind == "b" or y.size:
        raise DataError(f"{name}: the {split} labels are not integers (dtype {y.dtype})")
    return np.zeros(0, dtype=np.int64)


def build_dataset(
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    translate: int,
    flip: bool,
    image_size: Optional[int] = None,
    upsample_to: Optional[int] = None,
    pad28: bool = True,
    classes: Optional[list[str]] = None,
) -> Dataset:
    """Turn raw (N, C, H, W) pixel arrays into a normalised :class:`Dataset`.

    28x28 images are zero-padded to 32x32 (when ``pad28``), images are upsampled (bilinear) to
    ``upsample_to`` when no ``image_size`` is given, and everything is resized to
    ``image_size`` x ``image_size`` when it is. ``translate`` is the shift at 32x32; it is scaled
    with the final image side.
    """
    image_size = _check_image_size(image_size)
    for nm, a in (("train_images", train_images), ("test_images", test_images)):
        if a.ndim != 4:
            raise DataError(f"{name}: {nm} expected (N, C, H, W), got shape {a.shape}")
    ytr = _int_labels(name, "train", train_labels)
    yte = _int_labels(name, "test", test_labels)
    if int(num_classes) < 2:
        raise DataError(f"{name}: {num_classes} class(es); a classifier needs at least two")
    for nm, x, y in (("train", train_images, ytr), ("test", test_images, yte)):
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{name}: {x.shape[0]} {nm} images but {y.shape[0]} {nm} labels")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(
                f"{name}: {nm} labels expected in [0, {num_classes}), got [{y.min()}, {y.max()}]"
            )
    if train_images.shape[0] == 0:
        raise DataError(f"{name}: the train set is empty")
    if test_images.shape[0] == 0:
        raise DataError(f"{name}: the test set is empty (nothing to measure the accuracy on)")
    xtr = _geometry(_to_float(train_images), image_size, upsample_to, pad28)
    xte = _geometry(_to_float(test_images), image_size, upsample_to, pad28)
    mean, std = _channel_stats(xtr)
    m32 = mean.to(torch.float32).view(1, -1, 1, 1)
    s32 = std.to(torch.float32).view(1, -1, 1, 1)
    xtr.sub_(m32).div_(s32)
    xte.sub_(m32).div_(s32)
    size = int(xtr.shape[-1])
    return Dataset(
        name=name,
        x_train=xtr.contiguous(),
        y_train=torch.from_numpy(ytr),
        x_test=xte.contiguous(),
        y_test=torch.from_numpy(yte),
        num_classes=int(num_classes),
        translate=scaled_translate(translate, size),
        flip=bool(flip),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        classes=classes,
    )


def find_file(dirs: Sequence[Path], names: Sequence[str]) -> Optional[Path]:
    """First existing file among ``dir / name`` for every dir, then every name."""
    for d in dirs:
        for nm in names:
            p = Path(d) / nm
            if p.is_file():
                return p
    return None


def resolve_dir(data_dir: Optional[PathLike], name: str, howto: str) -> Path:
    """``data_dir`` as a Path, or a DataError saying what to pass when it is None or missing."""
    if data_dir is None:
        raise DataError(f"{name}: no data directory given (--data-dir). {howto}")
    p = Path(os.fspath(data_dir)).expanduser()
    if not p.exists():
        raise DataError(f"{name}: data directory {str(p)!r} does not exist. {howto}")
    return p
