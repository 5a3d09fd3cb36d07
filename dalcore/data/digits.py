"""scikit-learn's embedded handwritten digits (1,797 8x8 grayscale images, 10 classes).

Runs offline. The split is fixed: 50 test images per class (500), drawn with
``class_balanced_indices(y, 500, 10, np.random.default_rng(0))``; the other 1,297 images train.
Images are scaled from [0, 16] to [0, 1] and upsampled to 32x32 (bilinear) unless ``image_size``
is given (then resized straight from 8x8 to it). No augmentation: digits are centred and tiny,
and flipping changes a digit.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .core import DataError, Dataset, PathLike, build_dataset, class_balanced_indices

__all__ = ["load_digits", "DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED"]

DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0


def load_digits(
    data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """The digits data set with its fixed, class-balanced 1,297 / 500 split.

    ``data_dir`` is ignored (the data ship with scikit-learn).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency of the app
        raise DataError("digits: needs scikit-learn (pip install scikit-learn)") from e
    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    test = class_balanced_indices(y, DIGITS_TEST_SIZE, 10, np.random.default_rng(DIGITS_SPLIT_SEED))
    is_test = np.zeros(y.size, dtype=bool)
    is_test[test] = True
    train = np.flatnonzero(~is_test)
    return build_dataset(
        "digits",
        images[train],
        y[train],
        images[test],
        y[test],
        num_classes=10,
        translate=0,
        flip=False,
        image_size=image_size,
        upsample_to=32,
        classes=[str(d) for d in range(10)],
    )
