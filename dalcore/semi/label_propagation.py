"""Pseudo-labels for the unlabeled pool by label propagation (Iscen et al., CVPR 2019).

Before the first epoch and after every epoch of a cycle, :class:`LabelPropagationRefresh`:

1. extracts the L2-normalised features of all training images with the current model
   (``training.extract``: eval mode, no augmentation); with ``input_graph`` the images
   themselves (flattened, L2-normalised) replace them (``only``; ``first``: for the first
   refresh) or join them side by side, each half scaled by 1/sqrt(2) so that the cosine is the
   mean of the two (``always``);
2. ``dalcore.knn`` (inner product, k neighbours, self excluded; on the GPU for a CUDA model when
   dalcore has CUDA);
3. ``dalcore.knn_graph`` (edge weight ``max(0, s)^gamma``, reciprocal or union, symmetric
   normalisation);
4. ``dalcore.propagate``: ``(I - alpha S) Z = Y`` by block CG (``iters`` iterations), warm-started
   from the previous epoch's solution when the graph size is unchanged;
5. ``dalcore.pseudo_labels``: arg-max labels, certainty weights ``1 - H/log C`` and class weights.

Labeled points are forced to their true label with weight 1 (as in LP-DeepSSL); the returned
:class:`~dalcore.training.PseudoLabels` covers the pool (the non-labeled training indices).
Class weights are passed to training only with ``class_balance=True``.

The true labels of the pool are known in simulation, so every refresh records the pseudo-label
accuracy on the pool (``.accuracy``) and the time of each step (``.timings``). In the human loop
the pool's labels are unknown (-1 in ``y_train``) and the accuracy is NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import distributed

__all__ = ["LabelPropagationRefresh", "PropagationResult", "make_refresh", "propagate_labels"]

_MODES = ("reciprocal", "union")
_INPUT_GRAPH = ("none", "first", "always", "only")


def input_features(x: torch.Tensor) -> np.ndarray:
    """The images themselves as features: each flattened and L2-normalised (float32, numpy)."""
    flat = x.detach().reshape(int(x.shape[0]), -1).float().cpu()
    return torch.nn.functional.normalize(flat, dim=1).numpy()


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _sync(x: Any) -> None:
    if isinstance(x, torch.Tensor) and x.is_cuda:
        torch.cuda.synchronize(x.device)


@dataclass
class PropagationResult:
    """Output of :func:`propagate_labels` over all N points of the graph.

    Attributes
    ----------
    labels : np.ndarray
        (N,) int64 pseudo-labels; labeled points hold their true label.
    weights : np.ndarray
        (N,) float32 certainty weights in [0, 1]; labeled points have weight 1.
    class_weights : np.ndarray
        (C,) float32 class weights from ``dalcore.pseudo_labels``.
    Z : Any
        The propagated scores (N, C), same kind as the features (numpy or torch).
    timings : dict
        Seconds of ``knn``, ``graph``, ``solve`` (propagate), ``labels`` (pseudo_labels) and
        ``total``.
    info : dict
        Solver report of ``dalcore.propagate(..., return_info=True)``: ``iterations`` and
        ``residual`` (the largest over the classes), when available.
    """

    labels: np.ndarray
    weights: np.ndarray
    class_weights: np.ndarray
    Z: Any
    timings: dict
    info: dict


def propagate_labels(features: Any, labeled: np.ndarray, labeled_y: np.ndarray, *,
                     num_classes: int, k: int = 50, gamma: float = 3.0, alpha: float = 0.99,
                     iters: int = 20, mode: str = "reciprocal", x0: Any = None
                     ) -> PropagationResult:
    """k-NN graph on ``features``, label propagation from ``labeled``, pseudo-labels and weights.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (N, d) float32 features (L2-normalised for the ``ip`` metric to be a cosine similarity).
        A CUDA tensor keeps the k-NN, graph and solve on the GPU.
    labeled : np.ndarray
        Indices (into the N rows) of the labeled points, distinct.
    labeled_y : np.ndarray
        Their labels in ``[0, num_classes)``.
    num_classes : int
        Number of classes C.
    k, gamma, alpha, iters, mode :
        Neighbours (clipped to N - 1), edge exponent, propagation weight, CG iterations, graph mode.
    x0 : array, optional
        Warm start for the solver (N, C), e.g. the previous solution.

    Classes without a labeled example are left out of the solve (their column of ``Z`` is 0).

    Returns
    -------
    PropagationResult
    """
    import dalcore

    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    n = int(features.shape[0])
    labeled = np.asarray(labeled, dtype=np.int64).ravel()
    labeled_y = np.asarray(labeled_y, dtype=np.int64).ravel()
    if labeled.shape != labeled_y.shape:
        raise ValueError(f"labeled_y: expected {labeled.size} labels, got {labeled_y.size}")
    if labeled.size == 0:
        raise ValueError("labeled: expected at least one labeled point")
    if labeled.min() < 0 or labeled.max() >= n or np.unique(labeled).size != labeled.size:
        raise ValueError(f"labeled: expected distinct indices in [0, {n})")
    if labeled_y.min() < 0 or labeled_y.max() >= num_classes:
        raise ValueError(f"labeled_y: expected labels in [0, {num_classes})")
    if n < 2:
        raise ValueError(f"features: expected at least 2 points, got {n}")
    kk = min(int(k), n - 1)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = None
    if distributed.world_size() <= 1:  # (under torchrun, built by shards with the solve)
        knn = dalcore.knn(features, kk, metric="ip")
        _sync(knn[0])
        t1 = time.perf_counter()
        graph = dalcore.knn_graph(knn, k=kk, gamma=gamma, mode=mode)
        _sync(graph[0] if isinstance(graph, tuple) else None)
    else:
        t1 = t0
    t2 = time.perf_counter()

    # dalcore.propagate needs a labeled example of every class it solves for: classes absent
    # from the labeled set are left out of the solve and get a zero column (never predicted).
    present = np.unique(labeled_y)
    full = present.size == num_classes
    compact = np.searchsorted(present, labeled_y)
    y = np.full(n, -1, dtype=np.int64)
    y[labeled] = compact
    y_in: Any = y
    is_torch = isinstance(features, torch.Tensor)
    if is_torch:
        y_in = torch.from_numpy(y).to(features.device)
    if x0 is not None and not full:
        x0 = x0[:, torch.from_numpy(present).to(x0.device) if is_torch else present]
    if distributed.world_size() > 1:  # under torchrun: graph and solve sharded over the ranks
        out = distributed.propagate_pool(features, y, k=kk, gamma=gamma, mode=mode,
                                         num_classes=int(present.size), alpha=float(alpha),
                                         max_iter=int(iters), x0=x0)
    else:
        out = dalcore.propagate(graph, y_in, num_classes=int(present.size), alpha=float(alpha),
                                max_iter=int(iters), x0=x0, return_info=True)
    Z, info = out if isinstance(out, tuple) else (out, None)
    if not full:
        if is_torch:
            zf = torch.zeros((n, num_classes), dtype=Z.dtype, device=Z.device)
            zf[:, torch.from_numpy(present).to(Z.device)] = Z
        else:
            zf = np.zeros((n, num_classes), dtype=np.asarray(Z).dtype)
            zf[:, present] = np.asarray(Z)
        Z = zf
    _sync(Z)
    t3 = time.perf_counter()
    lab, w, cw = dalcore.pseudo_labels(Z)
    lab = _to_numpy(lab).astype(np.int64, copy=True)
    w = _to_numpy(w).astype(np.float32, copy=True)
    cw = _to_numpy(cw).astype(np.float32, copy=True)
    t4 = time.perf_counter()
    lab[labeled] = labeled_y
    w[labeled] = 1.0
    timings.update(knn=t1 - t0, graph=t2 - t1, solve=t3 - t2, labels=t4 - t3, total=t4 - t0)
    return PropagationResult(labels=lab, weights=w, class_weights=cw, Z=Z, timings=timings,
                             info=_solver_info(info))


def _solver_info(info: Any) -> dict:
    """``dalcore.propagate``'s report as plain numbers: max iterations and residual over columns."""
    out: dict = {}
    if info is None:
        return out
    its = getattr(info, "iterations", None)
    res = getattr(info, "residuals", None)
    if isinstance(info, dict):
        its, res = info.get("iterations"), info.get("residual", info.get("residuals"))
    if its is not None:
        out["iterations"] = int(np.max(_to_numpy(its)))
    if res is not None:
        out["residual"] = float(np.max(_to_numpy(res)))
    return out


class LabelPropagationRefresh:
    """The ``refresh`` callable of ``training.train_model`` for the SEMI setting.

    ``refresh(model, epoch)`` returns the :class:`~dalcore.training.PseudoLabels` of the pool for
    the next epoch. Built by :func:`make_refresh`; see the module docstring for the steps.

    Attributes
    ----------
    accuracy : list of float
        Pseudo-label accuracy on the pool after each refresh (true labels known in simulation).
    weighted_accuracy : list of float
        The same, weighted by the certainty weights.
    timings : list of dict
        Per refresh: seconds of ``extract``, ``knn``, ``graph``, ``solve``, ``labels``,
        ``propagation`` (knn + graph + solve) and ``total``.
    history : list of dict
        Per refresh: epoch, accuracy, weighted accuracy, solver info and timings (what ``log``
        receives).
    last : PropagationResult or None
        The latest result over all N training images (labeled points included).
    """

    def __init__(self, data: Any, labeled: np.ndarray, *, num_classes: int, device: Any,
                 k: int = 50, gamma: float = 3.0, alpha: float = 0.99, iters: int = 20,
                 mode: str = "reciprocal", class_balance: bool = False,
                 log: Callable[[dict], None] | None = None, batch_size: int = 512,
                 input_graph: str = "none") -> None:
        n = int(data.x_train.shape[0])
        if input_graph not in _INPUT_GRAPH:
            raise ValueError(f"input_graph: expected one of {_INPUT_GRAPH}, got {input_graph!r}")
        self.input_graph = input_graph
        self._pixels: torch.Tensor | None = None
        labeled = np.asarray(labeled, dtype=np.int64).ravel()
        if labeled.size == 0:
            raise ValueError("labeled: expected at least one labeled index")
        if labeled.min() < 0 or labeled.max() >= n or np.unique(labeled).size != labeled.size:
            raise ValueError(f"labeled: expected distinct training indices in [0, {n})")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected an integer >= 1, got {k!r}")
        if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
        if not (isinstance(gamma, (int, float)) and gamma > 0):
            raise ValueError(f"gamma: expected a positive number, got {gamma!r}")
        if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
            raise ValueError(f"iters: expected an integer >= 1, got {iters!r}")
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        self.data = data
        self.device = torch.device(device)
        self.num_classes = int(num_classes)
        self.k, self.gamma, self.alpha, self.iters, self.mode = int(k), float(gamma), \
            float(alpha), int(iters), mode
        self.class_balance = bool(class_balance)
        self.log = log
        self.batch_size = int(batch_size)
        self.labeled = np.sort(labeled)
        y = data.y_train.detach().cpu().numpy().astype(np.int64)
        self._y = y
        y_lab = y[self.labeled]
        if y_lab.min() < 0 or y_lab.max() >= self.num_classes or y.max() >= self.num_classes:
            raise ValueError("data.y_train: expected labels in "
                             f"[0, num_classes={self.num_classes}) (and -1 only for unknown "
                             "labels outside `labeled`)")
        mask = np.ones(n, dtype=bool)
        mask[self.labeled] = False
        self.pool = np.flatnonzero(mask).astype(np.int64)
        self.accuracy: list[float] = []
        self.weighted_accuracy: list[float] = []
        self.timings: list[dict] = []
        self.history: list[dict] = []
        self.last: PropagationResult | None = None
        self._on_gpu = False
        if self.device.type == "cuda":
            import dalcore
            self._on_gpu = dalcore.cuda_available()

    def __call__(self, model: torch.nn.Module, epoch: int) -> Any:
        """Pseudo-labels of the pool from ``model``'s current features (see the class docs)."""
        from dalcore.training import PseudoLabels, extract

        t0 = time.perf_counter()
        _, feats = extract(model, self.data.x_train, device=self.device,
                           batch_size=self.batch_size)
        feats = feats.float().contiguous()
        feats = self._with_input(feats)
        x0 = self.last.Z if self.last is not None else None
        if self._on_gpu:
            feats = feats.to(self.device)
        else:
            feats = feats.numpy()
            x0 = _to_numpy(x0) if x0 is not None else None
        t1 = time.perf_counter()
        res = propagate_labels(feats, self.labeled, self._y[self.labeled],
                               num_classes=self.num_classes, k=self.k, gamma=self.gamma,
                               alpha=self.alpha, iters=self.iters, mode=self.mode, x0=x0)
        self.last = res
        pool = self.pool
        known = pool[self._y[pool] >= 0]  # all of the pool in simulation, none in the human loop
        correct = res.labels[known] == self._y[known]
        acc = float(correct.mean()) if known.size else float("nan")
        wsum = float(res.weights[known].sum()) if known.size else 0.0
        wacc = float((res.weights[known] * correct).sum() / wsum) if wsum > 0 else float("nan")
        tm = {"extract": t1 - t0, **res.timings}
        tm["propagation"] = tm["knn"] + tm["graph"] + tm["solve"]
        tm["total"] = time.perf_counter() - t0
        self.accuracy.append(acc)
        self.weighted_accuracy.append(wacc)
        self.timings.append(tm)
        entry = {"epoch": int(epoch), "pseudo_accuracy": acc, "weighted_accuracy": wacc,
                 "mean_weight": float(res.weights[pool].mean()) if pool.size else float("nan"),
                 "solver": res.info, "timings": tm}
        self.history.append(entry)
        if self.log is not None:
            self.log(entry)
        return PseudoLabels(
            indices=pool.copy(),
            labels=res.labels[pool].copy(),
            weights=res.weights[pool].copy(),
            class_weights=res.class_weights.copy() if self.class_balance else None,
        )

    def _with_input(self, feats: torch.Tensor) -> torch.Tensor:
        """The graph's features: the model's, the images' (first refresh of ``input_graph=
        "first"``) or both side by side, each half scaled by 1/sqrt(2) (``"always"``: the cosine
        similarity is then the mean of the two)."""
        if self.input_graph == "none" or (self.input_graph == "first" and self.last is not None):
            return feats
        if self.input_graph == "first":  # used once: not kept
            return torch.from_numpy(input_features(self.data.x_train))
        if self._pixels is None:  # the images do not change between refreshes: kept
            self._pixels = torch.from_numpy(input_features(self.data.x_train))
        pix = self._pixels
        if self.input_graph == "only":
            return pix.contiguous()
        return (torch.cat([feats, pix], dim=1) * (0.5 ** 0.5)).contiguous()

    def mean_timings(self) -> dict:
        """Mean seconds of each step over all refreshes so far (empty dict before the first)."""
        if not self.timings:
            return {}
        return {key: float(np.mean([t[key] for t in self.timings])) for key in self.timings[0]}


def make_refresh(data: Any, labeled: np.ndarray, *, num_classes: int, device: Any, k: int = 50,
                 gamma: float = 3.0, alpha: float = 0.99, iters: int = 20,
                 mode: str = "reciprocal", class_balance: bool = False,
                 log: Callable[[dict], None] | None = None,
                 input_graph: str = "none") -> LabelPropagationRefresh:
    """The label-propagation ``refresh`` for ``training.train_model(..., refresh=...)``.

    Parameters
    ----------
    data : dalcore.data.Dataset
        All training images are nodes of the graph; ``y_train`` gives the labels of ``labeled``
        (and, in simulation, the pseudo-label accuracy on the pool).
    labeled : np.ndarray
        Training indices of the labeled set.
    num_classes : int
        Number of classes.
    device : torch.device or str
        Device of the model (feature extraction; k-NN/graph/solve too when CUDA is available).
    k : int
        Neighbours of the k-NN graph (50 in the paper; clipped to N - 1).
    gamma : float
        Exponent of the edge weights ``max(0, s)^gamma`` (3 in the paper).
    alpha : float
        Propagation weight in (0, 1) (0.99 in the paper).
    iters : int
        Conjugate-gradient iterations (20 in the paper).
    mode : {"reciprocal", "union"}
        Graph symmetrisation (``--graph``).
    class_balance : bool
        Pass the class weights of ``dalcore.pseudo_labels`` to the loss.
    log : callable, optional
        Called after each refresh with a dict: ``epoch``, ``pseudo_accuracy``,
        ``weighted_accuracy``, ``mean_weight``, ``solver``, ``timings``.
    input_graph : {"none", "first", "always", "only"}
        The graph's features besides the model's (see the module docstring). ``none`` is the
        paper's. On Fashion-MNIST (pool 5,000, 16 px, 100 labels) the cpu preset's DeepCluster
        features separate the classes worse than the pixels do (logistic regression 60 against
        68 %, propagation 61 against 73 % on the pool), and ``always`` / ``only`` lift PRE+SEMI
        by about one point (benches/RESULTS.md, "Where the accuracy goes").

    Returns
    -------
    LabelPropagationRefresh
        ``refresh(model, epoch) -> PseudoLabels``; also holds ``accuracy``, ``timings`` and
        ``history``.
    """
    return LabelPropagationRefresh(data, labeled, num_classes=num_classes, device=device, k=k,
                                   gamma=gamma, alpha=alpha, iters=iters, mode=mode,
                                   class_balance=class_balance, log=log,
                                   input_graph=input_graph)
