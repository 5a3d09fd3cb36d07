"""``dalcore init``: create a project from an image folder, or rescan an existing one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .scan import ScanReport, scan
from .store import DB_NAME, Project, ProjectError

__all__ = ["init_project", "parse_classes"]


def parse_classes(text: str | None) -> list[str] | None:
    """``"cat,dog"`` -> ``["cat", "dog"]``; ProjectError for blanks, duplicates or < 2 classes."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if any(not c for c in names):
        raise ProjectError(f"--classes: empty class name in {text!r}")
    seen: set[str] = set()
    for c in names:
        if c in seen:
            raise ProjectError(f"--classes: class {c!r} is listed twice")
        seen.add(c)
    if len(names) < 2:
        raise ProjectError(f"--classes: expected at least two classes, got {text!r}")
    if len(names) > 36:
        raise ProjectError(f"--classes: at most 36 classes (one keyboard shortcut each), "
                           f"got {len(names)}")
    return names


def _check_images_dir(images: str | os.PathLike | None) -> Path:
    if images is None:
        raise ProjectError("--images: the folder of images to label is required for a new "
                           "project")
    d = Path(images).expanduser()
    if not d.is_dir():
        raise ProjectError(f"--images: {d} is not a folder")
    return d.resolve()


def init_project(root: str | os.PathLike, *, images: str | os.PathLike | None,
                 classes: str | None, preset: str = "cpu", seed: int = 0,
                 progress: bool = True) -> tuple[Project, ScanReport, bool]:
    """Create the project (scanning its folder) or rescan it when it exists.

    Returns ``(project, report, created)``; the caller closes the project. A new project whose
    folder holds no readable image is removed again (nothing of the user's is touched).
    """
    from ..presets import get_preset

    root = Path(root).expanduser()
    names = parse_classes(classes)
    if (root / DB_NAME).exists():
        return _rescan(root, images, names, progress) + (False,)
    try:
        p = get_preset(preset)
    except ValueError as e:
        raise ProjectError(f"--preset: {e}") from None
    image_dir = _check_images_dir(images)
    if names is None:
        raise ProjectError("--classes: the class names (comma-separated) are required for a new "
                           "project")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProjectError(f"--seed: expected a non-negative integer, got {seed!r}")
    made_root = not root.exists()
    project = Project.create(root, image_dir=image_dir, classes=names, preset=p.name,
                             image_size=p.image_size or 32, seed=seed)
    try:
        report = scan(project, progress=progress)
        _require_images(project, report)
    except BaseException:
        project.close()
        _remove_new_project(root, made_root)
        raise
    return project, report, True


def _rescan(root: Path, images: str | os.PathLike | None, names: list[str] | None,
            progress: bool) -> tuple[Project, ScanReport]:
    project = Project.open(root)
    try:
        if names is not None and names != project.classes():
            raise ProjectError(f"--classes: the project's classes are "
                               f"{','.join(project.classes())}; they cannot be changed")
        if images is not None and _check_images_dir(images) != project.image_dir.resolve():
            raise ProjectError(f"--images: the project's image folder is {project.image_dir}")
        report = scan(project, progress=progress)
        if not project.images():
            raise ProjectError(f"{project.image_dir}: no readable image left in the folder "
                               "(the project's labels are kept)")
    except BaseException:
        project.close()
        raise
    return project, report


def _require_images(project: Project, report: ScanReport) -> None:
    if report.files == 0:
        raise ProjectError(f"--images: no image file (png, jpg, jpeg, webp, bmp, gif, tif, tiff) "
                           f"in {project.image_dir}")
    if not project.images():
        first = report.unreadable[0] if report.unreadable else ("?", "?")
        raise ProjectError(f"--images: none of the {report.files} image file(s) in "
                           f"{project.image_dir} could be read (e.g. {first[0]}: {first[1]})")


def _remove_new_project(root: Path, made_root: bool) -> None:
    """Undo a failed creation: only what ``Project.create`` made."""
    if made_root:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (root / name).unlink(missing_ok=True)
    for f in (root / "cache").glob("pixels_*.u8"):
        f.unlink(missing_ok=True)
    for sub in ("cache", "queries", "models"):
        try:
            (root / sub).rmdir()  # only when empty: never a folder of the user's
        except OSError:
            pass
