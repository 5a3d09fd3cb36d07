"""The human loop's commands: ``dalcore init | query | import | export | serve``.

Registered into the ``dalcore`` parser by :func:`add_commands`. Every user error is one line on
stderr and exit code 2 (:class:`~dalcore.project.store.ProjectError`, file-system and database
errors included); nothing already stored is lost by a failed command.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable

from .store import ProjectError

__all__ = ["add_commands"]

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"dalcore: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map every expected failure of a project command to one line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ProjectError as e:
            return _fail(str(e))
        except sqlite3.DatabaseError as e:
            return _fail(f"{args.project}: project database error ({e})")
        except OSError as e:
            where = e.filename or args.project
            return _fail(f"{where}: {e.strerror or e}")
        except KeyboardInterrupt:
            print("\ninterrupted; every label given so far is stored", file=sys.stderr)
            return 130

    return run


def _cmd_init(args: argparse.Namespace) -> int:
    from .init import init_project
    from .transfer import import_labels

    project, report, created = init_project(
        args.project, images=args.images, classes=args.classes, preset=args.preset,
        seed=args.seed, progress=not args.quiet)
    with project:
        verb = "created" if created else "rescanned"
        print(f"{verb} project {args.project} (images in {project.image_dir}, classes "
              f"{','.join(project.classes())}, preset {project.preset})")
        for line in report.lines():
            print(line)
        if args.labels:
            rows, changed = import_labels(project, args.labels)
            print(f"imported {rows} label row(s) from {args.labels} ({changed} label(s) changed)")
        c = project.counts()
        print(f"{c['images']} readable image(s), {c['labeled']} labeled, {c['unreadable']} "
              "unreadable file(s)")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .query import QueryOptions, run_query

    opts = QueryOptions(budget=args.budget, method=args.method, semi=args.semi,
                        pretrain=args.pretrain, device=args.device, out=args.out, cv=args.cv,
                        progress=not args.quiet)
    res = run_query(args.project, opts)
    for line in res.lines:
        print(line)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .store import Project
    from .transfer import import_labels

    with Project.open(args.project) as project:
        rows, changed = import_labels(project, args.file)
        c = project.counts()
    print(f"imported {rows} label row(s) ({changed} label(s) changed); {c['labeled']} of "
          f"{c['images']} images labeled")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .store import Project
    from .transfer import export_project

    with Project.open(args.project) as project:
        files = export_project(project, args.out)
    for f in files:
        print(f)
    if len(files) == 1:
        print("note: no model trained yet (run `dalcore query`): labels only")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args.project, host=args.host, port=args.port, token=args.token,
                 open_browser=False)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add init, query, import, export and serve to the ``dalcore`` sub-parsers."""
    from ..presets import PRESETS
    from .query import QUERY_METHODS

    p = sub.add_parser("init", help="create a labeling project from a folder of images (or "
                       "rescan one)", description="Create PROJECT from the images under "
                       "--images (scanned recursively), or rescan it when it exists.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--images", metavar="DIR", help="folder of the images to label")
    p.add_argument("--classes", help="comma-separated class names (shortcuts 1..9, 0, a..z)")
    p.add_argument("--labels", metavar="FILE.csv", help="import path,label rows after the scan")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                   help="training preset (input size, network width, training length)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--rescan", action="store_true",
                   help="rescan an existing project (the default when PROJECT exists)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guarded(_cmd_init))

    p = sub.add_parser("query", help="train on the labels and write the next batch to label")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--budget", type=int, required=True, help="images in the batch")
    p.add_argument("--method", default="uncertainty", choices=QUERY_METHODS)
    p.add_argument("--semi", action="store_true", help="label propagation over the unlabeled "
                   "images while training (SEMI)")
    p.add_argument("--pretrain", action="store_true",
                   help="DeepCluster pre-training on all images (PRE), cached in the project")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--cv", type=int, default=3, help="folds of the cross-validated accuracy "
                   "estimate (0: off; each fold trains one more model)")
    p.add_argument("--out", metavar="FILE", help="write the batch here instead of "
                   "PROJECT/queries/NNNN.csv")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_guarded(_cmd_query))

    p = sub.add_parser("import", help="store labels from a path,label CSV file")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=_guarded(_cmd_import))

    p = sub.add_parser("export", help="write labels, predictions, weights and a model card")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--out", metavar="DIR", required=True)
    p.set_defaults(func=_guarded(_cmd_export))

    p = sub.add_parser("serve", help="the annotator's web page (local)")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this "
                   "machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", help="refuse requests that do not carry this token")
    p.set_defaults(func=_guarded(_cmd_serve))
