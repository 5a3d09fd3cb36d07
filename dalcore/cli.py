"""The ``dalcore`` command line.

- ``dalcore run``: an active-learning experiment (defaults: embedded digits, methods
  random,uncertainty,coreset,ceal, 5 cycles, 3 repetitions, the ``cpu`` preset, into
  runs/<timestamp>). Run the same command with the same ``--out`` again to resume it, or with
  more --cycles, --repeats or --methods to extend it.
- ``dalcore report DIR...``: rebuild summary.md and curves.png from one or more run folders.
- ``dalcore info``: how this build of dalcore was made.
- ``dalcore bench kcenter|graph|propagate [--data ...] [--quick]``: the speed benches, from the
  installed package.
- ``dalcore init | query | import | export | serve``: label your own images (a project).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USAGE = 2


def _cmd_info(_args: argparse.Namespace) -> int:
    import dalcore

    info = dalcore.build_info()
    print(f"dalcore {info['version']}")
    print(f"  compiler     : {info['compiler']}")
    print(f"  SIMD level   : {info['simd']}")
    print(f"  CPU threads  : {info['threads']}")
    print(f"  CUDA built   : {'yes' if info['cuda_built'] else 'no'}")
    print(f"  GPU present  : {'yes' if info['cuda_devices'] > 0 else 'no'}"
          f" ({info['cuda_devices']} device(s))")
    try:
        from dalcore import _core_omp  # noqa: F401

        print("  OpenMP twin  : yes (GPU-path kernels testable on the CPU)")
    except ImportError:
        print("  OpenMP twin  : no")
    return 0


def _fail(message: str) -> int:
    print(f"dalcore: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        from .data import DataError
        from .experiment import ExperimentConfig, ExperimentError, parse_methods, run_experiment
    except ImportError as e:  # torch (or another package of dalcore[torch]) is missing
        return _fail(f"dalcore run needs {e.name or 'torch'}, which is not installed: "
                     "pip install 'dalcore[torch]'")
    cfg = ExperimentConfig(
        dataset=args.dataset, data_dir=args.data_dir, methods=parse_methods(args.methods),
        budget=args.budget, cycles=args.cycles, repeats=args.repeats, preset=args.preset,
        epochs=args.epochs, width=args.width, pool_size=args.pool_size, device=args.device,
        seed=args.seed, out=args.out, pretrain=args.pretrain, semi=args.semi, graph=args.graph,
        class_balance=args.class_balance, input_graph=args.graph_input, threads=args.threads,
        progress=not args.quiet, verbose=True, save_models=args.save_models, initial=args.initial,
    )
    try:
        run_experiment(cfg)
    except (ExperimentError, DataError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command (same --out) again to resume", file=sys.stderr)
        return 130
    except OSError as e:  # the disk filled up, a file became unwritable, ... mid-run
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _fail(f"{where}{e.strerror or e}; fix it and run the same command (same --out) "
                     "again to resume")
    except MemoryError:
        return _fail("out of memory; try a smaller --width, --pool-size or --preset cpu")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_report

    out = args.out if args.out else (args.dirs[0] if len(args.dirs) == 1 else "report")
    try:
        table = write_report(args.dirs, out)
    except ValueError as e:
        return _fail(str(e))
    print(table)
    print(f"wrote {Path(out) / 'summary.md'} and {Path(out) / 'curves.png'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args.bench, args.bench_args)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dalcore`` command."""
    from .experiment import DEFAULT_METHODS, DEVICES, GRAPH_INPUTS, GRAPH_MODES, INITIAL_CHOICES
    from .presets import PRESETS

    p = _Parser(prog="dalcore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="print how this build of dalcore was made")
    info.set_defaults(func=_cmd_info)

    run = sub.add_parser(
        "run", help="run (or resume) an active-learning experiment",
        description="Run an active-learning experiment; run the same command with the same --out "
        "again to resume it after an interruption, or with more --cycles, --repeats or --methods "
        "to extend it (finished cycles are reused).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("--dataset", default="digits",
                     help="digits (embedded), mnist, fashion-mnist, cifar10, cifar100, svhn, "
                     "folder")
    run.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    run.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                     help="comma-separated acquisition strategies")
    run.add_argument("--budget", type=int, default=20,
                     help="labels per cycle (and size of the initial labeled set)")
    run.add_argument("--cycles", type=int, default=5, help="active-learning cycles")
    run.add_argument("--repeats", type=int, default=3,
                     help="repetitions (repeat r uses a seed hashed from (--seed, r))")
    run.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                     help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    run.add_argument("--epochs", type=int, default=None,
                     help="epochs per cycle (overrides the preset)")
    run.add_argument("--width", type=float, default=None,
                     help="ConvNet width multiplier (overrides the preset)")
    run.add_argument("--pool-size", type=int, default=None,
                     help="use a class-balanced random subset of N training images")
    run.add_argument("--device", default="auto", choices=DEVICES,
                     help="auto = cuda when available, else cpu")
    run.add_argument("--seed", type=int, default=0, help="base seed")
    run.add_argument("--out", default=None, help="output folder (default runs/<timestamp>)")
    run.add_argument("--pretrain", action="store_true",
                     help="DeepCluster pre-training (PRE), cached as pretrain_r<repeat>.pt "
                     "(checkpointed as it goes: an interrupted pre-training resumes)")
    run.add_argument("--semi", action="store_true",
                     help="semi-supervision by label propagation (SEMI)")
    run.add_argument("--graph", default="reciprocal", choices=GRAPH_MODES,
                     help="k-NN graph of --semi")
    run.add_argument("--class-balance", action="store_true",
                     help="class-balanced pseudo-label weights in --semi")
    run.add_argument("--graph-input", default="none", choices=GRAPH_INPUTS,
                     help="--semi's graph also on the images: none (the paper's: the model's "
                     "features), first (the images for the first propagation), always (model "
                     "and images side by side), only (the images alone)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: the preset's, 1 for cpu, torch's choice "
                     "for paper)")
    run.add_argument("--initial", default="balanced", choices=INITIAL_CHOICES,
                     help="cycle 0's labeled set: balanced (the paper's: class-balanced, it "
                     "reads the labels) or label-free (random, kcenter, typiclust, probcover "
                     "on the pixels, or on the DeepCluster features with --pretrain)")
    run.add_argument("--save-models", action="store_true",
                     help="keep each cycle's trained weights in models/<method>_r<repeat>_c<cycle>"
                     ".pt (a torch state_dict of ConvNet13)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="rebuild summary.md and curves.png from run folders")
    rep.add_argument("dirs", nargs="+", metavar="DIR", help="run folders (results are merged)")
    rep.add_argument("--out", default=None,
                     help="where to write (default: the folder itself when one is given, "
                     "else ./report)")
    rep.set_defaults(func=_cmd_report)

    bench = sub.add_parser(
        "bench", help="run a speed bench (kcenter, graph, propagate) from the installed package",
        description="Run one of dalcore's speed benches; `dalcore bench NAME --help` lists its "
        "options (--data, --quick, ...).")
    bench.add_argument("bench", choices=["kcenter", "graph", "propagate"], help="which bench")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="...",
                       help="the bench's own options")
    bench.set_defaults(func=_cmd_bench)

    from .project.cli import add_commands

    add_commands(sub)  # the human loop: init, query, import, export, serve
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dalcore`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
