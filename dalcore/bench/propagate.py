"""Bench: dalcore.propagate (block CG, all classes at once) vs LP-DeepSSL's way (one
scipy.sparse.linalg.cg per class), at equal work.

LP-DeepSSL (Iscen et al., lp/db_semisuper.py) builds ``A = eye(N) - alpha * Wn`` (float64,
since ``eye`` is) and calls ``scipy.sparse.linalg.cg(A, y_c, tol=1e-6, maxiter=20)`` once per
class. Here both sides run exactly 20 iterations (tolerance 1e-30, checked through ours'
iteration counts), in one process, and we report medians, the ratio, and ours against the
memory-bandwidth floor: the compulsory bytes of one iteration (the CSR graph once, plus 10
passes over N x C float32 vectors: SpMM reads p and writes q; residual reads r, q and writes
r; update reads x, p, r and writes x, p) divided by the read bandwidth measured in the same
run with every core (benches/_common.py).

The graph is k-NN-like: N points in N/500 random clusters, each with k random neighbours in its
cluster (weights u^3, u uniform), made symmetric as W + W^T (the LP-DeepSSL "union" graph) and
normalised D^-1/2 W D^-1/2; nodes are in random order, as a dataset's are. ``--graph faiss``
builds a true k-NN graph with faiss on clustered Gaussian features instead (slow for large N).

``--data`` (:mod:`dalcore.bench.data`) runs on the k-NN graph (``dalcore.knn``, faiss when
installed) of real features instead, L2-normalised, with --per-class labelled nodes of each of
their true classes (C = the data set's classes; a .npy file has none: --classes random ones).

    dalcore bench propagate --quick                 # N = 20k, C = 10
    dalcore bench propagate                         # N in {10k, 50k, 200k}
    dalcore bench propagate --data digits,fashion-mnist:convnet
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

import dalcore

from . import data as bench_data
from ._common import (
    BenchError,
    BenchParser,
    cuda_read_bandwidth,
    device_lists,
    fmt_table,
    median_time,
    parallel_memory_bandwidth,
    positive_int,
    run_cli,
)

ALPHA = 0.99
ITERS = 20
TINY = 1e-30


def normalise(w: sp.csr_array) -> sp.csr_array:
    w = sp.csr_array(w)
    w.setdiag(0)
    w.eliminate_zeros()
    d = np.asarray(w.sum(axis=1)).ravel()
    dinv = np.zeros_like(d)
    dinv[d > 0] = 1.0 / np.sqrt(d[d > 0])
    s = sp.csr_array(sp.diags_array(dinv) @ w @ sp.diags_array(dinv))
    s.data = s.data.astype(np.float32)
    return s


def synthetic_graph(n: int, k: int, seed: int = 0, cluster_size: int = 500) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    clusters = max(1, n // cluster_size)
    cl = rng.integers(0, clusters, n)
    order = np.argsort(cl, kind="stable")
    start = np.searchsorted(cl[order], np.arange(clusters))
    size = np.bincount(cl, minlength=clusters)
    rows = np.repeat(np.arange(n), k)
    c = cl[rows]
    cols = order[start[c] + (rng.random(n * k) * size[c]).astype(np.int64)]
    vals = rng.random(n * k) ** 3
    w = sp.csr_array((vals, (rows, cols)), shape=(n, n))
    return normalise(w + w.T)


def knn_graph_of(x: np.ndarray, k: int) -> sp.csr_array:
    """The union k-NN graph (weights max(sim, 0)^3) of the L2-normalised rows of ``x``."""
    x64 = x.astype(np.float64)
    norm = np.linalg.norm(x64, axis=1, keepdims=True)
    xn = np.ascontiguousarray(x64 / np.where(norm > 0, norm, 1.0), dtype=np.float32)
    sims, idx = dalcore.knn(xn, k, metric="ip")
    n = xn.shape[0]
    keep = idx.ravel() >= 0
    rows = np.repeat(np.arange(n), k)[keep]
    w = sp.csr_array((np.maximum(sims.ravel()[keep], 0) ** 3, (rows, idx.ravel()[keep])),
                     shape=(n, n))
    return normalise(w + w.T)


def faiss_graph(n: int, k: int, seed: int = 0, d: int = 64) -> sp.csr_array:
    """A true k-NN graph of synthetic clustered Gaussian features (100 centres, d = 64)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(100, d)).astype(np.float32)
    x = centers[rng.integers(0, 100, n)] + 0.7 * rng.normal(size=(n, d)).astype(np.float32)
    return knn_graph_of(x, k)


def labels_from(y: np.ndarray, per_class: int, seed: int = 1) -> tuple[np.ndarray, int]:
    """(labels, C): ``per_class`` random nodes of each class of ``y`` keep their label, the
    others are -1 (classes with fewer nodes give all of theirs)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    labels = np.full(y.shape[0], -1, dtype=np.int64)
    for c_new, c in enumerate(classes):
        rows = np.flatnonzero(y == c)
        labels[rng.choice(rows, min(per_class, rows.size), replace=False)] = c_new
    return labels, int(classes.size)


def make_labels(n: int, c: int, per_class: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.full(n, -1, dtype=np.int64)
    chosen = rng.choice(n, c * per_class, replace=False)
    labels[chosen] = np.repeat(np.arange(c), per_class)
    return labels


def lp_deepssl(s: sp.csr_array, labels: np.ndarray, c: int) -> np.ndarray:
    """LP-DeepSSL's propagation: A = eye - alpha * Wn, one scipy cg per class."""
    n = s.shape[0]
    a = sp.eye(n) - ALPHA * s
    z = np.zeros((n, c))
    for i in range(c):
        y = np.zeros(n)
        cur = np.flatnonzero(labels == i)
        y[cur] = 1.0 / cur.shape[0]
        z[:, i], _ = spl.cg(a, y, rtol=TINY, maxiter=ITERS)
    return z


# ------------------------------------------------------------------ CUDA rows


def _propagate_synced(torch, g, labels, c: int) -> None:
    dalcore.propagate(g, labels, num_classes=c, alpha=ALPHA, tol=0.0, max_iter=ITERS)
    torch.cuda.synchronize()


def cuda_rows(sizes: list[int], k: int, classes: list[int], per_class: int,
              repeats: int) -> None:
    """dalcore.propagate on a CUDA graph (the union graph of device_lists), ITERS iterations
    exactly (tol=0): ms per iteration against the floor = (the graph once + ~8 passes over the
    n x C vectors) / device read bandwidth measured in this run."""
    import torch

    if not torch.cuda.is_available():
        raise BenchError("--cuda-only: no CUDA device")
    bw = cuda_read_bandwidth(torch)
    rows = []
    for n in sizes:
        sims, idx = device_lists(torch, n, k)
        g = dalcore.knn_graph((sims, idx), mode="union")
        nnz = int(g[0][-1])
        del sims, idx
        for c in classes:
            labels = torch.from_numpy(make_labels(n, c, per_class)).cuda()

            t = median_time(partial(_propagate_synced, torch, g, labels, c), repeats)
            per_iter = t / ITERS
            floor = (8 * (n + 1) + 8 * nnz + 8 * n * c * 4) / bw
            rows.append([n, c, nnz / n, t, per_iter * 1e3, floor * 1e3, per_iter / floor])
            print(f"propagate CUDA N = {n} C = {c}: {t:.4g} s", flush=True)
    print(f"# propagate CUDA rows: {torch.cuda.get_device_name()}, {ITERS} iterations "
          f"(tol=0), alpha={ALPHA}, device read bandwidth {bw / 1e9:.0f} GB/s measured in this "
          f"run, median of {repeats}")
    print(fmt_table(["N", "C", "nnz/row", "ours CUDA s", "ms/iter", "floor ms/iter",
                     "ours/floor"], rows))


def build_parser(prog: str = "dalcore bench propagate") -> BenchParser:
    """The propagate bench's arguments."""
    ap = BenchParser(prog=prog, description=__doc__.splitlines()[0])
    bench_data.add_arguments(ap, "Their k-NN graphs; default: synthetic graphs at --n")
    ap.add_argument("--quick", action="store_true",
                    help="N = 20k, C = 10 (data sets cut to 10,000 rows), fewer repeats")
    ap.add_argument("--n", type=positive_int, nargs="*", help="override the N values")
    ap.add_argument("--classes", type=positive_int, nargs="*", default=None,
                    help="classes C (default 10 and 100; --quick: 10)")
    ap.add_argument("--k", type=positive_int, default=50)
    ap.add_argument("--per-class", type=positive_int, default=10,
                    help="labeled nodes per class")
    ap.add_argument("--graph", choices=["synthetic", "faiss"], default="synthetic",
                    help="without --data: random in-cluster neighbours, or the k-NN graph of "
                    "synthetic clustered features")
    ap.add_argument("--repeats", type=positive_int, default=5, help="repeats of ours (median)")
    ap.add_argument("--peer-repeats", type=positive_int, default=3,
                    help="repeats of scipy (median)")
    ap.add_argument("--float64", action="store_true", help="also time precision='float64'")
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the CUDA rows (graph built on the GPU, device bandwidth floor)")
    return ap


def _cases(args: Any, sizes: list[int]) -> Any:
    """(data name, graph, [(C, labels)]) for each row group, built lazily."""
    if args.data is None:
        for n in sizes:
            t0 = time.perf_counter()
            s = synthetic_graph(n, args.k) if args.graph == "synthetic" else faiss_graph(n, args.k)
            name = ("synthetic (random in-cluster neighbours)" if args.graph == "synthetic"
                    else "synthetic (k-NN of clustered features)")
            print(f"{name} N={n}: {s.nnz / n:.1f} nonzeros per row, built in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            yield name, s, [(c, make_labels(n, c, args.per_class)) for c in args.classes]
        return
    for ds in bench_data.load_all(args, args.data, 10_000 if args.quick else None):
        n = ds.x.shape[0]
        if n <= args.k:
            raise BenchError(f"--data {ds.name}: {n} rows, --k needs more than {args.k}")
        s = knn_graph_of(ds.x, args.k)
        print(f"{ds.name} N={n}: k-NN graph, {s.nnz / n:.1f} nonzeros per row; {ds.description}",
              flush=True)
        if ds.y is not None:
            yield ds.name, s, [labels_from(ds.y, args.per_class)[::-1]]
        else:
            yield ds.name, s, [(c, make_labels(n, c, min(args.per_class, n // c)))
                               for c in args.classes if c * 1 <= n]


def _row(name: str, s: sp.csr_array, labels: np.ndarray, c: int, args: Any,
         bw: float) -> list[object]:
    n = s.shape[0]

    def ours(precision: str = "float32") -> Any:
        return dalcore.propagate(s, labels, num_classes=c, alpha=ALPHA, tol=TINY,
                                 max_iter=ITERS, return_info=True, precision=precision)

    z, info = ours()
    if not (info.iterations == ITERS).all():
        raise RuntimeError(f"propagate bench: expected {ITERS} iterations, got {info.iterations}")
    t_ours = median_time(ours, repeats=args.repeats)
    peer_times = []
    for _ in range(args.peer_repeats):  # scipy needs no warm-up; keep its last output
        t0 = time.perf_counter()
        ref = lp_deepssl(s, labels, c)
        peer_times.append(time.perf_counter() - t0)
    t_peer = float(np.median(peer_times))
    err = np.linalg.norm(z - ref) / np.linalg.norm(ref)
    floor = (s.nnz * 8 + (n + 1) * 8 + 10 * n * c * 4) / bw
    per_iter = t_ours / ITERS
    row: list[object] = [name, n, c, round(s.nnz / n, 1), t_peer, t_ours, t_peer / t_ours,
                         per_iter * 1e3, floor * 1e3, floor / per_iter]
    if args.float64:
        row.append(median_time(lambda: ours("float64"), repeats=args.repeats))
    print(f"  C={c}: scipy {t_peer:.3f} s, ours {t_ours:.3f} s, x{t_peer / t_ours:.1f}, "
          f"|Z - Z_scipy| / |Z_scipy| = {err:.1e}", flush=True)
    return row


def run(args: Any) -> None:
    """Runs the bench the parsed arguments describe (BenchError on a bad one)."""
    sizes = args.n or ([20_000] if args.quick else [10_000, 50_000, 200_000])
    args.classes = args.classes or ([10] if args.quick else [10, 100])
    if args.quick:
        args.repeats, args.peer_repeats = min(args.repeats, 3), min(args.peer_repeats, 2)
    if args.cuda_only:
        cuda_rows(sizes, args.k, args.classes, args.per_class, args.repeats)
        return
    bw = parallel_memory_bandwidth()
    threads = dalcore.build_info()["threads"]
    print(f"read bandwidth (all cores): {bw / 1e9:.2f} GB/s (measured in this run); dalcore "
          f"threads: {threads}; scipy cg: single-threaded; {ITERS} iterations each; "
          f"alpha={ALPHA}", flush=True)
    header = ["data", "N", "C", "nnz/row", "LP-DeepSSL scipy cg (s)", "dalcore (s)", "speedup",
              "dalcore ms/iter", "floor ms/iter", "fraction of floor"]
    if args.float64:
        header += ["dalcore float64 (s)"]
    rows = []
    for name, s, label_sets in _cases(args, sizes):
        for c, labels in label_sets:
            rows.append(_row(name, s, labels, c, args, bw))
    print()
    print(fmt_table(header, rows))


def main(argv: Optional[Sequence[str]] = None, prog: str = "dalcore bench propagate") -> int:
    """Entry point: returns the exit code (2 with one line on stderr for a bad argument)."""
    return run_cli(build_parser, run, argv, prog)
