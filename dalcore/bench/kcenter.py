"""Greedy k-center bench: dalcore.kcenter (default path and ``_prune=False``) against the numpy
GEMV loop, on real data first.

``dalcore bench kcenter [--data SPECS] [--quick]`` (or ``python benches/bench_kcenter.py``).

The data table (default): for each ``--data`` set (:mod:`dalcore.bench.data`; by default
Fashion-MNIST pixels, their PCA-128, the 128-d features of a trained dalcore ConvNet and of the
DeepCluster backbone, 8x8 RGB patches of scikit-learn's two sample photographs and their PCA-128,
digits, then the synthetic clustered and isotropic sets, labelled as such),
ours (default path), ours unpruned (``_prune=False``: every row every pick) and the numpy GEMV
loop, the three interleaved in each of --repeats rounds (order rotated each round, 0.5 s pause
before each call), medians; same picks asserted. Bytes read
per pick: ours = (full rows x 4d + projected rows x (4s + 8) + rows tested on the int8 copy x
(s + 4) + members visited by pruned sweeps x 12) / picks, s = m rounded up to 16 (counted by the
kernel in an extra untimed run); numpy = N (4d + 16). GB/s = bytes
per pick / time per pick; %bw against the read bandwidth of the data set's own array, warm, all
cores, measured in the same run ("read GB/s of x": a 30 MB pool stays in a large last-level
cache, so the 256 MB figure of the header is not its limit).
``--large N`` adds N x 128 (Fashion-MNIST PCA-128 rows repeated with 1 % noise): time per pick
and peak memory, in a child process.

``--grid clustered|isotropic`` (``--data clustered|gaussian`` too, the former spelling): the
synthetic N x d x budget grid (``--sizes``) against every peer (numpy, scikit-learn, scipy, torch;
:mod:`dalcore.bench.kcenter_peers`; slow peers timed on --peer-picks picks and extrapolated).
``--cuda-only``: dalcore.kcenter on CUDA tensors over that grid, against the device bandwidth.
``--quick``: 10,000 rows at most, budget 100, one repeat (digits and the synthetic sets unless
``--data`` says otherwise): well under a minute.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from . import data as bench_data
from ._common import (
    BenchError,
    BenchParser,
    array_read_bandwidth,
    fmt_table,
    limit_threads,
    load_average,
    parallel_memory_bandwidth,
    positive_int,
    run_cli,
)
from .kcenter_peers import PEERS

N_LABELED = 100
DEFAULT_DATA = ("fashion-mnist,fashion-mnist:pca128,fashion-mnist:convnet,"
                "fashion-mnist:deepcluster,photo-patches,photo-patches:pca128,digits,"
                "synthetic-clustered,synthetic-isotropic")
QUICK_DATA = "digits,synthetic-clustered,synthetic-isotropic"
QUICK_ROWS, QUICK_BUDGET = 10_000, 100
HEADER = ["data", "N", "d", "budget", "m", "ours s", "ours unpruned s", "numpy s",
          "numpy/ours", "unpruned/ours", "ours MB/pick", "numpy MB/pick", "read GB/s of x",
          "ours GB/s (%bw)", "numpy GB/s (%bw)"]


#: Seconds of rest before each timed call when repeating (the previous call's threads settle).
PAUSE_S = 0.5


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_one(name: str, x: np.ndarray, budget: int, repeats: int) -> list[object]:
    """One row of the data table (see the module)."""
    import dalcore
    from dalcore._kcenter import _kcenter_stats, _projection_width

    n, d = x.shape
    lab = np.random.default_rng(1).choice(n, size=min(N_LABELED, n // 4), replace=False)
    b = min(budget, n - len(lab))
    runs = {"ours": lambda: dalcore.kcenter(x, b, lab),
            "unpruned": lambda: dalcore.kcenter(x, b, lab, _prune=False),
            "numpy": lambda: PEERS["numpy"][0](x, b, lab)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up (page faults, thread start)
    # Interleaved: each round runs all three, in an order rotated every round and after a
    # pause, so that none is always timed right after numpy, whose BLAS threads spin on for a
    # while after a call (ours, always timed right after them, measured 5-10 % slower).
    order = list(runs)
    for r in range(repeats):
        for k in order[r % 3:] + order[:r % 3]:
            if repeats > 1:
                time.sleep(PAUSE_S)
            times[k].append(_timed(runs[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    picks, st = _kcenter_stats(x, b, lab)
    if not np.array_equal(picks, runs["unpruned"]()):
        raise RuntimeError(f"kcenter bench, {name}: the default path and the plain pass picked "
                           "differently")
    m = _projection_width(x)
    stride = -(-m // 16) * 16  # the projection's rows are padded to 16 floats
    ours_bytes = (st["full_rows"] * 4 * d + st["projected_rows"] * (4 * stride + 8)
                  + st.get("coarse_rows", 0) * (stride + 4) + st["visited"] * 12) / b
    np_bytes = n * (4 * d + 16)
    bw = array_read_bandwidth(x)
    ours_bw, np_bw = ours_bytes / (med["ours"] / b), np_bytes / (med["numpy"] / b)
    return [name, n, d, b, m, med["ours"], med["unpruned"], med["numpy"],
            f"{med['numpy'] / med['ours']:.1f}x", f"{med['unpruned'] / med['ours']:.1f}x",
            f"{ours_bytes / 1e6:.3g}", f"{np_bytes / 1e6:.3g}", f"{bw / 1e9:.1f}",
            f"{ours_bw / 1e9:.2f} ({100 * ours_bw / bw:.0f}%)",
            f"{np_bw / 1e9:.2f} ({100 * np_bw / bw:.0f}%)"]


def data_table(args: Any) -> None:
    """The data table (and the --large line), printed as Markdown."""
    with limit_threads(args.threads):
        _data_table(args)


def _data_table(args: Any) -> None:
    import dalcore

    quick = args.quick
    datasets = bench_data.load_all(args, QUICK_DATA if quick else DEFAULT_DATA,
                                   QUICK_ROWS if quick else None)
    repeats = 1 if quick else args.repeats
    budget = min(args.budget, QUICK_BUDGET) if quick else args.budget
    bw = parallel_memory_bandwidth(1 << 26 if quick else 1 << 28)
    info = dalcore.build_info()
    load0 = load_average()
    print(f"# kcenter bench, real data first: {os.cpu_count()} CPUs, dalcore threads "
          f"{info['threads']}, SIMD {info['simd']}; read bandwidth {bw / 1e9:.1f} GB/s of a "
          f"{(1 << 26 if quick else 1 << 28) >> 20} MB buffer "
          f"(measured in this run); {N_LABELED} labeled; ours, unpruned and numpy interleaved "
          f"(rotated order, {PAUSE_S} s pauses), "
          f"median of {repeats}; load average {load0:.2f}", flush=True)
    rows, described = [], []
    for ds in datasets:
        described.append(f"- {ds.name}: {ds.description}")
        rows.append(bench_one(ds.name, ds.x, budget, repeats))
        print(fmt_table(HEADER, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(fmt_table(HEADER, rows))
    print("\n".join(described))
    print(f"load average at the end: {load_average():.2f} (start {load0:.2f}); "
          "numpy/ours > 1: ours faster; m: projection width (0: none)")
    if args.large:
        large_row(args.large, budget, args.data_dir)


# ------------------------------------------------------------------ --large


def large_data(n: int, path: str, fashion_dir: Optional[str] = None, seed: int = 0) -> None:
    """Saves N x 128 to ``path`` (.npy): Fashion-MNIST's PCA-128 features repeated with noise
    (1 % of the per-feature spread)."""
    dirs = {"fashion-mnist": fashion_dir} if fashion_dir else {}
    base = bench_data.load("fashion-mnist:pca128", dirs=dirs).x
    rng = np.random.default_rng(seed)
    x = np.empty((n, 128), dtype=np.float32)
    sd = base.std(axis=0).astype(np.float32)
    for a in range(0, n, 65536):
        rows = rng.integers(0, len(base), size=min(65536, n - a))
        x[a : a + len(rows)] = base[rows] + 0.01 * sd * rng.standard_normal(
            (len(rows), 128), dtype=np.float32)
    np.save(path, x)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_run(path: str, budget: int, numpy_picks: int = 20) -> dict[str, float]:
    """Loads the data, runs kcenter once (timed) and reads the peak resident memory during the
    call (Linux: VmHWM reset just before, against VmRSS then), then times ``numpy_picks`` picks
    of the numpy GEMV loop (per pick, from the same labeled set)."""
    import dalcore

    x = np.load(path)
    n = x.shape[0]
    lab = np.random.default_rng(1).choice(n, size=N_LABELED, replace=False)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak (VmHWM) to now
        f.write("5")
    rss0 = _status_kib("VmRSS") * 1024
    t = _timed(lambda: dalcore.kcenter(x, budget, lab))
    peak = _status_kib("VmHWM") * 1024
    numpy_loop = PEERS["numpy"][0]
    t_np = _timed(lambda: numpy_loop(x, numpy_picks, lab))
    t_np1 = _timed(lambda: numpy_loop(x, 1, lab))  # the labeled-set part
    return {"n": n, "budget": budget, "seconds": t, "data_bytes": x.nbytes,
            "rss_before": rss0, "peak_rss": peak,
            "numpy_per_pick": (t_np - t_np1) / (numpy_picks - 1), "numpy_init": t_np1}


def large_row(n: int, budget: int, data_dir: Optional[list[str]]) -> None:
    """kcenter on N x 128 in a child process that only loads the data (see peak_memory_run)."""
    import json
    import subprocess
    import tempfile

    fashion = bench_data.parse_data_dirs(data_dir).get("fashion-mnist")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.npy")
        large_data(n, path, fashion)
        code = ("import json; from dalcore.bench.kcenter import peak_memory_run; "
                f"print(json.dumps(peak_memory_run({path!r}, {budget})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    mib = 2**20
    print(f"\nN = {n:,} x 128 (Fashion-MNIST PCA-128 features repeated with 1 % noise), budget "
          f"{budget}, {N_LABELED} labeled: ours {r['seconds']:.1f} s, "
          f"{1e3 * r['seconds'] / budget:.2f} ms per pick (incl. the labeled-set pass and the "
          f"projection); numpy GEMV loop {1e3 * r['numpy_per_pick']:.1f} ms per pick (20 picks) "
          f"+ {r['numpy_init']:.1f} s labeled-set pass; peak RSS during the call "
          f"{r['peak_rss'] / mib:.0f} MiB (RSS before it {r['rss_before'] / mib:.0f} MiB, of "
          f"which data {r['data_bytes'] / mib:.0f} MiB): kcenter's extra memory "
          f"{(r['peak_rss'] - r['rss_before']) / mib:.0f} MiB")


# ------------------------------------------------------------------ command line


def _names(text: str, known: Sequence[str], flag: str) -> list[str]:
    names = [v for v in text.split(",") if v]
    bad = [v for v in names if v not in known]
    if bad:
        raise BenchError(f"{flag}: unknown {bad[0]!r}; expected any of {', '.join(known)}")
    return names


def build_parser(prog: str = "dalcore bench kcenter") -> BenchParser:
    """The k-center bench's arguments."""
    ap = BenchParser(prog=prog, description=__doc__.splitlines()[0])
    bench_data.add_arguments(ap, f"Default: {DEFAULT_DATA}; --quick: {QUICK_DATA}. "
                             "'clustered' or 'gaussian' alone: the synthetic grid (as --grid)")
    ap.add_argument("--quick", action="store_true",
                    help=f"at most {QUICK_ROWS} rows, budget {QUICK_BUDGET}, 1 repeat")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--budget", type=positive_int, default=1000, help="picks (data table)")
    ap.add_argument("--large", type=positive_int, default=0,
                    help="also N x 128 (Fashion PCA repeated with noise): time per pick and "
                    "peak memory (e.g. 1000000)")
    ap.add_argument("--threads", type=positive_int, default=None,
                    help="threads for every library")
    ap.add_argument("--grid", choices=["clustered", "isotropic"], default=None,
                    help="the synthetic N x d x budget grid against every peer instead")
    ap.add_argument("--sizes", default=None,
                    help="grid sizes, comma-separated NxDxBUDGET (default: N in 10k,50k,200k; "
                    "d in 128,512; budget in 100,1000)")
    ap.add_argument("--peers", default="numpy,sklearn,scipy,torch",
                    help="grid peers, any of numpy,sklearn,scipy,torch")
    ap.add_argument("--extrapolate", default="sklearn,scipy",
                    help="grid peers timed on --peer-picks picks and scaled to the budget")
    ap.add_argument("--peer-picks", type=positive_int, default=20)
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the CUDA rows (dalcore on CUDA tensors over the grid sizes)")
    return ap


def _grid_kind(args: Any) -> Optional[str]:
    legacy = {"clustered": "clustered", "gaussian": "isotropic", "real": None}
    if args.data in legacy:
        kind = legacy[args.data]
        args.data = None
        return args.grid or kind
    return args.grid


def run(args: Any) -> None:
    """Runs the bench the parsed arguments describe (BenchError on a bad one)."""
    from . import kcenter_grid

    kind = _grid_kind(args)
    if kind is None and not args.cuda_only and args.sizes is None:
        data_table(args)
        return
    kind = kind or "clustered"
    if args.sizes:
        sizes = kcenter_grid.parse_sizes(args.sizes)
    else:
        sizes = kcenter_grid.QUICK_SIZES if args.quick else kcenter_grid.FULL_SIZES
    if args.quick:
        args.repeats, args.peer_picks = 1, 5
    if args.cuda_only:
        kcenter_grid.cuda_rows(kind, sizes, args.repeats)
        return
    args.peers = _names(args.peers, tuple(PEERS), "--peers")
    args.extrapolate = _names(args.extrapolate, tuple(PEERS), "--extrapolate")
    kcenter_grid.grid_table(args, kind, sizes)


def main(argv: Optional[Sequence[str]] = None, prog: str = "dalcore bench kcenter") -> int:
    """Entry point: returns the exit code (2 with one line on stderr for a bad argument)."""
    return run_cli(build_parser, run, argv, prog)
