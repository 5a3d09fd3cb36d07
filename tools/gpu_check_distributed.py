"""dalcore.distributed on one GPU with NCCL: a one-rank process group (a step of gpu_check.sh).

NCCL refuses two ranks on one GPU, so a one-GPU machine cannot run the 2-rank checks of
python_tests/test_distributed*.py on NCCL; this script checks what one rank can: that the
driver picks NCCL for CUDA, that the collectives get CUDA tensors (``_Comm``,
the BatchNorm buffers' broadcast), that ``kcenter`` / ``propagate_pool`` over the NCCL group
equal the one-process kernels on CUDA input, and that the BatchNorm layers become SyncBatchNorm
and train one step under DDP (with one rank SyncBatchNorm does not sync, and ``on_writer`` runs
without its gloo group: the 2-rank gloo tests cover those). ``--device cpu`` runs the
same on gloo (a dry run where there is no GPU). Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile

import numpy as np


def _features() -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    return ok


def _kernels(torch, dd, device) -> list[bool]:
    import dalcore

    x = _features()
    xt = torch.from_numpy(x).to(device)
    ref = dalcore.kcenter(x, 25)
    got = dd.kcenter(xt, 25)
    res = [_check("kcenter over the group = dalcore.kcenter",
                  got.device == xt.device and got.cpu().numpy().tolist() == ref.tolist())]
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    labels[:50] = load_targets()[:50]
    g = dalcore.knn_graph(dalcore.knn(x, 10), gamma=3.0)
    z_ref = dalcore.propagate(g, labels, num_classes=10, tol=0.0, max_iter=20)
    z, _ = dd.propagate_pool(xt, labels, k=10, gamma=3.0, mode="reciprocal", num_classes=10,
                             alpha=0.99, max_iter=20)
    err = float(np.abs(z.cpu().numpy() - z_ref).max())
    res.append(_check("propagate_pool = dalcore.propagate", err < 1e-4, f"(max diff {err:.2e})"))
    # gather_scores / gather_rows / sync_buffers skip the collective with one rank: their
    # collectives (_Comm) are called directly
    comm = dd._Comm(None)
    s = np.arange(12, dtype=np.float64).reshape(6, 2)
    got = comm.all_gather_rows(s, np.asarray([6]))
    res.append(_check("all_gather_rows (float64)", np.array_equal(got, s)))
    key = np.asarray([(7 << 32) | 5], dtype=np.int64)
    res.append(_check("all_reduce MAX (int64)",
                      np.array_equal(comm.all_reduce(key, "max"), key)))
    return res


def load_targets() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)


def _training(torch, dd, device, backend: str) -> list[bool]:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from dalcore.models import ConvNet13

    torch.manual_seed(0)
    model = ConvNet13(in_channels=1, num_classes=10, width=0.25).to(device)
    model = dd.convert_batchnorm(model, device, backend)
    n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    want_sync = device.type == "cuda"
    res = [_check("BatchNorm -> SyncBatchNorm on CUDA/NCCL only",
                  (n_sync > 0 and n_bn == 0) if want_sync else (n_sync == 0 and n_bn > 0),
                  f"({n_sync} SyncBatchNorm, {n_bn} BatchNorm2d)")]
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xb = torch.randn(16, 1, 32, 32, device=device)
    yb = torch.randint(0, 10, (16,), device=device)
    loss = torch.nn.functional.cross_entropy(net(xb)[0], yb)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss = float(loss.detach())
    res.append(_check("one DDP step", np.isfinite(loss), f"(loss {loss:.3f})"))
    for b in model.buffers():  # sync_buffers' broadcast, on the buffers' device
        before = b.detach().clone()
        dist.broadcast(b.data, src=0)
        if not torch.equal(b, before):
            return res + [_check("broadcast of the BatchNorm buffers", False)]
    res.append(_check("broadcast of the BatchNorm buffers", True))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = ap.parse_args(argv)
    import torch
    import torch.distributed as dist

    from dalcore import distributed as dd

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("FAIL torch sees no GPU", file=sys.stderr)
            return 1
        torch.cuda.set_device(0)
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    backend = dd.backend_for(device)
    store = os.path.join(tempfile.mkdtemp(), "store")
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=120))
    try:
        comm = dd._Comm(None)
        res = [_check("backend", str(dist.get_backend()) == ("nccl" if args.device == "cuda"
                                                            else "gloo"), str(dist.get_backend())),
               _check("collective buffers on the device",
                      (comm.device is not None and comm.device.type == "cuda")
                      if args.device == "cuda" else comm.device is None)]
        res += _kernels(torch, dd, device)
        res += _training(torch, dd, device, backend)
    finally:
        dist.destroy_process_group()
    print(f"{sum(res)} of {len(res)} checks passed")
    return 0 if all(res) else 1


if __name__ == "__main__":
    sys.exit(main())
