"""Training presets: ``paper`` (the protocol of Siméoni et al., exact) and ``cpu`` (small, fast).

A preset fixes the input size, the network width, how long each active-learning cycle trains, the
batch size, the learning rate and the length of the unsupervised pre-training. ``--epochs`` and
``--width`` on the command line override the preset's values.

How long a cycle trains
-----------------------
``paper`` trains a fixed number of epochs (200) over the labeled set, as the paper does. ``cpu``
instead fixes the number of *gradient steps* per cycle: with 20 labeled digits an epoch is a single
batch, so "N epochs" would mean wildly different amounts of training at 20 and at 100 labels.
:meth:`Preset.epochs_for` turns the step count into epochs for the size of the training set of a
cycle (labeled images plus CEAL's pseudo-labeled ones), so every cycle of every method gets about
the same number of updates. With ``--semi`` an epoch is a fixed share of the pool (half of it, in
batches of 50 labeled + 78 pseudo-labeled images), and ``cpu`` again gives it the same ``steps``:
on digits (1,277-image pool at 20 labels) that is 23 epochs of 9 batches, on a 5,000-image pool 7
epochs of 32. An earlier fixed 10 semi-supervised epochs gave digits only ~80 steps, and SEMI fell
behind supervised training as labels grew (85.3 against 95.0 % at 100 labels); step-matched it is
ahead at every budget (97.3 % at 100 labels, 3 repetitions).

On a larger pool the same 200 steps are few passes over it: 7 epochs of 33 batches on the
5,000-image Fashion-MNIST pool, i.e. 7 label propagations. ``semi_min_epochs`` (16 in ``cpu``)
sets a floor: Fashion-MNIST then trains 16 epochs (528 steps), digits keeps its 23. Measured with
``benches/probe_semi.py`` (SEMI, no pre-training, Fashion-MNIST pool of 5,000): 71.1 % at 100
labels (repetitions 0-1) and 77.6 % at 300 labels (repetition 0) with about 500 steps and no
augmentation, against 70.1 % at 100 labels with 200 steps and no augmentation (69.6 % with 200
steps and the former augmentation); logistic regression on the same labeled pixels gives 70.1 %
and 74.9 %.

Augmentation
------------
``paper`` shifts (4 px at 32x32) and flips where the dataset allows it, as the paper does.
``cpu`` trains on the images as they are (``augment=False``): at its 16x16 input a shift is 2 px,
an eighth of the image, and on Fashion-MNIST (the only augmented dataset available offline) every
measurement was better without: supervised, 100 labels, 500 steps, repetitions 0-1: 71.5 % without,
70.6 % with 1-px shifts and flips, 70.1 % with flips alone, 69.4 % with 2-px shifts and flips;
SEMI, 100 labels, ~500 steps, repetition 0: 71.7 % without, 70.7 % with. DeepCluster
pre-training keeps its own augmentation (it needs it not to memorise its clusters).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    """Training settings shared by every cycle of an experiment.

    Attributes
    ----------
    name : str
        The preset's name (``paper`` or ``cpu``).
    description : str
        One line for ``--help``.
    image_size : int or None
        Side of the square input images; ``None`` keeps the dataset's size (32x32 after padding).
    width : float
        Width multiplier of the 13-layer ConvNet (1.0 = 128/256/512 channels).
    epochs : int or None
        Epochs per cycle (``paper``); ``None`` when ``steps`` sets the training length.
    steps : int or None
        Gradient steps per cycle (``cpu``); converted to epochs by :meth:`epochs_for`.
    semi_epochs : int or None
        Epochs per cycle with ``--semi``; ``None`` uses ``epochs``, or with ``steps`` as many epochs
        as ``steps`` semi-supervised batches need (see :meth:`epochs_for`).
    batch_size : int
        Supervised batch size.
    lr : float
        Initial learning rate (SGD Nesterov, cosine ramp-down).
    pretrain_epochs : int
        Epochs of DeepCluster pre-training with ``--pretrain``.
    pretrain_lr, pretrain_batch_size : float, int
        DeepCluster's own optimiser settings (its paper: lr 0.05), independent of the labeled
        set's batch: pre-training on digits with the cycle's settings (batch 20, lr 0.2) made
        the clustering NMI fall from 0.38 to 0.22 and left a backbone that could not fit 20
        labels (26 % test accuracy); lr 0.05, batch 64 lift NMI to 0.59 and fine-tune normally.
    balanced_batches : bool
        Pick the batch size (at most ``batch_size``) so that no epoch ends with a tiny batch:
        100 images make batches of 28, 28, 28 and 16, not 32, 32, 32 and 4, whose BatchNorm
        statistics are noise (measured on digits at 100 labels: 84.4 % with the batch of 4,
        96.2 % on the first 96 of the same labels).
    augment : bool
        Train on shifted and flipped copies where the dataset allows it (see the module doc).
    semi_min_epochs : int or None
        With ``steps`` and ``--semi``: train at least this many semi-supervised epochs (label
        propagations), however few batches ``steps`` would make.
    threads : int or None
        torch CPU threads; ``None`` keeps torch's choice. ``cpu`` uses 1: its small convolutions
        gain little from a second thread, and on a machine shared with other busy processes
        OpenMP's spinning threads made a step up to 20x slower (measured here, 2 cores).
    """

    name: str
    description: str
    image_size: int | None
    width: float
    epochs: int | None
    steps: int | None
    semi_epochs: int | None
    batch_size: int
    lr: float
    pretrain_epochs: int
    balanced_batches: bool = False
    pretrain_lr: float = 0.05
    pretrain_batch_size: int = 64
    threads: int | None = None
    augment: bool = True
    semi_min_epochs: int | None = None

    def epochs_for(self, n_train: int, *, semi: bool = False, override: int | None = None,
                   semi_batches: int | None = None) -> int:
        """Number of training epochs of one cycle.

        Parameters
        ----------
        n_train : int
            Images trained on in this cycle (labeled plus pseudo-labeled), at least 1.
        semi : bool
            Whether the cycle trains with label propagation (``--semi``).
        override : int or None
            ``--epochs`` from the command line; wins when given.
        semi_batches : int or None
            With ``semi``: batches in one semi-supervised epoch (see
            :func:`dalcore.training.semi_batches_per_epoch`); a ``steps`` preset then trains
            ``ceil(steps / semi_batches)`` epochs.

        Returns
        -------
        int
            Epochs, at least 1.
        """
        if override is not None:
            return int(override)
        if semi and self.semi_epochs is not None:
            return self.semi_epochs
        if self.epochs is not None:
            return self.epochs
        assert self.steps is not None
        if semi and semi_batches is not None:
            by_steps = math.ceil(self.steps / max(1, int(semi_batches)))
            return max(1, by_steps, self.semi_min_epochs or 1)
        batches_per_epoch = max(1, math.ceil(max(1, n_train) / self.batch_for(n_train)))
        return max(1, math.ceil(self.steps / batches_per_epoch))

    def batch_for(self, n_train: int) -> int:
        """Supervised batch size for ``n_train`` training images (see ``balanced_batches``).

        With ``balanced_batches`` the largest size in [batch_size / 2, batch_size] whose last
        batch is empty or at least half full; ``batch_size`` itself otherwise.
        """
        n = max(1, int(n_train))
        if not self.balanced_batches or n <= self.batch_size:
            return min(n, self.batch_size) if self.balanced_batches else self.batch_size
        for b in range(self.batch_size, (self.batch_size + 1) // 2 - 1, -1):
            r = n % b
            if r == 0 or 2 * r >= b:
                return b
        return self.batch_size

    def as_dict(self) -> dict:
        """The preset as a plain dictionary (for config.json)."""
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="the paper's protocol: width 1.0, 200 epochs, batch 32, lr 0.2, 32x32 input, "
        "400 pre-training epochs",
        image_size=None,
        width=1.0,
        epochs=200,
        steps=None,
        semi_epochs=None,
        batch_size=32,
        lr=0.2,
        pretrain_epochs=400,
    ),
    "cpu": Preset(
        name="cpu",
        description="small and fast for a laptop CPU: 16x16 input, no augmentation, width 0.25, "
        "200 gradient steps per cycle (supervised or semi-supervised, at least 16 "
        "semi-supervised epochs), batches of at most 32 (equal sizes), lr 0.2, "
        "20 pre-training epochs, 1 CPU thread",
        image_size=16,
        width=0.25,
        epochs=None,
        steps=200,
        semi_epochs=None,
        batch_size=32,
        lr=0.2,
        pretrain_epochs=20,
        balanced_batches=True,
        threads=1,
        augment=False,
        semi_min_epochs=16,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the known presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; expected one of: {', '.join(sorted(PRESETS))}"
        ) from None
