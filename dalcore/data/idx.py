"""MNIST and Fashion-MNIST from their four IDX files, gzipped (``.gz``) or not.

Files looked for in ``data_dir``, ``data_dir/raw`` and torchvision's ``data_dir/MNIST/raw`` /
``data_dir/FashionMNIST/raw``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (``.idx3-ubyte`` spellings accepted too).
28x28 images are padded with zeros to 32x32 (the paper's input).

Augmentation: shifts of up to 4 px for both; horizontal flips for Fashion-MNIST only (a mirrored
shoe is still a shoe, a mirrored digit is not a digit). Fashion-MNIST falls back to Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) when no data_dir is given.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from .core import DataError, Dataset, PathLike, build_dataset, find_file, resolve_dir

__all__ = ["load_mnist", "load_fashion_mnist", "read_idx", "IDX_FILES", "DEBIAN_FASHION_MNIST"]

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_HOWTO = {
    "mnist": (
        "Download the four files from http://yann.lecun.com/exdb/mnist/ (mirror: "
        "https://ossci-datasets.s3.amazonaws.com/mnist/) and pass their folder as --data-dir."
    ),
    "fashion-mnist": (
        "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into "
        f"{DEBIAN_FASHION_MNIST}) or download them from "
        "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) and pass their folder "
        "as --data-dir."
    ),
}
_TORCHVISION_DIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _expected(name: str) -> str:
    return ", ".join(f"{f}[.gz]" for f in IDX_FILES)


def read_idx(path: PathLike, ndim: int, *, dataset: str = "idx", howto: str = "") -> np.ndarray:
    """Read one unsigned-byte IDX file (gzipped or not) as a uint8 array with ``ndim`` dims."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{dataset}: cannot read {p}: {e}. {howto}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{dataset}: {p} is not an IDX file (bad magic number). {howto}")
    if raw[2] != 0x08:
        raise DataError(
            f"{dataset}: {p} holds IDX type 0x{raw[2]:02x}, expected unsigned bytes (0x08). {howto}"
        )
    if raw[3] != ndim:
        raise DataError(f"{dataset}: {p} has {raw[3]} dimensions, expected {ndim}. {howto}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{dataset}: {p} is truncated (incomplete header). {howto}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if min(dims) < 1:
        raise DataError(
            f"{dataset}: {p} has a header with the dimensions {dims}; every dimension must be "
            f"at least 1 (corrupt file). {howto}"
        )
    size = math.prod(dims)  # Python integers: no overflow
    if len(raw) - header != size:
        raise DataError(
            f"{dataset}: {p} has {len(raw) - header} data bytes, its header {dims} says {size} "
            f"(truncated or corrupt). {howto}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _candidates(base: str) -> list[str]:
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


def _load_idx_dataset(
    name: str,
    data_dir: Optional[PathLike],
    image_size: Optional[int],
    *,
    flip: bool,
    classes: list[str],
) -> Dataset:
    howto = _HOWTO[name]
    root = resolve_dir(data_dir, name, f"Expected files: {_expected(name)}. {howto}")
    dirs = [root, root / "raw", root / _TORCHVISION_DIR[name] / "raw", root / name]
    found = {base: find_file(dirs, _candidates(base)) for base in IDX_FILES}
    missing = [b for b, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"{name}: missing {', '.join(m + '[.gz]' for m in missing)} in {root} "
            f"(expected all of {_expected(name)}). {howto}"
        )
    arrays = {
        base: read_idx(p, 3 if "images" in base else 1, dataset=name, howto=howto)
        for base, p in found.items()
    }
    xtr, ytr, xte, yte = (arrays[b] for b in IDX_FILES)
    for xs, ys, xb, yb in (
        (xtr, ytr, IDX_FILES[0], IDX_FILES[1]),
        (xte, yte, IDX_FILES[2], IDX_FILES[3]),
    ):
        if xs.shape[0] != ys.shape[0]:
            raise DataError(
                f"{name}: {xb} holds {xs.shape[0]} images but {yb} holds {ys.shape[0]} labels. "
                f"{howto}"
            )
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"{name}: train images are {xtr.shape[1:]}, test images {xte.shape[1:]}")
    for lab, fname in ((ytr, IDX_FILES[1]), (yte, IDX_FILES[3])):
        if lab.size and lab.max() >= 10:
            raise DataError(f"{name}: {fname} has label {lab.max()}, expected 0..9. {howto}")
    return build_dataset(
        name,
        xtr[:, None],
        ytr,
        xte[:, None],
        yte,
        num_classes=10,
        translate=4,
        flip=flip,
        image_size=image_size,
        classes=classes,
    )


def load_mnist(data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None) -> Dataset:
    """MNIST (60,000 train / 10,000 test, 28x28 padded to 32x32); shifts of 4 px, no flip."""
    return _load_idx_dataset(
        "mnist", data_dir, image_size, flip=False, classes=[str(d) for d in range(10)]
    )


def load_fashion_mnist(
    data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """Fashion-MNIST (same layout as MNIST); shifts of 4 px and horizontal flips.

    With ``data_dir=None`` it reads Debian's ``dataset-fashion-mnist`` files when installed.
    """
    if data_dir is None and DEBIAN_FASHION_MNIST.is_dir():
        data_dir = DEBIAN_FASHION_MNIST
    return _load_idx_dataset(
        "fashion-mnist", data_dir, image_size, flip=True, classes=list(_FASHION_CLASSES)
    )
