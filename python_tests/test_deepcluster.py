"""DeepCluster pre-training: NMI, clustering, balanced sampling, caching, and that the learnt
features beat random-init features on digits (k-NN accuracy measured here with scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")
from sklearn.metrics import homogeneity_score, normalized_mutual_info_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from dalcore.unsupervised import deepcluster as dc  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nmi_matches_sklearn(rng):
    for _ in range(5):
        n = int(rng.integers(20, 300))
        a = rng.integers(0, int(rng.integers(1, 8)), size=n)
        b = (a + (rng.random(n) < 0.3) * rng.integers(0, 5, size=n)) % 6
        assert dc.nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
    a = rng.integers(0, 5, size=100)
    assert dc.nmi(a, a) == pytest.approx(1.0)
    assert dc.nmi(a, (a + 3) % 5) == pytest.approx(1.0)  # permutation of the cluster ids
    with pytest.raises(ValueError, match="nmi"):
        dc.nmi(a, a[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        dc.nmi(a - 1, a)


def test_cluster_features_recovers_separated_blobs(rng):
    # Over-clustering (as DeepCluster does, 5 clusters per class) of well-separated blobs: every
    # cluster lies inside one blob (homogeneity 1), whatever the local minimum k-means reaches.
    centers = np.eye(4, 16, dtype=np.float32) * 10
    truth = rng.integers(0, 4, size=400)
    x = centers[truth] + rng.normal(0, 0.3, size=(400, 16)).astype(np.float32)
    a1 = dc.cluster_features(x, 20, seed=3)
    a2 = dc.cluster_features(x, 20, seed=3)
    np.testing.assert_array_equal(a1, a2)  # seeded
    assert a1.dtype == np.int64 and a1.shape == (400,)
    assert a1.min() >= 0 and a1.max() < 20
    assert homogeneity_score(truth, a1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_clusters"):
        dc.cluster_features(x, 401, seed=0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dc.cluster_features(bad, 4, seed=0)


def test_uniform_sampling_over_clusters(rng):
    assign = np.concatenate([np.zeros(300), np.ones(20), np.full(5, 7)]).astype(np.int64)
    rng.shuffle(assign)
    out = dc._uniform_over_clusters(assign, np.random.default_rng(0))
    assert out.shape == assign.shape
    counts = np.bincount(assign[out], minlength=8)[[0, 1, 7]]
    assert counts.max() - counts.min() <= 1 and counts.sum() == assign.size


def _few_label_knn(feats_tr, y_tr, feats_te, y_te, draws=10, per_class=2):
    """Mean 1-NN test accuracy with ``per_class`` labelled training images per class."""
    accs = []
    for s in range(draws):
        g = np.random.default_rng(100 + s)
        lab = np.concatenate([g.choice(np.flatnonzero(y_tr == c), per_class, replace=False)
                              for c in np.unique(y_tr)])
        clf = KNeighborsClassifier(1).fit(feats_tr[lab], y_tr[lab])
        accs.append(clf.score(feats_te, y_te))
    return float(np.mean(accs))


def test_pretrain_beats_random_init_on_digits(digits16):
    from dalcore.models import ConvNet13
    from dalcore.training import TrainConfig, extract

    d = digits16
    width = 0.125
    cfg = TrainConfig(lr=0.1, batch_size=32)
    state_before = torch.random.get_rng_state()
    logged = []
    backbone, nmis = dc.pretrain(d, width=width, epochs=5, num_clusters=50, device="cpu",
                                 seed=0, cfg=cfg, progress=False, log=logged.append)
    assert torch.equal(torch.random.get_rng_state(), state_before)  # caller's RNG untouched
    assert len(nmis) == 5 and len(logged) == 5
    assert all(0.0 <= v <= 1.0 for v in nmis)
    # The clustering aligns better with the (unseen) classes as the features learn.
    assert nmis[-1] > nmis[0] + 0.1

    def features(state):
        torch.manual_seed(0)
        m = ConvNet13(in_channels=1, num_classes=10, width=width)
        if state is not None:
            m.load_backbone(state)  # the backbone fits the experiment's 10-class model
        _, ftr = extract(m, d.x_train, device="cpu")
        _, fte = extract(m, d.x_test, device="cpu")
        return ftr.numpy(), fte.numpy()

    ytr, yte = d.y_train.numpy(), d.y_test.numpy()
    rtr, rte = features(None)
    acc_random = _few_label_knn(rtr, ytr, rte, yte)
    ftr, fte = features(backbone)
    acc_dc = _few_label_knn(ftr, ytr, fte, yte)
    print(f"few-label 1-NN accuracy: random init {acc_random:.3f}, DeepCluster {acc_dc:.3f}; "
          f"NMI {nmis[0]:.3f} -> {nmis[-1]:.3f}")
    # Measured (seed 0): about 0.50 for random init and 0.6 after 5 epochs of DeepCluster.
    assert acc_dc > acc_random + 0.05, (acc_random, acc_dc)


def test_pretrain_rejects_bad_arguments(digits16):
    from dalcore.training import TrainConfig

    cfg = TrainConfig()
    with pytest.raises(ValueError, match="epochs"):
        dc.pretrain(digits16, width=0.125, epochs=0, num_clusters=10, device="cpu", seed=0,
                    cfg=cfg)
    with pytest.raises(ValueError, match="num_clusters"):
        dc.pretrain(digits16, width=0.125, epochs=1, num_clusters=10**6, device="cpu", seed=0,
                    cfg=cfg)
    with pytest.raises(ValueError, match="width"):
        dc.pretrain(digits16, width=0, epochs=1, num_clusters=10, device="cpu", seed=0, cfg=cfg)


def test_load_or_pretrain_caches(tmp_path, monkeypatch, digits16):
    from dalcore.training import TrainConfig

    calls = []

    def fake_pretrain(data, **kw):
        calls.append(kw)
        return {"w": torch.full((2,), float(kw["seed"]))}, [0.1 * kw["epochs"]]

    monkeypatch.setattr(dc, "pretrain", fake_pretrain)
    cfg = TrainConfig()
    path = tmp_path / "sub" / "pretrain.pt"
    kw = dict(width=0.125, epochs=3, num_clusters=50, device="cpu", seed=4, cfg=cfg,
              progress=False)
    s1, n1 = dc.load_or_pretrain(path, digits16, **kw)
    assert path.is_file() and len(calls) == 1
    s2, n2 = dc.load_or_pretrain(path, digits16, **kw)
    assert len(calls) == 1  # loaded, not trained again
    assert torch.equal(s1["w"], s2["w"]) and n1 == n2
    with pytest.warns(UserWarning, match="other settings"):
        s3, _ = dc.load_or_pretrain(path, digits16, **{**kw, "seed": 5})
    assert len(calls) == 2 and float(s3["w"][0]) == 5.0
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        dc.load_or_pretrain(path, digits16, **kw)
    assert len(calls) == 3


class _Stop(Exception):
    pass


def test_pretrain_checkpoints_and_resumes_to_the_same_weights(tmp_path, digits16):
    """Interrupted after 7 of 10 epochs, a pre-training resumes from its last checkpoint (epoch
    6: one is written every epochs // 10 = 1 epoch here) and ends with the weights and NMIs of
    an uninterrupted run; the checkpoint is read with weights_only=True and removed at the end."""
    from dalcore.training import TrainConfig

    small = digits16.subset_train(np.arange(120))
    cfg = TrainConfig(lr=0.05, batch_size=32)
    kw = dict(width=0.125, epochs=10, num_clusters=20, device="cpu", seed=3, cfg=cfg,
              progress=False)
    ref_state, ref_nmi = dc.pretrain(small, **kw)

    path = tmp_path / "pre.pt"
    seen: list[int] = []

    def crash_after_7(entry: dict) -> None:
        seen.append(entry["epoch"])
        if entry["epoch"] == 6:
            raise _Stop

    with pytest.raises(_Stop):
        dc.load_or_pretrain(path, small, log=crash_after_7, **kw)
    partial = tmp_path / "pre.pt.partial"
    assert partial.is_file() and not path.exists()
    saved = torch.load(partial, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 7 and len(saved["nmi"]) == 7

    resumed: list[int] = []
    state, nmis = dc.load_or_pretrain(path, small, log=lambda e: resumed.append(e["epoch"]), **kw)
    assert resumed == [7, 8, 9]  # nothing before the checkpoint is trained again
    assert nmis == pytest.approx(ref_nmi, abs=0)
    assert sorted(state) == sorted(ref_state)
    for k in ref_state:
        torch.testing.assert_close(state[k], ref_state[k], rtol=0, atol=0)
    assert not partial.exists() and path.is_file()


def test_pretrain_checkpoint_interval_is_at_most_a_tenth(tmp_path):
    for epochs, every in ((400, 40), (20, 2), (9, 1), (1, 1)):
        ck = dc._Checkpoint(tmp_path / "x", {}, epochs)
        assert ck.every == every and ck.every <= max(1, epochs / 10)
