"""Greedy k-center (placeholder until the foundation issue lands)."""

from __future__ import annotations

from typing import Any


def kcenter(features: Any, budget: int, labeled: Any = None, *, return_radius: bool = False) -> Any:
    """Exact greedy farthest-first traversal (not implemented yet)."""
    raise NotImplementedError("dalcore.kcenter is not implemented yet")
