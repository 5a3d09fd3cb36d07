"""The synthetic grid of the k-center bench (``--grid``) and its CUDA rows (``--cuda-only``).

Grid: for each N x d x budget, dalcore (pruned and unpruned) against every peer of
:mod:`dalcore.bench.kcenter_peers` (slow peers, --extrapolate, run --peer-picks picks and are
scaled to the budget, marked "~"). "GB/s" is the bytes one full pass reads (N x d x 4 + the
min-distance vector) divided by the time per pick, "%bw" that against the read bandwidth measured
in the same run. Data: ``clustered`` (50 Gaussian clusters on an 8-d subspace plus small noise)
or ``isotropic`` (Gaussian, the worst case for pruning), both synthetic.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any

import numpy as np

from ._common import (
    BenchError,
    cuda_read_bandwidth,
    fmt_table,
    median_time,
    optional,
    parallel_memory_bandwidth,
)
from .kcenter_peers import PEERS

N_LABELED = 100
QUICK_SIZES = [(10_000, 128, 100), (20_000, 128, 200)]
FULL_SIZES = [(n, d, b) for n in (10_000, 50_000, 200_000) for d in (128, 512)
              for b in (100, 1000)]


def make_data(n: int, d: int, kind: str, seed: int = 0) -> np.ndarray:
    """Synthetic ``clustered`` or ``isotropic`` (Gaussian) N x d float32."""
    rng = np.random.default_rng(seed)
    if kind == "isotropic":
        return rng.standard_normal((n, d), dtype=np.float32)
    k, r = 50, 8
    centres = rng.standard_normal((k, r)) * 4.0
    z = centres[rng.integers(0, k, n)] + rng.standard_normal((n, r))
    basis = np.linalg.qr(rng.standard_normal((d, r)))[0].T  # r orthonormal rows
    return (z @ basis + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``NxDxBUDGET,...`` (BenchError naming the bad one)."""
    out = []
    for s in (v for v in text.split(",") if v):
        parts = s.lower().split("x")
        try:
            n, d, b = (int(v) for v in parts)
        except ValueError:
            raise BenchError(f"--sizes: expected NxDxBUDGET, got {s!r}") from None
        if min(n, d, b) < 1 or b > n - N_LABELED:
            raise BenchError(f"--sizes: {s!r} needs N, d >= 1 and 1 <= budget <= N - "
                             f"{N_LABELED}")
        out.append((n, d, b))
    if not out:
        raise BenchError("--sizes: expected at least one NxDxBUDGET")
    return out


def _synced(torch: Any, fn: Any, *args: Any) -> None:
    fn(*args)
    torch.cuda.synchronize()


def cuda_rows(kind: str, sizes: list, repeats: int) -> None:
    """dalcore.kcenter on CUDA tensors: seconds, ms per pick, GB/s of one pass and the fraction
    of the device read bandwidth (a pick reads the features once and min-distances twice)."""
    import torch

    import dalcore

    if not torch.cuda.is_available():
        raise BenchError("--cuda-only: no CUDA device")
    bw = cuda_read_bandwidth(torch)
    rows = []
    for n, d, budget in sizes:
        x = torch.from_numpy(make_data(n, d, kind)).cuda()
        lab = torch.arange(N_LABELED, device="cuda")
        t = median_time(partial(_synced, torch, dalcore.kcenter, x, budget, lab), repeats)
        per_pick = t / budget
        bytes_pass = n * d * 4 + n * 4 * 2
        rows.append([n, d, budget, t, per_pick * 1e3, bytes_pass / per_pick / 1e9,
                     f"{100 * bytes_pass / per_pick / bw:.0f}%"])
        print(f"kcenter CUDA N = {n}: {t:.4g} s", flush=True)
    print(f"# kcenter CUDA rows: {torch.cuda.get_device_name()}, device read bandwidth "
          f"{bw / 1e9:.0f} GB/s measured in this run; data: synthetic {kind}; {N_LABELED} "
          f"labeled; median of {repeats}")
    print(fmt_table(["N", "d", "budget", "ours CUDA s", "ms/pick", "GB/s", "% of floor"], rows))


def _peer_time(fn: Any, x: Any, budget: int, labeled: Any, picks: int, extrapolate: bool,
               repeats: int) -> str | float:
    if not extrapolate or picks >= budget:
        return median_time(partial(fn, x, budget, labeled), repeats)
    t_init, per_pick = fn(x, budget, labeled, timed_picks=picks)
    return f"~{t_init + per_pick * budget:.4g}"


def _grid_row(x: np.ndarray, budget: int, peers: dict, args: Any, bw: float) -> list[object]:
    import dalcore

    n, d = x.shape
    labeled = np.random.default_rng(1).choice(n, N_LABELED, replace=False).astype(np.int64)
    t_pr = median_time(partial(dalcore.kcenter, x, budget, labeled), args.repeats)
    t_un = median_time(partial(dalcore.kcenter, x, budget, labeled, _prune=False), args.repeats)
    bytes_pass = n * d * 4 + n * 4 * 2
    per_pick = t_un / budget
    row: list[object] = [n, d, budget, t_pr, t_un, per_pick * 1e3, bytes_pass / per_pick / 1e9,
                         f"{100 * bytes_pass / per_pick / bw:.0f}%", bytes_pass / (t_pr / budget)
                         / 1e9]
    best = min(t_pr, t_un)
    ratios = []
    for p, mod in peers.items():
        xp, lp = (mod.from_numpy(x), mod.from_numpy(labeled)) if p == "torch" else (x, labeled)
        t = _peer_time(PEERS[p][0], xp, budget, lp, args.peer_picks, p in args.extrapolate,
                       args.repeats)
        row.append(t)
        ratios.append(f"{float(str(t).lstrip('~')) / best:.1f}x")
    return row + [f"{t_un / t_pr:.2f}x"] + ratios


def grid_table(args: Any, kind: str, sizes: list) -> None:
    """The synthetic grid against every available peer."""
    import dalcore

    peers = {}
    for p in args.peers:
        mod = optional(PEERS[p][1], f"the {p} peer")
        if mod is not None:
            peers[p] = mod
    if args.threads:
        dalcore._core.set_num_threads(args.threads)
        if "torch" in peers:
            peers["torch"].set_num_threads(args.threads)
    bw = parallel_memory_bandwidth()
    info = dalcore.build_info()
    print(f"# kcenter grid: {os.cpu_count()} CPUs, dalcore threads {info['threads']}, SIMD "
          f"{info['simd']}; measured read bandwidth {bw / 1e9:.1f} GB/s; data: synthetic {kind}; "
          f"{N_LABELED} labeled; median of {args.repeats}", flush=True)
    header = ["N", "d", "budget", "ours pruned s", "ours unpruned s", "unpruned ms/pick",
              "unpruned GB/s", "%bw", "pruned eff. GB/s"] + [f"{p} s" for p in peers]
    header += ["unpruned/pruned"] + [f"{p}/ours" for p in peers]
    rows = []
    t0 = time.perf_counter()
    for n, d, budget in sizes:
        rows.append(_grid_row(make_data(n, d, kind), budget, peers, args, bw))
        print(fmt_table(header, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(fmt_table(header, rows))
    if set(args.extrapolate) & set(peers):
        print(f"\n~ = extrapolated: labeled-set initialisation timed once, then "
              f"{args.peer_picks} picks timed and scaled to the budget.")
    print(f"ratios: peer time / our faster path (higher = we are faster); unpruned/pruned = "
          f"speed-up of pruning. {time.perf_counter() - t0:.0f} s in all.")
