"""A project's images and labels as a :class:`dalcore.data.Dataset` for :mod:`dalcore.loop`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scan import read_cache
from .store import Project, ProjectError

__all__ = ["ProjectData", "load_project_data"]


@dataclass
class ProjectData:
    """The training view of a project.

    Attributes
    ----------
    data : dalcore.data.Dataset
        Every readable image of the folder as ``x_train`` (normalised float32), ``y_train`` the
        current label or -1; an empty test set (a real user has none).
    ids : np.ndarray
        Image id of each row of ``x_train``.
    paths : list of str
        Display path of each row.
    labeled : np.ndarray
        Rows with a label (sorted).
    pool : np.ndarray
        Rows without one (sorted).
    """

    data: object
    ids: np.ndarray
    paths: list[str]
    labeled: np.ndarray
    pool: np.ndarray


def load_project_data(project: Project) -> ProjectData:
    """Read the cache and the labels into a :class:`ProjectData` (1 channel when every image
    is grayscale, 3 otherwise)."""
    import torch

    from ..data.core import Dataset, _channel_stats, scaled_translate

    images = project.images()
    if not images:
        raise ProjectError(f"{project.root}: the project has no readable image "
                           f"(image folder {project.image_dir})")
    pixels = read_cache(project, np.array([im.cache_row for im in images], dtype=np.int64))
    if all(im.gray for im in images):
        pixels = pixels[:, :1]
    x = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
    mean, std = _channel_stats(x)
    x.sub_(mean.to(torch.float32).view(1, -1, 1, 1)).div_(std.to(torch.float32).view(1, -1, 1, 1))
    classes = project.classes()
    labels = project.current_labels()
    ids = np.array([im.id for im in images], dtype=np.int64)
    y = np.array([labels.get(int(i), -1) for i in ids], dtype=np.int64)
    size = int(x.shape[-1])
    data = Dataset(
        name=f"project:{project.root.name}", x_train=x.contiguous(), y_train=torch.from_numpy(y),
        x_test=x[:0].clone(), y_test=torch.zeros(0, dtype=torch.int64),
        num_classes=len(classes), translate=scaled_translate(4, size), flip=True,
        mean=[float(v) for v in mean], std=[float(v) for v in std], classes=classes,
    )
    return ProjectData(data=data, ids=ids, paths=[im.path for im in images],
                       labeled=np.flatnonzero(y >= 0).astype(np.int64),
                       pool=np.flatnonzero(y < 0).astype(np.int64))
