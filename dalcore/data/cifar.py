"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

``data_dir`` may be the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``),
its parent, or hold (or be) the archive ``cifar-10-python.tar.gz`` /
``cifar-100-python.tar.gz``, which is read in memory without extraction.
CIFAR-10: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` with ``b"data"`` (N, 3072)
uint8 and ``b"labels"``; CIFAR-100: ``train`` and ``test`` with ``b"fine_labels"`` (100 classes).
Augmentation: shifts of 4 px and horizontal flips.

The pickles are read by an unpickler that only admits numpy arrays and plain Python values, so a
tampered file cannot run code; arrays pickled with protocol 5 (numpy's ``_frombuffer``, Python
3.14's default protocol) are admitted too.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .core import DataError, Dataset, PathLike, build_dataset, resolve_dir

__all__ = ["load_cifar10", "load_cifar100"]

_SPEC = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": b"labels",
        "num_classes": 10,
        "meta": ("batches.meta", b"label_names"),
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "label_key": b"fine_labels",
        "num_classes": 100,
        "meta": ("meta", b"fine_label_names"),
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    },
}

_NUMPY2 = int(np.__version__.split(".")[0]) >= 2
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5 (Python 3.14's
    ("numpy._core.numeric", "_frombuffer"),  # default) are rebuilt from their buffer
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            if module.startswith("numpy.core."):  # written by numpy 1 (the official files)
                module = module.replace("numpy.core.", "numpy._core.") if _NUMPY2 else module
            elif module.startswith("numpy._core.") and not _NUMPY2:  # written by numpy 2
                module = module.replace("numpy._core.", "numpy.core.")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")


def _howto(name: str) -> str:
    s = _SPEC[name]
    files = ", ".join(s["train"] + s["test"])
    return (
        f"Expected {s['folder']}/ with {files}, or {s['archive']}; download {s['url']} and pass "
        "its folder (or the extracted folder) as --data-dir."
    )


def _unpickle(raw: bytes, what: str, name: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a corrupt or foreign file
        raise DataError(f"{name}: cannot unpickle {what}: {e}. {_howto(name)}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{name}: {what} is not a CIFAR batch (not a dict). {_howto(name)}")
    return obj


def _batch_arrays(batch: dict, what: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    key = _SPEC[name]["label_key"]
    if b"data" not in batch or key not in batch:
        raise DataError(
            f"{name}: {what} lacks b'data' or {key!r} (keys: {sorted(batch)}). {_howto(name)}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{name}: {what} b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072). "
            f"{_howto(name)}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{name}: {what} has {data.shape[0]} images but labels of shape {labels.shape}. "
            f"{_howto(name)}"
        )
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DataError(
            f"{name}: {what} has labels that are not non-negative integers (dtype "
            f"{labels.dtype}). {_howto(name)}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


class _Source:
    """Reads batch files from a folder or from members of the tar.gz archive."""

    def __init__(self, name: str, root: Path) -> None:
        spec = _SPEC[name]
        self.name = name
        self.folder: Optional[Path] = None
        self.members: Optional[dict[str, bytes]] = None
        self.where = str(root)
        needed = spec["train"] + spec["test"]
        for d in (root / spec["folder"], root):
            if d.is_dir() and all((d / f).is_file() for f in needed):
                self.folder = d
                self.where = str(d)
                return
        archive = root if root.is_file() else root / spec["archive"]
        if archive.is_file():
            self.where = str(archive)
            self.members = self._read_archive(archive, set(needed) | {spec["meta"][0]})
            missing = [f for f in needed if f not in self.members]
            if missing:
                raise DataError(f"{name}: {archive} lacks {', '.join(missing)}. {_howto(name)}")
            return
        present = [
            f for f in needed if (root / spec["folder"] / f).is_file() or (root / f).is_file()
        ]
        missing = [f for f in needed if f not in present]
        raise DataError(
            f"{name}: no {spec['folder']}/ with all batches and no {spec['archive']} in {root} "
            f"(missing: {', '.join(missing)}). {_howto(name)}"
        )

    def _read_archive(self, archive: Path, wanted: set[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        try:
            with tarfile.open(archive, "r:*") as tar:
                for m in tar:
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in wanted and base not in out:
                        f = tar.extractfile(m)
                        if f is not None:
                            out[base] = f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.name}: cannot read {archive}: {e}. {_howto(self.name)}") from e
        return out

    def read(self, fname: str) -> Optional[bytes]:
        if self.members is not None:
            return self.members.get(fname)
        assert self.folder is not None
        p = self.folder / fname
        if not p.is_file():
            return None
        try:
            return p.read_bytes()
        except OSError as e:
            raise DataError(f"{self.name}: cannot read {p}: {e}. {_howto(self.name)}") from e


def _load(name: str, data_dir: Optional[PathLike], image_size: Optional[int]) -> Dataset:
    spec = _SPEC[name]
    root = resolve_dir(data_dir, name, _howto(name))
    src = _Source(name, root)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for fname in spec[split]:
            raw = src.read(fname)
            if raw is None:
                raise DataError(f"{name}: missing {fname} in {src.where}. {_howto(name)}")
            x, y = _batch_arrays(_unpickle(raw, f"{src.where}/{fname}", name), fname, name)
            xs.append(x)
            ys.append(y)
        parts[split] = (np.concatenate(xs), np.concatenate(ys))
    classes = None
    meta_name, meta_key = spec["meta"]
    raw = src.read(meta_name)
    if raw is not None:
        try:
            meta = _unpickle(raw, meta_name, name)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[meta_key]]
            if len(names) == spec["num_classes"]:
                classes = names
        except (DataError, KeyError, TypeError, UnicodeDecodeError):
            classes = None  # class names are optional
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    return build_dataset(
        name,
        xtr,
        ytr,
        xte,
        yte,
        num_classes=spec["num_classes"],
        translate=4,
        flip=True,
        image_size=image_size,
        classes=classes,
    )


def load_cifar10(
    data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB, 10 classes)."""
    return _load("cifar10", data_dir, image_size)


def load_cifar100(
    data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB, 100 fine classes)."""
    return _load("cifar100", data_dir, image_size)
