"""Coreset selection and label propagation on sharded digits features, under torchrun.

    torchrun --nproc-per-node 2 examples/select_distributed.py            # gloo, this machine
    torchrun --nproc-per-node 8 examples/select_distributed.py --backend nccl

Each rank takes a contiguous shard of scikit-learn's digits (L2-normalised pixels stand in for a
model's features); rank 0 prints the picks, the propagation's accuracy on the unlabeled rows,
and whether both agree with the one-process kernels on the whole set.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits

import dalcore
from dalcore import distributed as dd


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    p.add_argument("--budget", type=int, default=20)
    args = p.parse_args()
    if args.backend == "nccl":  # one GPU per process, before the group starts
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(args.backend)  # rank, world size and address from torchrun
    data = load_digits()
    x = data.data.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    r, w = dd.rank(), dd.world_size()
    lo, hi = r * len(x) // w, (r + 1) * len(x) // w
    labeled = np.arange(0, len(x), 60)  # 30 labeled points, every class among them
    picks = dd.kcenter(x[lo:hi], args.budget, labeled)
    known = np.concatenate([labeled, picks])
    lab = np.full(len(x), -1)
    lab[known] = data.target[known]
    sims, idx = dd.knn(x[lo:hi], 10)
    s = dd.knn_graph(sims, idx)
    z = dd.propagate(s, lab[lo:hi], num_classes=10)
    pred = np.concatenate(
        [np.asarray(t) for t in _gather(np.argmax(z, axis=1), hi - lo, w)])
    if dd.is_writer():
        one = dalcore.kcenter(x, args.budget, labeled)
        z1 = dalcore.propagate(dalcore.knn_graph(dalcore.knn(x, 10)), lab, num_classes=10)
        unl = lab < 0
        print(f"{w} ranks: picks {picks.tolist()}")
        print(f"picks equal the one-process picks: {np.array_equal(picks, one)}")
        print(f"propagation accuracy on the unlabeled rows: "
              f"{(pred[unl] == data.target[unl]).mean():.4f} "
              f"(one process: {(np.argmax(z1, 1)[unl] == data.target[unl]).mean():.4f})")
    dist.destroy_process_group()


def _gather(local: np.ndarray, n: int, world: int) -> list[np.ndarray]:
    """Every rank's vector (rank order), padded through one all-gather."""
    size = torch.tensor([n])
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, size)
    m = int(max(int(t) for t in sizes))
    buf = torch.zeros(m, dtype=torch.int64)
    buf[:n] = torch.from_numpy(local.astype(np.int64))
    parts = [torch.zeros(m, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(parts, buf)
    return [parts[i][: int(sizes[i])].numpy() for i in range(world)]


if __name__ == "__main__":
    main()
