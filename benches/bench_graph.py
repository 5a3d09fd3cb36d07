"""The graph bench: a thin entry point to `dalcore bench graph` (dalcore/bench/graph.py), which
prints the same tables from an installed dalcore.

    python benches/bench_graph.py --quick
    python benches/bench_graph.py --help
"""

import sys

from dalcore.bench import main

if __name__ == "__main__":
    sys.exit(main("graph", sys.argv[1:], prog="bench_graph.py"))
