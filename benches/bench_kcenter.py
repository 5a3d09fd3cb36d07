"""The kcenter bench: a thin entry point to `dalcore bench kcenter`
(dalcore/bench/kcenter.py), which prints the same tables from an installed dalcore.

    python benches/bench_kcenter.py --quick
    python benches/bench_kcenter.py --help
"""

import sys

from dalcore.bench import main

if __name__ == "__main__":
    sys.exit(main("kcenter", sys.argv[1:], prog="bench_kcenter.py"))
