"""Benches that ship with the package: ``dalcore bench kcenter|graph|propagate [--data ...]
[--quick]``, the same tables as ``benches/bench_*.py`` (thin entry points to these modules).

- :mod:`dalcore.bench.kcenter`: greedy k-center against the numpy GEMV loop (and, on the synthetic
  grid, scikit-learn, scipy and torch), real data first.
- :mod:`dalcore.bench.graph`: ``knn_graph`` against the LP-DeepSSL scipy construction.
- :mod:`dalcore.bench.propagate`: ``propagate`` (block CG) against one scipy CG per class.

Data sets are named by ``--data`` (:mod:`dalcore.bench.data`); every time is a median of
repeats, and the machine's read bandwidth is measured in the same run.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Optional

__all__ = ["BENCHES", "main"]

BENCHES = ("kcenter", "graph", "propagate")


def main(name: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Runs bench ``name`` with the arguments ``argv``; returns the exit code."""
    if name not in BENCHES:
        raise ValueError(f"name: expected one of {', '.join(BENCHES)}, got {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    return int(module.main(argv, prog=prog or f"dalcore bench {name}"))
