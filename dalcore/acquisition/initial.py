"""The first labelled batch, chosen without any label (DESIGN.md sections 4 and 9).

Both drivers use it: the simulator's ``--initial`` choices other than ``balanced`` (which peeks at
the labels for comparability with the paper) and the human loop, whose first query has no label
to look at. :func:`select_initial` sees only features (or, for ``random``, the number of
points); :func:`initial_features` gives the pixels or a (pre-trained) model's features of a
dataset-like object without touching its labels.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import kcenter
from .._arrays import as_features, check_int
from .probcover import probcover_select
from .typiclust import typiclust_select

__all__ = ["INITIAL_METHODS", "initial_features", "select_initial"]

#: The label-free first-batch methods.
INITIAL_METHODS: tuple[str, ...] = ("random", "kcenter", "typiclust", "probcover")


def select_initial(
    method: str,
    budget: int,
    *,
    features: Optional[np.ndarray],
    n: int,
    rng: np.random.Generator,
    num_classes: Optional[int] = None,
) -> np.ndarray:
    """``budget`` distinct indices into ``range(n)`` to label first, in the order chosen.

    Parameters
    ----------
    method : {"random", "kcenter", "typiclust", "probcover"}
        ``random``: uniform without replacement. ``kcenter``: greedy farthest-first traversal
        (:func:`dalcore.kcenter`, nothing labelled: the first pick is the point farthest from the
        mean). ``typiclust`` / ``probcover``: :func:`typiclust_select` / :func:`probcover_select`
        with nothing labelled.
    budget : int
        Number of points, 1 <= budget <= n.
    features : (n, d) array or None
        Features of the ``n`` points (pixels or a network's features); may be None only for
        ``random``.
    n : int
        Number of points.
    rng : numpy Generator
        Seeds every random choice (random draw, k-means).
    num_classes : int, optional
        Number of classes (not a label): ProbCover's k-means pseudo-classes (default ``budget``).

    Returns
    -------
    np.ndarray
        int64 indices, distinct, in ``[0, n)``.

    Raises
    ------
    ValueError, TypeError
        Naming the argument: unknown method, budget out of range, features missing or of the
        wrong shape or not finite, rng not a Generator.
    """
    if not isinstance(method, str) or method not in INITIAL_METHODS:
        raise ValueError(f"method: expected one of {', '.join(INITIAL_METHODS)}, got {method!r}")
    n = check_int(n, "n", low=1)
    b = check_int(budget, "budget", low=1, high=n)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1)
    if method == "random" and features is None:
        return np.asarray(rng.choice(n, size=b, replace=False), dtype=np.int64)
    if features is None:
        raise ValueError(f"features: method {method!r} needs the features of the {n} points")
    x = as_features(features, "features", min_rows=1)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"features: expected shape ({n}, d), got {tuple(x.shape)}")
    if method == "random":
        return np.asarray(rng.choice(n, size=b, replace=False), dtype=np.int64)
    if method == "kcenter":
        return np.asarray(kcenter(x, b), dtype=np.int64)
    if method == "typiclust":
        return typiclust_select(x, None, b, rng=rng)
    return probcover_select(x, None, b, rng=rng, num_clusters=num_classes)


def initial_features(data: Any, *, model: Any = None, device: Any = "cpu",
                     batch_size: int = 512) -> np.ndarray:
    """Features of ``data.x_train`` for :func:`select_initial`, never reading a label.

    Parameters
    ----------
    data : dataset-like
        Anything with an ``x_train`` tensor or array of images (N, ...).
    model : torch.nn.Module, optional
        A network returning ``(logits, features)`` (e.g. the DeepCluster backbone of PRE); its
        eval-mode features are returned. Without it: the flattened pixels, float32.
    device, batch_size
        Where and in what batches the model runs.

    Returns
    -------
    np.ndarray
        (N, d) float32.
    """
    x = data.x_train
    if model is None:
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        return np.ascontiguousarray(arr.reshape(arr.shape[0], -1), dtype=np.float32)
    from ..training import extract

    _, feats = extract(model, x, device=device, batch_size=batch_size)
    return np.ascontiguousarray(feats.numpy(), dtype=np.float32)
