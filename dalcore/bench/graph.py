"""knn_graph bench: dalcore's kernel against the LP-DeepSSL scipy pipeline, from the same k-NN
lists.

``dalcore bench graph [--data SPECS] [--quick]`` (or ``python benches/bench_graph.py``).

For each data set: L2-normalised features -> exact k-NN (``dalcore.knn``: faiss when installed,
else its numpy fallback; timed for context) -> the graph S = D^-1/2 (W + W^T) D^-1/2 built
  * as in LP-DeepSSL (Iscen et al. 2019) / the paper's code: csr_matrix from the k-NN lists,
    W + W.T, diagonal removed, degree normalisation with scipy/numpy;
  * by dalcore.knn_graph(mode="union") (and mode="reciprocal" for reference).
Medians of several repeats; ratio scipy / ours; and our time against the memory-bandwidth floor:
the bytes that must move (read the lists, write the CSR) / bandwidth measured in this run.

Data: by default synthetic clustered features (N/50 random centres, L2-normalised, like network
features) at N in 10k, 50k, 200k (--sizes); ``--data`` names real ones instead
(:mod:`dalcore.bench.data`: digits, fashion-mnist[:pca128|convnet|deepcluster], a .npy file, ...).
``--quick``: N in 10k, 20k (data sets cut to 10,000 rows), 3 repeats.

    dalcore bench graph --quick
    dalcore bench graph --data digits,fashion-mnist:convnet
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Optional

import numpy as np

import dalcore

from . import data as bench_data
from ._common import (
    BenchError,
    BenchParser,
    cuda_read_bandwidth,
    device_lists,
    fmt_table,
    load_average,
    median_time,
    optional,
    parallel_memory_bandwidth,
    positive_int,
    run_cli,
)

QUICK_ROWS = 10_000


def features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n points around n/50 random centres, L2-normalised (like the 128-d network features)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 50), d)).astype(np.float32)
    x = centres[rng.integers(0, centres.shape[0], n)]
    x += 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """LP-DeepSSL's search (inner product, self excluded), through dalcore.knn."""
    import dalcore

    sims, idx = dalcore.knn(x, k, metric="ip")
    return np.ascontiguousarray(sims), np.ascontiguousarray(idx)


def lp_deepssl_graph(sims: np.ndarray, idx: np.ndarray, gamma: float) -> Any:
    """The graph construction of LP-DeepSSL's update_plabels (weights clamped at 0 like ours)."""
    import scipy.sparse

    n, k = idx.shape
    d = np.maximum(sims, 0) ** gamma
    row_idx_rep = np.tile(np.arange(n), (k, 1)).T
    w = scipy.sparse.csr_matrix(
        (d.flatten("F"), (row_idx_rep.flatten("F"), idx.flatten("F"))), shape=(n, n)
    )
    w = w + w.T
    w = w - scipy.sparse.diags(w.diagonal())
    s = np.asarray(w.sum(axis=1))
    s[s == 0] = 1
    dinv = np.array(1.0 / np.sqrt(s))
    dm = scipy.sparse.diags(dinv.reshape(-1))
    return dm * w * dm


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Median process CPU time (all threads) of fn(), no warm-up."""
    return median_time(fn, repeats=repeats, warmup=0, clock=time.process_time)


def bench_one(name: str, x: np.ndarray, k: int, gamma: float, repeats: int,
              bw: float) -> list[object]:
    """One row: the k-NN lists of ``x`` (L2-normalised), then scipy's graph and ours."""
    import scipy.sparse

    n = x.shape[0]
    t_knn = median_time(lambda: exact_knn(x, k), repeats=1, warmup=0)
    sims, idx = exact_knn(x, k)
    lists = (sims, idx)
    t_scipy = median_time(lambda: lp_deepssl_graph(sims, idx, gamma), repeats=repeats)
    t_union = median_time(
        lambda: dalcore.knn_graph(lists, gamma=gamma, mode="union"), repeats=repeats
    )
    t_recip = median_time(
        lambda: dalcore.knn_graph(lists, gamma=gamma, mode="reciprocal"), repeats=repeats
    )
    c_scipy = cpu_time(lambda: lp_deepssl_graph(sims, idx, gamma), repeats)
    c_union = cpu_time(lambda: dalcore.knn_graph(lists, gamma=gamma, mode="union"), repeats)
    ours = dalcore.knn_graph(lists, gamma=gamma, mode="union")
    ref = scipy.sparse.csr_array(lp_deepssl_graph(sims, idx, gamma))
    err = abs(ours - ref).max()
    # floor: read sims (float32) + indices (int64); write indptr (int64), indices + data
    floor_bytes = n * k * (4 + 8) + (n + 1) * 8 + ours.nnz * (4 + 4)
    t_floor = floor_bytes / bw
    return [
        name, n, ours.nnz, t_knn, t_scipy * 1e3, t_union * 1e3, t_scipy / t_union,
        t_floor * 1e3, t_union / t_floor, t_recip * 1e3, c_scipy * 1e3, c_union * 1e3,
        c_scipy / c_union, f"{err:.1e}",
    ]


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows left at zero), float32."""
    norm = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norm > 0, norm, 1.0), dtype=np.float32)


# ------------------------------------------------------------------ CUDA rows


def _graph_synced(torch, sims, idx, gamma: float, mode: str) -> None:
    dalcore.knn_graph((sims, idx), gamma=gamma, mode=mode)
    torch.cuda.synchronize()


def cuda_rows(sizes: list[int], k: int, gamma: float, repeats: int) -> None:
    """dalcore.knn_graph on CUDA lists: ms, and the floor = bytes that must move (read the lists,
    write the CSR) / device read bandwidth measured in this run."""
    import torch

    if not torch.cuda.is_available():
        raise BenchError("--cuda-only: no CUDA device")
    bw = cuda_read_bandwidth(torch)
    rows = []
    for n in sizes:
        sims, idx = device_lists(torch, n, k)
        for mode in ("union", "reciprocal"):
            t = median_time(partial(_graph_synced, torch, sims, idx, gamma, mode), repeats)
            nnz = int(dalcore.knn_graph((sims, idx), gamma=gamma, mode=mode)[0][-1])
            moved = n * k * (4 + 8) + 8 * (n + 1) + 8 * nnz
            rows.append([n, mode, nnz, t * 1e3, moved / bw * 1e3, t * bw / moved])
            print(f"knn_graph CUDA N = {n} {mode}: {t * 1e3:.3g} ms", flush=True)
    print(f"# knn_graph CUDA rows: {torch.cuda.get_device_name()}, k = {k}, device read "
          f"bandwidth {bw / 1e9:.0f} GB/s measured in this run, median of {repeats}")
    print(fmt_table(["N", "mode", "nnz", "ours CUDA ms", "floor ms", "ours/floor"], rows))


HEADER = ["data", "N", "nnz (union)", "knn s (1 run)", "scipy ms", "ours union ms",
          "scipy/ours", "floor ms", "ours/floor", "ours reciprocal ms", "scipy cpu ms",
          "ours cpu ms", "cpu ratio", "max abs diff"]


def build_parser(prog: str = "dalcore bench graph") -> BenchParser:
    """The graph bench's arguments."""
    ap = BenchParser(prog=prog, description=__doc__.splitlines()[0])
    bench_data.add_arguments(ap, "Default: synthetic clustered features at --sizes")
    ap.add_argument("--quick", action="store_true",
                    help="N in {10k, 20k} (data sets cut to 10,000 rows), 3 repeats")
    ap.add_argument("--sizes", type=positive_int, nargs="*",
                    help="synthetic sizes N (default 10k, 50k, 200k)")
    ap.add_argument("-k", type=positive_int, default=50)
    ap.add_argument("-d", type=positive_int, default=32,
                    help="synthetic feature dimension (k-NN cost only)")
    ap.add_argument("--gamma", type=float, default=3.0)
    ap.add_argument("--repeats", type=positive_int, default=None)
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the CUDA rows (synthetic lists on the GPU, device bandwidth floor)")
    return ap


def _datasets(args: Any) -> list[tuple[str, np.ndarray, str]]:
    if args.data is None:
        sizes = args.sizes or ([10_000, 20_000] if args.quick else [10_000, 50_000, 200_000])
        return [("synthetic-clustered", features(n, args.d), f"synthetic: N/50 Gaussian "
                 f"clusters, {n} x {args.d}, L2-normalised") for n in sizes]
    out = []
    for ds in bench_data.load_all(args, args.data, QUICK_ROWS if args.quick else None):
        if ds.x.shape[0] <= args.k:
            raise BenchError(f"--data {ds.name}: {ds.x.shape[0]} rows, -k needs more than "
                             f"{args.k}")
        out.append((ds.name, normalised(ds.x), ds.description + ", L2-normalised"))
    return out


def run(args: Any) -> None:
    """Runs the bench the parsed arguments describe (BenchError on a bad one)."""
    sizes = args.sizes or ([10_000, 20_000] if args.quick else [10_000, 50_000, 200_000])
    repeats = args.repeats or (3 if args.quick else 5)
    if args.cuda_only:
        cuda_rows(sizes, args.k, args.gamma, repeats)
        return
    if optional("scipy.sparse", "the LP-DeepSSL scipy peer") is None:
        raise BenchError("the graph bench compares against scipy, which is not installed")
    optional("faiss", "faiss k-NN (dalcore.knn's numpy fallback builds the lists)")

    bw = parallel_memory_bandwidth(repeats=repeats)
    info = dalcore.build_info()
    print(f"threads {info['threads']}, simd {info['simd']}, read bandwidth {bw / 1e9:.2f} GB/s "
          f"(measured in this run), k = {args.k}, gamma = {args.gamma}, median of {repeats}, "
          f"load average {load_average():.1f} on {os.cpu_count()} cores", flush=True)
    rows, described = [], []
    for name, x, what in _datasets(args):
        rows.append(bench_one(name, x, args.k, args.gamma, repeats, bw))
        described.append(f"- {name} (N = {x.shape[0]}): {what}")
        print(f"{name}, N = {x.shape[0]}: done", flush=True)
    print()
    print(fmt_table(HEADER, rows))
    print("\n".join(described))


def main(argv: Optional[Sequence[str]] = None, prog: str = "dalcore bench graph") -> int:
    """Entry point: returns the exit code (2 with one line on stderr for a bad argument)."""
    return run_cli(build_parser, run, argv, prog)
