"""Bench: dalcore's test accuracy against two scikit-learn baselines, on the same splits.

For each dataset and repetition ``r`` the labeled sets are those of ``dalcore run --methods
random --seed S``, repetition ``r``: the same pool (``--pool-size``: a class-balanced subset drawn
with the run's seed), the same class-balanced initial budget (drawn with the repetition seed the
experiment hashes from ``S`` and ``r``), then ``budget`` random pool images per cycle with the
seeds the experiment derives. dalcore runs through
:func:`dalcore.experiment.run_experiment` (``cpu`` preset, method ``random``, each configuration
of ``--configs``); its checkpoints are checked against the labeled sets reproduced here, so the
baselines are fitted on exactly the images dalcore trained on. Baselines, on the pixels of the
same images (the preset's input size, normalised as dalcore sees them):

- ``logreg``: scikit-learn ``LogisticRegression`` (lbfgs, C = 1, max_iter 2000) on the labeled
  images;
- ``labelspreading``: scikit-learn ``LabelSpreading(kernel="knn", n_neighbors=10)`` fitted on
  the whole pool with the unlabeled images marked -1, predicting the test images.

Every method is evaluated on the dataset's test set. The table gives mean ± std (numpy, ddof=0)
of the test accuracy in percent over the repetitions, and each method's wall time (all
repetitions and label counts, dalcore including pre-training).

    python benches/bench_accuracy.py                       # digits + Fashion-MNIST, 5 repeats
    python benches/bench_accuracy.py --quick               # 2 repeats, 2 / 1 cycles
    python benches/bench_accuracy.py --configs none        # the scikit-learn baselines only
    python benches/bench_accuracy.py --out runs/acc        # also results.csv and summary.json

Datasets: ``digits`` (scikit-learn's embedded set, 1,297 train / 500 test images, budget 20,
5 cycles: 20 to 100 labels) and ``fashion-mnist`` (IDX files, default Debian's
/usr/share/datasets/fashion-mnist; pool 5,000, budget 100, 3 cycles: 100 to 300 labels).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fmt_table  # noqa: E402

#: dalcore configurations: name -> (pretrain, semi, --graph-input).
CONFIGS: dict[str, tuple[bool, bool, str]] = {
    "base": (False, False, "none"),
    "semi": (False, True, "none"),
    "pre": (True, False, "none"),
    "pre+semi": (True, True, "none"),
    "pre+semi+images": (True, True, "always"),
    "semi+images-only": (False, True, "only"),
    "pre+semi+images-only": (True, True, "only"),
}
BASELINES: tuple[str, ...] = ("logreg", "labelspreading")
COLUMNS: tuple[str, ...] = ("dataset", "method", "repeat", "labels", "accuracy", "seconds")


@dataclass(frozen=True)
class Spec:
    """One dataset of the bench and its protocol."""

    name: str
    budget: int
    cycles: int
    pool_size: int | None
    data_dir: str | None = None


def specs(args: argparse.Namespace) -> list[Spec]:
    """The datasets asked for, with --quick's shorter schedules."""
    table = {
        "digits": Spec("digits", 20, 2 if args.quick else 5, None),
        "fashion-mnist": Spec("fashion-mnist", 100, 1 if args.quick else 3, 5000, args.data_dir),
    }
    return [table[d] for d in args.datasets]


def experiment_config(spec: Spec, args: argparse.Namespace, config: str, out: str | None):
    """The ExperimentConfig of ``dalcore run --methods random`` for this dataset and config."""
    from dalcore.experiment import ExperimentConfig

    pretrain, semi, input_graph = CONFIGS[config]
    return ExperimentConfig(
        dataset=spec.name, data_dir=spec.data_dir, methods=("random",), budget=spec.budget,
        cycles=spec.cycles, repeats=args.repeats, preset="cpu", pool_size=spec.pool_size,
        device="cpu", seed=args.seed, out=out, pretrain=pretrain, semi=semi,
        input_graph=input_graph, progress=False, verbose=False,
    )


def load_split(spec: Spec, args: argparse.Namespace):
    """The dataset exactly as the experiment loads it (same pool subset, preset input size)."""
    from dalcore.experiment import _load_data, validate_config

    cfg = experiment_config(spec, args, "base", None)
    preset = validate_config(cfg)
    return _load_data(cfg, preset)[0]


def label_sets(spec: Spec, args: argparse.Namespace, y_train: np.ndarray,
               num_classes: int) -> list[list[np.ndarray]]:
    """[repeat][cycle] -> sorted labeled train indices of dalcore's ``random`` method; each
    repetition also ends with the set after the selection the run makes after its last cycle
    (what its checkpoint holds), so it has ``spec.cycles + 1`` sets."""
    from dalcore.data import class_balanced_indices
    from dalcore.experiment import derive_seed, repeat_seed

    n = y_train.size
    out = []
    for repeat in range(args.repeats):
        rseed = repeat_seed(args.seed, repeat)
        labeled = np.sort(class_balanced_indices(
            y_train, spec.budget, num_classes, np.random.default_rng(rseed)).astype(np.int64))
        sets = [labeled]
        for cycle in range(spec.cycles):
            pool = np.setdiff1d(np.arange(n, dtype=np.int64), labeled)
            rng = np.random.default_rng(derive_seed(rseed, "acquire", cycle, "random"))
            picks = rng.choice(pool, size=spec.budget, replace=False)
            labeled = np.sort(np.concatenate([labeled, np.asarray(picks, dtype=np.int64)]))
            sets.append(labeled)
        out.append(sets)
    return out


def run_baselines(name: str, data, sets: list[list[np.ndarray]]) -> tuple[list[dict], dict]:
    """Fit both scikit-learn baselines on every labeled set; rows and wall seconds per method."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading

    x = data.x_train.reshape(data.x_train.shape[0], -1).numpy().astype(np.float64)
    y = data.y_train.numpy()
    xt = data.x_test.reshape(data.x_test.shape[0], -1).numpy().astype(np.float64)
    yt = data.y_test.numpy()
    rows, wall = [], {m: 0.0 for m in BASELINES}
    for repeat, per_cycle in enumerate(sets):
        for labeled in per_cycle:
            for method in BASELINES:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    if method == "logreg":
                        model = LogisticRegression(max_iter=2000).fit(x[labeled], y[labeled])
                    else:
                        partial = np.full(y.size, -1, dtype=np.int64)
                        partial[labeled] = y[labeled]
                        model = LabelSpreading(kernel="knn", n_neighbors=10).fit(x, partial)
                    acc = float((model.predict(xt) == yt).mean())
                sec = time.perf_counter() - t0
                wall[method] += sec
                rows.append({"dataset": name, "method": method, "repeat": repeat,
                             "labels": int(labeled.size), "accuracy": acc, "seconds": sec})
    return rows, wall


def run_dalcore(spec: Spec, args: argparse.Namespace, config: str, workdir: Path,
                sets: list[list[np.ndarray]]) -> tuple[list[dict], float]:
    """run_experiment for one configuration; its rows, after checking its labeled sets
    (``sets`` from :func:`label_sets`: the last one is what the checkpoint holds)."""
    from dalcore.experiment import run_experiment

    out = workdir / f"{spec.name}_{config}"
    cfg = experiment_config(spec, args, config, str(out))
    if cfg.pretrain:  # the DeepCluster backbones of an earlier configuration: the same settings
        shared = sorted(workdir.glob(f"{spec.name}_*/pretrain_r*.pt"))  # (a cache keyed by them)
        out.mkdir(parents=True, exist_ok=True)
        for path in shared:
            if not (out / path.name).exists():
                shutil.copyfile(path, out / path.name)
    t0 = time.perf_counter()
    run_experiment(cfg)
    wall = time.perf_counter() - t0
    for repeat, per_cycle in enumerate(sets):
        ckpt = json.loads((out / "checkpoints" / f"random_r{repeat}.json").read_text())
        if not np.array_equal(np.sort(np.asarray(ckpt["labeled"], np.int64)), per_cycle[-1]):
            raise RuntimeError(f"{spec.name} {config} repeat {repeat}: dalcore's labeled set "
                               "differs from the one the baselines use (the protocol changed?)")
    rows = []
    with open(out / "results.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append({"dataset": spec.name, "method": f"dalcore {config}",
                         "repeat": int(r["repeat"]), "labels": int(r["labels"]),
                         "accuracy": float(r["accuracy"]), "seconds": float(r["seconds"])})
    return rows, wall


def summarise(rows: list[dict], walls: dict[tuple[str, str], float]) -> tuple[str, list[dict]]:
    """The Markdown table (rows: dataset and labels; columns: methods) and its records."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    records, lines = [], []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for labels in sorted({r["labels"] for r in rows if r["dataset"] == name}):
            cells = [f"{name}, {labels}"]
            for m in methods:
                acc = np.array([r["accuracy"] for r in rows if r["dataset"] == name
                                and r["method"] == m and r["labels"] == labels]) * 100
                if acc.size == 0:
                    cells.append("")
                    continue
                cells.append(f"{acc.mean():.1f} ± {acc.std():.1f}")
                records.append({"dataset": name, "labels": labels, "method": m,
                                "mean": float(acc.mean()), "std": float(acc.std()),
                                "repeats": int(acc.size)})
            lines.append(cells)
        lines.append([f"{name}, wall time"] + [
            f"{walls[(name, m)]:.1f} s" if (name, m) in walls else "" for m in methods])
    return fmt_table(["data, labels"] + methods, lines), records


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"bench_accuracy: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="digits,fashion-mnist",
                   help="comma-separated: digits, fashion-mnist")
    p.add_argument("--configs", default="base,semi",
                   help="dalcore configurations (base, semi, pre, pre+semi, ...; default: base "
                   "and the recommended SEMI) or none")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="2 repeats; 2 (digits) / 1 (fashion) cycles")
    p.add_argument("--data-dir", default=None, help="folder of Fashion-MNIST's IDX files")
    p.add_argument("--out", default=None, help="folder for results.csv, summary.json, the runs")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in args.datasets if d not in ("digits", "fashion-mnist")]
    if bad or not args.datasets:
        p.error(f"--datasets: expected digits and/or fashion-mnist, got {args.datasets}")
    args.configs = [] if args.configs.strip() == "none" else [
        c.strip() for c in args.configs.split(",") if c.strip()]
    if any(c not in CONFIGS for c in args.configs):
        p.error(f"--configs: expected a list of {', '.join(CONFIGS)} (or none), "
                f"got {','.join(args.configs)}")
    if args.quick:
        args.repeats = min(args.repeats, 2)
    if args.repeats < 1 or args.seed < 0:
        p.error("--repeats: expected >= 1 (and --seed >= 0)")
    return args


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[dict], dict]:
    """Every dataset: baselines, then each dalcore configuration, on the same labeled sets."""
    rows: list[dict] = []
    walls: dict[tuple[str, str], float] = {}
    for spec in specs(args):
        data = load_split(spec, args)
        with_next = label_sets(spec, args, data.y_train.numpy(), int(data.num_classes))
        sets = [per_cycle[:-1] for per_cycle in with_next]
        print(f"{spec.name}: {data.x_train.shape[0]} train images (pool), "
              f"{data.x_test.shape[0]} test images, inputs {tuple(data.x_train.shape[1:])}, "
              f"labels {[int(s.size) for s in sets[0]]}, {args.repeats} repetitions", flush=True)
        for config in args.configs:
            r, wall = run_dalcore(spec, args, config, workdir, with_next)
            rows += r
            walls[(spec.name, f"dalcore {config}")] = wall
            print(f"  dalcore {config}: {wall:.1f} s", flush=True)
        r, wall = run_baselines(spec.name, data, sets)
        rows += r
        walls.update({(spec.name, m): s for m, s in wall.items()})
        print(f"  baselines: {', '.join(f'{m} {s:.1f} s' for m, s in wall.items())}", flush=True)
    return rows, walls


def write_outputs(out: Path, args: argparse.Namespace, rows: list[dict], records: list[dict],
                  walls: dict, table: str) -> None:
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    doc = {"command": " ".join(sys.argv), "args": {k: v for k, v in vars(args).items()},
           "summary": records, "wall_seconds": {f"{d}/{m}": s for (d, m), s in walls.items()},
           "table": table}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Run the bench and print the table (one line on stderr, exit 2, for bad input or data)."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            rows, walls = run(args, out)
        else:
            with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as tmp:
                rows, walls = run(args, Path(tmp))
    except (ValueError, OSError) as e:  # ExperimentError, DataError, an unusable --out
        print(f"bench_accuracy: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    table, records = summarise(rows, walls)
    print()
    print(table)
    print(f"\ntest accuracy (%), mean ± std (ddof=0) over {args.repeats} repetitions; "
          f"total wall time {time.perf_counter() - t0:.1f} s")
    if args.out:
        write_outputs(Path(args.out), args, rows, records, walls, table)
        print(f"results.csv and summary.json in {args.out}")


if __name__ == "__main__":
    main()
