"""SVHN (cropped digits, format 2) from ``train_32x32.mat`` and ``test_32x32.mat``.

Each file holds ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) in 1..10, where 10 stands for the
digit 0 (mapped to label 0 here). The optional ``extra_32x32.mat`` is not used (as in the paper).
Augmentation: shifts of 4 px, no flip (a mirrored digit is not a digit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .core import DataError, Dataset, PathLike, build_dataset, find_file, resolve_dir

__all__ = ["load_svhn", "SVHN_FILES"]

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_HOWTO = (
    "Expected train_32x32.mat and test_32x32.mat; download "
    "http://ufldl.stanford.edu/housenumbers/train_32x32.mat and "
    "http://ufldl.stanford.edu/housenumbers/test_32x32.mat and pass their folder as --data-dir."
)


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - scipy is a dependency
        raise DataError("svhn: reading .mat files needs scipy (pip install scipy)") from e
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy raises ValueError, OSError, ... on corrupt files
        raise DataError(f"svhn: cannot read {path}: {e}. {_HOWTO}") from e
    if "X" not in mat or "y" not in mat:
        raise DataError(f"svhn: {path} lacks the variables X and y. {_HOWTO}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise DataError(
            f"svhn: {path} X is {x.dtype} {x.shape}, expected uint8 (H, W, 3, N). {_HOWTO}"
        )
    if y.shape[0] != x.shape[3]:
        raise DataError(f"svhn: {path} has {x.shape[3]} images but {y.shape[0]} labels. {_HOWTO}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(
            f"svhn: {path} labels span [{y.min()}, {y.max()}], expected 1..10. {_HOWTO}"
        )
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None) -> Dataset:
    """SVHN (73,257 train / 26,032 test, 32x32 RGB, 10 classes)."""
    root = resolve_dir(data_dir, "svhn", _HOWTO)
    dirs = [root, root / "svhn"]
    paths = {f: find_file(dirs, [f]) for f in SVHN_FILES}
    missing = [f for f, p in paths.items() if p is None]
    if missing:
        raise DataError(f"svhn: missing {', '.join(missing)} in {root}. {_HOWTO}")
    xtr, ytr = _read_mat(paths[SVHN_FILES[0]])
    xte, yte = _read_mat(paths[SVHN_FILES[1]])
    return build_dataset(
        "svhn",
        xtr,
        ytr,
        xte,
        yte,
        num_classes=10,
        translate=4,
        flip=False,
        image_size=image_size,
        classes=[str(d) for d in range(10)],
    )
