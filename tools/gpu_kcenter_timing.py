"""GPU-path kcenter on a CUDA device (run by tools/gpu_check.sh): the tiled kernels against the
Thrust reference form, with and without the CUDA graph of the pick loop, and the projection
pass against the plain pass, at N = 50,000 and 1,000,000 (d = 128, budget 1000 from 100
labeled). Checks that every tiled variant gives the same picks and radius (bit for bit) and the
reference the same picks up to float32 near-ties; prints medians and the read bandwidth the plain
pass reaches, beside the device's copy bandwidth measured in the same run.

Data: Fashion-MNIST pixels projected on their first 128 principal components, rows repeated with
1 % noise up to N (when /usr/share/datasets/fashion-mnist is installed), else scikit-learn's
digits (64 pixels) embedded in 128 dimensions by a random orthonormal map, repeated with noise
(labelled in the output); and isotropic Gaussian rows (the projection's worst case).
Usage: python tools/gpu_kcenter_timing.py [--sizes 50000 1000000] [--budget 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def real_base(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    if FASHION.exists():
        with gzip.open(FASHION) as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)
        x = raw.astype(np.float64) / 255.0
        x -= x.mean(0)
        _, _, vt = np.linalg.svd(x[rng.choice(x.shape[0], 8000, replace=False)],
                                 full_matrices=False)
        return "Fashion-MNIST PCA-128", (x @ vt[:128].T).astype(np.float32)
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    q = np.linalg.qr(rng.standard_normal((128, 64)))[0]  # 128 x 64, orthonormal columns
    return "digits pixels embedded in 128-d", (x @ q.T).astype(np.float32)


def grow(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    rows = base[rng.integers(0, base.shape[0], n)]
    noise = rng.standard_normal(rows.shape).astype(np.float32) * 0.01 * base.std()
    return rows + noise


def copy_bandwidth(torch, n_bytes: int = 1 << 30) -> float:
    a = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        b.copy_(a)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * n_bytes / min(times)  # read + write


def timed(torch, fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run_size(torch, name: str, x: np.ndarray, budget: int, repeats: int, bw: float) -> bool:
    import dalcore
    from dalcore._kcenter import _run_gpu_path

    n, d = x.shape
    rng = np.random.default_rng(1)
    xt = torch.from_numpy(x).cuda()
    lab = torch.from_numpy(rng.choice(n, 100, replace=False)).cuda()
    modes = {
        "reference (Thrust, thread per row)": dict(_reference=True),
        "tiled, launch per pick": dict(_projection=0, _graph=0),
        "tiled, CUDA graph": dict(_projection=0, _graph=1),
        "tiled + projection m=16, graph": dict(_projection=16, _graph=1),
    }
    results, ok = {}, True
    print(f"\n{name}, N = {n}, d = {d}, budget {budget} from 100 labeled")
    print("| mode | median s | ms/pick | GB/s of the plain reads | full rows read |")
    print("|---|---:|---:|---:|---:|")
    for mode, kw in modes.items():
        def call(kw=kw):
            return _run_gpu_path(dalcore._core, xt, budget, lab, return_radius=True, **kw)

        sec, (p, r) = timed(torch, call, repeats)
        stats: dict[str, int] = {}
        if not kw.get("_reference"):
            _run_gpu_path(dalcore._core, xt, budget, lab, **kw, _stats=stats)
        results[mode] = (p.cpu().numpy(), float(r))
        gbs = budget * n * d * 4 / sec / 1e9
        print(f"| {mode} | {sec:.4f} | {1e3 * sec / budget:.3f} | {gbs:.0f} | "
              f"{stats.get('full_rows', budget * n)} |")
    tiled = [v for k, v in results.items() if k.startswith("tiled")]
    for p, r in tiled[1:]:
        if not (np.array_equal(p, tiled[0][0]) and r == tiled[0][1]):
            print("FAIL: the tiled variants differ")
            ok = False
    ref = results["reference (Thrust, thread per row)"][0]
    same = int(np.argmax(ref != tiled[0][0])) if (ref != tiled[0][0]).any() else budget
    print(f"reference and tiled agree on the first {same} of {budget} picks "
          f"(radius {results['reference (Thrust, thread per row)'][1]:.6g} vs {tiled[0][1]:.6g});"
          f" device copy bandwidth {bw / 1e9:.0f} GB/s")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    name, base = real_base(rng)
    bw = copy_bandwidth(torch)
    ok = True
    for n in args.sizes:
        ok &= run_size(torch, name, grow(base, n, rng), args.budget, args.repeats, bw)
        iso = rng.standard_normal((n, 128)).astype(np.float32)
        ok &= run_size(torch, "isotropic Gaussian (synthetic)", iso, args.budget, args.repeats, bw)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
