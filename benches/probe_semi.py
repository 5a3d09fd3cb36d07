"""Probe: one cycle of dalcore's SEMI (and PRE) training under changed settings, for tuning.

Where does the accuracy go? Each call trains cycle 0 of ``dalcore run --methods random``
(the same pool, the same class-balanced labeled sets of repetitions ``--r0`` ..., the same
initialisation and training seeds) with some settings changed, and prints the test accuracy,
the final pseudo-label accuracy on the pool, and logistic regression on the pixels of the same
labeled images (the baseline of ``bench_accuracy.py``). One line per variant is appended to
``--log`` (default ``probe_semi.txt``). DeepCluster backbones are cached in ``--cache`` by
their settings, so variants of the training reuse them.

    PYTHONPATH=. python benches/probe_semi.py --name base --labels 20        # digits, PRE+SEMI
    python benches/probe_semi.py --name sup --dataset fashion-mnist --labels 100 \
        --no-pretrain --no-semi --set '{"steps": 500}'                       # supervised
    python benches/probe_semi.py --name only --dataset fashion-mnist --labels 100 \\
        --graph-input only                                                   # pool of 5,000
    python benches/probe_semi.py --name lr05 --labels 20 --set '{"lr": 0.05}'  # preset fields
    python benches/probe_semi.py --diagnose --dataset fashion-mnist --labels 100

``--diagnose`` instead compares, on each repetition's labeled set, the DeepCluster features
with the pixels: logistic regression on each, and label propagation (k = 50, gamma = 3) on
each (accuracy on the pool).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="probe", help="label of the variant in the log")
    p.add_argument("--dataset", default="digits", choices=("digits", "fashion-mnist"))
    p.add_argument("--data-dir", default=FASHION_DIR)
    p.add_argument("--labels", type=int, default=20, help="labeled images (class-balanced)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--r0", type=int, default=0, help="first repetition")
    p.add_argument("--set", default="{}", help="JSON of cpu-preset fields to change")
    p.add_argument("--graph-input", default="none", choices=("none", "first", "always", "only"))
    p.add_argument("--k", type=int, default=50, help="neighbours of SEMI's graph")
    p.add_argument("--translate", type=int, default=None, help="augmentation shift (px)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--clusters", type=int, default=5, help="DeepCluster clusters per class")
    p.add_argument("--class-balance", action="store_true")
    p.add_argument("--no-pretrain", action="store_true")
    p.add_argument("--no-semi", action="store_true", help="supervised training (no propagation)")
    p.add_argument("--diagnose", action="store_true")
    p.add_argument("--cache", default="runs/probe_cache")
    p.add_argument("--log", default="probe_semi.txt")
    return p.parse_args(argv)


def load(args: argparse.Namespace, image_size: int):
    """The dataset as ``dalcore run`` loads it (Fashion-MNIST: the class-balanced pool of 5,000
    of ``--seed 0``)."""
    from dalcore import data as D
    from dalcore.experiment import derive_seed

    ds = D.load_dataset(args.dataset, None if args.dataset == "digits" else args.data_dir,
                        image_size=image_size)
    if args.dataset != "digits":
        rng = np.random.default_rng(derive_seed(0, "pool"))
        ds = ds.subset_train(D.class_balanced_indices(ds.y_train, 5000, ds.num_classes, rng))
    if args.translate is not None:
        ds.translate = int(args.translate)
    if args.no_flip:
        ds.flip = False
    return ds


def labeled_set(ds, n: int, rseed: int) -> np.ndarray:
    """Cycle 0's class-balanced labeled set of the repetition with seed ``rseed``."""
    from dalcore.data import class_balanced_indices

    y = ds.y_train.numpy()
    picks = class_balanced_indices(y, n, ds.num_classes, np.random.default_rng(rseed))
    return np.sort(picks.astype(np.int64))


def backbone(args: argparse.Namespace, settings, ds, r: int, rseed: int):
    """The repetition's DeepCluster backbone (cached by its settings)."""
    from dalcore.loop import pretrained_backbone

    p = settings.preset
    key = (f"{args.dataset}_s{p.image_size}_w{settings.width}_e{p.pretrain_epochs}"
           f"_lr{p.pretrain_lr}_b{p.pretrain_batch_size}_c{args.clusters}_r{r}.pt")
    return pretrained_backbone(settings, ds, "cpu", os.path.join(args.cache, key), rseed,
                               num_clusters=args.clusters * int(ds.num_classes))


def logreg(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray,
           lab: np.ndarray) -> float:
    """Logistic regression (bench_accuracy's) on ``x[lab]``: test accuracy in %."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=2000).fit(x[lab], y[lab])
    return 100.0 * float((model.predict(xt) == yt).mean())


def pixels(x) -> np.ndarray:
    """Images flattened (float64)."""
    return x.reshape(int(x.shape[0]), -1).numpy().astype(np.float64)


def probe(args: argparse.Namespace) -> str:
    """Train the variant on every repetition; the summary line."""
    import dalcore.semi.label_propagation as lp
    from dalcore.experiment import derive_seed, repeat_seed
    from dalcore.loop import StepSettings, fit
    from dalcore.presets import get_preset
    from dalcore.training import evaluate

    preset = dataclasses.replace(get_preset("cpu"), **json.loads(args.set))
    ds = load(args, preset.image_size)
    real = lp.make_refresh
    lp.make_refresh = lambda *a, **kw: real(*a, **{**kw, "k": args.k})
    settings = StepSettings(preset=preset, width=preset.width, semi=not args.no_semi,
                            progress=False, class_balance=args.class_balance,
                            input_graph=args.graph_input)
    x, y, xt, yt = pixels(ds.x_train), ds.y_train.numpy(), pixels(ds.x_test), ds.y_test.numpy()
    acc, pseudo, base = [], [], []
    t0 = time.perf_counter()
    for r in range(args.r0, args.r0 + args.repeats):
        rseed = repeat_seed(0, r)
        lab = labeled_set(ds, args.labels, rseed)
        bb = None if args.no_pretrain else backbone(args, settings, ds, r, rseed)
        f = fit(settings, ds, lab, device="cpu", init_seed=derive_seed(rseed, "init", 0),
                train_seed=derive_seed(rseed, "train", 0, ""), backbone=bb)
        acc.append(100.0 * evaluate(f.model, ds.x_test, ds.y_test, device="cpu"))
        pseudo.append(float("nan") if f.refresh is None else 100.0 * f.refresh.accuracy[-1])
        base.append(logreg(x, y, xt, yt, lab))
        print(f"{args.name} r{r}: {acc[-1]:.2f} % (pseudo-labels {pseudo[-1]:.1f} %, "
              f"logreg {base[-1]:.2f} %)", flush=True)
    return (f"{args.name} {args.dataset} {args.labels} labels, r{args.r0}-"
            f"{args.r0 + args.repeats - 1}: {np.mean(acc):.2f} ± {np.std(acc):.2f} "
            f"[{' '.join(f'{a:.1f}' for a in acc)}], pseudo-labels {np.mean(pseudo):.1f}, "
            f"logreg {np.mean(base):.2f} ± {np.std(base):.2f}; {time.perf_counter() - t0:.0f} s;"
            f" set={args.set} graph-input={args.graph_input} k={args.k} "
            f"translate={args.translate}{' no-flip' if args.no_flip else ''} "
            f"clusters={args.clusters}"
            f"{' class-balance' if args.class_balance else ''}"
            f"{' no-pretrain' if args.no_pretrain else ''}{' no-semi' if args.no_semi else ''}")


def diagnose(args: argparse.Namespace) -> str:
    """DeepCluster features against pixels, per repetition; the summary line."""
    from dalcore.experiment import repeat_seed
    from dalcore.loop import StepSettings
    from dalcore.models import ConvNet13
    from dalcore.presets import get_preset
    from dalcore.semi.label_propagation import input_features, propagate_labels
    from dalcore.training import extract

    preset = get_preset("cpu")
    ds = load(args, preset.image_size)
    settings = StepSettings(preset=preset, width=preset.width, progress=False)
    x, y, xt, yt = pixels(ds.x_train), ds.y_train.numpy(), pixels(ds.x_test), ds.y_test.numpy()
    cols: dict[str, list[float]] = {k: [] for k in ("lr_feat", "lr_pix", "lp_feat", "lp_pix")}
    for r in range(args.r0, args.r0 + args.repeats):
        rseed = repeat_seed(0, r)
        lab = labeled_set(ds, args.labels, rseed)
        model = ConvNet13(in_channels=int(ds.x_train.shape[1]), num_classes=int(ds.num_classes),
                          width=settings.width)
        model.load_backbone(backbone(args, settings, ds, r, rseed))
        f = extract(model, ds.x_train, device="cpu")[1].numpy()
        ft = extract(model, ds.x_test, device="cpu")[1].numpy()
        cols["lr_feat"].append(logreg(f, y, ft, yt, lab))
        cols["lr_pix"].append(logreg(x, y, xt, yt, lab))
        for key, feats in (("lp_feat", f), ("lp_pix", input_features(ds.x_train))):
            res = propagate_labels(feats, lab, y[lab], num_classes=int(ds.num_classes))
            cols[key].append(100.0 * float((res.labels == y).mean()))
        print(f"r{r}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in cols.items()), flush=True)
    return (f"diagnose {args.dataset} {args.labels} labels, r{args.r0}-"
            f"{args.r0 + args.repeats - 1}: logreg on DeepCluster features "
            f"{np.mean(cols['lr_feat']):.1f} vs pixels {np.mean(cols['lr_pix']):.1f}; "
            f"propagation (pool) on features {np.mean(cols['lp_feat']):.1f} vs pixels "
            f"{np.mean(cols['lp_pix']):.1f}")


def main(argv: list[str] | None = None) -> None:
    """Run the probe, print and log its summary line."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    line = diagnose(args) if args.diagnose else probe(args)
    print(line)
    with open(args.log, "a", encoding="utf-8") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
