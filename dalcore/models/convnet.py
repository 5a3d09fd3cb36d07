"""The 13-layer ConvNet of Laine & Aila (used by Mean Teacher, LP-DeepSSL and Siméoni et al.).

Layout (channel counts at ``width=1``)::

    3 x [conv 3x3, 128, pad 1]  - maxpool 2 - dropout
    3 x [conv 3x3, 256, pad 1]  - maxpool 2 - dropout
    conv 3x3, 512, no padding - conv 1x1, 256 - conv 1x1, feature_dim
    global average pool - L2 normalisation - linear (num_classes)

Every convolution is weight-normalised and followed by BatchNorm and LeakyReLU(0.1); the
classifier is a weight-normalised linear layer on the L2-normalised ``feature_dim`` features.
The original code ends with ``AvgPool2d(6)``, i.e. a global average pool at 32x32 input; an
adaptive global pool gives the same result there and also serves 16x16 inputs (2x2 maps).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .._arrays import check_float, check_int

__all__ = ["ConvNet13", "scaled_channels"]

#: Key prefix of the final classifier (excluded from the backbone).
CLASSIFIER_PREFIX = "classifier."


def scaled_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))


class _ConvBlock(nn.Sequential):
    """Weight-normalised convolution, BatchNorm, LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int) -> None:
        super().__init__(
            weight_norm(nn.Conv2d(cin, cout, kernel, padding=padding)),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.1),
        )


class ConvNet13(nn.Module):
    """The 13-layer ConvNet ("cifar_cnn" of LP-DeepSSL) with a width multiplier.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grey images, 3 for colour).
    num_classes : int
        Number of classes of the linear classifier.
    width : float
        Multiplier on the channel counts 128/256/512 (not on ``feature_dim``); 1.0 is the paper.
    feature_dim : int
        Width of the last 1x1 convolution, i.e. of the L2-normalised feature (128 in the paper).
    dropout : float
        Dropout probability after each max-pool (0.5 in the paper).

    Notes
    -----
    ``forward(x)`` returns ``(logits, features)``: logits (B, num_classes) and features
    (B, feature_dim) of unit L2 norm. Inputs must be at least 12x12 (two 2x max-pools, then an
    unpadded 3x3 convolution); 32x32 (the paper) and 16x16 (CPU presets) are the sizes in use.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        feature_dim: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", low=1)
        num_classes = check_int(num_classes, "num_classes", low=2)
        feature_dim = check_int(feature_dim, "feature_dim", low=1)
        width = check_float(width, "width", low=0.0, low_open=True)
        dropout = check_float(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        c1 = scaled_channels(128, width)
        c2 = scaled_channels(256, width)
        c3 = scaled_channels(512, width)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = float(width)
        self.feature_dim = feature_dim
        self.features = nn.Sequential(
            _ConvBlock(in_channels, c1, 3, 1),
            _ConvBlock(c1, c1, 3, 1),
            _ConvBlock(c1, c1, 3, 1),
            nn.MaxPool2d(2, stride=2),
            nn.Dropout(dropout),
            _ConvBlock(c1, c2, 3, 1),
            _ConvBlock(c2, c2, 3, 1),
            _ConvBlock(c2, c2, 3, 1),
            nn.MaxPool2d(2, stride=2),
            nn.Dropout(dropout),
            _ConvBlock(c2, c3, 3, 0),
            _ConvBlock(c3, c2, 1, 0),
            _ConvBlock(c2, feature_dim, 1, 0),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = weight_norm(nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes) and L2-normalised features (B, feature_dim)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x: expected a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        if x.shape[2] < 12 or x.shape[3] < 12:
            raise ValueError(f"x: expected images of at least 12x12, got {tuple(x.shape[2:])}")
        feats = F.normalize(self.features(x), dim=1)
        return self.classifier(feats), feats

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """State (parameters and BN buffers) of everything but the final linear classifier."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(CLASSIFIER_PREFIX)}

    def load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a :meth:`backbone_state_dict` (e.g. from pre-training); the classifier is kept.

        Raises
        ------
        ValueError
            If ``state`` lacks backbone entries, has entries this model does not know, holds
            classifier entries, or has tensors of the wrong shape (e.g. another width).
        """
        own = self.backbone_state_dict()
        extra = sorted(set(state) - set(own))
        missing = sorted(set(own) - set(state))
        if extra or missing:
            raise ValueError(
                "state: not a backbone state of this model"
                + (f"; unexpected keys {extra[:5]}" if extra else "")
                + (f"; missing keys {missing[:5]}" if missing else "")
            )
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"state: {k} has shape {tuple(state[k].shape)}, this model expects "
                    f"{tuple(v.shape)} (different width or input channels?)"
                )
        self.load_state_dict(dict(state), strict=False)
