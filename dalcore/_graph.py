"""k-NN affinity graph (placeholder)."""

from __future__ import annotations

from typing import Any


def knn_graph(data: Any, *, k: int = 50, gamma: float = 3.0, mode: str = "reciprocal") -> Any:
    """Symmetric normalised k-NN affinity (not implemented yet)."""
    raise NotImplementedError("dalcore.knn_graph is not implemented yet")
