"""The bench helpers now live in the package (dalcore/bench/_common.py); re-exported here for
the scripts of benches/ that stay out of it (bench_accuracy.py)."""

from dalcore.bench._common import (  # noqa: F401
    fmt_table,
    median_time,
    memory_bandwidth,
    parallel_memory_bandwidth,
)
