"""knn_graph: dalcore's kernel vs the LP-DeepSSL scipy pipeline, from the same k-NN lists.

One process: for each N, features (clustered, L2-normalised) -> faiss exact k-NN (timed for
context) -> the graph S = D^-1/2 (W + W^T) D^-1/2 built
  * as in LP-DeepSSL (Iscen et al. 2019) / the paper's code: csr_matrix from the k-NN lists,
    W + W.T, diagonal removed, degree normalisation with scipy/numpy;
  * by dalcore.knn_graph(mode="union") (and mode="reciprocal" for reference).
Medians of several repeats; ratio scipy / ours; and our time against the memory-bandwidth floor:
the bytes that must move (read the lists, write the CSR) / bandwidth measured in this run.

    python benches/bench_graph.py            # N in 10k, 50k, 200k
    python benches/bench_graph.py --quick    # N in 10k, 50k
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import scipy.sparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    cuda_read_bandwidth,
    device_lists,
    fmt_table,
    median_time,
    parallel_memory_bandwidth,
)

import dalcore  # noqa: E402


def features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n points around n/50 random centres, L2-normalised (like the 128-d network features)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 50), d)).astype(np.float32)
    x = centres[rng.integers(0, centres.shape[0], n)]
    x += 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def faiss_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """LP-DeepSSL's search: IndexFlatIP, k + 1 results, the first (self) dropped."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    d, i = index.search(x, k + 1)
    return d[:, 1:], i[:, 1:]


def lp_deepssl_graph(sims: np.ndarray, idx: np.ndarray, gamma: float) -> scipy.sparse.spmatrix:
    """The graph construction of LP-DeepSSL's update_plabels (weights clamped at 0 like ours)."""
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


def bench_one(n: int, k: int, d: int, gamma: float, repeats: int, bw: float) -> list[object]:
    x = features(n, d)
    t_knn = median_time(lambda: faiss_knn(x, k), repeats=1, warmup=0)
    sims, idx = faiss_knn(x, k)
    sims, idx = np.ascontiguousarray(sims), np.ascontiguousarray(idx)
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
        n, ours.nnz, t_knn, t_scipy * 1e3, t_union * 1e3, t_scipy / t_union,
        t_floor * 1e3, t_union / t_floor, t_recip * 1e3, c_scipy * 1e3, c_union * 1e3,
        c_scipy / c_union, f"{err:.1e}",
    ]


# ------------------------------------------------------------------ CUDA rows


def _graph_synced(torch, sims, idx, gamma: float, mode: str) -> None:
    dalcore.knn_graph((sims, idx), gamma=gamma, mode=mode)
    torch.cuda.synchronize()


def cuda_rows(sizes: list[int], k: int, gamma: float, repeats: int) -> None:
    """dalcore.knn_graph on CUDA lists: ms, and the floor = bytes that must move (read the lists,
    write the CSR) / device read bandwidth measured in this run."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_graph --cuda-only: no CUDA device")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {10k, 50k}, fewer repeats")
    ap.add_argument("--sizes", type=int, nargs="*", help="override the sizes N")
    ap.add_argument("-k", type=int, default=50)
    ap.add_argument("-d", type=int, default=32, help="feature dimension (faiss cost only)")
    ap.add_argument("--gamma", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the CUDA rows (synthetic lists on the GPU, device bandwidth floor)")
    args = ap.parse_args()
    sizes = args.sizes or ([10_000, 50_000] if args.quick else [10_000, 50_000, 200_000])
    repeats = args.repeats or (3 if args.quick else 5)
    k, gamma = args.k, args.gamma
    if args.cuda_only:
        cuda_rows(sizes, k, gamma, repeats)
        return

    bw = parallel_memory_bandwidth(repeats=repeats)
    info = dalcore.build_info()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads {info['threads']}, simd {info['simd']}, read bandwidth {bw / 1e9:.2f} GB/s, "
          f"k = {k}, d = {args.d}, gamma = {gamma}, median of {repeats}, "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    rows = []
    for n in sizes:
        rows.append(bench_one(n, k, args.d, gamma, repeats, bw))
        print(f"N = {n}: done", flush=True)
    print()
    print(fmt_table(
        ["N", "nnz (union)", "faiss knn s (1 run)", "scipy ms", "ours union ms", "scipy/ours",
         "floor ms", "ours/floor", "ours reciprocal ms", "scipy cpu ms", "ours cpu ms",
         "cpu ratio", "max |diff|"],
        rows,
    ))


if __name__ == "__main__":
    main()
