"""Advisory locks that keep two ``query`` runs, or two ``serve`` processes, off one project.

An exclusive ``flock`` on a file in the project folder: the kernel drops it when the process
exits, however it exits (``kill -9`` included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .store import DB_NAME, ProjectError

__all__ = ["ProjectLock"]

_WHAT = {"query": "a query (training and selection) is already running on this project",
         "serve": "another `dalcore serve` is already serving this project"}


class ProjectLock:
    """``with ProjectLock(root, "query"):`` holds the project's query lock or raises
    :class:`ProjectError` at once when another process (or thread) holds it."""

    def __init__(self, root: str | os.PathLike, name: str) -> None:
        if name not in _WHAT:
            raise ValueError(f"name: expected one of {sorted(_WHAT)}, got {name!r}")
        self.path = Path(root) / f".{name}.lock"
        self.name = name
        self._fd: int | None = None

    def acquire(self) -> None:
        if not (self.path.parent / DB_NAME).is_file():
            raise ProjectError(f"{self.path.parent}: not a dalcore project (no {DB_NAME}; "
                               "create one with `dalcore init`)")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ProjectError(f"{self.path.parent}: {_WHAT[self.name]}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
