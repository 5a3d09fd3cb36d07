"""Any image classification set laid out as one sub-folder per class.

``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*`` when both exist; otherwise
``data_dir/<class>/*`` split per class with a fixed seed (``FOLDER_SPLIT_SEED``): a fraction
``FOLDER_TEST_FRACTION`` of each class (rounded, at least one image for classes of two or more)
goes to the test set. Classes are the sorted sub-folder names; hidden entries are skipped.
Images are read with PIL, converted to grayscale ("L") when every image is single-channel (16-bit
grayscale scaled to 8 bits, not clipped) and to RGB otherwise, refused when PIL sees a
decompression bomb (more than ``Image.MAX_IMAGE_PIXELS`` pixels), and resized to ``image_size`` x
``image_size`` (default 32, bilinear). At least two classes and a non-empty test set are required.
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


#: Modes PIL gives 16-bit grayscale images (PNG, TIFF); scaled to 8 bits, not clipped at 255.
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L"})


def _open_errors():
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning)


def _open(p: Path):
    """``Image.open`` with PIL's decompression-bomb warning raised as an error (a huge image
    is refused before it is decoded, not decoded into gigabytes)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(p)


def _to_array(im, gray: bool) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3); 16-bit grayscale is scaled by 255/65535 (rounded)."""
    if gray and im.mode in _WIDE_GRAY_MODES:
        a = np.asarray(im, dtype=np.float64)
        return np.clip(np.rint(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)


def _read_images(paths: list[Path], size: int, gray: bool) -> np.ndarray:
    from PIL import Image

    c = 1 if gray else 3
    out = np.empty((len(paths), c, size, size), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with _open(p) as im:
                a = _to_array(im, gray)
            if a.shape[:2] != (size, size):
                a = np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR),
                               dtype=np.uint8)
        except _open_errors() as e:
            raise DataError(f"folder: cannot read image {p}: {e}. {_HOWTO}") from e
        out[i] = a[None] if gray else a.transpose(2, 0, 1)
    return out


def _all_gray(paths: list[Path]) -> bool:
    for p in paths:
        try:
            with _open(p) as im:  # lazy: reads the header only
                if im.mode not in _GRAY_MODES:
                    return False
        except _open_errors() as e:
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
    if len(classes) == 1:
        raise DataError(
            f"folder: only one class ({classes[0]!r}) in {where}; a classifier needs at least "
            f"two. {_HOWTO}"
        )
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
