"""The 13-layer ConvNet: shapes, normalisation, parameter counts, weight norm, backbone I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from dalcore.models import ConvNet13

torch.set_num_threads(1)


def expected_params(in_channels: int, num_classes: int, width: float, feature_dim: int = 128
                    ) -> int:
    """Parameter count from the layer table (independent of the module code).

    A weight-normalised conv with bias, followed by BatchNorm, holds per output channel:
    v (cin*k*k) + g (1) + bias (1) + BN gamma, beta (2).
    """
    c1, c2, c3 = (max(1, int(round(c * width))) for c in (128, 256, 512))
    table = [
        (in_channels, c1, 3), (c1, c1, 3), (c1, c1, 3),
        (c1, c2, 3), (c2, c2, 3), (c2, c2, 3),
        (c2, c3, 3), (c3, c2, 1), (c2, feature_dim, 1),
    ]
    convs = sum(cout * (cin * k * k + 4) for cin, cout, k in table)
    linear = num_classes * (feature_dim + 2)  # v, g, bias
    return convs + linear


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32])
def test_shapes_and_unit_features(channels: int, size: int, rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    m = ConvNet13(in_channels=channels, num_classes=7, width=0.125).eval()
    x = torch.from_numpy(rng.standard_normal((5, channels, size, size)).astype(np.float32))
    with torch.no_grad():
        logits, feats = m(x)
    assert logits.shape == (5, 7) and feats.shape == (5, 128)
    f = feats.numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=0, atol=1e-5)
    # the logits are the weight-normalised linear layer of the features: g * v / |v| f + b
    lin = m.classifier
    g = lin.parametrizations.weight.original0.detach().numpy().astype(np.float64)
    v = lin.parametrizations.weight.original1.detach().numpy().astype(np.float64)
    w = g * v / np.linalg.norm(v, axis=1, keepdims=True)
    ref = f @ w.T + lin.bias.detach().numpy()
    np.testing.assert_allclose(logits.numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("width", [1.0, 0.5, 0.125])
def test_parameter_count_follows_width(channels: int, width: float) -> None:
    m = ConvNet13(in_channels=channels, num_classes=10, width=width)
    assert n_params(m) == expected_params(channels, 10, width)


def test_width_scales_parameters_quadratically() -> None:
    full = n_params(ConvNet13(3, 10, width=1.0))
    half = n_params(ConvNet13(3, 10, width=0.5))
    assert 3.0 < full / half < 4.5  # conv weights scale with width^2; the 128-d head stays


def test_layers_weight_norm_bn_leaky_relu() -> None:
    m = ConvNet13(3, 10, width=0.25)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 9
    assert [c.kernel_size for c in convs] == [(3, 3)] * 7 + [(1, 1)] * 2
    assert [c.padding for c in convs] == [(1, 1)] * 6 + [(0, 0)] * 3
    for mod in [*convs, m.classifier]:
        assert parametrize.is_parametrized(mod, "weight")
        g = mod.parametrizations.weight.original0.detach().double()
        v = mod.parametrizations.weight.original1.detach().double()
        norm = v.flatten(1).norm(dim=1).view_as(g)
        torch.testing.assert_close(mod.weight.detach().double(), g * v / norm)
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules()) == 9
    slopes = [mod.negative_slope for mod in m.modules() if isinstance(mod, nn.LeakyReLU)]
    assert slopes == [0.1] * 9
    drops = [mod.p for mod in m.modules() if isinstance(mod, nn.Dropout)]
    assert drops == [0.5, 0.5]


def test_backbone_roundtrip() -> None:
    torch.manual_seed(1)
    a = ConvNet13(1, 10, width=0.125).eval()
    torch.manual_seed(2)
    b = ConvNet13(1, 10, width=0.125).eval()
    state = a.backbone_state_dict()
    assert not any(k.startswith("classifier") for k in state)
    assert len(state) == len(a.state_dict()) - 3  # classifier g, v, bias
    cls_before = {k: v.clone() for k, v in b.state_dict().items() if k.startswith("classifier")}
    b.load_backbone(state)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        fa, fb = a(x)[1], b(x)[1]
    torch.testing.assert_close(fa, fb)
    for k, v in cls_before.items():
        torch.testing.assert_close(b.state_dict()[k], v)
    with pytest.raises(ValueError, match="state"):
        ConvNet13(1, 10, width=0.25).load_backbone(state)
    with pytest.raises(ValueError, match="state"):
        b.load_backbone(a.state_dict())  # includes the classifier


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width"):
        ConvNet13(width=0.0)
    with pytest.raises(ValueError, match="width"):
        ConvNet13(width=float("nan"))
    with pytest.raises(ValueError, match="in_channels"):
        ConvNet13(in_channels=0)
    with pytest.raises(ValueError, match="num_classes"):
        ConvNet13(num_classes=1)
    with pytest.raises(ValueError, match="dropout"):
        ConvNet13(dropout=1.0)
    with pytest.raises(TypeError, match="in_channels"):
        ConvNet13(in_channels=3.0)
    m = ConvNet13(3, 10, width=0.125)
    with pytest.raises(ValueError, match="x"):
        m(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="x"):
        m(torch.zeros(2, 3, 8, 8))
