"""Helpers of the project tests: real images written as files, CLI calls, database reads."""

from __future__ import annotations

import csv
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from dalcore.cli import main

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def digits_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real 8x8 digits scaled to uint8 (0..255), and their labels, in a seeded order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).permutation(len(d.target))[:n]
    return np.round(d.images[idx] * (255.0 / 16.0)).astype(np.uint8), d.target[idx]


def fashion_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """``n`` real Fashion-MNIST training images (28x28 uint8) and labels, or None if absent."""
    from dalcore.data.idx import read_idx

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        return None
    x = read_idx(FASHION_DIR / "train-images-idx3-ubyte.gz", 3)
    y = read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz", 1)
    idx = np.random.default_rng(seed).permutation(len(y))[:n]
    return np.asarray(x[idx], dtype=np.uint8), np.asarray(y[idx], dtype=np.int64)


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, *, prefix: str = "img",
               nested: int = 0) -> dict[str, int]:
    """Write grayscale PNGs (every ``nested``-th one in a sub-folder); returns path -> label."""
    from PIL import Image

    truth = {}
    for k, (a, y) in enumerate(zip(images, labels)):
        rel = f"{'sub/' if nested and k % nested == 0 else ''}{prefix}{k:05d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / rel)
        truth[rel] = int(y)
    return truth


def write_labels_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def cli(*args: str) -> int:
    """``dalcore ARGS`` in-process; its exit code."""
    return main([str(a) for a in args])


def cli_proc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``dalcore ARGS`` in a child process (for exit codes and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "dalcore", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def db_labels(project: Path) -> dict[str, str]:
    """path -> class name of every labeled file, read with plain sqlite3 (not dalcore's code)."""
    con = sqlite3.connect(project / "project.db")
    try:
        rows = con.execute(
            "SELECT f.path, c.name FROM labels l JOIN classes c ON c.id = l.class_id "
            "JOIN files f ON f.image_id = l.image_id "
            "WHERE l.id = (SELECT MAX(id) FROM labels WHERE image_id = l.image_id)").fetchall()
    finally:
        con.close()
    return dict(rows)


def db_count(project: Path, sql: str) -> int:
    con = sqlite3.connect(project / "project.db")
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
