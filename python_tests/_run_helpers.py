"""Shared helpers of the experiment / CLI tests: a tiny digits configuration and CSV reading."""

from __future__ import annotations

import csv
from pathlib import Path

#: Methods of the tiny runs (uncertainty shares CEAL's selection, so CEAL stands for both).
METHODS = "random,coreset,ceal"


def tiny_args(out: Path, *extra: str, methods: str = METHODS, repeats: int = 1,
              cycles: int = 2, seed: int = 0) -> list[str]:
    """``dalcore run`` arguments of a configuration that runs in a few seconds."""
    return [
        "run", "--dataset", "digits", "--pool-size", "200", "--budget", "10",
        "--cycles", str(cycles), "--repeats", str(repeats), "--epochs", "8",
        "--methods", methods, "--seed", str(seed), "--out", str(out), "--quiet", "--threads", "1",
        *extra,
    ]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def without_seconds(rows: list[dict]) -> list[tuple]:
    """Rows as tuples without the wall-clock column (the only one that may differ)."""
    return [tuple(v for k, v in r.items() if k != "seconds") for r in rows]


def assert_same_rows(a: list[dict], b: list[dict], expected: int) -> None:
    """``a`` and ``b`` hold the same ``expected`` rows (seconds aside): never passes on nothing."""
    assert expected > 0, "a comparison of zero rows proves nothing"
    assert len(a) == expected, f"compared {len(a)} rows, expected {expected}"
    assert len(b) == expected, f"compared {len(b)} rows, expected {expected}"
    assert sorted(without_seconds(a)) == sorted(without_seconds(b))
