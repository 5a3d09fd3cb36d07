"""Image data sets for the active-learning experiments, held whole as normalised tensors.

``load_dataset(name, data_dir, image_size=...)`` reads one of :data:`DATASETS` from local files
(nothing is downloaded; a missing or corrupt file raises :class:`DataError` naming the files and
where to get them). ``digits`` ships with scikit-learn and is the offline default.

=============== ================================================ ========== =========
name            files (in ``data_dir``)                          translate  flip
=============== ================================================ ========== =========
digits          none (scikit-learn), 1,297 train / 500 test      0          no
mnist           4 IDX files, ``.gz`` or not                      4          no
fashion-mnist   4 IDX files (default: Debian's package)          4          yes
cifar10         cifar-10-batches-py/ or cifar-10-python.tar.gz   4          yes
cifar100        cifar-100-python/ or cifar-100-python.tar.gz     4          yes
svhn            train_32x32.mat, test_32x32.mat                  4          no
folder          <class>/ images, or train/<class>/, test/<class> 4          yes
=============== ================================================ ========== =========

Shifts are given for 32x32 inputs and scale with ``image_size``.
"""

from __future__ import annotations

from typing import Callable, Optional

from .augment import augment, shift_flip
from .cifar import load_cifar10, load_cifar100
from .core import DataError, Dataset, PathLike, class_balanced_indices
from .digits import load_digits
from .folder import load_folder
from .idx import load_fashion_mnist, load_mnist
from .svhn import load_svhn

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "LOADERS",
    "augment",
    "class_balanced_indices",
    "load_dataset",
    "shift_flip",
]

Loader = Callable[..., Dataset]

#: Registry: dataset name -> loader(data_dir, *, image_size) -> Dataset.
LOADERS: dict[str, Loader] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "folder": load_folder,
}

#: The dataset names, "digits" (the offline default) first.
DATASETS: tuple[str, ...] = tuple(LOADERS)

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def load_dataset(
    name: str, data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (case-insensitive; "fashion_mnist", "cifar-10", "cifar-100" also
        accepted).
    data_dir : str or os.PathLike, optional
        Folder holding the files (ignored by "digits"; "fashion-mnist" defaults to Debian's
        ``/usr/share/datasets/fashion-mnist`` when installed).
    image_size : int, optional
        Resize every image to ``image_size`` x ``image_size`` (default: 32x32, with 28x28 inputs
        zero-padded and digits upsampled).

    Returns
    -------
    Dataset
        On the CPU; call ``.to(device)`` to move it.

    Raises
    ------
    ValueError
        Unknown name or bad ``image_size``.
    DataError
        Missing or corrupt files (the message says which files and how to obtain them).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LOADERS:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return LOADERS[key](data_dir, image_size=image_size)
