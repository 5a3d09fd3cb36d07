"""The propagate bench: a thin entry point to `dalcore bench propagate`
(dalcore/bench/propagate.py), which prints the same tables from an installed dalcore.

    python benches/bench_propagate.py --quick
    python benches/bench_propagate.py --help
"""

import sys

from dalcore.bench import main

if __name__ == "__main__":
    sys.exit(main("propagate", sys.argv[1:], prog="bench_propagate.py"))
