"""Scanning an image folder into a project: hashing, decoding once, the uint8 pixel cache.

``scan`` walks the image folder recursively (hidden entries, symbolic links and the project's own
folder are skipped) for png, jpg/jpeg, webp, bmp, gif (first frame) and tiff files. A file whose
size and modification time are unchanged since the last scan is not read again; any other file is
hashed (SHA-256 of its bytes). A content not seen before is decoded, in parallel threads (Pillow
releases the GIL while decoding) with a progress bar, into the cache
``PROJECT/cache/pixels_<size>.u8``: one row of ``3 x size x size`` bytes per image (RGB,
resized to the project's input size; grayscale images are stored with three equal channels and
flagged, so that a folder of grayscale images trains a 1-channel model).
A file that cannot be decoded (corrupt, truncated, empty, not an image, a decompression bomb) is
recorded with its reason and skipped. Files that disappeared lose their path; their image and its
labels stay in the database (a file renamed or moved is found again by its content).

Conversions: any PIL mode is read. Transparency (LA, RGBA, P with a transparent colour) is
composited on white; CMYK and YCbCr go to RGB; 16-bit and 32-bit integer images are scaled from
their full range (``I;16``: value / 257), float images (``F``) from [0, 1] when they lie in it and
from their own minimum and maximum otherwise. Resizing squeezes the whole image into the square
input (bilinear, antialiased), as ``--dataset folder`` does.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import Project

__all__ = ["IMAGE_EXTENSIONS", "ScanReport", "decode_image", "read_cache", "scan"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_GRAY = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: Files decoded per task sent to a worker process.
_CHUNK = 128


@dataclass
class ScanReport:
    """What a scan found (counts of files unless said otherwise)."""

    files: int = 0
    new_images: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    changed: int = 0
    moved: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        out = [f"{self.files} image file(s) in the folder; {self.new_images} new image(s) "
               f"decoded in {self.seconds:.1f} s"]
        for n, what in ((self.added, "added"), (self.removed, "removed"),
                        (self.changed, "changed"), (self.moved, "renamed or moved (labels kept)"),
                        (self.duplicates, "identical to another file (one image)")):
            if n:
                out.append(f"{n} file(s) {what}")
        for path, reason in self.unreadable[:10]:
            out.append(f"skipped unreadable file {path}: {reason}")
        if len(self.unreadable) > 10:
            out.append(f"... and {len(self.unreadable) - 10} more unreadable file(s)")
        return out


# ---------------------------------------------------------------------------- decoding


def _to_8bit(im) -> np.ndarray:
    """An integer or float single-channel PIL image as uint8 over its full range."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    a = a.astype(np.float64)
    if im.mode == "F" and a.size and a.min() >= 0.0 and a.max() <= 1.0:
        return np.round(a * 255.0).astype(np.uint8)
    if im.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:
        scale = 255.0 if a.max() <= 255 else 65535.0  # 8-bit data in an int container, or 16-bit
        return np.round(a * (255.0 / scale)).astype(np.uint8)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image holds non-finite values")
    span = hi - lo if hi > lo else 1.0
    return np.round((a - lo) * (255.0 / span)).astype(np.uint8)


def _to_rgb_or_l(im):
    """A PIL image in mode RGB or L (transparency composited on white)."""
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("L" if im.mode in ("LA", "La") else "RGB")
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = Image.fromarray(_to_8bit(im))
    if im.mode == "1":
        im = im.convert("L")
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    return im


def decode_image(data: bytes, size: int) -> tuple[np.ndarray, dict]:
    """Decode one file's bytes into a (3, size, size) uint8 array and facts about it.

    Raises
    ------
    ValueError
        With a one-line reason when the bytes are not a readable image.
    """
    import io

    from PIL import Image

    if not data:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height, mode = im.size[0], im.size[1], im.mode
                if im.format == "JPEG":
                    im.draft("RGB" if mode != "L" else "L", (2 * size, 2 * size))
                im.load()
                im = _to_rgb_or_l(im)
                im = im.resize((size, size), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ValueError(f"image too large to decode safely ({e})") from None
        except Image.UnidentifiedImageError:
            raise ValueError("not an image file PIL can identify") from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError,
                IndexError, KeyError, ZeroDivisionError) as e:
            raise ValueError(f"cannot decode ({type(e).__name__}: {e})") from None
    if a.ndim == 2:
        gray = True
        a = np.repeat(a[None], 3, axis=0)
    else:
        a = a.transpose(2, 0, 1)
        gray = mode in _GRAY or bool((a[0] == a[1]).all() and (a[1] == a[2]).all())
    return np.ascontiguousarray(a), {"width": width, "height": height, "mode": mode,
                                     "gray": gray}


def _decode_chunk(args: tuple[list[str], int]) -> list[tuple[np.ndarray | None, dict]]:
    paths, size = args
    out: list[tuple[np.ndarray | None, dict]] = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
            out.append(decode_image(data, size))
        except ValueError as e:
            out.append((None, {"reason": str(e).splitlines()[0] if str(e) else "unreadable"}))
        except OSError as e:
            out.append((None, {"reason": f"cannot read the file ({e.strerror})"}))
    return out


def _decode_all(paths: list[str], size: int, workers: int, progress: bool
                ) -> list[tuple[np.ndarray | None, dict]]:
    from tqdm.auto import tqdm

    chunks = [(paths[i:i + _CHUNK], size) for i in range(0, len(paths), _CHUNK)]
    results: list[tuple[np.ndarray | None, dict]] = []
    bar = tqdm(total=len(paths), desc="decoding", unit="img", disable=not progress,
               dynamic_ncols=True)
    try:
        if workers <= 1 or len(chunks) <= 1:
            for c in chunks:
                results.extend(_decode_chunk(c))
                bar.update(len(c[0]))
        else:
            # Threads: Pillow releases the GIL while it decodes and resizes, and threads need
            # no start-up, no pickling and no importable __main__ (notebooks, stdin scripts).
            with ThreadPoolExecutor(max_workers=workers) as ex:
                for c, res in zip(chunks, ex.map(_decode_chunk, chunks)):
                    results.extend(res)
                    bar.update(len(c[0]))
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------------------- the cache


def cache_path(project: Project) -> Path:
    """The pixel cache file of the project's input size."""
    return project.root / "cache" / f"pixels_{project.image_size}.u8"


def read_cache(project: Project, rows: np.ndarray) -> np.ndarray:
    """Pixels of the given cache rows: (len(rows), 3, size, size) uint8."""
    s = project.image_size
    path = cache_path(project)
    n = path.stat().st_size // (3 * s * s) if path.exists() else 0
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"{path}: the pixel cache is shorter than the database says; "
                         "run `dalcore init PROJECT --rescan`")
    if not rows.size:
        return np.zeros((0, 3, s, s), dtype=np.uint8)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, s, s))
    return np.array(mm[rows])


def _append_cache(project: Project, arrays: list[np.ndarray]) -> int:
    """Append rows after the last row the database knows; returns the first new row."""
    s = project.image_size
    row_bytes = 3 * s * s
    r = project.db.execute("SELECT COALESCE(MAX(cache_row), -1) + 1 FROM images").fetchone()
    first = int(r[0])
    path = cache_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.truncate(first * row_bytes)  # rows a crash wrote but never committed
        f.seek(first * row_bytes)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())
    return first


# ---------------------------------------------------------------------------- the walk


def _walk(image_dir: Path, skip: Path | None) -> dict[str, os.stat_result]:
    """Relative ``/``-separated path -> stat of every image file under ``image_dir``."""
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(image_dir, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                             and not (d / n).is_symlink()
                             and (skip is None or (d / n).resolve() != skip))
        for name in filenames:
            p = d / name
            if name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS \
                    or p.is_symlink():
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            found[p.relative_to(image_dir).as_posix()] = st
    return found


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(project: Project, *, progress: bool = True, workers: int | None = None) -> ScanReport:
    """Bring the project's files and images up to date with its image folder.

    Parameters
    ----------
    project : Project
        The open project (its image folder and input size are in the database).
    progress : bool
        Show a progress bar while decoding.
    workers : int, optional
        Decoding processes (default: the machine's CPU count).

    Returns
    -------
    ScanReport
    """
    t0 = time.perf_counter()
    image_dir = project.image_dir
    if not image_dir.is_dir():
        from .store import ProjectError

        raise ProjectError(f"{image_dir}: the image folder does not exist (any more)")
    found = _walk(image_dir, project.root.resolve())
    known = {p: (int(i), int(sz), int(mt)) for p, i, sz, mt in
             project.db.execute("SELECT path, image_id, size, mtime_ns FROM files")}
    hashes = dict(project.db.execute("SELECT hash, id FROM images"))
    rep = ScanReport(files=len(found))
    stale = [p for p, st in found.items()
             if p not in known or known[p][1:] != (st.st_size, st.st_mtime_ns)]
    new_hash = {p: _hash_file(image_dir / p) for p in stale}
    to_decode: dict[str, str] = {}  # hash -> one path
    for p in sorted(stale):
        h = new_hash[p]
        if h not in hashes and h not in to_decode:
            to_decode[h] = p
    decoded = _decode_all([str(image_dir / p) for p in to_decode.values()], project.image_size,
                          workers or os.cpu_count() or 1, progress)
    _commit_scan(project, found, known, hashes, new_hash, to_decode, decoded, rep)
    rep.seconds = time.perf_counter() - t0
    return rep


def _commit_scan(project: Project, found: dict, known: dict, hashes: dict, new_hash: dict,
                 to_decode: dict, decoded: list, rep: ScanReport) -> None:
    """Write a scan's findings: cache rows first (durable), then one database transaction."""
    ok = [(h, a, info) for (h, _p), (a, info) in zip(to_decode.items(), decoded) if a is not None]
    first = _append_cache(project, [a for _h, a, _i in ok]) if ok else 0
    now = time.time()
    with project.transaction():
        db = project.db
        for k, (h, _a, info) in enumerate(ok):
            db.execute("INSERT INTO images(hash, status, cache_row, gray, width, height, mode, "
                       "added) VALUES (?, 'ok', ?, ?, ?, ?, ?, ?)",
                       (h, first + k, int(info["gray"]), info["width"], info["height"],
                        info["mode"], now))
        for (h, p), (a, info) in zip(to_decode.items(), decoded):
            if a is None:
                db.execute("INSERT INTO images(hash, status, reason, added) "
                           "VALUES (?, 'unreadable', ?, ?)", (h, info["reason"], now))
                rep.unreadable.append((p, info["reason"]))
        rep.new_images = len(ok)
        hashes = dict(db.execute("SELECT hash, id FROM images"))
        old_images = {i for i, _s, _m in known.values()}
        surviving = {i for p, (i, _s, _m) in known.items() if p in found and p not in new_hash}
        gone = set(known) - set(found)
        for p in gone:
            db.execute("DELETE FROM files WHERE path = ?", (p,))
        rep.removed = len(gone)
        for p in sorted(new_hash):
            img = int(hashes[new_hash[p]])
            if p in known:
                rep.changed += int(known[p][0] != img)
            elif img in surviving:
                rep.duplicates += 1
            elif img in old_images:
                rep.moved += 1
            else:
                rep.added += 1
            surviving.add(img)
            st = found[p]
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                       (p, img, st.st_size, st.st_mtime_ns))
