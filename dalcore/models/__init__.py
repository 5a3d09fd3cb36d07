"""Networks of the experiment: the 13-layer ConvNet with a width multiplier."""

from __future__ import annotations

from .convnet import ConvNet13, scaled_channels

__all__ = ["ConvNet13", "scaled_channels"]
