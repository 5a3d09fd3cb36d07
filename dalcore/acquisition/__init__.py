"""Acquisition strategies: one small module each, one registry.

A strategy is ``strategy(ctx: AcquisitionContext, budget: int) -> Selection``. The context caches
one extraction (softmax probabilities and features, eval mode, no augmentation) over the labelled
set and the pool, shared by every strategy called on it. Ties break to the lowest train index.
"""

from __future__ import annotations

import importlib
from typing import Callable

from ._base import AcquisitionContext, Selection, check_budget, entropy

Strategy = Callable[[AcquisitionContext, int], Selection]

#: Registered strategies by name.
STRATEGIES: dict[str, Strategy] = {}

__all__ = [
    "STRATEGIES",
    "AcquisitionContext",
    "Selection",
    "Strategy",
    "check_budget",
    "entropy",
    "get_strategy",
    "register",
]


def register(name: str) -> Callable[[Strategy], Strategy]:
    """Decorator adding a strategy to :data:`STRATEGIES` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def deco(fn: Strategy) -> Strategy:
        if name in STRATEGIES and STRATEGIES[name] is not fn:
            raise ValueError(f"name: a strategy called {name!r} is already registered")
        STRATEGIES[name] = fn
        return fn

    return deco


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name`` (ValueError listing the known names otherwise)."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"name: unknown acquisition strategy {name!r}; known: {known}") from None


# Importing the modules registers them.
for _mod in ("random", "uncertainty", "coreset", "ceal", "jlp", "typiclust", "probcover"):
    importlib.import_module(f"{__name__}.{_mod}")
