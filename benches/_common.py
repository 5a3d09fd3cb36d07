"""Shared bench helpers: median-of-repeats timing and the machine's memory bandwidth."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def median_time(
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs.

    ``clock`` is wall time by default; ``time.process_time`` gives the process CPU time (all
    threads), which other processes on a shared machine disturb less.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def memory_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s: median time of a numpy sum over a buffer larger than cache.

    numpy's reduction is single-threaded; on a 2-core machine it reaches most of the socket's
    read bandwidth, which is the floor our kernels are compared against.
    """
    a = np.ones(nbytes // 8, dtype=np.float64)
    t = median_time(lambda: a.sum(), repeats=repeats)
    return a.nbytes / t


def parallel_memory_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s using every core (torch's multithreaded sum when available)."""
    try:
        import torch
    except ImportError:
        return memory_bandwidth(nbytes, repeats)
    a = torch.ones(nbytes // 4, dtype=torch.float32)
    t = median_time(lambda: a.sum(), repeats=repeats)
    return a.numel() * 4 / t


def fmt_table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
