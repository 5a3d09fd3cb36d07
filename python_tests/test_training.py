"""Training: learning on digits, determinism, CEAL and semi-supervised batches, extraction."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from dalcore.models import ConvNet13
from dalcore.training import PseudoLabels, TrainConfig, evaluate, extract, train_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> SimpleNamespace:
    """sklearn digits at 16x16 (bilinear), standardised; a Dataset-like namespace."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False)
    x = (x - x[:1400].mean()) / x[:1400].std()
    y = torch.tensor(d.target, dtype=torch.int64)
    return SimpleNamespace(x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:],
                           num_classes=10, translate=0, flip=False)


def tagged(data: SimpleNamespace) -> SimpleNamespace:
    """A copy whose pixel (0, 0) encodes the train index (so batches can be traced)."""
    x = data.x_train.clone()
    x[:, 0, 0, 0] = torch.arange(x.shape[0], dtype=torch.float32) * 1e-3
    return SimpleNamespace(**{**vars(data), "x_train": x})


class Recorder(nn.Module):
    """Wraps a model and records the train indices (pixel tags) of every training batch."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batches: list[np.ndarray] = []

    def forward(self, x: torch.Tensor):
        if self.training:
            self.batches.append(np.rint(x[:, 0, 0, 0].detach().numpy() * 1e3).astype(np.int64))
        return self.net(x)


def tiny(seed: int = 0, dropout: float = 0.5) -> ConvNet13:
    torch.manual_seed(seed)
    return ConvNet13(1, 10, width=0.125, dropout=dropout)


def test_learns_digits(digits: SimpleNamespace) -> None:
    labeled = np.random.default_rng(0).choice(1400, 250, replace=False)
    m = tiny()
    h = train_model(m, digits, labeled, TrainConfig(epochs=12), device="cpu", seed=0,
                    progress=False)
    assert len(h["loss"]) == 12 and all(math.isfinite(v) for v in h["loss"])
    assert np.mean(h["loss"][-2:]) < 0.75 * h["loss"][0]
    # held-out accuracy computed independently from the raw logits
    m.eval()
    with torch.no_grad():
        pred = m(digits.x_test)[0].argmax(1).numpy()
    acc = float(np.mean(pred == digits.y_test.numpy()))
    assert acc > 0.4  # chance is 0.1
    assert evaluate(m, digits.x_test, digits.y_test, device="cpu", batch_size=97) == pytest.approx(
        acc, abs=1e-12)


def test_deterministic_and_rng_untouched(digits: SimpleNamespace) -> None:
    labeled = np.arange(0, 1400, 20)
    cfg = TrainConfig(epochs=2)
    runs = []
    for seed in (3, 3, 4):
        m = tiny(seed=7)
        state = torch.get_rng_state()
        h = train_model(m, digits, labeled, cfg, device="cpu", seed=seed, progress=False)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
        runs.append((h["loss"], {k: v.clone() for k, v in m.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        assert torch.equal(runs[0][1][k], runs[1][1][k]), k
    assert runs[0][0] != runs[2][0]


def test_supervised_epochs_visit_labeled_once_with_cosine_lr(digits: SimpleNamespace) -> None:
    data = tagged(digits)
    labeled = np.sort(np.random.default_rng(1).choice(1400, 70, replace=False))
    rec = Recorder(tiny())
    cfg = TrainConfig(epochs=3, batch_size=32)
    h = train_model(rec, data, labeled, cfg, device="cpu", seed=0, progress=False)
    # every batch is full: the last one is topped up with the first 26 of the same pass
    assert [b.size for b in rec.batches] == [32, 32, 32] * 3
    for e in range(3):
        seen = np.concatenate(rec.batches[3 * e:3 * e + 3])
        np.testing.assert_array_equal(np.unique(seen), labeled)
        np.testing.assert_array_equal(seen[70:], seen[:26])
    # lr at the last iteration: fractional epoch (E - 1) + (iters - 1) / iters
    t = 2 + 2 / 3
    assert h["lr"][-1] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * t / 3)), rel=1e-12)
    assert h["iterations"] == [3, 3, 3]


def ce64(logits: torch.Tensor, y: np.ndarray) -> np.ndarray:
    z = logits.detach().numpy().astype(np.float64)
    z = z - z.max(1, keepdims=True)
    return -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))


def test_ceal_pseudo_labels_reach_the_weighted_loss(digits: SimpleNamespace) -> None:
    data = tagged(digits)
    labeled = np.arange(0, 40)
    p_idx = np.arange(100, 124)
    true = digits.y_train.numpy()
    p_lab = (true[p_idx] + 1) % 10  # deliberately not the true labels
    p_w = np.linspace(0.1, 1.0, p_idx.size).astype(np.float32)
    cw = np.arange(1, 11, dtype=np.float32) / 5
    pseudo = PseudoLabels(p_idx, p_lab, p_w, cw)
    net = tiny(dropout=0.0)
    before = copy.deepcopy(net).train()
    rec = Recorder(net)
    cfg = TrainConfig(epochs=1, batch_size=64)  # one batch holds everything
    h = train_model(rec, data, labeled, cfg, device="cpu", seed=0, pseudo=pseudo, progress=False)
    (batch,) = rec.batches
    np.testing.assert_array_equal(np.sort(batch), np.concatenate([labeled, p_idx]))
    # independent loss: mean over the batch of w * CE with the pseudo-labels, in float64
    with torch.no_grad():
        logits = before(data.x_train[torch.from_numpy(batch)])[0]
    is_p = batch >= 100
    target = np.where(is_p, 0, true[batch])
    w = np.ones(batch.size)
    pos = np.searchsorted(p_idx, batch[is_p])
    target[is_p] = p_lab[pos]
    w[is_p] = p_w[pos].astype(np.float64) * cw[p_lab[pos]]
    expected = float(np.mean(w * ce64(logits, target)))
    assert h["loss"][0] == pytest.approx(expected, rel=1e-4)
    # the same training with the true labels for those images gives another loss
    net2 = tiny(dropout=0.0)
    h2 = train_model(net2, data, labeled, cfg, device="cpu", seed=0, progress=False,
                     pseudo=PseudoLabels(p_idx, true[p_idx], p_w, cw))
    assert abs(h2["loss"][0] - h["loss"][0]) > 1e-3


def test_cpu_preset_semi_cycles_take_its_steps(digits: SimpleNamespace) -> None:
    # the cpu preset turns its gradient steps into semi-supervised epochs: the batches that
    # train_model actually runs add up to `steps` (within one epoch), on two pool sizes
    from dalcore.presets import PRESETS
    from dalcore.training import semi_batches_per_epoch

    preset = PRESETS["cpu"]
    data = tagged(digits)
    labeled = np.arange(20)
    for n_pool in (300, 1277):
        pool = np.arange(20, 20 + n_pool)
        p_lab = digits.y_train.numpy()[pool]
        w = np.ones(n_pool, np.float32)
        cw = np.ones(10, np.float32)
        per_epoch = semi_batches_per_epoch(n_pool)
        epochs = preset.epochs_for(labeled.size, semi=True, semi_batches=per_epoch)
        h = train_model(tiny(dropout=0.0), data, labeled, TrainConfig(epochs=epochs),
                        device="cpu", seed=0, progress=False,
                        refresh=lambda m, e, pool=pool, p_lab=p_lab, w=w, cw=cw: PseudoLabels(
                            pool, p_lab, w, cw))
        steps = sum(h["iterations"])
        assert h["iterations"] == [per_epoch] * epochs
        assert preset.steps <= steps < preset.steps + per_epoch
        assert epochs >= preset.semi_min_epochs
    # a large pool (Fashion-MNIST's 5,000 images: 33 batches per epoch): the floor of label
    # propagations wins over the step count, and no epoch more than it needs
    for per_epoch in (33, 60, 200):
        epochs = preset.epochs_for(100, semi=True, semi_batches=per_epoch)
        assert epochs * per_epoch >= preset.steps and epochs >= preset.semi_min_epochs
        assert (epochs - 1) * per_epoch < preset.steps or epochs == preset.semi_min_epochs
    assert preset.epochs_for(100, semi=True, semi_batches=33) == 16


def test_semi_batches_draws_and_loss(digits: SimpleNamespace) -> None:
    data = tagged(digits)
    labeled = np.arange(0, 30)
    pool = np.arange(30, 1400)
    true = digits.y_train.numpy()
    w = np.where(pool % 2 == 0, 1.0, 1e-7).astype(np.float32)
    w[pool % 10 == 0] = 0.0  # never drawn
    cw = np.linspace(0.5, 1.5, 10).astype(np.float32)
    p_lab = (true[pool] + 3) % 10
    calls = []

    def refresh(model: nn.Module, epoch: int) -> PseudoLabels:
        calls.append((epoch, model.training))
        return PseudoLabels(pool, p_lab, w, cw)

    net = tiny(dropout=0.0)
    rec = Recorder(net)
    cfg = TrainConfig(epochs=2)
    h = train_model(rec, data, labeled, cfg, device="cpu", seed=5, refresh=refresh,
                    pseudo_fraction=0.25, progress=False)
    assert [c[0] for c in calls] == [0, 1]
    n_draw = round(0.25 * pool.size)
    iters = math.ceil(n_draw / 78)
    assert h["pseudo"] == [n_draw, n_draw] and h["iterations"] == [iters, iters]
    assert len(rec.batches) == 2 * iters
    heavy = set(pool[(pool % 2 == 0) & (pool % 10 != 0)].tolist())
    for e in range(2):
        batches = rec.batches[e * iters:(e + 1) * iters]
        lab = np.concatenate([b[:50] for b in batches])
        drawn = np.concatenate([b[50:] for b in batches])
        assert all(b[:50].size == 50 for b in batches)
        assert np.all(lab < 30)  # the labelled half cycles through the 30 labelled images
        counts = np.bincount(lab, minlength=30)
        assert counts.min() >= lab.size // 30 and counts.max() <= -(-lab.size // 30)
        assert drawn.size == n_draw and np.unique(drawn).size == n_draw
        assert set(drawn.tolist()) <= heavy  # proportional to weight: light ones (1e-7) and 0 not
    # one-iteration run: the loss equals mean CE(labelled) + mean(w * cw * CE(pseudo))
    net = tiny(seed=2, dropout=0.0)
    before = copy.deepcopy(net).train()
    rec = Recorder(net)
    h = train_model(rec, data, labeled, TrainConfig(epochs=1), device="cpu", seed=1,
                    refresh=lambda m, e: PseudoLabels(pool[:100], p_lab[:100], w[:100], cw),
                    progress=False)
    (batch,) = rec.batches
    with torch.no_grad():
        logits = before(data.x_train[torch.from_numpy(batch)])[0]
    lab, drawn = batch[:50], batch[50:]
    ce_l = ce64(logits[:50], true[lab])
    pos = drawn - 30
    ce_p = ce64(logits[50:], p_lab[pos])
    expected = ce_l.mean() + np.mean(w[pos].astype(np.float64) * cw[p_lab[pos]] * ce_p)
    assert h["loss"][0] == pytest.approx(expected, rel=1e-4)


def test_augmentation_path(digits: SimpleNamespace) -> None:
    pytest.importorskip("dalcore.data")
    data = SimpleNamespace(**{**vars(digits), "translate": 2, "flip": True})
    labeled = np.arange(0, 1400, 35)
    losses = []
    for _ in range(2):
        m = tiny()
        losses.append(train_model(m, data, labeled, TrainConfig(epochs=2), device="cpu", seed=0,
                                  progress=False)["loss"])
    plain = train_model(tiny(), digits, labeled, TrainConfig(epochs=2), device="cpu", seed=0,
                        progress=False)["loss"]
    assert losses[0] == losses[1]
    assert losses[0] != plain
    # augment=False (the cpu preset): the dataset's shifts and flips are not applied, so the
    # training is the one on the plain images, loss for loss
    off = train_model(tiny(), data, labeled, TrainConfig(epochs=2, augment=False), device="cpu",
                      seed=0, progress=False)["loss"]
    assert off == plain
    with pytest.raises(TypeError, match="cfg.augment"):
        TrainConfig(augment=1).validate()


def test_extract_and_evaluate(digits: SimpleNamespace) -> None:
    m = tiny()
    m.train()
    idx = np.array([5, 3, 900, 3, 17])
    probs, feats = extract(m, digits.x_train, device="cpu", batch_size=2, indices=idx)
    assert m.training  # mode restored
    m.eval()
    with torch.no_grad():
        logits, f = m(digits.x_train[torch.from_numpy(idx)])
    z = logits.numpy().astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats.numpy(), f.numpy(), rtol=1e-5, atol=1e-6)
    allp, _ = extract(m, digits.x_test, device="cpu", batch_size=100)
    acc = evaluate(m, digits.x_test, digits.y_test, device="cpu", batch_size=64)
    assert acc == pytest.approx(np.mean(allp.numpy().argmax(1) == digits.y_test.numpy()))


def test_bad_arguments(digits: SimpleNamespace) -> None:
    cfg = TrainConfig(epochs=1)
    m = tiny()
    kw = {"device": "cpu", "seed": 0, "progress": False}
    with pytest.raises(ValueError, match="labeled"):
        train_model(m, digits, np.array([], dtype=np.int64), cfg, **kw)
    with pytest.raises(ValueError, match="labeled"):
        train_model(m, digits, np.array([1, 1400]), cfg, **kw)
    with pytest.raises(ValueError, match="labeled"):
        train_model(m, digits, np.array([1, 1]), cfg, **kw)
    with pytest.raises(TypeError, match="labeled"):
        train_model(m, digits, np.array([1.0, 2.0]), cfg, **kw)
    with pytest.raises(ValueError, match="cfg.epochs"):
        train_model(m, digits, np.arange(5), TrainConfig(epochs=0), **kw)
    with pytest.raises(ValueError, match="cfg.lr_rampdown"):
        train_model(m, digits, np.arange(5), TrainConfig(lr_rampdown="step"), **kw)
    with pytest.raises(ValueError, match="pseudo.indices"):
        train_model(m, digits, np.arange(5), cfg, pseudo=PseudoLabels([4, 6], [0, 1], [1, 1]),
                    **kw)
    with pytest.raises(ValueError, match="pseudo.labels"):
        train_model(m, digits, np.arange(5), cfg, pseudo=PseudoLabels([7, 6], [0, 10], [1, 1]),
                    **kw)
    with pytest.raises(ValueError, match="pseudo.weights"):
        PseudoLabels([7, 6], [0, 1], [1, np.nan])
    with pytest.raises(ValueError, match="pseudo"):
        PseudoLabels([7, 6], [0], [1, 1])
    with pytest.raises(ValueError, match="pseudo_fraction"):
        train_model(m, digits, np.arange(5), cfg, pseudo_fraction=0.5, **kw)
    with pytest.raises(ValueError, match="pseudo_fraction"):
        train_model(m, digits, np.arange(5), cfg, refresh=lambda m, e: None, pseudo_fraction=0,
                    **kw)
