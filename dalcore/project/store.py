"""The project store: one SQLite database that is the single source of truth of a project.

A project is a folder::

    PROJECT/project.db        images, files, classes, labels (with history), queries, models
    PROJECT/cache/            decoded pixels (uint8, the preset's input size), pre-training cache
    PROJECT/queries/NNNN.csv  the batches written by ``dalcore query``
    PROJECT/models/NNNN.pt    the weights of each trained model

Identity is by content: an *image* is a distinct file content (SHA-256); *files* map paths
(relative to the image folder, ``/``-separated) to images, so a renamed or moved file keeps its
labels and two identical files are one image. Labels are never overwritten: every change is a new
row of ``labels`` (``class_id`` NULL means "no label"), and an image's label is the class of its
latest row. The database runs in WAL mode with ``synchronous=FULL``: a label is on disk when the
call that gave it returns, and a ``kill -9`` loses nothing that was committed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "Project", "ProjectError", "LABEL_SOURCES"]

#: Version of the database layout; a database written by a newer dalcore is refused.
SCHEMA_VERSION = 1
DB_NAME = "project.db"
#: Where a label may come from.
LABEL_SOURCES = ("human", "import", "undo")

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE classes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE images(
    id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    reason TEXT, cache_row INTEGER, gray INTEGER, width INTEGER, height INTEGER,
    mode TEXT, added REAL NOT NULL);
CREATE TABLE files(
    path TEXT PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);
CREATE INDEX files_image ON files(image_id);
CREATE TABLE labels(
    id INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL REFERENCES images(id),
    class_id INTEGER REFERENCES classes(id), source TEXT NOT NULL, query_id INTEGER,
    created REAL NOT NULL);
CREATE INDEX labels_image ON labels(image_id, id);
CREATE TABLE queries(
    id INTEGER PRIMARY KEY, created REAL NOT NULL, method TEXT NOT NULL, budget INTEGER NOT NULL,
    options TEXT NOT NULL, model_id INTEGER, file TEXT);
CREATE TABLE query_items(
    query_id INTEGER NOT NULL REFERENCES queries(id), rank INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id), predicted INTEGER, confidence REAL,
    PRIMARY KEY(query_id, rank));
CREATE TABLE skips(
    query_id INTEGER NOT NULL, image_id INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY(query_id, image_id));
CREATE TABLE models(
    id INTEGER PRIMARY KEY, created REAL NOT NULL, summary TEXT NOT NULL, weights TEXT);
CREATE TABLE predictions(
    model_id INTEGER NOT NULL REFERENCES models(id), image_id INTEGER NOT NULL,
    class_id INTEGER NOT NULL, confidence REAL NOT NULL, pseudo_class INTEGER,
    pseudo_weight REAL, PRIMARY KEY(model_id, image_id));
"""

#: The current label of every image that has one.
_CURRENT = """
SELECT l.image_id, l.class_id FROM labels l
JOIN (SELECT image_id, MAX(id) AS last FROM labels GROUP BY image_id) m ON l.id = m.last
WHERE l.class_id IS NOT NULL
"""


class ProjectError(ValueError):
    """Something about a project the user must fix: the message is one line naming it."""


@dataclass(frozen=True)
class ImageRow:
    """A readable image present in the image folder."""

    id: int
    path: str
    cache_row: int
    gray: bool


class Project:
    """An open project: the database connection and the project's folders.

    Use :meth:`create` for a new project and :meth:`open` for an existing one; close it (or use
    it as a context manager) when done. A connection belongs to one thread; the web server opens
    one per request.
    """

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self._meta = dict(db.execute("SELECT key, value FROM meta"))

    # ---------------------------------------------------------------- lifecycle

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @classmethod
    def create(cls, root: str | os.PathLike, *, image_dir: str | os.PathLike,
               classes: Sequence[str], preset: str, image_size: int, seed: int) -> Project:
        """A new project in ``root`` (which must not hold one yet)."""
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ProjectError(f"{root}: already a dalcore project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root}: exists and is not a folder")
        try:
            for sub in ("", "cache", "queries", "models"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProjectError(f"{root}: cannot create the project folder ({e.strerror})") from None
        tmp = root / (DB_NAME + ".new")
        tmp.unlink(missing_ok=True)
        db = cls._connect(tmp)
        db.executescript(_SCHEMA)  # a fresh file: atomicity comes from the final rename
        with _transaction(db):
            meta = {
                "schema_version": str(SCHEMA_VERSION), "image_dir": str(Path(image_dir)),
                "preset": preset, "image_size": str(int(image_size)), "seed": str(int(seed)),
                "created": f"{time.time():.3f}", "dalcore_version": _version(),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.executemany("INSERT INTO classes VALUES (?, ?)", enumerate(classes))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        os.replace(tmp, root / DB_NAME)  # a half-created project never looks like a project
        return cls.open(root)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Project:
        """Open the project in ``root``; refuses a missing project or a newer database."""
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file():
            raise ProjectError(f"{root}: not a dalcore project (no {DB_NAME}; create one with "
                               "`dalcore init`)")
        try:
            db = cls._connect(path)
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise ProjectError(f"{path}: not a readable project database ({e})") from None
        if version is None or not str(version[0]).isdigit():
            db.close()
            raise ProjectError(f"{path}: not a dalcore project database (no schema version)")
        if int(version[0]) > SCHEMA_VERSION:
            db.close()
            raise ProjectError(
                f"{path}: written by a newer dalcore (database version {version[0]}, this "
                f"dalcore {_version()} reads up to {SCHEMA_VERSION}); upgrade dalcore")
        return cls(root, db)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- settings

    @property
    def image_dir(self) -> Path:
        """The folder of the images (as given at init)."""
        return Path(self._meta["image_dir"])

    @property
    def preset(self) -> str:
        return self._meta["preset"]

    @property
    def image_size(self) -> int:
        return int(self._meta["image_size"])

    @property
    def seed(self) -> int:
        return int(self._meta["seed"])

    def classes(self) -> list[str]:
        """Class names in order (class id = position)."""
        return [r[0] for r in self.db.execute("SELECT name FROM classes ORDER BY id")]

    def transaction(self):
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error)."""
        return _transaction(self.db)

    # ---------------------------------------------------------------- images and files

    def images(self) -> list[ImageRow]:
        """Readable images that have at least one file in the folder, by id; the path shown is
        the first of their files in path order."""
        rows = self.db.execute(
            "SELECT i.id, MIN(f.path), i.cache_row, i.gray FROM images i "
            "JOIN files f ON f.image_id = i.id WHERE i.status = 'ok' "
            "GROUP BY i.id ORDER BY i.id").fetchall()
        return [ImageRow(int(a), str(p), int(c), bool(g)) for a, p, c, g in rows]

    def unreadable(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be read as an image."""
        return [(p, r) for p, r in self.db.execute(
            "SELECT f.path, i.reason FROM files f JOIN images i ON i.id = f.image_id "
            "WHERE i.status != 'ok' ORDER BY f.path")]

    def image_id_of(self, path: str) -> int | None:
        """The image of a file path (relative, ``/``-separated), or None."""
        r = self.db.execute("SELECT image_id FROM files WHERE path = ?", (path,)).fetchone()
        return None if r is None else int(r[0])

    def path_of(self, image_id: int) -> str | None:
        """The display path of an image present in the folder, or None."""
        r = self.db.execute("SELECT MIN(path) FROM files WHERE image_id = ?",
                            (int(image_id),)).fetchone()
        return None if r is None or r[0] is None else str(r[0])

    # ---------------------------------------------------------------- labels

    def current_labels(self) -> dict[int, int]:
        """image id -> class id of every labeled image (present in the folder or not)."""
        return {int(i): int(c) for i, c in self.db.execute(_CURRENT)}

    def label_of(self, image_id: int) -> int | None:
        r = self.db.execute("SELECT class_id FROM labels WHERE image_id = ? ORDER BY id DESC "
                            "LIMIT 1", (int(image_id),)).fetchone()
        return None if r is None or r[0] is None else int(r[0])

    def set_label(self, image_id: int, class_id: int | None, *, source: str = "human",
                  query_id: int | None = None) -> bool:
        """Give ``image_id`` the class ``class_id`` (None: no label), in its own transaction.

        Returns False (and writes nothing) when that is already the image's label, so two tabs
        giving the same label record it once. History is kept: nothing is overwritten.
        """
        with self.transaction():
            return self._set_label(image_id, class_id, source, query_id, time.time())

    def set_labels(self, items: Iterable[tuple[int, int | None]], *, source: str) -> int:
        """Several labels in one transaction (all or none); returns how many changed."""
        now = time.time()
        with self.transaction():
            return sum(self._set_label(i, c, source, None, now) for i, c in items)

    def _set_label(self, image_id: int, class_id: int | None, source: str,
                   query_id: int | None, now: float) -> bool:
        if source not in LABEL_SOURCES:
            raise ValueError(f"source: expected one of {LABEL_SOURCES}, got {source!r}")
        if self.db.execute("SELECT 1 FROM images WHERE id = ?", (int(image_id),)).fetchone() \
                is None:
            raise ProjectError(f"image {image_id}: no such image in the project")
        if class_id is not None and not 0 <= int(class_id) < len(self.classes()):
            raise ProjectError(f"class {class_id}: no such class in the project")
        if self.label_of(image_id) == (None if class_id is None else int(class_id)):
            return False
        self.db.execute(
            "INSERT INTO labels(image_id, class_id, source, query_id, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (int(image_id), None if class_id is None else int(class_id), source,
             None if query_id is None else int(query_id), now))
        return True

    def label_history(self, image_id: int) -> list[tuple[int | None, str, float]]:
        """(class id or None, source, time) of every label row of an image, oldest first."""
        return [(c if c is None else int(c), s, float(t)) for c, s, t in self.db.execute(
            "SELECT class_id, source, created FROM labels WHERE image_id = ? ORDER BY id",
            (int(image_id),))]

    # ---------------------------------------------------------------- queries and models

    def next_query_id(self) -> int:
        r = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM queries").fetchone()
        return int(r[0])

    def last_query(self) -> dict | None:
        """The latest query: id, method, budget, options, model id, file, items."""
        r = self.db.execute("SELECT id, created, method, budget, options, model_id, file "
                            "FROM queries ORDER BY id DESC LIMIT 1").fetchone()
        return None if r is None else self._query_doc(r)

    def _query_doc(self, r: Sequence[Any]) -> dict:
        qid = int(r[0])
        items = self.db.execute(
            "SELECT q.image_id, q.predicted, q.confidence, "
            "(SELECT MIN(path) FROM files f WHERE f.image_id = q.image_id), "
            "EXISTS(SELECT 1 FROM skips s WHERE s.query_id = q.query_id "
            "AND s.image_id = q.image_id) "
            "FROM query_items q WHERE q.query_id = ? ORDER BY q.rank", (qid,)).fetchall()
        return {
            "id": qid, "created": float(r[1]), "method": r[2], "budget": int(r[3]),
            "options": json.loads(r[4]), "model_id": r[5], "file": r[6],
            "items": [{"image_id": int(i), "predicted": p, "confidence": c, "path": path,
                       "skipped": bool(s)} for i, p, c, path, s in items],
        }

    def skip(self, query_id: int, image_id: int) -> None:
        """Mark an image of a query as "skip / not sure" (idempotent)."""
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO skips VALUES (?, ?, ?)",
                            (int(query_id), int(image_id), time.time()))

    def last_model(self) -> dict | None:
        """The latest trained model's summary (with ``id`` and ``weights``), or None."""
        r = self.db.execute("SELECT id, summary, weights FROM models ORDER BY id DESC LIMIT 1"
                            ).fetchone()
        if r is None:
            return None
        doc = json.loads(r[1])
        doc.update(id=int(r[0]), weights=r[2])
        return doc

    def predictions(self, model_id: int) -> dict[int, tuple[int, float, int | None, float | None]]:
        """image id -> (class, confidence, pseudo class, pseudo weight) of a model."""
        return {int(i): (int(c), float(p), pc, pw) for i, c, p, pc, pw in self.db.execute(
            "SELECT image_id, class_id, confidence, pseudo_class, pseudo_weight FROM predictions "
            "WHERE model_id = ?", (int(model_id),))}

    def record_model(self, summary: dict, weights: str | None,
                     predictions: Sequence[tuple[int, int, float, int | None, float | None]]
                     ) -> int:
        """Store a trained model's summary and its predictions; returns the model id."""
        with self.transaction():
            cur = self.db.execute("INSERT INTO models(created, summary, weights) VALUES (?, ?, ?)",
                                  (time.time(), json.dumps(summary), weights))
            mid = int(cur.lastrowid)
            self.db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                                [(mid, *p) for p in predictions])
        return mid

    def record_query(self, qid: int, *, method: str, budget: int, options: dict,
                     model_id: int | None, file: str,
                     items: Sequence[tuple[int, int | None, float | None]]) -> None:
        """Store a query and its items (image id, predicted class, confidence) in rank order."""
        with self.transaction():
            self.db.execute("INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (qid, time.time(), method, int(budget), json.dumps(options),
                             model_id, file))
            self.db.executemany("INSERT INTO query_items VALUES (?, ?, ?, ?, ?)",
                                [(qid, r, *it) for r, it in enumerate(items)])

    def counts(self) -> dict:
        """Numbers shown to the user: images, unreadable files, labeled images by class (SQL
        aggregates: cheap enough to answer every label the page sends)."""
        present = ("i.status = 'ok' AND EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id)")
        n_images = self.db.execute(f"SELECT COUNT(*) FROM images i WHERE {present}").fetchone()
        unreadable = self.db.execute(
            "SELECT COUNT(*) FROM files f JOIN images i ON i.id = f.image_id "
            "WHERE i.status != 'ok'").fetchone()
        per_class = [0] * len(self.classes())
        for c, n in self.db.execute(
                f"SELECT cur.class_id, COUNT(*) FROM ({_CURRENT}) cur JOIN images i "
                f"ON i.id = cur.image_id WHERE {present} GROUP BY cur.class_id"):
            per_class[int(c)] = int(n)
        return {"images": int(n_images[0]), "unreadable": int(unreadable[0]),
                "labeled": sum(per_class), "per_class": per_class}


@contextmanager
def _transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _version() -> str:
    from .. import __version__

    return str(__version__)
