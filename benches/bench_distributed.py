"""dalcore.distributed on this machine: kcenter time per pick and propagate time per CG iteration,
gloo, W processes spawned here, against the one-process kernels (medians of --repeats).

    PYTHONPATH=. python benches/bench_distributed.py --world 1,2 --n 100000 --d 128 --budget 200
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import numpy as np


def _data(n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    c = rng.standard_normal((50, d)).astype(np.float32) * 3
    return (c[rng.integers(0, 50, n)] + rng.standard_normal((n, d)).astype(np.float32))


def _graph(x: np.ndarray, k: int):
    import dalcore

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return dalcore.knn_graph(dalcore.knn(xn, k))


def _time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _worker(rank: int, world: int, store: str, args: argparse.Namespace, out: str) -> None:
    import torch
    import torch.distributed as dist

    import dalcore
    from dalcore import distributed as dd

    dalcore._core.set_num_threads(1)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    x = _data(args.n, args.d)
    lo, hi = rank * args.n // world, (rank + 1) * args.n // world
    s = _graph(x, 10)
    lab = np.full(args.n, -1)
    lab[:: args.n // 100] = np.arange(100) % 10
    dd.core_uses_fma()
    kc = _time(lambda: dd.kcenter(x[lo:hi], args.budget), args.repeats) / args.budget
    cg = _time(lambda: dd.propagate(s[lo:hi], lab[lo:hi], num_classes=10, tol=1e-12,
                                    max_iter=20), args.repeats) / 20
    if rank == 0:
        with open(out, "a") as f:
            f.write(f"| {world} | {args.n} | {args.d} | {kc * 1e3:.2f} | {cg * 1e3:.2f} |\n")
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--world", default="1,2")
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import torch.multiprocessing as mp

    import dalcore

    dalcore._core.set_num_threads(1)
    x = _data(args.n, args.d)
    s = _graph(x, 10)
    lab = np.full(args.n, -1)
    lab[:: args.n // 100] = np.arange(100) % 10
    one_kc = _time(lambda: dalcore.kcenter(x, args.budget, _prune=False), args.repeats)
    one_cg = _time(lambda: dalcore.propagate(s, lab, num_classes=10, tol=1e-12, max_iter=20),
                   args.repeats)
    out = tempfile.mktemp()
    print("| processes | N | d | kcenter ms/pick | propagate ms/CG iteration |")
    print("|---|---|---|---|---|")
    print(f"| core, 1 thread | {args.n} | {args.d} | {one_kc / args.budget * 1e3:.2f} "
          f"| {one_cg / 20 * 1e3:.2f} |")
    for w in (int(v) for v in args.world.split(",")):
        with tempfile.TemporaryDirectory() as d:
            mp.spawn(_worker, args=(w, os.path.join(d, "store"), args, out), nprocs=w)
    with open(out) as f:
        print(f.read(), end="")
    os.unlink(out)


if __name__ == "__main__":
    main()
