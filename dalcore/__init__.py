"""dalcore: deep active learning that uses the unlabeled data.

The public kernels accept numpy arrays or torch tensors and return the same kind
(a CUDA tensor in -> CUDA work and a CUDA tensor out):

- :func:`kcenter`: exact greedy k-center (core-set) selection.
- :func:`knn`: exact k nearest neighbours (faiss, or a blocked fallback).
- :func:`knn_graph`: reciprocal / union k-NN affinity, symmetric-normalised, CSR.
- :func:`propagate`: label propagation by block conjugate gradient, all classes at once.
- :func:`pseudo_labels`: labels, certainty weights and class weights from propagated scores.
"""

from __future__ import annotations

from . import _core
from ._graph import knn_graph
from ._kcenter import kcenter
from ._knn import knn
from ._propagate import propagate, pseudo_labels

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "build_info",
    "cuda_available",
    "kcenter",
    "knn",
    "knn_graph",
    "propagate",
    "pseudo_labels",
]


def cuda_available() -> bool:
    """True only when this build has CUDA kernels and a CUDA device is present."""
    return bool(_core.cuda_built) and _core.cuda_device_count() > 0


def build_info() -> dict:
    """Version, compiler, SIMD level, threads, whether CUDA is built and a GPU is present."""
    info = dict(_core.build_info())
    info["cuda_available"] = cuda_available()
    return info
