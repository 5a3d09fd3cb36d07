"""Semi-supervised learning from the unlabeled pool.

- :func:`dalcore.semi.label_propagation.make_refresh`: label propagation on the k-NN graph of the
  current model's features (Iscen et al., CVPR 2019), producing weighted pseudo-labels every epoch.
"""

from __future__ import annotations

from .label_propagation import LabelPropagationRefresh, make_refresh

__all__ = ["LabelPropagationRefresh", "make_refresh"]
