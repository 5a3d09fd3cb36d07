"""The OpenMP twin follows the GPU's ordering rules (issue 14, item 5):

- its results do not depend on the number of OpenMP threads (fixed partitions and combine
  orders, as on the GPU): kcenter (plain and projected), knn_graph and propagate on 1 and 2
  threads give the same bits;
- the blocks of a tile launch can be run in reverse or shuffled order: correct kernels give the
  same bits, and a kernel that depends on an order the GPU does not guarantee (a missing split
  into two launches) gives wrong results there, so the tests see it.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from test_propagate import digits_graph, pick_labels

import dalcore
from dalcore import _core, _graph
from dalcore._kcenter import _run_gpu_path
from dalcore._propagate import _propagate_host_gpu_path

ORDERS = [("forward", 0), ("reverse", 0), ("shuffle", 1), ("shuffle", 2)]


def seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.fixture
def threads():
    """Sets the OpenMP thread count for the test, restored after."""
    before = _core.build_info()["threads"]
    yield _core.set_num_threads
    _core.set_num_threads(before)


@pytest.fixture
def launch_order(omp_core):
    yield omp_core.gpu._set_launch_order
    omp_core.gpu._set_launch_order("parallel", 0)


def kcenter_runs(core, x, lab):
    plain = _run_gpu_path(core, x, 50, lab, return_radius=True, _projection=0)
    proj = _run_gpu_path(core, x, 50, lab, return_radius=True, _projection=8)
    first = _run_gpu_path(core, x, 30, None, return_radius=True, _projection=0)
    return [(p.tolist(), r) for p, r in (plain, proj, first)]


def digits_lists():
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return dalcore.knn(x.astype(np.float32), 10)


def graph_run(core, sims, idx):
    torch = pytest.importorskip("torch")
    s = torch.from_numpy(np.ascontiguousarray(sims, np.float32))
    i = torch.from_numpy(np.ascontiguousarray(idx, np.int64))
    indptr, indices, data = _graph._knn_graph_gpu(s, i, 3.0, "reciprocal", core=core.gpu)
    return indptr.numpy().copy(), indices.numpy().copy(), data.numpy().copy()


def propagate_run(core, graph, labels):
    z, info = _propagate_host_gpu_path(core.gpu, graph, labels, num_classes=10, tol=0.0,
                                       max_iter=20)
    return z, info.residuals


def test_kcenter_same_bits_on_1_and_2_threads(omp_core, threads):
    rng = seeded("threads-kcenter")
    scale = np.linspace(3, 0.1, 64, dtype=np.float32)  # a few dominant directions
    x = rng.standard_normal((3000, 64)).astype(np.float32) * scale
    lab = rng.choice(3000, 70, replace=False)
    results = []
    for t in (1, 2):
        threads(t)
        results.append(kcenter_runs(omp_core, x, lab))
    assert results[0] == results[1]


def test_graph_and_propagate_same_bits_on_1_and_2_threads(omp_core, threads):
    sims, idx = digits_lists()
    g, classes = digits_graph()
    labels = pick_labels(seeded("threads-lp"), classes, 3)
    out = []
    for t in (1, 2):
        threads(t)
        out.append((graph_run(omp_core, sims, idx), propagate_run(omp_core, g, labels)))
    (g1, p1), (g2, p2) = out
    for a, b in zip(g1 + p1, g2 + p2):
        np.testing.assert_array_equal(a, b)
    # and the graph is the symmetric normalised graph, not a constant
    csr = sp.csr_array((g1[2], g1[1], g1[0]), shape=(sims.shape[0],) * 2)
    assert csr.nnz > 0 and abs(csr - csr.T).max() == 0


def test_kcenter_same_bits_in_any_block_order(omp_core, launch_order):
    rng = seeded("order-kcenter")
    x = rng.standard_normal((2600, 40)).astype(np.float32)
    lab = rng.choice(2600, 50, replace=False)
    base = kcenter_runs(omp_core, x, lab)
    for order, seed in ORDERS:
        launch_order(order, seed)
        assert kcenter_runs(omp_core, x, lab) == base, order


def test_missing_launch_split_is_caught_by_reversed_blocks(omp_core, launch_order):
    x = seeded("probe").integers(1, 100, size=1000).astype(np.int64)
    want = np.cumsum(x)
    launch_order("forward", 0)  # the order the broken kernel silently relies on
    np.testing.assert_array_equal(omp_core.gpu._order_probe(x, False), want)
    for order, seed in ORDERS[1:]:
        launch_order(order, seed)
        assert not np.array_equal(omp_core.gpu._order_probe(x, False), want), order
        np.testing.assert_array_equal(omp_core.gpu._order_probe(x, True), want)


def test_launch_order_checked(omp_core):
    with pytest.raises(ValueError, match="order"):
        omp_core.gpu._set_launch_order("backwards", 0)
