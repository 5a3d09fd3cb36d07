"""An allocation failure inside the C++ core is a Python MemoryError, never std::terminate:
knn_graph under an address-space limit too small for its scratch (run in a child process so
that the limit stays there)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import resource
    import numpy as np
    import dalcore

    n, k = 200_000, 50
    rng = np.random.default_rng(0)
    off = rng.choice(np.arange(1, n), k, replace=False)
    idx = ((np.arange(n)[:, None] + off[None, :]) % n).astype(np.int64)
    sims = rng.random((n, k), dtype=np.float32)
    small = dalcore.knn_graph((sims[:, :2].copy(), idx[:, :2].copy()))  # threads started
    dalcore._core.knn_graph_release_scratch()
    vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * 2**20, resource.RLIM_INFINITY))
    try:
        dalcore.knn_graph((sims, idx))
    except MemoryError:
        print("MemoryError")
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    again = dalcore.knn_graph((sims[:, :2].copy(), idx[:, :2].copy()))
    print("same graph after" if (again != small).nnz == 0 else "different graph after")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_knn_graph_allocation_failure_is_memory_error(tmp_path):
    # the child imports the dalcore this process imported (source tree or installed)
    path = os.pathsep.join(p for p in sys.path if p)
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path,
                         env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["MemoryError", "same", "graph", "after"], res.stdout
