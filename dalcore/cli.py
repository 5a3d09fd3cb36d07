"""The ``dalcore`` command line: ``dalcore info`` (more subcommands arrive with the experiment)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dalcore`` command."""
    p = argparse.ArgumentParser(prog="dalcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print how this build of dalcore was made")
    info.set_defaults(func=_cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dalcore`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
