"""A world of gloo processes for the distributed tests: each rank runs a test's ``body(rank,
world)`` in an initialised process group (one thread each) and saves the arrays it returns;
the parent gets every rank's arrays back."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def run_rank(rank: int, world: int, store: str, outdir: str,
             body: Callable[[int, int], dict]) -> None:
    """In a spawned process: join the gloo group, run ``body``, save its dict as rank<r>.npz."""
    import torch
    import torch.distributed as dist

    import dalcore

    dalcore._core.set_num_threads(1)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        out = body(rank, world)
        np.savez(os.path.join(outdir, f"rank{rank}.npz"), **out)
    finally:
        dist.destroy_process_group()


def spawn_world(worker: Callable, world: int, folder: Path) -> list[dict]:
    """``worker(rank, world, store, outdir)`` in ``world`` spawned processes; each rank's
    arrays."""
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(world, str(folder / "store"), str(folder)), nprocs=world, join=True)
    return [dict(np.load(folder / f"rank{r}.npz")) for r in range(world)]
