"""Shared bench helpers: median-of-repeats timing, the machine's memory bandwidth, Markdown
tables, the benches' argument parser and optional peers."""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn, Optional

import numpy as np

EXIT_USAGE = 2


class BenchError(ValueError):
    """A bad bench argument or missing data: one line on stderr, exit code 2."""


class BenchParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), no usage dump."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(prog: str, message: str) -> int:
    """Prints ``prog: error: message`` on stderr; returns the usage exit code (2)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_cli(build_parser: Callable[[str], argparse.ArgumentParser],
            run: Callable[[argparse.Namespace], Any], argv: Optional[Any], prog: str) -> int:
    """A bench's entry point: parse ``argv``, run; the exit code (2 with one line on stderr for
    a bad argument, which the bench raises as :class:`BenchError`)."""
    args = build_parser(prog).parse_args(argv)
    try:
        run(args)
    except BenchError as e:
        return fail(prog, str(e))
    return 0


def optional(module: str, peer: str) -> Optional[ModuleType]:
    """The module, or None after printing a line saying which peer is skipped without it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"# skipped: {peer} ({module.split('.')[0]} is not installed)", flush=True)
        return None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def limit_threads(n: Optional[int]) -> Any:
    """Sets dalcore's OpenMP threads to ``n`` and returns a context limiting the BLAS libraries'
    (numpy's GEMV peer) to ``n`` as well (threadpoolctl, which comes with scikit-learn; without
    it a line says BLAS keeps its own count). ``n`` None: nothing changes."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    import dalcore

    dalcore._core.set_num_threads(int(n))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("# --threads: threadpoolctl is not installed, BLAS keeps its own thread count")
        return contextlib.nullcontext()
    return threadpool_limits(int(n))


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        import os

        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")



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


def array_read_bandwidth(x: np.ndarray, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s over ``x`` itself, warm, on every core (torch's multithreaded
    sum when available): the limit of a pass that reads x once, at x's size (a 30 MB pool stays
    in a large last-level cache, a 256 MB buffer does not)."""
    try:
        import torch
    except ImportError:
        return x.nbytes / median_time(lambda: x.sum(), repeats=repeats)
    t = torch.from_numpy(np.ascontiguousarray(x))
    t.sum()
    return x.nbytes / median_time(lambda: t.sum(), repeats=repeats)


def fmt_table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ CUDA rows (shared)


def cuda_read_bandwidth(torch, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Device read bandwidth in bytes/s: median of synchronised sums over nbytes on the GPU,
    measured in the same run as the CUDA rows it is the floor of."""
    a = torch.ones(nbytes // 4, dtype=torch.float32, device="cuda")

    def run():
        a.sum()
        torch.cuda.synchronize()

    return nbytes / median_time(run, repeats)


def device_lists(torch, n: int, k: int, seed: int = 0):
    """Synthetic k-NN lists on the GPU: row i lists (i + o_t) mod n for k distinct offsets o_t
    (no self, no repeats; j lists i back when n - o_t is an offset too), similarities uniform
    in [0.2, 1). Built on the device: faiss-cpu cannot search 1M points in the time budget."""
    rng = np.random.default_rng(seed)
    off = torch.from_numpy(rng.choice(np.arange(1, n), k, replace=False)).cuda()
    idx = (torch.arange(n, device="cuda")[:, None] + off[None, :]) % n
    gen = torch.Generator(device="cuda").manual_seed(seed)
    sims = 0.2 + 0.8 * torch.rand((n, k), device="cuda", generator=gen)
    return sims, idx
