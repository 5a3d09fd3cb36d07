"""Greedy k-center: dalcore (pruned and unpruned) against the usual Python implementations.

Default (--data real): the real-data table first (benches/kcenter_real.py: Fashion-MNIST pixels,
their 128-PCA projection, features of a network trained on 200 labels, digits pixels; synthetic
clustered and isotropic sets beside them, labelled as such), ours against the numpy GEMV loop,
interleaved repeats, bytes read per pick and bandwidth from the same run. --large N adds the
N x 128 run (Fashion-MNIST PCA features repeated with noise): time per pick and peak memory, in
a child process. --data clustered|gaussian runs the synthetic grid below.

Peers, all exact greedy farthest-first from the same labeled set:
  numpy   float32 loop, one GEMV per pick (|x|^2 + |c|^2 - 2 X c, then minimum, argmax)
  sklearn pairwise_distances to the new centre per pick, as google/active-learning's
          kcenter_greedy.py (core-set) does (float32 in: sklearn upcasts in blocks)
  scipy   scipy.spatial.distance_matrix to the new centre per pick, as in the original paper's
          code
  torch   the GEMV loop in torch on the CPU (and on CUDA where present)

One process; each time is the median of --repeats runs. Slow peers (--extrapolate, default
sklearn and scipy) run only --peer-picks picks: their labeled-set initialisation and those picks
are timed once and the per-pick time is extrapolated to the budget (marked "~" in the table).
Memory bandwidth is measured in the same run (benches/_common.py); "GB/s" is the bytes one full
pass reads (N x d x 4 + the min-distance vector) divided by the time per pick, "%bw" that
against the measured parallel read bandwidth. The pruned path skips rows, so its "effective"
GB/s can exceed the machine's bandwidth.

Data: --data clustered: a mixture of 50 Gaussian clusters on an 8-dimensional subspace
plus small isotropic noise, like the class-clustered, low-intrinsic-dimension features of a
trained network; --data gaussian: isotropic Gaussian, the worst case for pruning (in high
dimension all distances concentrate and the triangle inequality prunes nothing).

  python benches/bench_kcenter.py --quick
  python benches/bench_kcenter.py --sizes 50000x128x1000,200000x128x1000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kcenter_real  # noqa: E402
from _common import (  # noqa: E402
    cuda_read_bandwidth,
    fmt_table,
    median_time,
    parallel_memory_bandwidth,
)

import dalcore  # noqa: E402

N_LABELED = 100


def make_data(n: int, d: int, kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, d), dtype=np.float32)
    k, r = 50, 8
    centres = rng.standard_normal((k, r)) * 4.0
    z = centres[rng.integers(0, k, n)] + rng.standard_normal((n, r))
    basis = np.linalg.qr(rng.standard_normal((d, r)))[0].T  # r orthonormal rows
    x = z @ basis + 0.05 * rng.standard_normal((n, d))
    return x.astype(np.float32)


# ------------------------------------------------------------------ peers


def numpy_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray, timed_picks=None):
    t0 = time.perf_counter()
    sq = np.einsum("ij,ij->i", x, x)
    md = np.full(x.shape[0], np.inf, dtype=np.float32)
    for s in range(0, len(labeled), 256):  # blocked GEMM against the labeled set
        lab = labeled[s : s + 256]
        d2 = sq[:, None] + sq[lab][None, :] - 2.0 * (x @ x[lab].T)
        np.minimum(md, d2.min(axis=1), out=md)
    md[labeled] = -1.0
    t1 = time.perf_counter()
    out = np.empty(budget, dtype=np.int64)
    for t in range(budget if timed_picks is None else timed_picks):
        c = int(np.argmax(md))
        out[t] = c
        d2 = sq + sq[c] - 2.0 * (x @ x[c])
        np.minimum(md, d2, out=md)
        md[c] = -1.0  # stays below every d2 (>= -rounding) from here on
    if timed_picks is not None:
        return t1 - t0, (time.perf_counter() - t1) / max(timed_picks, 1)
    return out


def _stepwise(init, step, x, budget, labeled, timed_picks=None):
    """Greedy loop over a peer's (init, step) pair. With timed_picks: only that many picks, and
    returns (init seconds, seconds per pick) instead of the picks."""
    t0 = time.perf_counter()
    md = init(x, labeled)
    t1 = time.perf_counter()
    out = []
    for _ in range(budget if timed_picks is None else timed_picks):
        c = int(np.argmax(md))
        out.append(c)
        md = step(x, md, c)
    t2 = time.perf_counter()
    if timed_picks is not None:
        return t1 - t0, (t2 - t1) / max(timed_picks, 1)
    return np.asarray(out, dtype=np.int64)


# google/active-learning sampling_methods/kcenter_greedy.py: update_distances() with
# sklearn.metrics.pairwise_distances, min over the new centre's distances each pick.
def _sklearn_init(x, labeled):
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(x, x[labeled], metric="euclidean").min(axis=1).reshape(-1, 1)


def _sklearn_step(x, md, c):
    from sklearn.metrics import pairwise_distances

    return np.minimum(md, pairwise_distances(x, x[[c]], metric="euclidean"))


def sklearn_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray, timed_picks=None):
    return _stepwise(_sklearn_init, _sklearn_step, x, budget, labeled, timed_picks)


# The original paper's code: scipy.spatial.distance_matrix to the new centre each pick.
def _scipy_init(x, labeled):
    from scipy.spatial import distance_matrix

    return distance_matrix(x, x[labeled]).min(axis=1)


def _scipy_step(x, md, c):
    from scipy.spatial import distance_matrix

    return np.minimum(md, distance_matrix(x, x[[c]]).ravel())


def scipy_kcenter(x: np.ndarray, budget: int, labeled: np.ndarray, timed_picks=None):
    return _stepwise(_scipy_init, _scipy_step, x, budget, labeled, timed_picks)


def torch_kcenter(x, budget: int, labeled, timed_picks=None):
    import torch

    t0 = time.perf_counter()
    sq = (x * x).sum(1)
    md = torch.full((x.shape[0],), float("inf"), device=x.device)
    for s in range(0, len(labeled), 256):
        lab = labeled[s : s + 256]
        d2 = sq[:, None] + sq[lab][None, :] - 2.0 * (x @ x[lab].T)
        md = torch.minimum(md, d2.min(dim=1).values)
    md[labeled] = -1.0
    out = torch.empty(budget, dtype=torch.int64, device=x.device)
    on_cpu = x.device.type == "cpu"
    if not on_cpu:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    for t in range(budget if timed_picks is None else timed_picks):
        c = torch.argmax(md)
        if on_cpu:
            c = int(c)  # cheap on the CPU; on CUDA the index stays on the device
        out[t] = c
        d2 = torch.addmv(sq + sq[c], x, x[c], alpha=-2.0)
        torch.minimum(md, d2, out=md)
        md[c] = -1.0
    if timed_picks is not None:
        if not on_cpu:
            torch.cuda.synchronize()
        return t1 - t0, (time.perf_counter() - t1) / max(timed_picks, 1)
    return out


# ------------------------------------------------------------------ driver


def run_synchronized(torch, fn, *args):
    fn(*args)
    torch.cuda.synchronize()


def timed_extrapolated(fn, x, budget, labeled, picks):
    """(seconds for the budget, extrapolated?): the labeled-set initialisation timed once and the
    per-pick time (median over `picks` picks' mean) scaled to the budget."""
    if picks >= budget:
        t0 = time.perf_counter()
        fn(x, budget, labeled)
        return time.perf_counter() - t0, False
    t_init, per_pick = fn(x, budget, labeled, timed_picks=picks)
    return t_init + per_pick * budget, True


def cuda_rows(args, sizes) -> None:
    """dalcore.kcenter on CUDA tensors: seconds, ms per pick, GB/s of one pass and the fraction
    of the device read bandwidth (a pick reads the features once and min-distances twice)."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_kcenter --cuda-only: no CUDA device")
    bw = cuda_read_bandwidth(torch)
    rows = []
    for n, d, budget in sizes:
        x = torch.from_numpy(make_data(n, d, args.data)).cuda()
        lab = torch.arange(N_LABELED, device="cuda")
        t = median_time(partial(run_synchronized, torch, dalcore.kcenter, x, budget, lab),
                        args.repeats)
        per_pick = t / budget
        bytes_pass = n * d * 4 + n * 4 * 2
        rows.append([n, d, budget, t, per_pick * 1e3, bytes_pass / per_pick / 1e9,
                     f"{100 * bytes_pass / per_pick / bw:.0f}%"])
        print(f"kcenter CUDA N = {n}: {t:.4g} s", flush=True)
    print(f"# kcenter CUDA rows: {torch.cuda.get_device_name()}, device read bandwidth "
          f"{bw / 1e9:.0f} GB/s measured in this run; data={args.data}; {N_LABELED} labeled; "
          f"median of {args.repeats}")
    print(fmt_table(["N", "d", "budget", "ours CUDA s", "ms/pick", "GB/s", "% of floor"], rows))


def real_table(args) -> None:
    """The real-data table (and the --large row), printed as Markdown."""
    if args.threads:
        dalcore._core.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    names = [n for n in args.sets.split(",") if n]
    if args.quick:
        names = ["digits-pixels", "synthetic-isotropic"]
    bw = parallel_memory_bandwidth()
    info = dalcore.build_info()
    load0 = os.getloadavg()
    print(f"# kcenter bench, real data first: {os.cpu_count()} CPUs, dalcore threads "
          f"{info['threads']}, SIMD {info['simd']}; read bandwidth {bw / 1e9:.1f} GB/s "
          f"(measured in this run); {kcenter_real.N_LABELED} labeled; ours, unpruned and numpy "
          f"interleaved, median of {repeats}; load average {load0[0]:.2f}", flush=True)
    rows = []
    for name, x in kcenter_real.datasets(names).items():
        rows.append(kcenter_real.bench_one(name, x, args.budget, repeats, bw))
        print(fmt_table(kcenter_real.HEADER, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(fmt_table(kcenter_real.HEADER, rows))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (start {load0[0]:.2f}); "
          "numpy/ours > 1: ours faster; m: projection width (0: none)")
    if args.large:
        large_row(args.large, args.budget)


def large_row(n: int, budget: int) -> None:
    """kcenter on N x 128 in a child process that only loads the data: seconds, ms per pick,
    peak resident memory against the data's size; the numpy loop's time per pick (20 picks)."""
    import json
    import subprocess
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.npy")
        kcenter_real.large_data(n, path)
        code = (f"import json, sys; sys.path.insert(0, {here!r}); import kcenter_real; "
                f"print(json.dumps(kcenter_real.peak_memory_run({path!r}, {budget})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    mib = 2**20
    print(f"\nN = {n:,} x 128 (Fashion-MNIST PCA-128 features repeated with 1 % noise), budget "
          f"{budget}, {kcenter_real.N_LABELED} labeled: ours {r['seconds']:.1f} s, "
          f"{1e3 * r['seconds'] / budget:.2f} ms per pick (incl. the labeled-set pass and the "
          f"projection); numpy GEMV loop {1e3 * r['numpy_per_pick']:.1f} ms per pick (20 picks) "
          f"+ {r['numpy_init']:.1f} s labeled-set pass; peak RSS during the call "
          f"{r['peak_rss'] / mib:.0f} MiB (RSS before it {r['rss_before'] / mib:.0f} MiB, of "
          f"which data {r['data_bytes'] / mib:.0f} MiB): kcenter's extra memory "
          f"{(r['peak_rss'] - r['rss_before']) / mib:.0f} MiB")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: a smoke run")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated NxDxBUDGET (default: the full grid N in 10k,50k,200k; "
                    "d in 128,512; budget in 100,1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-picks", type=int, default=20,
                    help="picks timed for the --extrapolate peers, then scaled to the budget")
    ap.add_argument("--extrapolate", default="sklearn,scipy",
                    help="peers timed on --peer-picks picks and extrapolated (any of the peers)")
    ap.add_argument("--peers", default="numpy,sklearn,scipy,torch",
                    help="comma-separated subset of numpy,sklearn,scipy,torch")
    ap.add_argument("--data", choices=["real", "clustered", "gaussian"], default="real")
    ap.add_argument("--sets", default="fashion-pixels,fashion-pca128,fashion-mlp128,"
                    "digits-pixels,synthetic-clustered,synthetic-isotropic",
                    help="--data real: the data sets, in order (kcenter_real.py)")
    ap.add_argument("--budget", type=int, default=1000, help="--data real: picks")
    ap.add_argument("--large", type=int, default=0,
                    help="--data real: also N x 128 (Fashion PCA repeated with noise), "
                    "time per pick and peak memory (e.g. 1000000)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every library")
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the CUDA rows (dalcore on CUDA tensors, device bandwidth floor)")
    args = ap.parse_args(argv)

    if args.data == "real":
        real_table(args)
        return
    if args.quick:
        sizes = [(10_000, 128, 100), (20_000, 128, 200)]
        args.repeats = 1
        args.peer_picks = 5
    elif args.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    else:
        sizes = [(n, d, b) for n in (10_000, 50_000, 200_000) for d in (128, 512)
                 for b in (100, 1000)]
    if args.cuda_only:
        cuda_rows(args, sizes)
        return
    peers = [p for p in args.peers.split(",") if p]
    extrapolated = {p for p in args.extrapolate.split(",") if p}

    torch = None
    if "torch" in peers:
        try:
            import torch
        except ImportError:
            peers.remove("torch")
    if args.threads:
        dalcore._core.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    cuda = torch is not None and torch.cuda.is_available()

    bw = parallel_memory_bandwidth()
    info = dalcore.build_info()
    print(f"# kcenter bench: {os.cpu_count()} CPUs, dalcore threads {info['threads']}, "
          f"SIMD {info['simd']}, torch threads {torch.get_num_threads() if torch else '-'}; "
          f"measured read bandwidth {bw / 1e9:.1f} GB/s; data={args.data}; "
          f"{N_LABELED} labeled; median of {args.repeats}")

    header = ["N", "d", "budget", "ours pruned s", "ours unpruned s", "unpruned ms/pick",
              "unpruned GB/s", "%bw", "pruned eff. GB/s"]
    header += [f"{p} s" for p in peers] + ([("torch-cuda s")] if cuda else [])
    header += ["unpruned/pruned"] + [f"{p}/ours" for p in peers]
    rows = []
    for n, d, budget in sizes:
        x = make_data(n, d, args.data)
        labeled = np.random.default_rng(1).choice(n, N_LABELED, replace=False).astype(np.int64)
        t_pr = median_time(partial(dalcore.kcenter, x, budget, labeled), args.repeats)
        t_un = median_time(partial(dalcore.kcenter, x, budget, labeled, _prune=False),
                           args.repeats)
        bytes_pass = n * d * 4 + n * 4 * 2
        per_pick = t_un / budget
        row = [n, d, budget, t_pr, t_un, per_pick * 1e3, bytes_pass / per_pick / 1e9,
               f"{100 * bytes_pass / per_pick / bw:.0f}%",
               bytes_pass / (t_pr / budget) / 1e9]
        best = min(t_pr, t_un)
        times = {}
        fns = {"numpy": numpy_kcenter, "sklearn": sklearn_kcenter, "scipy": scipy_kcenter,
               "torch": torch_kcenter}
        for p in peers:
            xp, lp = (torch.from_numpy(x), torch.from_numpy(labeled)) if p == "torch" else (
                x, labeled)
            if p in extrapolated:
                times[p] = timed_extrapolated(fns[p], xp, budget, lp, args.peer_picks)
            else:
                times[p] = (median_time(partial(fns[p], xp, budget, lp), args.repeats), False)
        for p in peers:
            t, ex = times[p]
            row.append(f"~{t:.4g}" if ex else t)
        if cuda:
            xc, lc = torch.from_numpy(x).cuda(), torch.from_numpy(labeled).cuda()
            row.append(median_time(partial(run_synchronized, torch, torch_kcenter, xc, budget, lc),
                                   args.repeats))
        row.append(f"{t_un / t_pr:.2f}x")
        for p in peers:
            row.append(f"{times[p][0] / best:.1f}x")
        rows.append(row)
        print(fmt_table(header, [row]).splitlines()[-1], flush=True)

    print()
    print(fmt_table(header, rows))
    if extrapolated & set(peers):
        print(f"\n~ = extrapolated: labeled-set initialisation timed once, then "
              f"{args.peer_picks} picks timed and scaled to the budget.")
    print("ratios: peer time / our faster path (higher = we are faster); "
          "unpruned/pruned = speed-up of pruning.")
    if cuda:
        xc = torch.from_numpy(make_data(sizes[-1][0], sizes[-1][1], args.data)).cuda()
        t_ours = median_time(partial(run_synchronized, torch, dalcore.kcenter, xc, sizes[-1][2],
                                     torch.arange(N_LABELED, device="cuda")), args.repeats)
        print(f"ours on CUDA, last size: {t_ours:.4g} s")


if __name__ == "__main__":
    main()
