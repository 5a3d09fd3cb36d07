"""Driver helpers of ``torchrun -m dalcore run`` that are not kernels (DESIGN.md section 7).

- :func:`backend_for`: the collective backend of a device (NCCL for CUDA, gloo otherwise).
- :func:`convert_batchnorm`: BatchNorm layers as ``torch.nn.SyncBatchNorm`` where the backend
  runs it (CUDA with NCCL); plain BatchNorm elsewhere (torch's SyncBatchNorm refuses CPU
  tensors: "SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone").
- :func:`on_writer`: a long one-process job (DeepCluster pre-training) run by rank 0 alone while
  the other ranks wait; its result reaches every rank.

:mod:`dalcore.distributed` re-exports them; import them from there.
"""

from __future__ import annotations

import datetime
import pickle
from typing import Any, Callable

__all__ = ["WRITER_WAIT", "backend_for", "convert_batchnorm", "on_writer",
           "sync_batchnorm_supported"]

#: How long the other ranks wait for rank 0's one-process job (pre-training runs for hours at
#: the paper's settings; a rank that dies ends the whole torchrun job sooner than this).
WRITER_WAIT = datetime.timedelta(days=7)


def backend_for(device: Any) -> str:
    """``"nccl"`` for a CUDA device (NCCL's collectives take CUDA tensors), else ``"gloo"``."""
    import torch

    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def sync_batchnorm_supported(device: Any, backend: str) -> bool:
    """Whether ``torch.nn.SyncBatchNorm`` trains on ``device`` over ``backend``: CUDA with NCCL.

    Not on the CPU: torch 2.13's SyncBatchNorm raises ValueError for a CPU input in training
    mode (checked with 2 gloo processes), so a CPU run keeps each rank's BatchNorm statistics
    and :func:`dalcore.distributed.sync_buffers` hands rank 0's running statistics to all.
    """
    import torch

    return torch.device(device).type == "cuda" and str(backend).lower() == "nccl"


def convert_batchnorm(model: Any, device: Any, backend: str) -> Any:
    """``model`` with its BatchNorm layers converted to SyncBatchNorm when
    :func:`sync_batchnorm_supported` (``device``, ``backend``), else ``model`` unchanged.

    The conversion is in place for the layers below the top module: each SyncBatchNorm keeps
    the layer's parameter and buffer tensors (an optimiser built before still updates them) and
    the state_dict keys do not change. Returns the (same) top module.
    """
    import torch

    if not sync_batchnorm_supported(device, backend):
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _picklable(err: BaseException) -> BaseException:
    """``err`` itself when it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001  (any failure to pickle: fall back to the message)
        return RuntimeError(f"{type(err).__name__}: {err}")


def on_writer(fn: Callable[[], Any], *, timeout: datetime.timedelta = WRITER_WAIT) -> Any:
    """``fn()`` run by rank 0 alone, as one process; its (picklable) result on every rank.

    Rank 0 runs ``fn`` inside :func:`dalcore.distributed.one_process` (the kernels and the
    training it calls use no collective); the other ranks wait in a broadcast on a gloo group
    created for it with ``timeout`` (the default group's timeout, minutes, would end the wait
    of an hours-long job). An exception raised by ``fn`` is raised on rank 0 and, after the
    broadcast, the same on every other rank. Without a process group: ``fn()``.
    """
    from . import distributed

    if distributed.world_size() <= 1:
        return fn()
    import torch.distributed as dist

    res: Any = None
    err: BaseException | None = None
    group = dist.new_group(backend="gloo", timeout=timeout)  # by every rank, before the wait
    try:
        if distributed.is_writer():
            try:
                with distributed.one_process():
                    res = fn()
            except Exception as e:  # noqa: BLE001  (the others must learn of any failure)
                err = e
        box = [(res, None if err is None else _picklable(err))]
        dist.broadcast_object_list(box, src=0, group=group)
    finally:
        dist.destroy_process_group(group)
    if err is not None:
        raise err
    res, remote = box[0]
    if remote is not None:
        raise remote
    return res
