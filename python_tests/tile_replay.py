"""Independent numpy replay of the GPU path's arithmetic (dalcore/detail/tile.h): float32 squared
distances summed in the tile order (lane l adds the squared differences of columns l, l + 32,
... in order, then a butterfly over the 32 lanes), IEEE float32 operations one at a time, and the
greedy farthest-first traversal on them (ties to the lowest index). numpy rounds every float32
operation separately, so this replay is bit-identical to a correct kernel."""

from __future__ import annotations

import numpy as np

W = 32  # lanes per tile


def tile_sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 squared distances of the rows of x to the vector c, in the tile order."""
    x = np.asarray(x, dtype=np.float32)
    c = np.asarray(c, dtype=np.float32)
    n, d = x.shape
    acc = np.zeros((n, W), dtype=np.float32)
    for k0 in range(0, d, W):
        u = x[:, k0 : k0 + W] - c[k0 : k0 + W]
        w = u.shape[1]
        acc[:, :w] = acc[:, :w] + u * u
    return butterfly(acc)


def butterfly(acc: np.ndarray) -> np.ndarray:
    lanes = np.arange(W)
    off = W // 2
    while off >= 1:
        acc = acc + acc[:, lanes ^ off]
        off //= 2
    return acc[:, 0]


def fixed_order_mean(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """The GPU path's mean: float64 column sums over blocks of 1024 rows in row order, the
    blocks in order, / n, rounded to float32 (cumsum: strictly sequential additions)."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    n = x.shape[0]
    parts = [np.cumsum(x[b : b + block], axis=0)[-1] for b in range(0, n, block)]
    total = np.cumsum(np.stack(parts), axis=0)[-1]
    return (total / n).astype(np.float32)


def replay(x: np.ndarray, budget: int, labeled=None) -> tuple[list[int], np.ndarray]:
    """(picks, final float32 min-distances with centres at -1) of the GPU path's arithmetic."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    lab = [] if labeled is None else [int(i) for i in labeled]
    md = np.full(n, np.inf, dtype=np.float32)
    picks: list[int] = []
    if lab:
        for j in lab:
            md = np.minimum(md, tile_sq_dists(x, x[j]))
        md[lab] = -1.0
    else:
        first = int(np.argmax(tile_sq_dists(x, fixed_order_mean(x))))
        picks.append(first)
    while True:
        if picks:
            c = picks[-1]
            md = np.where(md < 0, md, np.minimum(md, tile_sq_dists(x, x[c])))
            md[c] = -1.0
        if len(picks) == budget:
            return picks, md
        picks.append(int(np.argmax(md)))  # first maximum: the lowest index
