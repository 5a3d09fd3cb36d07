"""Shared fixtures: GPU tests skip where no GPU is present; the OpenMP twin of the GPU path."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

# Test the installed package when the source tree holds no built extension: `python -m pytest`
# from the repository root puts the root first on sys.path, where `dalcore/` has no `_core`.
# Drop it, and keep child processes (`python -m dalcore ...`) from adding their cwd back.
_ROOT = Path(__file__).resolve().parents[1]
if not any((_ROOT / "dalcore").glob("_core.*")):
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != _ROOT]
    os.environ["PYTHONSAFEPATH"] = "1"

# Before any OpenMP runtime starts: idle threads sleep instead of spinning, so that the core's
# OpenMP, torch's and the test process do not starve each other on a small machine.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dalcore  # noqa: E402


def seed_for(nodeid: str) -> int:
    """The seed of the ``rng`` fixture for the test ``nodeid`` (stable across processes)."""
    digest = hashlib.sha256(nodeid.encode("utf-8")).digest()
    base = int(os.environ.get("DALCORE_TEST_SEED", "0"))
    return (int.from_bytes(digest[:8], "little") + base) % (2**63)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if dalcore.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none present, or a build without CUDA)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def omp_core():
    """The test-only module _core_omp: the CUDA-path sources built on Thrust's OpenMP backend.

    CI sets DALCORE_REQUIRE_OMP_TWIN=1 so that a build that lost the twin fails instead of
    skipping the GPU-path tests.
    """
    try:
        from dalcore import _core_omp
    except ImportError as e:
        if os.environ.get("DALCORE_REQUIRE_OMP_TWIN") == "1":
            pytest.fail(f"_core_omp is required here but failed to import: {e}")
        pytest.skip("_core_omp (Thrust/OpenMP twin of the GPU path) not built")
    return _core_omp


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A fresh generator per test, seeded from the test's name (reproducible, yet varied).

    The seed is a SHA-256 of the test id (not ``hash()``, which Python salts per process), so a
    failure replays with the same data; ``DALCORE_TEST_SEED`` shifts every test's seed to try
    other data.
    """
    return np.random.default_rng(seed_for(request.node.nodeid))


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (small models; no oversubscription), restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def digits16():
    """The embedded digits at 16x16 (the cpu preset's input size)."""
    from dalcore.data import load_dataset

    return load_dataset("digits", image_size=16)
