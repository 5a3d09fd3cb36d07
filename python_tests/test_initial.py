"""The label-free first batch: every method, argument checks, and no label ever read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalcore.acquisition.initial import INITIAL_METHODS, initial_features, select_initial
from dalcore.models import ConvNet13


class NoLabels:
    """A dataset-like object whose images can be read but whose labels raise on any access."""

    def __init__(self, x: torch.Tensor, num_classes: int) -> None:
        self.x_train = x
        self.num_classes = num_classes

    def __getattr__(self, name: str):
        if "y" in name or "label" in name:
            raise AssertionError(f"a label was read: {name}")
        raise AttributeError(name)


def images(seed: int, n: int = 150) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((5, 1, 16, 16)).astype(np.float32)
    x = base[rng.integers(0, 5, n)] + 0.3 * rng.standard_normal((n, 1, 16, 16))
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("method", INITIAL_METHODS)
def test_never_reads_a_label(method: str) -> None:
    data = NoLabels(images(1), num_classes=5)
    with pytest.raises(AssertionError):
        data.y_train  # noqa: B018 -- the trap works
    feats = initial_features(data)
    assert feats.shape == (150, 256) and feats.dtype == np.float32
    picks = select_initial(method, 10, features=feats, n=150, rng=np.random.default_rng(2),
                           num_classes=data.num_classes)
    assert picks.dtype == np.int64 and np.unique(picks).size == 10
    assert picks.min() >= 0 and picks.max() < 150


def test_model_features_never_read_a_label(one_torch_thread: None) -> None:
    data = NoLabels(images(3, 60), num_classes=5)
    torch.manual_seed(0)
    model = ConvNet13(in_channels=1, num_classes=5, width=0.125)
    feats = initial_features(data, model=model, batch_size=32)
    assert feats.shape[0] == 60 and np.all(np.isfinite(feats))
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-4)
    picks = select_initial("typiclust", 5, features=feats, n=60, rng=np.random.default_rng(0))
    assert np.unique(picks).size == 5


@pytest.mark.parametrize("method", INITIAL_METHODS)
def test_seeded(method: str) -> None:
    x = images(4).reshape(150, -1).numpy()
    a, b = (select_initial(method, 7, features=x, n=150, rng=np.random.default_rng(5))
            for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_kcenter_is_farthest_first_from_the_mean() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((80, 5)).astype(np.float32)
    f = x.astype(np.float64)
    ref = [int(np.argmax(np.linalg.norm(f - f.mean(0), axis=1)))]
    mind = np.linalg.norm(f - f[ref[0]], axis=1)
    for _ in range(5):
        ref.append(int(np.argmax(mind)))
        mind = np.minimum(mind, np.linalg.norm(f - f[ref[-1]], axis=1))
    got = select_initial("kcenter", 6, features=x, n=80, rng=np.random.default_rng(0))
    assert got.tolist() == ref


def test_random_needs_no_features_and_is_uniform() -> None:
    counts = np.zeros(20)
    for s in range(2000):
        counts[select_initial("random", 3, features=None, n=20, rng=np.random.default_rng(s))] += 1
    # each index is drawn with probability 3/20: 300 expected draws, sd about 16
    assert np.all(np.abs(counts - 300) < 80), counts


def test_bad_arguments_name_the_argument() -> None:
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="method"):
        select_initial("balanced", 3, features=x, n=30, rng=rng)
    with pytest.raises(ValueError, match="budget"):
        select_initial("random", 0, features=None, n=30, rng=rng)
    with pytest.raises(ValueError, match="budget"):
        select_initial("kcenter", 31, features=x, n=30, rng=rng)
    with pytest.raises(TypeError, match="budget"):
        select_initial("kcenter", 3.0, features=x, n=30, rng=rng)
    with pytest.raises(ValueError, match="n"):
        select_initial("random", 3, features=None, n=0, rng=rng)
    for method in ("kcenter", "typiclust", "probcover"):
        with pytest.raises(ValueError, match="features"):
            select_initial(method, 3, features=None, n=30, rng=rng)
    with pytest.raises(ValueError, match="features"):
        select_initial("typiclust", 3, features=x, n=29, rng=rng)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="features"):
        select_initial("probcover", 3, features=bad, n=30, rng=rng)
    with pytest.raises(TypeError, match="rng"):
        select_initial("random", 3, features=None, n=30, rng=0)
    with pytest.raises(ValueError, match="num_classes"):
        select_initial("probcover", 3, features=x, n=30, rng=rng, num_classes=0)
