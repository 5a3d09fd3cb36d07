"""Exact k-NN (placeholder)."""

from __future__ import annotations

from typing import Any


def knn(features: Any, k: int, *, metric: str = "ip") -> Any:
    """Exact k nearest neighbours, self excluded (not implemented yet)."""
    raise NotImplementedError("dalcore.knn is not implemented yet")
