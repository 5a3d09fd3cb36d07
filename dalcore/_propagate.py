"""Label propagation (placeholder)."""

from __future__ import annotations

from typing import Any


def propagate(graph: Any, labels: Any, *, num_classes: int, alpha: float = 0.99,
              tol: float = 1e-6, max_iter: int = 20, x0: Any = None) -> Any:
    """Block-CG label propagation (not implemented yet)."""
    raise NotImplementedError("dalcore.propagate is not implemented yet")


def pseudo_labels(Z: Any) -> Any:
    """Pseudo-labels and weights (not implemented yet)."""
    raise NotImplementedError("dalcore.pseudo_labels is not implemented yet")
