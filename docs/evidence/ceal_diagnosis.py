"""CEAL diagnosis: per cycle, how many pseudo-labels CEAL adds and how many of them are right.

Runs ``dalcore run``'s experiment with the ``ceal`` strategy wrapped so that every selection's
pseudo-labels are compared with the known training labels. Usage::

    PYTHONPATH=. python docs/evidence/ceal_diagnosis.py OUT_DIR [--repeats 3] [extra options]

Prints one line per (repeat, cycle): labels, pseudo-labels added, how many are correct, and the
number of true labels they are trained with.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dalcore import acquisition
from dalcore.experiment import ExperimentConfig, run_experiment


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--methods", default="ceal")
    p.add_argument("--budget", type=int, default=20)
    args = p.parse_args(argv)
    for name in ("ceal", "ceal-uncapped"):
        acquisition.STRATEGIES[name] = _logged(name, acquisition.STRATEGIES[name])
    cfg = ExperimentConfig(methods=tuple(args.methods.split(",")), repeats=args.repeats,
                           cycles=args.cycles, budget=args.budget, out=args.out,
                           progress=False)
    run_experiment(cfg)
    return 0


def _logged(name, inner):
    def logged(ctx, budget):
        sel = inner(ctx, budget)
        y = ctx.data.y_train.cpu().numpy()
        ps = sel.pseudo
        n = 0 if ps is None else len(ps)
        right = 0 if ps is None else int((y[ps.indices] == ps.labels).sum())
        per_class = np.bincount(ps.labels, minlength=ctx.num_classes) if n else []
        print(f"{name} cycle {ctx.cycle}: {len(ctx.labeled)} true labels, {n} pseudo-labels "
              f"added, {right} right ({100 * right / max(n, 1):.1f} %), per class "
              f"{list(map(int, per_class))}, pool {len(ctx.pool)}", flush=True)
        return sel

    return logged


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
