"""Any image classification set laid out as one sub-folder per class.

``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*`` when both exist; otherwise
``data_dir/<class>/*`` split per class with a fixed seed (``FOLDER_SPLIT_SEED``): a fraction
``FOLDER_TEST_FRACTION`` of each class (rounded, at least one image for classes of two or more)
goes to the test set. Classes are the sorted sub-folder names; hidden entries are skipped.
Images are read with PIL, converted to grayscale ("L") when every image is single-channel and to
RGB otherwise, and resized to ``image_size`` x ``image_size`` (default 32, bilinear).
Augmentation: shifts of 4 px (at 32x32) and horizontal flips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .core import (
    BASE_SIZE,
    DataError,
    Dataset,
    PathLike,
    _check_image_size,
    build_dataset,
    resolve_dir,
)

__all__ = ["load_folder", "IMAGE_EXTENSIONS", "FOLDER_SPLIT_SEED", "FOLDER_TEST_FRACTION"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
FOLDER_SPLIT_SEED = 0
FOLDER_TEST_FRACTION = 0.2
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_HOWTO = (
    "Expected one sub-folder per class holding images ("
    + ", ".join(sorted(IMAGE_EXTENSIONS))
    + "), either directly in --data-dir or in its train/ and test/ sub-folders."
)


def _visible_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(d: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image paths under d/<class>/."""
    out: dict[str, list[Path]] = {}
    for cdir in _visible_dirs(d):
        files = sorted(
            p
            for p in cdir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if files:
            out[cdir.name] = files
    return out


def _read_images(paths: list[Path], size: int, gray: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c = 1 if gray else 3
    out = np.empty((len(paths), c, size, size), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert("L" if gray else "RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"folder: cannot read image {p}: {e}. {_HOWTO}") from e
        out[i] = a[None] if gray else a.transpose(2, 0, 1)
    return out


def _all_gray(paths: list[Path]) -> bool:
    from PIL import Image, UnidentifiedImageError

    for p in paths:
        try:
            with Image.open(p) as im:  # lazy: reads the header only
                if im.mode not in _GRAY_MODES:
                    return False
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"folder: cannot read image {p}: {e}. {_HOWTO}") from e
    return True


def _split(per_class: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    rng = np.random.default_rng(FOLDER_SPLIT_SEED)
    train: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for cname, files in per_class.items():
        n = len(files)
        n_test = 0 if n < 2 else min(n - 1, max(1, int(round(FOLDER_TEST_FRACTION * n))))
        perm = rng.permutation(n)
        test[cname] = [files[i] for i in sorted(perm[:n_test])]
        train[cname] = [files[i] for i in sorted(perm[n_test:])]
    return train, test


def load_folder(
    data_dir: Optional[PathLike] = None, *, image_size: Optional[int] = None
) -> Dataset:
    """Images from class sub-folders (see the module docstring for the layout and the split)."""
    size = _check_image_size(image_size) or BASE_SIZE
    root = resolve_dir(data_dir, "folder", _HOWTO)
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a directory. {_HOWTO}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _scan(root / "train"), _scan(root / "test")
        where = f"{root / 'train'}"
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise DataError(
                f"folder: test classes {unknown} have no train folder in {root / 'train'}. {_HOWTO}"
            )
    else:
        train, test = _split(_scan(root))
        where = str(root)
    classes = sorted(train)
    if len(classes) == 0:
        raise DataError(f"folder: no class sub-folder with images in {where}. {_HOWTO}")
    index = {c: i for i, c in enumerate(classes)}

    def flat(d: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        paths = [p for c in sorted(d) for p in d[c]]
        labels = np.array([index[c] for c in sorted(d) for _ in d[c]], dtype=np.int64)
        return paths, labels

    ptr, ytr = flat(train)
    pte, yte = flat(test)
    gray = _all_gray(ptr + pte)
    return build_dataset(
        "folder",
        _read_images(ptr, size, gray),
        ytr,
        _read_images(pte, size, gray),
        yte,
        num_classes=len(classes),
        translate=4,
        flip=True,
        image_size=None,
        pad28=False,
        classes=classes,
    )
