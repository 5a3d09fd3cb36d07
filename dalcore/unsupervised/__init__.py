"""Unsupervised pre-training on the whole (unlabeled) training set.

- :func:`dalcore.unsupervised.deepcluster.pretrain`: DeepCluster (Caron et al., ECCV 2018).
- :func:`dalcore.unsupervised.deepcluster.load_or_pretrain`: the same, cached on disk.
"""

from __future__ import annotations

from .deepcluster import load_or_pretrain, pretrain

__all__ = ["load_or_pretrain", "pretrain"]
