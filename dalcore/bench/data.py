"""The data the benches run on, named by ``--data``.

``--data`` takes comma-separated specs, each ``NAME[:VIEW]`` or the path of a ``.npy`` file:

=====================  ==========================================================================
digits                 scikit-learn's digits, 1,797 x 64 pixels in [0, 1] (real)
fashion-mnist          Fashion-MNIST training images, 60,000 x 784 pixels in [0, 1] (real;
                       Debian's ``/usr/share/datasets/fashion-mnist`` unless ``--data-dir``)
mnist, kmnist          MNIST / Kuzushiji-MNIST training images from their IDX files (real;
                       ``--data-dir mnist=DIR`` / ``kmnist=DIR``: not shipped with any package)
photo-patches          8x8 RGB patches of scikit-learn's two sample photographs (china.jpg and
                       flower.jpg, shipped with scikit-learn: no download), 60,000 random
                       windows (seeded), d = 192, pixels in [0, 1] (real pixels, but of two
                       photographs, not of a labelled image data set)
synthetic-clustered    synthetic: 50 Gaussian clusters on an 8-d subspace of R^128, 50,000 rows
synthetic-isotropic    synthetic: isotropic Gaussian, 50,000 x 128, rows L2-normalised
PATH.npy               a float (N, d) array of features saved with numpy.save
=====================  ==========================================================================

Views of the image sets (and of photo-patches): ``pixels`` (default), ``pca128`` (the pixels
projected on their first 128 principal components, float64), and for fashion-mnist ``convnet``
and ``deepcluster`` (128-d features of dalcore networks, :mod:`dalcore.bench.features`, made
once and cached).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._common import BenchError

__all__ = ["BenchData", "IMAGE_SETS", "PHOTO_PATCHES", "SYNTHETIC", "add_arguments", "load",
           "load_all", "parse_data_dirs", "parse_specs", "photo_patches"]

IMAGE_SETS = ("digits", "fashion-mnist", "mnist", "kmnist")
PHOTO_PATCHES = "photo-patches"
SYNTHETIC = ("synthetic-clustered", "synthetic-isotropic")
_VIEWS = {"digits": ("pixels",), "fashion-mnist": ("pixels", "pca128", "convnet", "deepcluster"),
          "mnist": ("pixels", "pca128"), "kmnist": ("pixels", "pca128"),
          PHOTO_PATCHES: ("pixels", "pca128")}
_DESCRIPTION = {
    "pixels": "pixels in [0, 1]", "pca128": "pixels projected on their first 128 principal "
    "components", "convnet": "128-d features of a dalcore ConvNet (cpu preset) trained on 200 "
    "labels", "deepcluster": "128-d features of the DeepCluster backbone (PRE, cpu preset, no "
    "label)",
}


@dataclass
class BenchData:
    """One bench data set: its name (the spec, as rows print it), what it is, the features
    (float32, C-contiguous) and the class labels where there are some."""

    name: str
    description: str
    x: np.ndarray
    y: Optional[np.ndarray] = None


def parse_specs(text: str) -> list[str]:
    """The specs of a ``--data`` value, checked (BenchError naming the bad one)."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise BenchError("--data: expected at least one data set")
    for spec in specs:
        if spec.endswith(".npy"):
            continue
        name, _, view = spec.partition(":")
        if name in SYNTHETIC and not view:
            continue
        if name not in _VIEWS:
            raise BenchError(f"--data: unknown data set {name!r}; expected one of "
                             f"{', '.join(IMAGE_SETS + (PHOTO_PATCHES,) + SYNTHETIC)} or a "
                             ".npy file")
        if view and view not in _VIEWS[name]:
            raise BenchError(f"--data: {name} has no view {view!r}; expected one of "
                             f"{', '.join(_VIEWS[name])}")
    return specs


def parse_data_dirs(values: Optional[list[str]]) -> dict[str, str]:
    """``--data-dir`` values (``NAME=DIR``, or ``DIR`` for every image set) as a dict."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, folder = v.partition("=")
        if sep and name in IMAGE_SETS:
            out[name] = folder
        elif sep:
            raise BenchError(f"--data-dir: unknown data set {name!r} in {v!r}; expected one of "
                             f"{', '.join(IMAGE_SETS)}")
        else:
            out.update({k: v for k in IMAGE_SETS if k not in out})
    return out


DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class Missing(Exception):
    """A data set that needs a package that is not installed (the bench skips it, with a line)."""


def _read_idx(path: Path, ndim: int, name: str) -> np.ndarray:
    """One unsigned-byte IDX file (gzipped or not), checked; without dalcore.data (torch)."""
    import gzip
    import zlib

    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise BenchError(f"--data {name}: cannot read {path}: {e}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise BenchError(f"--data {name}: {path} is not an unsigned-byte IDX file of {ndim} "
                         "dimensions")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if min(dims) < 1 or len(raw) - header != int(np.prod(dims, dtype=np.int64)):
        raise BenchError(f"--data {name}: {path} is truncated or corrupt (header {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_pixels(name: str, folder: Optional[str]) -> tuple[np.ndarray, np.ndarray]:
    if folder is None and name == "fashion-mnist":
        folder = DEBIAN_FASHION_MNIST
    if folder is None:
        raise BenchError(f"--data {name}: needs its IDX files, --data-dir {name}=DIR (no {name} "
                         "on this machine by default)")
    base = Path(folder)
    found = {}
    for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        hits = [base / (part + ext) for ext in ("", ".gz") if (base / (part + ext)).is_file()]
        if not hits:
            raise BenchError(f"--data {name}: {base} has no {part}[.gz]")
        found[part] = hits[0]
    img = _read_idx(found["train-images-idx3-ubyte"], 3, name)
    lab = _read_idx(found["train-labels-idx1-ubyte"], 1, name)
    if lab.shape[0] != img.shape[0]:
        raise BenchError(f"--data {name}: {img.shape[0]} images but {lab.shape[0]} labels")
    x = img.reshape(img.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return x, lab.astype(np.int64)


def pca128(x: np.ndarray) -> np.ndarray:
    """``x`` centred and projected on its first 128 principal components (float64), float32."""
    c = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    _, v = np.linalg.eigh(c.T @ c)
    return (c @ v[:, ::-1][:, :128]).astype(np.float32)


def synthetic(kind: str, n: int = 50_000, d: int = 128, seed: int = 0) -> np.ndarray:
    """``synthetic-clustered`` or ``synthetic-isotropic`` (see the module), float32."""
    rng = np.random.default_rng(seed)
    if kind == "synthetic-isotropic":
        x = rng.standard_normal((n, d))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centres = rng.standard_normal((50, 8)) * 4.0
    z = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, 8))
    basis = np.linalg.qr(rng.standard_normal((d, 8)))[0].T
    return (z @ basis + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


PATCH = 8  # photo-patches: side of a window
PATCH_ROWS = 60_000


def photo_patch_windows(n: int = PATCH_ROWS, seed: int = 0) -> tuple[list[np.ndarray],
                                                                    np.ndarray]:
    """(images, windows): scikit-learn's two sample photographs (uint8, H x W x 3) and n seeded
    random windows, rows (image, top, left), each image drawn with equal probability and the
    window uniformly among its positions."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise Missing("photo-patches (needs scikit-learn, which is not installed)") from None
    images = [np.asarray(im, dtype=np.uint8) for im in load_sample_images().images]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(images), size=n)
    heights = np.array([im.shape[0] - PATCH + 1 for im in images])
    widths = np.array([im.shape[1] - PATCH + 1 for im in images])
    top = (rng.random(n) * heights[which]).astype(np.int64)
    left = (rng.random(n) * widths[which]).astype(np.int64)
    return images, np.stack([which, top, left], axis=1)


def photo_patches(n: int = PATCH_ROWS, seed: int = 0) -> np.ndarray:
    """(n, 192) float32: the windows of photo_patch_windows, each flattened in (row, column,
    channel) order, pixels / 255."""
    images, win = photo_patch_windows(n, seed)
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.empty((n, PATCH * PATCH * 3), dtype=np.float32)
    for k, im in enumerate(images):
        views = sliding_window_view(im, (PATCH, PATCH), axis=(0, 1))  # H', W', 3, 8, 8
        rows = np.flatnonzero(win[:, 0] == k)
        w = views[win[rows, 1], win[rows, 2]].transpose(0, 2, 3, 1)  # n_k, 8, 8, 3
        x[rows] = w.reshape(len(rows), -1)
    return x / np.float32(255.0)


def _photo_set(view: str) -> BenchData:
    x = photo_patches()
    what = "pixels in [0, 1]" if view == "pixels" else _DESCRIPTION[view]
    label = PHOTO_PATCHES if view == "pixels" else f"{PHOTO_PATCHES}:{view}"
    return BenchData(label, f"8x8 RGB patches of scikit-learn's two sample photographs "
                     f"(china.jpg, flower.jpg), {PATCH_ROWS:,} seeded random windows, {what} "
                     "(real pixels of two photographs, not a labelled image data set)",
                     pca128(x) if view == "pca128" else x)


def _npy(spec: str) -> BenchData:
    try:
        x = np.load(spec, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BenchError(f"--data {spec}: cannot read it as a .npy array ({e})") from None
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1 or x.dtype.kind not in "fiu":
        raise BenchError(f"--data {spec}: expected a numeric (N, d) array with N >= 2, got "
                         f"{x.dtype} {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise BenchError(f"--data {spec}: holds NaN or inf")
    return BenchData(os.path.basename(spec), f"features from {spec}", x)


def _image_set(name: str, view: str, dirs: dict[str, str], cache: Optional[str],
               epochs: Optional[int], subset: Optional[int] = None) -> BenchData:
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise Missing("digits (needs scikit-learn, which is not installed)") from None
        d = load_digits()
        x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
        return BenchData("digits", "scikit-learn's digits, pixels in [0, 1] (real)", x, y)
    if view in ("convnet", "deepcluster"):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise Missing(f"{name}:{view} (needs torch, which is not installed)") from None
        from .features import network_features

        _, y = _idx_pixels(name, dirs.get(name))
        x = network_features(view, dirs.get(name), cache=cache, epochs=epochs,
                             subset=subset if view == "deepcluster" else None)
    else:
        x, y = _idx_pixels(name, dirs.get(name))
        if view == "pca128":
            x = pca128(x)
    label = f"{name}:{view}" if view != "pixels" else name
    what = _DESCRIPTION[view]
    if view == "deepcluster":
        what += f", {epochs or 20} pre-training epochs"
        if subset:
            what += (f" on a class-blind random {subset:,}-image subset (features of all "
                     f"{x.shape[0]:,} images)")
    return BenchData(label, f"{name} training images, {what} (real)",
                     np.ascontiguousarray(x), y)


def load(spec: str, *, dirs: Optional[dict[str, str]] = None, cache: Optional[str] = None,
         max_rows: Optional[int] = None, seed: int = 0,
         deepcluster_epochs: Optional[int] = None,
         deepcluster_subset: Optional[int] = None) -> BenchData:
    """The data set of one spec; with ``max_rows``, a seeded random subset of that many rows
    (in index order). BenchError when it cannot be had (the message says why)."""
    if spec.endswith(".npy"):
        data = _npy(spec)
    elif spec in SYNTHETIC:
        kind = "isotropic Gaussian, rows L2-normalised" if spec.endswith("isotropic") else \
            "50 Gaussian clusters on an 8-d subspace"
        n = 50_000 if max_rows is None else min(50_000, max_rows)
        data = BenchData(spec, f"synthetic: {kind}, {n} x 128", synthetic(spec, n))
    else:
        name, _, view = spec.partition(":")
        if name == PHOTO_PATCHES:
            data = _photo_set(view or "pixels")
        else:
            data = _image_set(name, view or "pixels", dirs or {}, cache, deepcluster_epochs,
                              deepcluster_subset)
    if max_rows is not None and data.x.shape[0] > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(data.x.shape[0], max_rows,
                                                          replace=False))
        data.x = np.ascontiguousarray(data.x[rows])
        data.y = None if data.y is None else data.y[rows]
        data.description += f", {max_rows} random rows"
    return data


def add_arguments(ap: Any, default_help: str) -> None:
    """The data options every bench shares: --data, --data-dir, --cache-dir,
    --deepcluster-epochs, --deepcluster-subset."""
    from ._common import positive_int

    ap.add_argument("--data", default=None,
                    help="comma-separated data sets, NAME[:VIEW] or a .npy file (digits, "
                    "fashion-mnist[:pca128|convnet|deepcluster], mnist[:pca128], "
                    "kmnist[:pca128], photo-patches[:pca128], synthetic-clustered, "
                    "synthetic-isotropic; see "
                    f"dalcore.bench.data). {default_help}")
    ap.add_argument("--data-dir", action="append", metavar="[NAME=]DIR",
                    help="folder of an image set's IDX files (repeatable; fashion-mnist "
                    "defaults to Debian's package)")
    ap.add_argument("--cache-dir", default=None,
                    help="where the network features are cached (default $DALCORE_BENCH_CACHE "
                    "or ~/.cache/dalcore/bench)")
    ap.add_argument("--deepcluster-epochs", type=positive_int, default=None,
                    help="DeepCluster pre-training epochs of the deepcluster view (default: the "
                    "cpu preset's 20)")
    ap.add_argument("--deepcluster-subset", type=positive_int, default=None,
                    help="pre-train DeepCluster on a class-blind random subset of this many "
                    "training images (features still of all; default: all)")


def load_all(args: Any, default: str, max_rows: Optional[int]) -> Iterator[BenchData]:
    """The data sets of ``args.data`` (or ``default``), loaded one at a time; the names and
    folders are checked first (BenchError before anything runs)."""
    specs = parse_specs(args.data or default)
    dirs = parse_data_dirs(args.data_dir)
    def each() -> Iterator[BenchData]:
        for spec in specs:
            try:
                yield load(spec, dirs=dirs, cache=args.cache_dir, max_rows=max_rows,
                           deepcluster_epochs=args.deepcluster_epochs,
                           deepcluster_subset=getattr(args, "deepcluster_subset", None))
            except Missing as e:
                print(f"# skipped: {e}", flush=True)

    return each()
