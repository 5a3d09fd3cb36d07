"""``dalcore import`` and ``dalcore export``: labels and predictions in and out as CSV.

Import reads ``path,label`` rows (paths relative to the image folder, or absolute inside it;
labels are the class names given at init), checks every row first and then stores all of them in
one transaction: a file with one bad row stores nothing. Export writes ``labels.csv`` (the
annotator's labels), ``predictions.csv`` (the last model's class and confidence for every readable
image, with label propagation's pseudo-label and weight when that model was trained with SEMI),
``model.pt`` (its ``state_dict``) and ``model.json`` (a small model card).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from .store import Project, ProjectError

__all__ = ["export_project", "import_labels", "normalise_path"]


def normalise_path(project: Project, text: str) -> str:
    """A user's path as the project's key: relative to the image folder, ``/``-separated."""
    p = text.strip().replace("\\", "/")
    if os.path.isabs(p):
        try:
            p = Path(p).resolve().relative_to(project.image_dir.resolve()).as_posix()
        except ValueError:
            return p
    parts = [s for s in PurePosixPath(p).parts if s not in ("", ".")]
    return "/".join(parts)


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, path, label) of every data row; ProjectError for a malformed file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise ProjectError(f"{path}: expected a header line with the columns path,label")
            ip, il = header.index("path"), header.index("label")
            rows = []
            for rec in reader:
                if not any(c.strip() for c in rec):
                    continue
                if len(rec) <= max(ip, il):
                    raise ProjectError(f"{path}, line {reader.line_num}: expected the columns "
                                       "path,label")
                rows.append((reader.line_num, rec[ip], rec[il].strip()))
    except FileNotFoundError:
        raise ProjectError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not a UTF-8 text (CSV) file") from None
    except csv.Error as e:
        raise ProjectError(f"{path}: not a readable CSV file ({e})") from None
    except IsADirectoryError:
        raise ProjectError(f"{path}: is a folder, expected a CSV file") from None
    return rows


def import_labels(project: Project, csv_path: str | os.PathLike) -> tuple[int, int]:
    """Store the labels of a ``path,label`` CSV file; returns (rows, labels changed).

    Raises
    ------
    ProjectError
        Naming the file, the line and what is wrong (unknown class, a path that is not an image
        of the project or whose file has gone, two different labels for one image), before
        anything is stored.
    """
    path = Path(csv_path)
    rows = _read_rows(path)
    if not rows:
        raise ProjectError(f"{path}: no label rows")
    classes = {c: i for i, c in enumerate(project.classes())}
    readable = {im.id for im in project.images()}
    wanted: dict[int, tuple[int, int]] = {}
    for line, raw, label in rows:
        where = f"{path}, line {line}"
        if label not in classes:
            raise ProjectError(f"{where}: unknown class {label!r}; the project's classes are "
                               f"{', '.join(classes)}")
        key = normalise_path(project, raw)
        img = project.image_id_of(key)
        if img is None:
            gone = not (project.image_dir / key).is_file()
            raise ProjectError(
                f"{where}: {raw!r} is not an image of this project"
                + (" (no such file in the image folder: removed or renamed?)" if gone else
                   " (not scanned yet: run `dalcore init PROJECT --rescan`)"))
        if img not in readable:
            raise ProjectError(f"{where}: {raw!r} is a file that could not be read as an image")
        if img in wanted and wanted[img][0] != classes[label]:
            raise ProjectError(f"{where}: {raw!r} (or an identical file) was already given "
                               f"another label on line {wanted[img][1]}")
        wanted[img] = (classes[label], line)
    changed = project.set_labels(((i, c) for i, (c, _line) in wanted.items()), source="import")
    return len(rows), changed


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def export_project(project: Project, out: str | os.PathLike) -> list[Path]:
    """Write labels, predictions, weights and the model card into ``out``; returns the files."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProjectError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    classes = project.classes()
    images = project.images()
    labels = project.current_labels()
    sources = dict(project.db.execute(
        "SELECT l.image_id, l.source FROM labels l JOIN (SELECT image_id, MAX(id) m FROM labels "
        "GROUP BY image_id) t ON l.id = t.m"))
    human = [[im.path, classes[labels[im.id]]] for im in images
             if im.id in labels and sources.get(im.id) in ("human", "import", "undo")]
    written = [out / "labels.csv"]
    _write_csv(written[0], ["path", "label"], human)
    model = project.last_model()
    if model is None:
        return written
    preds = project.predictions(model["id"])
    semi = bool(model.get("semi"))
    header = ["path", "label", "confidence"] + (["pseudo_label", "pseudo_weight"] if semi else [])
    rows = []
    for im in images:
        if im.id not in preds:
            continue  # added after the last model was trained
        c, conf, pc, pw = preds[im.id]
        row = [im.path, classes[c], f"{conf:.6f}"]
        if semi:
            row += [classes[pc] if pc is not None else "", "" if pw is None else f"{pw:.6f}"]
        rows.append(row)
    _write_csv(out / "predictions.csv", header, rows)
    shutil.copyfile(project.root / model["weights"], out / "model.pt")
    card = {k: model.get(k) for k in ("classes", "preset", "width", "image_size", "channels",
                                      "method", "semi", "pretrain", "labels_used", "accuracy_cv",
                                      "accuracy_cv_std", "cv_folds", "mean", "std")}
    card.update(dalcore_version=_version(), model_id=model["id"],
                architecture="dalcore.models.ConvNet13(in_channels=channels, "
                             "num_classes=len(classes), width=width)",
                input="RGB or L image resized to image_size x image_size, scaled to [0, 1], "
                      "normalised per channel with mean and std")
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return written + [out / "predictions.csv", out / "model.pt", out / "model.json"]


def _version() -> str:
    from .. import __version__

    return str(__version__)
