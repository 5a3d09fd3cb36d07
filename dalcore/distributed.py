"""The dalcore kernels over a torch.distributed process group (DESIGN.md section 7).

Each rank holds one shard of the pool: the rows ``[offset_r, offset_r + n_r)`` of the
concatenation of all shards in rank order (a shard may be empty). Indices are global.

- :func:`kcenter`: the same picks as :func:`dalcore.kcenter` on the concatenated features. Each
  rank keeps the squared min-distances of its own rows; one all-reduce of (max, lowest global
  index) per pick, then the picked row is broadcast from the rank that owns it.
- :func:`knn`: the k nearest neighbours of each shard's rows among all rows (faiss per rank on
  the all-gathered features), global indices.
- :func:`knn_graph`: this shard's rows of the one-process graph, from every shard's k-NN lists.
- :func:`propagate`: block conjugate gradient on row-partitioned ``S``; one all-gather of the
  direction block per iteration (plus two all-reduces of C scalars).

Collectives run on torch.distributed (gloo on CPUs, NCCL on GPUs: with NCCL the small
collective buffers live on ``torch.cuda.current_device()``). The arithmetic runs on the host
with numpy: a CUDA tensor is copied to the host and the result returned on its device. Without
an initialised process group (and ``group=None``) the functions run on one process and call the
one-process kernels.

The end of the module holds what ``torchrun -m dalcore run`` needs besides the kernels: joining
the group torchrun describes (gloo for CPUs, NCCL for CUDA: :func:`backend_for`), DDP with
SyncBatchNorm where the backend runs it (:func:`convert_batchnorm`), sharded extraction helpers,
and :func:`on_writer` / :func:`one_process` for work rank 0 does alone (pre-training).

Every rank must call a function with the same arguments apart from its shard. Bad input on one
rank raises on every rank (TypeError/ValueError): the ranks first agree, in one collective, that
their inputs are valid, so a refused argument never leaves the others waiting in a collective.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from . import _arrays
from . import _kcenter as _kc
from . import _knn as _kn
from . import _propagate as _pr
from ._ddp import backend_for, convert_batchnorm, on_writer

__all__ = ["backend_for", "convert_batchnorm", "is_writer", "kcenter", "knn", "knn_graph",
           "on_writer", "one_process", "propagate", "rank", "world_size"]

_LANES = 16  # kcenter_ops::kLanes: sq_dist's partial sums
_MEAN_BLOCK = 1024  # kcenter_ops::kMeanBlock: rows per block of the mean's column sums
_LOW32 = (1 << 32) - 1
_SYMMETRY_RTOL = 1e-4  # the core's randomised symmetry test tolerance (kSymmetryRtol)


# ---------------------------------------------------------------------------- group helpers
def _dist() -> Any:
    import torch.distributed as dist

    return dist


#: Depth of :func:`one_process` blocks: inside one, the default group is ignored.
_one_process_depth = 0


def _active(group: Any) -> bool:
    """True when the call is distributed: an explicit group, or an initialised default group
    (outside a :func:`one_process` block)."""
    if group is not None:
        return True
    if _one_process_depth:
        return False
    try:
        dist = _dist()
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized()


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (the default group); 0 when not distributed."""
    return int(_dist().get_rank(group)) if _active(group) else 0


def world_size(group: Any = None) -> int:
    """Number of processes in ``group`` (the default group); 1 when not distributed."""
    return int(_dist().get_world_size(group)) if _active(group) else 1


def is_writer(group: Any = None) -> bool:
    """True on the one process that writes results and checkpoints (rank 0)."""
    return rank(group) == 0


class _Comm:
    """numpy in and out of the collectives of one process group."""

    def __init__(self, group: Any) -> None:
        import torch

        dist = _dist()
        self.torch, self.dist, self.group = torch, dist, group
        self.rank = int(dist.get_rank(group))
        self.size = int(dist.get_world_size(group))
        nccl = str(dist.get_backend(group)).lower() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else None

    def _t(self, a: np.ndarray) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device) if self.device is not None else t.clone()

    @staticmethod
    def _np(t: Any) -> np.ndarray:
        return t.cpu().numpy()

    def all_gather(self, a: np.ndarray) -> np.ndarray:
        """(world, *a.shape): every rank's ``a`` (same shape and dtype on every rank)."""
        t = self._t(a)
        out = [self.torch.empty_like(t) for _ in range(self.size)]
        self.dist.all_gather(out, t, group=self.group)
        return np.stack([self._np(o) for o in out])

    def all_gather_rows(self, a: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Concatenation in rank order of every rank's rows (rank r holds counts[r] rows)."""
        m = int(counts.max()) if counts.size else 0
        pad = np.zeros((m,) + a.shape[1:], dtype=a.dtype)
        pad[: a.shape[0]] = a
        parts = self.all_gather(pad)
        return np.concatenate([parts[r, : int(counts[r])] for r in range(self.size)])

    def all_reduce(self, a: np.ndarray, op: str = "sum") -> np.ndarray:
        t = self._t(a)
        ops = {"sum": self.dist.ReduceOp.SUM, "max": self.dist.ReduceOp.MAX}
        self.dist.all_reduce(t, op=ops[op], group=self.group)
        return self._np(t)

    def broadcast(self, a: np.ndarray, src: int) -> np.ndarray:
        """``a`` of group rank ``src`` (every rank passes a buffer of the same shape)."""
        t = self._t(a)
        root = src if self.group is None else self.dist.get_global_rank(self.group, src)
        self.dist.broadcast(t, src=root, group=self.group)
        return self._np(t)


def _agree(comm: _Comm, fn: Callable[[], Any], meta: Callable[[Any], list[int]],
           name: str) -> tuple[Any, np.ndarray]:
    """Run the local validation ``fn`` on every rank, then exchange in one all-gather whether it
    passed and ``meta(result)`` (a fixed-length list of int64). Raises on every rank when any
    rank failed: the failing rank its own error, the others one of the same kind naming it."""
    width = len(meta(None))
    try:
        res, err, code = fn(), None, 0
        row = meta(res)
    except Exception as e:  # noqa: BLE001  (any failure: the others must not wait for this rank)
        code = 1 if isinstance(e, TypeError) else 2 if isinstance(e, ValueError) else 3
        res, err, row = None, e, [0] * width
    table = comm.all_gather(np.asarray([code, *row], dtype=np.int64))
    if err is not None:
        raise err
    bad = np.flatnonzero(table[:, 0])
    if bad.size:
        cls = {1: TypeError, 2: ValueError}.get(int(table[bad[0], 0]), RuntimeError)
        raise cls(f"{name}: refused on rank(s) {bad.tolist()} (see the error raised there)")
    return res, table[:, 1:]


def _same(values: np.ndarray, name: str) -> None:
    """Every rank must pass the same value of an argument."""
    if values.size and np.any(values != values[0]):
        raise ValueError(f"{name}: every rank must pass the same value, got {values.tolist()}")


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.int64))


def _restore(ref: Any, out: np.ndarray) -> Any:
    """``out`` as the kind of ``ref``: numpy, or a torch tensor on ref's device."""
    if _arrays.is_torch(ref):
        return _arrays.torch_module().from_numpy(np.ascontiguousarray(out)).to(ref.device)
    return out


def _host(x: Any) -> Any:
    """A CUDA tensor copied to the host (the distributed kernels compute with numpy)."""
    return x.detach().cpu() if _arrays.is_cuda(x) else x


# ---------------------------------------------------------------------------- kcenter arithmetic
def _sq_dist(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Squared distances of the rows of ``x`` to ``q`` (one row, or one per row of ``x``),
    float32, bit-identical to the core's kcenter_ops::sq_dist: 16 lane sums over the dimensions
    in order (the tail into lanes 0, 1, ...), each update a rounded product then a rounded sum
    (the core's kcenter sources are compiled with -ffp-contract=off: no fused multiply-add in
    any clone), then the pairwise fold."""
    n, d = x.shape
    m = -(-d // _LANES)
    t = np.zeros((n, m * _LANES), dtype=np.float32)
    t[:, :d] = x - q
    t = t.reshape(n, m, _LANES)
    acc = np.zeros((n, _LANES), dtype=np.float32)
    for j in range(m):  # zero padding adds exact zeros: the tail lanes as in the core
        tj = t[:, j, :]
        acc = acc + tj * tj
    for w in (8, 4, 2):
        acc = acc[:, :w] + acc[:, w : 2 * w]
    return acc[:, 0] + acc[:, 1]


def _sq_dist_blocked(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    step = max(1, (1 << 22) // max(1, x.shape[1]))
    out = np.empty(x.shape[0], dtype=np.float32)
    for lo in range(0, x.shape[0], step):  # bounded scratch: blocks of rows
        qb = q[lo : lo + step] if q.ndim == 2 else q
        out[lo : lo + step] = _sq_dist(x[lo : lo + step], qb)
    return out


# ---------------------------------------------------------------------------- kcenter
class _Shard:
    """This rank's rows and the layout of all shards."""

    def __init__(self, x: np.ndarray, counts: np.ndarray, rank_: int) -> None:
        self.x = x
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.lo = int(self.offsets[rank_])
        self.n = int(counts[rank_])
        self.total = int(self.offsets[-1])

    def owner(self, i: int) -> int:
        return int(np.searchsorted(self.offsets, i, side="right") - 1)


def _global_mean(comm: _Comm, sh: _Shard, d: int) -> np.ndarray:
    """The core's column_mean of the concatenation, bit for bit: column sums in float64 over
    fixed blocks of 1024 global rows, each summed row by row, the blocks summed in order. A
    block is summed by the rank holding its first row, with the rows it lacks taken from the
    next ranks' heads (their rows before their first block start), exchanged in one all-gather."""
    blk = _MEAN_BLOCK
    starts = sh.offsets[:-1]
    heads = np.minimum(sh.counts, (-starts) % blk)  # rows before the first block boundary
    head = sh.x[: int(heads[comm.rank])]
    all_heads = comm.all_gather_rows(head, heads)
    head_off = np.concatenate([[0], np.cumsum(heads)])
    b0 = -(-sh.lo // blk)  # first block starting in this shard
    b1 = -(-(sh.lo + sh.n) // blk) if sh.n else b0
    nb_total = -(-sh.total // blk)
    sums = np.zeros((max(b1 - b0, 0), d), dtype=np.float64)
    for b in range(b0, b1):
        g0, g1 = b * blk, min(sh.total, (b + 1) * blk)
        rows = [sh.x[g0 - sh.lo : min(g1, sh.lo + sh.n) - sh.lo]]
        for r in range(comm.rank + 1, comm.size):  # later shards inside this block
            if sh.offsets[r] >= g1:
                break
            rows.append(all_heads[head_off[r] : head_off[r + 1]])
        block = np.concatenate(rows).astype(np.float64)
        sums[b - b0] = np.cumsum(block, axis=0)[-1]  # row by row, as the core's loop
    owned = np.where(sh.counts > 0, -(-(starts + sh.counts) // blk) - (-(-starts // blk)), 0)
    parts = comm.all_gather_rows(sums, owned)
    assert parts.shape[0] == nb_total
    total = np.cumsum(parts, axis=0)[-1]  # blocks in order
    return (total / float(sh.total)).astype(np.float32)


def _decode(key: int) -> tuple[int, float]:
    bits = np.asarray([key >> 32], dtype=np.uint32)
    return _LOW32 - (key & _LOW32), float(bits.view(np.float32)[0])


def _row(comm: _Comm, sh: _Shard, i: int) -> np.ndarray:
    """Global row i, broadcast from its owner."""
    owner = sh.owner(i)
    buf = np.zeros(sh.x.shape[1], dtype=np.float32)
    if owner == comm.rank:
        buf[:] = sh.x[i - sh.lo]
    return comm.broadcast(buf, owner)


def _kcenter_local(x: Any, budget: Any, labeled: Any) -> tuple[np.ndarray, int, Any]:
    xa = _arrays.as_features(_host(x), "local_features", min_rows=0)
    b = _arrays.check_int(budget, "budget", low=1)
    if labeled is None:
        lab = np.zeros(0, dtype=np.int64)
    else:
        lab = _arrays.as_index_vector(labeled, "labeled", np.iinfo(np.int64).max)
    return xa, b, lab


def kcenter(local_features: Any, budget: int, labeled: Any = None, *, return_radius: bool = False,
            group: Any = None) -> Any:
    """Exact greedy k-center over the shards of a process group; the picks of
    :func:`dalcore.kcenter` on the concatenation of all shards in rank order.

    Parameters
    ----------
    local_features : (n_r, d) array or tensor
        This rank's rows (``n_r`` may be 0; ``d`` the same on every rank with rows).
    budget : int
        Picks to make, ``1 <= budget <= N - len(labeled)``, N the total number of rows.
    labeled : array of int, optional
        Global indices of the labeled points, the same on every rank.
    return_radius : bool
        Also return the covering radius after the last pick (a float).
    group : torch.distributed ProcessGroup, optional
        Default: the default group (none initialised: one process, :func:`dalcore.kcenter`).

    Returns
    -------
    indices : (budget,) int64, global, the same on every rank (numpy, or torch on the input's
        device). With ``return_radius``: ``(indices, radius)``.

    Each pick: every rank updates its rows' squared min-distances with the last pick's row, one
    all-reduce (MAX of a packed int64: float32 bits of the distance, then the complement of the
    global index, so equal distances go to the lowest index) finds the pick, and its owner
    broadcasts its row. Distances are summed exactly as the core sums them (16 lanes, the same
    fold, no fused multiply-add), so ties and near-ties are broken as the one-process kernel
    breaks them.
    """
    if not _active(group):
        return _kc.kcenter(local_features, budget, labeled, return_radius=return_radius)
    comm = _Comm(group)
    (x, b, lab), table = _agree(
        comm, lambda: _kcenter_local(local_features, budget, labeled),
        lambda r: [0] * 6 if r is None else [r[0].shape[0], r[0].shape[1], r[1], r[2].size,
                                             zlib.crc32(r[2].tobytes()), _amax_bits(r[0])],
        "kcenter")
    counts, dims = table[:, 0], table[:, 1]
    _same(table[:, 2], "budget")
    _same(table[:, 3:5], "labeled")
    _same(dims[counts > 0], "local_features (columns)")
    if x.shape[0] == 0 and np.any(counts > 0):  # an empty shard takes the others' width
        x = np.zeros((0, int(dims[counts > 0][0])), dtype=np.float32)
    # As dalcore.kcenter: features of extreme magnitude scaled by a power of two (exact), from
    # the largest magnitude of all shards.
    e = _kc._scale_exponent(float(np.int64(table[:, 5].max()).view(np.float64)), x.shape[1])
    sh = _Shard(np.ldexp(x, -e).astype(np.float32) if e else x, counts, comm.rank)
    _check_kcenter_sizes(sh, b, lab)
    picks, radius = _traverse(comm, sh, b, lab, bool(return_radius))
    out = _restore(local_features, picks)
    return (out, float(np.ldexp(radius, e))) if return_radius else out


def _amax_bits(x: np.ndarray) -> int:
    """The largest magnitude of x as the int64 bits of a float64 (ordered as integers)."""
    return _bits(float(np.abs(x).max())) if x.size else 0


def _check_kcenter_sizes(sh: _Shard, b: int, lab: np.ndarray) -> None:
    if sh.total < 1:
        raise ValueError("local_features: every shard is empty")
    if sh.total > _LOW32:
        raise ValueError(f"local_features: at most {_LOW32} points in all, got {sh.total}")
    if lab.size and int(lab.max()) >= sh.total:
        raise ValueError(f"labeled: indices must be < {sh.total} (number of points), got "
                         f"{int(lab.max())}")
    if lab.size >= sh.total:
        raise ValueError(f"labeled: all {sh.total} points are labeled, no unlabeled point is "
                         "left to pick")
    if b > sh.total - lab.size:
        raise ValueError(f"budget: expected at most {sh.total - lab.size} (the number of "
                         f"unlabeled points: {sh.total} points, {lab.size} labeled), got {b}")


def _labeled_rows(comm: _Comm, sh: _Shard, lab: np.ndarray) -> np.ndarray:
    """The labeled rows on every rank: each owner fills its rows, one all-reduce sums them (one
    non-zero term per entry: exact)."""
    rows = np.zeros((lab.size, sh.x.shape[1]), dtype=np.float32)
    mine = (lab >= sh.lo) & (lab < sh.lo + sh.n)
    rows[mine] = sh.x[lab[mine] - sh.lo]
    return comm.all_reduce(rows)


class _MinDist:
    """This shard's squared min-distances to the centres, exact only where a pick needs them.

    Every row keeps float64 bounds [lb, ub] on its min-distance, updated per centre from one
    float32 matrix product (|fl(x.c) - x.c| <= gamma_d |x||c| in any summation order; the core's
    sum of d squared differences lies within a relative (d + 8) 2^-23 of the exact value). The
    exact, core-rounded min-distance is computed (and then kept up to date) only for the rows
    that may be the farthest: those whose ub reaches the largest lb. A pick costs about one pass
    over the rows (BLAS), not an emulation of the core's arithmetic on every row.
    """

    def __init__(self, x: np.ndarray) -> None:
        n, d = x.shape
        self.x = x
        self.xx = np.zeros(n, dtype=np.float64)
        self.step = max(1, (1 << 20) // max(1, d))
        for lo in range(0, n, self.step):  # float64 squared norms, in blocks of rows
            b = x[lo : lo + self.step].astype(np.float64)
            self.xx[lo : lo + self.step] = np.einsum("ij,ij->i", b, b)
        self.gam = 2.0 * (d + 2) * 2.0**-24 + 1e-14
        self.rel = (d + 8) * 2.0**-23
        self.lb = np.full(n, np.inf)
        self.ub = np.full(n, np.inf)
        self.ex = np.full(n, np.nan, dtype=np.float32)  # exact min-distance, NaN: not known
        self.c = np.zeros((0, d), dtype=np.float32)

    def bounds(self, xx: np.ndarray, dots: np.ndarray, cc: np.ndarray):
        """(lower, upper) bounds on the core's sq_dist from float32 dot products."""
        approx = xx[:, None] + cc[None, :] - 2.0 * dots.astype(np.float64)
        err = self.gam * np.sqrt(xx[:, None] * cc[None, :]) + 1e-14 * (xx[:, None] + cc)
        lo = np.maximum(approx - err, 0.0) * (1.0 - self.rel)
        return lo, (approx + err) * (1.0 + self.rel)

    def add(self, rows: np.ndarray) -> None:
        """Fold centres (m, d) into the bounds and into the known exact min-distances."""
        c64 = rows.astype(np.float64)
        cc = np.einsum("ij,ij->i", c64, c64)
        cols = max(1, (1 << 22) // max(1, self.x.shape[0]))
        for j in range(0, rows.shape[0], cols):  # (n x cols) bounds at a time
            lo, hi = self.bounds(self.xx, self.x @ rows[j : j + cols].T, cc[j : j + cols])
            np.minimum(self.lb, lo.min(axis=1), out=self.lb)
            np.minimum(self.ub, hi.min(axis=1), out=self.ub)
            known = np.flatnonzero(~np.isnan(self.ex))
            if known.size:  # keep them exact: the centres that may lower them, exactly
                r, q = np.nonzero(lo[known] <= self.ex[known, None])
                self._lower(known[r], rows[j + q])
        self.c = np.concatenate([self.c, rows])

    def _lower(self, r: np.ndarray, q: np.ndarray) -> None:
        if r.size:
            v = _sq_dist_blocked(self.x[r], q)
            np.minimum.at(self.ex, r, v)

    def exact(self, rows: np.ndarray) -> np.ndarray:
        """The core-rounded min-distances of ``rows`` (computed once, then kept)."""
        new = rows[np.isnan(self.ex[rows])]
        if new.size:
            c64 = self.c.astype(np.float64)
            lo, _ = self.bounds(self.xx[new], self.x[new] @ self.c.T,
                                np.einsum("ij,ij->i", c64, c64))
            r, q = np.nonzero(lo <= self.ub[new, None])  # the others exceed the minimum
            self.ex[new] = np.inf
            self._lower(new[r], self.c[q])
        return self.ex[rows]

    def best(self, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact min-distances) of the non-centre rows that may be the farthest."""
        free = np.flatnonzero(~centre)
        if free.size == 0:
            return free, np.zeros(0, dtype=np.float32)
        rows = free[self.ub[free] >= self.lb[free].max()]
        return rows, self.exact(rows)

    def farthest(self, q: np.ndarray) -> np.ndarray:
        """sq_dist to q (core rounding) for the rows that may be the farthest, -1 elsewhere."""
        out = np.full(self.x.shape[0], -1.0, dtype=np.float32)
        if out.size:
            q64 = q.astype(np.float64)
            lo, hi = self.bounds(self.xx, (self.x @ q)[:, None], np.asarray([q64 @ q64]))
            rows = np.flatnonzero(hi[:, 0] >= lo[:, 0].max())
            out[rows] = _sq_dist_blocked(self.x[rows], q)
        return out


def _traverse(comm: _Comm, sh: _Shard, budget: int, lab: np.ndarray,
              want_radius: bool) -> tuple[np.ndarray, float]:
    md = _MinDist(sh.x)
    centre = np.zeros(sh.n, dtype=bool)
    if lab.size:
        md.add(_labeled_rows(comm, sh, lab))
        mine = (lab >= sh.lo) & (lab < sh.lo + sh.n)
        centre[lab[mine] - sh.lo] = True
        key = _best(comm, md, centre, sh.lo)
    else:
        far = md.farthest(_global_mean(comm, sh, sh.x.shape[1]))
        key = _best_of(comm, np.arange(sh.n), far, sh.lo)
    picks = np.empty(budget, dtype=np.int64)
    for t in range(budget):
        c, _ = _decode(key)
        picks[t] = c
        if sh.lo <= c < sh.lo + sh.n:
            centre[c - sh.lo] = True
        if t + 1 < budget or want_radius:
            md.add(_row(comm, sh, c)[None, :])
            key = _best(comm, md, centre, sh.lo)
    if not want_radius:
        return picks, 0.0
    return picks, float(np.sqrt(np.float64(max(_decode(key)[1], 0.0)))) if key >= 0 else 0.0


def _best(comm: _Comm, md: _MinDist, centre: np.ndarray, lo: int) -> int:
    rows, values = md.best(centre)
    return _best_of(comm, rows, values, lo)


def _best_of(comm: _Comm, rows: np.ndarray, values: np.ndarray, lo: int) -> int:
    """The all-reduced key of the best (value, lowest global index) over every rank's
    candidates ``rows`` (increasing local indices) with their exact ``values`` (< 0: none)."""
    key = -1
    if values.size:
        i = int(np.argmax(values))  # first maximum: the lowest index
        if values[i] >= 0:
            bits = int(values[i : i + 1].view(np.uint32)[0])
            key = (bits << 32) | (_LOW32 - (lo + int(rows[i])))
    return int(comm.all_reduce(np.asarray([key], dtype=np.int64), "max")[0])


# ---------------------------------------------------------------------------- knn
def _gather_features(comm: _Comm, x: np.ndarray, counts: np.ndarray, dims: np.ndarray,
                     name: str) -> tuple[np.ndarray, _Shard]:
    """Every rank's rows (all-gather), and this rank's layout; widths checked."""
    _same(dims[counts > 0], f"{name} (columns)")
    if x.shape[0] == 0 and np.any(counts > 0):
        x = np.zeros((0, int(dims[counts > 0][0])), dtype=np.float32)
    sh = _Shard(x, counts, comm.rank)
    return comm.all_gather_rows(x, counts), sh


def _drop_self_global(values: np.ndarray, indices: np.ndarray,
                      rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As _knn._drop_self for queries that are the global rows ``rows``."""
    n, m = indices.shape
    is_self = indices == rows[:, None]
    is_self[:, m - 1] |= ~is_self.any(axis=1)
    keep = ~is_self
    return values[keep].reshape(n, m - 1), indices[keep].reshape(n, m - 1)


def _knn_rows(xall: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[Any, Any]:
    """Exact k-NN of the global rows ``rows`` among all rows of ``xall``: a faiss flat index
    searched for k + 2 (self dropped, ties ordered by index, rows whose k-th value ties with
    the next redone exactly), or blocked matrix products + top-k without faiss."""
    k_out = (np.empty((0, k), np.float32), np.empty((0, k), np.int64))
    if rows.size == 0:
        return k_out
    faiss = _kn._faiss()
    if faiss is None:
        step = _kn._block_rows(xall.shape[0])
        parts = [_kn._numpy_rows(xall, rows[lo : lo + step], k, metric)
                 for lo in range(0, rows.size, step)]  # blocks: bounded (rows x N) scores
        return (np.concatenate([p[0] for p in parts]).astype(np.float32),
                np.concatenate([p[1] for p in parts]).astype(np.int64))
    d = xall.shape[1]
    index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    index.add(xall)
    v, i = index.search(np.ascontiguousarray(xall[rows]), min(k + 2, xall.shape[0]))
    v, i = _drop_self_global(v, i.astype(np.int64, copy=False), rows)
    v, i = _kn._order_rows(v, i, metric, np)
    if i.shape[1] > k:
        tied = np.flatnonzero(v[:, k - 1] == v[:, k])
        found = i
        v, i = v[:, :k].copy(), i[:, :k].copy()
        if tied.size:
            v[tied], i[tied] = _kn._numpy_rows(xall, rows[tied], k, metric, found[tied])
    return np.ascontiguousarray(v, np.float32), np.ascontiguousarray(i, np.int64)


def _knn_local(x: Any, k: Any, metric: Any) -> tuple[np.ndarray, int]:
    if not isinstance(metric, str) or metric not in _kn._METRICS:
        raise ValueError(f"metric: expected 'ip' or 'l2', got {metric!r}")
    return _arrays.as_features(_host(x), "local_features", min_rows=0), \
        _arrays.check_int(k, "k", low=1)


def knn(local_features: Any, k: int, *, metric: str = "ip",
        group: Any = None) -> tuple[Any, Any]:
    """Exact k nearest neighbours of this rank's rows among the rows of every rank.

    Parameters
    ----------
    local_features : (n_r, d) array or tensor
        This rank's rows (``n_r`` may be 0).
    k : int
        Neighbours per point, ``1 <= k < N`` (N rows in all), the same on every rank.
    metric : {"ip", "l2"}
        As :func:`dalcore.knn` (``"l2"`` returns squared distances).
    group : torch.distributed ProcessGroup, optional
        Default: the default group (none initialised: :func:`dalcore.knn` on one process).

    Returns
    -------
    values : (n_r, k) float32 and indices : (n_r, k) int64 (global)
        Row i: the neighbours of global row ``offset_r + i``, self excluded, best first, ties
        to the lowest index; numpy, or torch on the input's device.

    The features are all-gathered (N x d on every rank); each rank searches its own rows
    (faiss ``IndexFlat``, as :func:`dalcore.knn`), so the work is split and the memory is not.
    """
    if not _active(group):
        return _kn.knn(local_features, k, metric=metric)
    comm = _Comm(group)
    (x, kk), table = _agree(
        comm, lambda: _knn_local(local_features, k, metric),
        lambda r: [0] * 4 if r is None else [r[0].shape[0], r[0].shape[1], r[1],
                                             _kn._METRICS.index(metric)], "knn")
    _same(table[:, 2], "k")
    _same(table[:, 3], "metric")
    xall, sh = _gather_features(comm, x, table[:, 0], table[:, 1], "local_features")
    if sh.total < 2 or kk > sh.total - 1:
        raise ValueError(f"k: expected an integer <= {max(sh.total - 1, 0)} (N - 1, N = "
                         f"{sh.total} points in all), got {kk}")
    v, i = _knn_rows(xall, np.arange(sh.lo, sh.lo + sh.n, dtype=np.int64), kk, metric)
    return _restore(local_features, v), _restore(local_features, i)


def _graph_local(sims: Any, idx: Any) -> tuple[np.ndarray, np.ndarray]:
    v = _arrays.to_numpy(_host(sims), "local_sims")
    i = _arrays.to_numpy(_host(idx), "local_indices")
    if v.dtype.kind not in "iuf":
        raise TypeError(f"local_sims: expected real similarities, got dtype {v.dtype}")
    if i.dtype.kind not in "iu":
        raise TypeError(f"local_indices: expected integer indices, got dtype {i.dtype}")
    if v.ndim != 2 or i.shape != v.shape:
        raise ValueError(f"local_sims, local_indices: expected two (n_r, k) arrays of the same "
                         f"shape, got {v.shape} and {i.shape}")
    return np.ascontiguousarray(v, np.float32), np.ascontiguousarray(i, np.int64)


def knn_graph(local_sims: Any, local_indices: Any, *, k: int | None = None, gamma: float = 3.0,
              mode: str = "reciprocal", group: Any = None) -> Any:
    """This rank's rows of :func:`dalcore.knn_graph` built from every rank's k-NN lists.

    Parameters
    ----------
    local_sims, local_indices : (n_r, k) arrays
        This rank's lists, as :func:`knn` returns them (global indices).
    k, gamma, mode
        As :func:`dalcore.knn_graph`, the same on every rank.
    group : torch.distributed ProcessGroup, optional
        Default: the default group (none initialised: :func:`dalcore.knn_graph`).

    Returns
    -------
    scipy.sparse.csr_array (n_r, N)
        Rows ``[offset_r, offset_r + n_r)`` of the one-process graph, exactly: the lists are
        all-gathered (N k (4 + 8) bytes on every rank) and every rank builds the whole graph
        (reciprocity and the degrees of ``D^-1/2 W D^-1/2`` need both directions of an edge),
        keeping its rows for :func:`propagate`.
    """
    from ._graph import knn_graph as one_process

    if not _active(group):
        return one_process((local_sims, local_indices), k=k, gamma=gamma, mode=mode)
    comm = _Comm(group)
    (v, i), table = _agree(comm, lambda: _graph_local(local_sims, local_indices),
                           lambda r: [0, 0] if r is None else list(r[0].shape), "knn_graph")
    counts = table[:, 0]
    _same(table[counts > 0, 1], "local_sims (columns)")
    width = int(table[counts > 0, 1][0]) if np.any(counts > 0) else 0
    v, i = v.reshape(-1, width), i.reshape(-1, width)
    sims, idx = comm.all_gather_rows(v, counts), comm.all_gather_rows(i, counts)
    s = one_process((sims, idx), k=k, gamma=gamma, mode=mode)
    lo = int(counts[: comm.rank].sum())
    return s[lo : lo + int(counts[comm.rank])]


# ---------------------------------------------------------------------------- propagate
def _local_csr(graph: Any) -> tuple[Any, int]:
    """This rank's rows of S as a scipy CSR (n_r x ncols; ncols -1 for a triple, whose width is
    the global N), int64 indices, float32 data; checked as dalcore.propagate checks a graph."""
    import scipy.sparse as sp

    if sp.issparse(graph):
        if graph.ndim != 2:
            raise ValueError(f"local_graph: expected a 2-D matrix, got shape {graph.shape}")
        g = sp.csr_array(graph)
        indptr, indices, data, ncols = g.indptr, g.indices, g.data, int(graph.shape[1])
    elif _pr._is_triple(graph):
        indptr, indices, data = (_arrays.to_numpy(_host(a), f"local_graph[{i}]")
                                 for i, a in enumerate(graph))
        ncols = -1
    else:
        raise TypeError("local_graph: expected a scipy.sparse matrix/array or a CSR triple "
                        f"(indptr, indices, data), got {type(graph).__name__}")
    _pr.check_csr_parts(indptr, indices, data, "local_graph")
    if indptr.shape[0] < 1 or indptr[0] != 0 or indptr[-1] != indices.shape[0] \
            or np.any(np.diff(indptr) < 0):
        raise ValueError("local_graph: indptr must start at 0, be non-decreasing and end at "
                         f"nnz={indices.shape[0]}")
    if indices.size and int(indices.min()) < 0:
        raise ValueError("local_graph: column indices must be >= 0")
    if not np.isfinite(data).all():
        raise ValueError("local_graph: data contains NaN or inf value(s)")
    n = indptr.shape[0] - 1
    width = ncols if ncols >= 0 else (int(indices.max()) + 1 if indices.size else 0)
    g = sp.csr_array((data.astype(np.float32), indices.astype(np.int64),
                      indptr.astype(np.int64)), shape=(n, width))
    return g, ncols


def _propagate_local(graph: Any, labels: Any, x0: Any, params: tuple) -> tuple:
    g, ncols = _local_csr(graph)
    n = g.shape[0]
    lab = _arrays.to_numpy(_host(labels), "local_labels")
    if lab.dtype.kind not in "iu":
        raise TypeError(f"local_labels: expected integer class labels (-1 = unlabeled), got "
                        f"dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"local_labels: expected one label per local graph row ({n}), got "
                         f"shape {lab.shape}")
    lab = lab.astype(np.int64)
    c = params[0]
    if lab.size and (int(lab.min()) < -1 or int(lab.max()) >= c):
        raise ValueError(f"local_labels: expected -1 (unlabeled) or a class in [0, {c}), got "
                         f"[{int(lab.min())}, {int(lab.max())}]")
    x0a = None
    if x0 is not None:
        x0a = _arrays.as_features(_host(x0), "x0", min_rows=0)
        if x0a.shape != (n, c):
            raise ValueError(f"x0: expected shape ({n}, {c}), got {x0a.shape}")
    return g, ncols, lab, x0a


def propagate(local_graph: Any, local_labels: Any, *, num_classes: int, alpha: float = 0.99,
              tol: float = 1e-6, max_iter: int = 20, x0: Any = None,
              precision: str = "float32", return_info: bool = False, group: Any = None) -> Any:
    """Label propagation over row-partitioned ``S``: :func:`dalcore.propagate` on the rows of
    this rank.

    Parameters
    ----------
    local_graph : scipy.sparse (n_r, N) or CSR triple (indptr, indices, data)
        This rank's rows of the symmetric normalised affinity S (global column indices); the
        shards' rows, in rank order, make up S.
    local_labels : (n_r,) int
        Class of each local row, -1 for unlabeled; every class needs a labeled row on some rank.
    num_classes, alpha, tol, max_iter, precision
        As :func:`dalcore.propagate`, the same on every rank.
    x0 : (n_r, C) array, optional
        This rank's rows of the warm start.
    return_info : bool
        Also return a :class:`dalcore._propagate.PropagateInfo` (the same on every rank).
    group : torch.distributed ProcessGroup, optional
        Default: the default group (none initialised: :func:`dalcore.propagate`).

    Returns
    -------
    Z : (n_r, C) float32, this rank's rows of the solution (numpy, or torch like the labels).

    The same block conjugate gradient as the core (per-column scalars in float64, frozen columns
    left as they are): per iteration one all-gather of the direction block P (N x C), the local
    SpMM S_r P, and two all-reduces of C float64 dot products (p.Ap, then r.r). Agrees with the
    one-process solution within float rounding (the sums run in another order).
    """
    if not _active(group):
        return _pr.propagate(local_graph, local_labels, num_classes=num_classes, alpha=alpha,
                             tol=tol, max_iter=max_iter, x0=x0, precision=precision,
                             return_info=return_info)
    comm = _Comm(group)

    def local() -> tuple:
        params = _pr._check_params(num_classes, alpha, tol, max_iter, precision)
        return params, _propagate_local(local_graph, local_labels, x0, params)

    def meta(r: Any) -> list[int]:
        if r is None:
            return [0] * 9
        (c, a, t, m, dbl), (g, ncols, _, x0a) = r
        maxcol = int(g.indices.max()) if g.nnz else -1
        return [g.shape[0], ncols, maxcol, c, _bits(a), _bits(t), m, int(dbl), int(x0a is None)]

    (params, (g, _, lab, x0a)), table = _agree(comm, local, meta, "propagate")
    for j, name in enumerate(("num_classes", "alpha", "tol", "max_iter", "precision", "x0")):
        _same(table[:, 3 + j], name)
    counts = table[:, 0]
    n_all = int(counts.sum())
    bad = [int(w) for w in table[:, 1] if w not in (-1, n_all)]
    if bad or int(table[:, 2].max()) >= n_all:
        raise ValueError(f"local_graph: expected {n_all} columns (the rows of all ranks), got "
                         f"{bad or int(table[:, 2].max()) + 1}")
    import scipy.sparse as sp

    g = sp.csr_array((g.data, g.indices, g.indptr), shape=(g.shape[0], n_all))
    sh = _Shard(np.zeros((int(counts[comm.rank]), 0), np.float32), counts, comm.rank)
    z, info = _block_cg(comm, sh, g, lab, x0a, params)
    z = _restore(local_labels, z)
    return (z, info) if return_info else z


def _check_symmetric(comm: _Comm, sh: _Shard, g: Any) -> None:
    """The randomised test of dalcore.propagate on the whole S: |u'Sv - v'Su| <= rtol *
    (|u| |Sv| + |v| |Su|), with one all-reduce of the four partial sums."""
    rng = np.random.default_rng(0x5EED)
    u = rng.standard_normal(sh.total).astype(np.float32)
    v = rng.standard_normal(sh.total).astype(np.float32)
    su, sv = g @ u, g @ v
    ul, vl = u[sh.lo : sh.lo + sh.n], v[sh.lo : sh.lo + sh.n]
    part = np.asarray([ul @ sv, vl @ su, sv @ sv, su @ su], dtype=np.float64)
    uv, vu, svn, sun = comm.all_reduce(part)
    scale = float(np.linalg.norm(u) * np.sqrt(svn) + np.linalg.norm(v) * np.sqrt(sun))
    if abs(uv - vu) > _SYMMETRY_RTOL * scale:
        raise ValueError("local_graph: expected a symmetric affinity S (S == S.T); a randomised "
                         f"test found |u'Sv - v'Su| = {abs(uv - vu):.3g} > "
                         f"{_SYMMETRY_RTOL:g} * {scale:.3g}")


def _class_counts(comm: _Comm, lab: np.ndarray, c: int) -> np.ndarray:
    count = comm.all_reduce(np.bincount(lab[lab >= 0], minlength=c).astype(np.int64))
    _pr._check_counts(count)
    return count


def _block_cg(comm: _Comm, sh: _Shard, g: Any, lab: np.ndarray, x0: Any,
              params: tuple) -> tuple[np.ndarray, Any]:
    """Block CG on the local rows (the core's per-column scalar updates, propagate_ops.h)."""
    c, alpha, tol, max_iter, dbl = params
    _check_symmetric(comm, sh, g)
    count = _class_counts(comm, lab, c)
    vt = np.float64 if dbl else np.float32
    bb = 1.0 / count.astype(np.float64)
    b = np.zeros((sh.n, c), dtype=vt)
    rows = np.flatnonzero(lab >= 0)
    b[rows, lab[rows]] = (1.0 / count.astype(np.float64))[lab[rows]]
    a = vt(alpha)

    def apply_a(p: np.ndarray) -> np.ndarray:  # (I - alpha S) p on the local rows
        full = comm.all_gather_rows(p, sh.counts)
        return (p - a * (g @ full).astype(vt)).astype(vt)

    def dots(u: np.ndarray, w: np.ndarray) -> np.ndarray:
        part = np.einsum("ij,ij->j", u.astype(np.float64), w.astype(np.float64))
        return comm.all_reduce(np.ascontiguousarray(part))

    x = np.zeros((sh.n, c), dtype=vt) if x0 is None else x0.astype(vt)
    r = (b - apply_a(x)).astype(vt) if x0 is not None else b.copy()
    p = r.copy()
    rho = dots(r, r)
    relres = np.where(rho > 0, np.sqrt(np.maximum(rho, 0) / bb), 0.0)
    state = np.where(relres > tol, 1, 0)  # 1 active, 0 converged, 2 breakdown
    iters = np.zeros(c, dtype=np.int64)
    for _ in range(max_iter):
        if not np.any(state == 1):
            break
        q = apply_a(p)
        pq = dots(p, q)
        active = state == 1
        state = np.where(active & ~(pq > 0), 2, state)
        step = np.where(state == 1, rho / np.where(pq > 0, pq, 1.0), 0.0)
        r = (r - step.astype(vt) * q).astype(vt)
        rr = dots(r, r)
        moved = step > 0
        iters += moved
        relres = np.where(moved, np.where(rr > 0, np.sqrt(np.maximum(rr, 0) / bb), 0.0), relres)
        done = moved & (relres <= tol)
        state = np.where(done, 0, state)
        beta = np.where(moved & ~done, rr / np.where(rho > 0, rho, 1.0), 1.0)
        gamma = np.where(moved & ~done, 1.0, 0.0)
        rho = np.where(moved, rr, rho)
        x = (x + step.astype(vt) * p).astype(vt)
        p = (gamma.astype(vt) * r + beta.astype(vt) * p).astype(vt)
    if np.any(state == 2):
        _pr._check_breakdown(int(np.sum(state == 2)))
    return x.astype(np.float32), _pr.PropagateInfo(iters, relres.astype(np.float64))


# ---------------------------------------------------------------------------- the experiment driver
# `torchrun -m dalcore run`: one process per device, DDP training, the pool's features extracted
# by shards, one process (rank 0) writing. These helpers are all the driver code needs.
def join_from_env(device: Any) -> Any:
    """Join the process group torchrun describes (WORLD_SIZE > 1) and return this rank's device.

    gloo for a CPU device, NCCL for CUDA (one GPU per process: ``cuda:LOCAL_RANK``). Without
    torchrun (or with one process) nothing happens and ``device`` is returned as it is.
    """
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist = _dist()
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return device


@contextlib.contextmanager
def one_process() -> Iterator[None]:
    """A block in which this process ignores the default process group: :func:`world_size` is
    1, :func:`rank` 0, and the kernels, the extraction and the training run as in one process
    (no collective). For work one rank does alone (:func:`on_writer`)."""
    global _one_process_depth
    _one_process_depth += 1
    try:
        yield
    finally:
        _one_process_depth -= 1


def barrier(group: Any = None) -> None:
    """Wait for every rank (nothing when not distributed)."""
    if world_size(group) > 1:
        _dist().barrier(group=group)


def broadcast_object(obj: Any, src: int = 0, group: Any = None) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; for small things such as paths)."""
    if world_size(group) <= 1:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src, group=group)
    return box[0]


def wrap_ddp(model: Any) -> Any:
    """``model`` in DistributedDataParallel when distributed (else ``model`` itself).

    On CUDA with NCCL its BatchNorm layers first become SyncBatchNorm, in place
    (:func:`convert_batchnorm`): the batch statistics are those of the global batch, as in one
    process. On CPUs (gloo) each rank normalises with its slice's statistics."""
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    model = convert_batchnorm(model, dev, str(_dist().get_backend()))
    return DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)


def sync_buffers(model: Any) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: the ranks of a DDP run
    hold the same parameters but each updated its statistics with its own batch slices."""
    if world_size() <= 1:
        return
    for b in model.buffers():
        _dist().broadcast(b.data, src=0)


def batch_slice(size: int) -> Any:
    """(rows, scale) of this rank in a global batch of ``size``, or None when not distributed.

    rows: this rank's contiguous share (rank order) as an int64 array; scale: the world size, so
    that DDP's mean of the ranks' gradients of ``scale * (sum of the rows' loss terms) / size``
    is the gradient of the global batch's mean loss. A rank left without a row gets row 0 and
    scale 0 (it still runs the forward and backward DDP expects from every rank)."""
    w = world_size()
    if w <= 1:
        return None
    r = rank()
    lo, hi = r * size // w, (r + 1) * size // w
    if hi > lo:
        return np.arange(lo, hi, dtype=np.int64), float(w)
    return np.zeros(1, dtype=np.int64), 0.0


def shard_rows(n: int) -> tuple[int, int]:
    """This rank's contiguous share [lo, hi) of n rows (all of them when not distributed)."""
    w, r = world_size(), rank()
    return r * n // w, (r + 1) * n // w


def gather_scores(local: np.ndarray) -> np.ndarray:
    """Every rank's rows of the numpy array ``local`` concatenated in rank order (``local``
    itself when not distributed); the ranks' row counts may differ."""
    if world_size() <= 1:
        return local
    t = _arrays.torch_module().from_numpy(np.ascontiguousarray(local))
    return gather_rows(t).numpy()


def gather_rows(t: Any) -> Any:
    """Every rank's rows of the CPU tensor ``t`` concatenated in rank order (t itself when
    not distributed); the ranks' row counts may differ."""
    if world_size() <= 1:
        return t
    comm = _Comm(None)
    counts = comm.all_gather(np.asarray([t.shape[0]], dtype=np.int64))[:, 0]
    out = comm.all_gather_rows(t.detach().cpu().numpy(), counts)
    return _arrays.torch_module().from_numpy(out)


def propagate_pool(features: Any, labels: np.ndarray, *, k: int, gamma: float, mode: str,
                   num_classes: int, alpha: float, max_iter: int, x0: Any = None) -> Any:
    """SEMI's k-NN graph and label propagation on the whole pool, sharded over the ranks.

    Every rank holds all ``features`` (N, d) and ``labels`` (N,); each takes its contiguous rows,
    runs :func:`knn`, :func:`knn_graph` and :func:`propagate` on them, and the rows of Z are
    all-gathered. Returns ``(Z, info)`` with Z (N, C) the same on every rank (numpy, or torch
    on the device of ``features``): the one-process result within float rounding.
    """
    feats = _host(features)
    feats = feats.numpy() if _arrays.is_torch(feats) else np.asarray(feats)
    lo, hi = shard_rows(int(feats.shape[0]))
    v, i = knn(feats[lo:hi], k)
    s = knn_graph(v, i, k=k, gamma=gamma, mode=mode)
    x0l = None
    if x0 is not None:
        x0h = _host(x0)
        x0l = (x0h.numpy() if _arrays.is_torch(x0h) else np.asarray(x0h))[lo:hi]
    z, info = propagate(s, np.asarray(labels)[lo:hi], num_classes=num_classes, alpha=alpha,
                        max_iter=max_iter, x0=x0l, return_info=True)
    zt = gather_rows(_arrays.torch_module().from_numpy(np.ascontiguousarray(z)))
    return _restore(features, zt.numpy()), info
