"""``dalcore query``: the :mod:`dalcore.loop` step on a project's labels, and its records.

With labels of at least two classes, a query fits the model of the project's preset on the
labeled images (with the unlabeled ones under ``--semi`` / ``--pretrain``: the same code as
``dalcore run``), predicts every image, estimates the model's accuracy honestly (k-fold
cross-validation of the same training over the labels, and how the previous model did on the
batch the annotator labeled since) and selects the next batch with the chosen method. With no
label yet, the batch is chosen without labels: at random, or by k-center on the features of the
DeepCluster network under ``--pretrain``. With labels of one class only, no classifier can be
trained; the batch is chosen by k-center from the labeled images (on the pre-trained features, or
on the pixels), which covers what the labels do not.

Everything is recorded in the database: the model's summary and predictions, the query and its
items in priority order. The batch is also written as CSV (header ``path``) to
``PROJECT/queries/NNNN.csv`` or to ``out``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..experiment import derive_seed
from .dataset import ProjectData, load_project_data
from .locks import ProjectLock
from .store import Project, ProjectError

__all__ = ["QUERY_METHODS", "QueryOptions", "QueryResult", "run_query"]

#: Methods a project query accepts.
QUERY_METHODS = ("random", "uncertainty", "coreset", "ceal", "jlp", "typiclust", "probcover")
#: Label-free first-batch choice of each method (dalcore.acquisition.initial); the others take
#: ``kcenter`` on pre-trained features under --pretrain, ``random`` otherwise.
_LABEL_FREE = {"random": "random", "coreset": "kcenter", "typiclust": "typiclust",
               "probcover": "probcover"}
_NEED_MODEL = ("uncertainty", "coreset", "ceal", "jlp")

Progress = Callable[[str, float], None]


@dataclass
class QueryOptions:
    """What ``dalcore query`` accepts (see the CLI's help)."""

    budget: int
    method: str = "uncertainty"
    semi: bool = False
    pretrain: bool = False
    device: str = "auto"
    out: str | None = None
    cv: int = 3
    progress: bool = True


@dataclass
class QueryResult:
    """What a query did; ``lines`` is what the CLI prints (the file's path last)."""

    query_id: int
    file: Path
    image_ids: list[int]
    model_id: int | None
    lines: list[str] = field(default_factory=list)


def validate_options(opts: QueryOptions) -> None:
    """Refuse bad options before any work (ProjectError naming the option)."""
    if isinstance(opts.budget, bool) or not isinstance(opts.budget, int) or opts.budget < 1:
        raise ProjectError(f"--budget: expected a positive integer, got {opts.budget!r}")
    if opts.method not in QUERY_METHODS:
        raise ProjectError(f"--method: expected one of {', '.join(QUERY_METHODS)}, "
                           f"got {opts.method!r}")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise ProjectError(f"--device: expected auto, cpu or cuda, got {opts.device!r}")
    if isinstance(opts.cv, bool) or not isinstance(opts.cv, int) or opts.cv < 0 or opts.cv == 1:
        raise ProjectError(f"--cv: expected 0 (off) or a number of folds >= 2, got {opts.cv!r}")
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ProjectError("--device cuda: no CUDA device is available to torch")


def run_query(root: str | os.PathLike, opts: QueryOptions,
              progress: Progress | None = None) -> QueryResult:
    """Run one query on the project in ``root`` (holding its query lock); see the module doc.

    Raises
    ------
    ProjectError
        Bad options, a budget larger than the unlabeled images, another query running.
    """
    import torch

    validate_options(opts)
    threads = torch.get_num_threads()
    with ProjectLock(root, "query"), Project.open(root) as project:
        from ..presets import get_preset

        want = get_preset(project.preset).threads  # cpu: 1 (see Preset.threads)
        if want:
            torch.set_num_threads(want)
        try:
            return _Query(project, opts, progress).run()
        finally:
            torch.set_num_threads(threads)


class _Query:
    def __init__(self, project: Project, opts: QueryOptions, progress: Progress | None) -> None:
        from ..experiment import resolve_device
        from ..loop import StepSettings
        from ..presets import get_preset

        self.project, self.opts = project, opts
        self.report = progress or (lambda stage, frac: None)
        self.pd: ProjectData = load_project_data(project)
        self.qid = project.next_query_id()
        self.seed = derive_seed(project.seed, "query", self.qid)
        self.device = resolve_device(opts.device)
        preset = get_preset(project.preset)
        self.settings = StepSettings(preset=preset, width=preset.width, semi=opts.semi,
                                     progress=opts.progress)
        self.lines: list[str] = []
        self.backbone: dict | None = None

    def run(self) -> QueryResult:
        pd, opts, t0 = self.pd, self.opts, time.perf_counter()
        if opts.budget > pd.pool.size:
            raise ProjectError(f"--budget: {opts.budget} is more than the {pd.pool.size} "
                               "unlabeled images of the project")
        y = pd.data.y_train.numpy()
        present = np.unique(y[pd.labeled])
        self.lines.append(f"query {self.qid}: {pd.labeled.size} labeled image(s) of "
                          f"{present.size} class(es), {pd.pool.size} unlabeled")
        self.lines.extend(_last_batch_accuracy(self.project))
        if opts.pretrain:
            self.backbone = self._backbone()
        if present.size >= 2:
            rows, model_id, method = self._with_model()
        else:
            rows, method = self._label_free(present.size), None
            model_id = None
        self.report("writing", 1.0)
        path, rows = self._write(rows, method or self._label_free_name(present.size), model_id)
        self.lines.append(f"selected {len(rows)} image(s) in {time.perf_counter() - t0:.1f} s")
        self.lines.append(str(path))
        return QueryResult(self.qid, path, [int(pd.ids[r]) for r in rows], model_id, self.lines)

    # ------------------------------------------------------------------ without a classifier

    def _label_free_method(self, n_classes: int) -> str:
        if n_classes == 1:
            return "kcenter"  # from the labeled images: cover what they do not
        default = "kcenter" if self.backbone is not None else "random"
        return _LABEL_FREE.get(self.opts.method, default)

    def _label_free_name(self, n_classes: int) -> str:
        return f"{self._label_free_method(n_classes)} (label-free)"

    def _label_free(self, n_classes: int) -> np.ndarray:
        """A batch chosen without a classifier (no label yet, or one class only)."""
        from .. import kcenter
        from ..acquisition.initial import select_initial

        pd, opts = self.pd, self.opts
        why = "no label yet" if n_classes == 0 else "labels of one class only"
        how = self._label_free_method(n_classes)
        if opts.method in ("uncertainty", "ceal", "jlp") or opts.semi:
            self.lines.append(f"note: {why}: --method {opts.method}"
                              f"{' --semi' if opts.semi else ''} needs labels of two classes; "
                              f"this batch is chosen without labels ({how})")
        rng = np.random.default_rng(derive_seed(self.seed, "label-free"))
        feats = None if how == "random" else self._label_free_features()
        if n_classes == 1:
            return np.asarray(kcenter(feats, opts.budget, labeled=pd.labeled), dtype=np.int64)
        rows = select_initial(how, opts.budget, features=feats, n=int(pd.ids.size), rng=rng,
                              num_classes=int(pd.data.num_classes))
        return np.asarray(rows, dtype=np.int64)

    def _label_free_features(self) -> np.ndarray:
        """Pre-trained network features under --pretrain, else the normalised pixels."""
        x = self.pd.data.x_train
        if self.backbone is None:
            return np.ascontiguousarray(x.reshape(x.shape[0], -1).numpy(), dtype=np.float32)
        from ..models import ConvNet13
        from ..training import extract

        model = ConvNet13(in_channels=int(x.shape[1]), num_classes=int(self.pd.data.num_classes),
                          width=self.settings.width)
        model.load_backbone(self.backbone)
        _, feats = extract(model.to(self.device), x, device=self.device)
        return feats.numpy()

    def _backbone(self) -> dict:
        import dataclasses

        import torch

        from ..loop import pretrained_backbone

        self.report("pre-training", 0.0)
        data = self.pd.data
        n = int(data.x_train.shape[0])
        clusters = max(2, min(5 * int(data.num_classes), n // 4))
        blind = dataclasses.replace(data, y_train=torch.zeros(n, dtype=torch.int64))
        path = self.project.root / "cache" / f"pretrain_{self.project.seed}.pt"
        cached = path.is_file()
        state = pretrained_backbone(self.settings, blind, self.device, path, self.project.seed,
                                    num_clusters=clusters)
        self.lines.append(f"DeepCluster backbone ({self.settings.preset.pretrain_epochs} epochs, "
                          f"{clusters} clusters) {'reused from' if cached else 'cached in'} "
                          f"{path}")
        return state

    # ------------------------------------------------------------------ with a classifier

    def _with_model(self) -> tuple[np.ndarray, int, str]:
        from ..loop import fit, select
        from ..training import extract

        pd, opts, data = self.pd, self.opts, self.pd.data
        if opts.cv:
            self.lines.extend(self._cross_validate())
        self.report("training", 0.0)
        fitted = fit(self.settings, data, pd.labeled, device=self.device,
                     init_seed=derive_seed(self.seed, "init"),
                     train_seed=derive_seed(self.seed, "train"), pseudo=self._ceal_pseudo(),
                     backbone=self.backbone, desc=f"query {self.qid}",
                     on_epoch=lambda e, n: self.report("training", e / max(1, n)))
        self.report("selecting", 0.0)
        probs, _ = extract(fitted.model, data.x_train, device=self.device)
        probs = probs.numpy()
        sel = select(fitted, data, pd.labeled, pd.pool, method=opts.method, budget=opts.budget,
                     cycle=self.qid - 1, seed=derive_seed(self.seed, "acquire"),
                     device=self.device)
        self._save_ceal_pseudo(sel.pseudo)
        model_id = self._record_model(fitted, probs)
        self.lines.extend(_pool_distribution(self.project.classes(), probs, pd.pool, fitted))
        return sel.indices, model_id, opts.method

    def _cross_validate(self) -> list[str]:
        from .crossval import cross_validate

        self.report("cross-validation", 0.0)
        res = cross_validate(self.settings, self.pd, folds=self.opts.cv, device=self.device,
                             seed=derive_seed(self.seed, "cv"), backbone=self.backbone,
                             progress=lambda f: self.report("cross-validation", f))
        self.cv = res
        return [res.line()]

    def _record_model(self, fitted: Any, probs: np.ndarray) -> int:
        import torch

        pd, project = self.pd, self.project
        weights = project.root / "models" / f"{self.qid:04d}.pt"
        tmp = weights.with_name(weights.name + ".tmp")
        torch.save(fitted.model.state_dict(), tmp)
        os.replace(tmp, weights)
        pseudo = fitted.refresh.last if fitted.refresh is not None else None
        preds = [(int(i), int(probs[r].argmax()), float(probs[r].max()),
                  None if pseudo is None else int(pseudo.labels[r]),
                  None if pseudo is None else float(pseudo.weights[r]))
                 for r, i in enumerate(pd.ids)]
        cv = getattr(self, "cv", None)
        summary = {
            "query": self.qid, "method": self.opts.method, "preset": project.preset,
            "width": self.settings.width, "image_size": int(pd.data.x_train.shape[-1]),
            "channels": int(pd.data.x_train.shape[1]), "semi": self.opts.semi,
            "pretrain": self.opts.pretrain, "labels_used": int(pd.labeled.size),
            "classes": project.classes(),
            "accuracy_cv": None if cv is None else cv.mean,
            "accuracy_cv_std": None if cv is None else cv.std,
            "cv_folds": None if cv is None else cv.folds,
            "mean": pd.data.mean, "std": pd.data.std,
        }
        return project.record_model(summary, str(weights.relative_to(project.root)), preds)

    def _ceal_pseudo(self):
        """CEAL's pseudo-labels chosen by the previous query's model (method ceal only)."""
        if self.opts.method != "ceal":
            return None
        prev = self.project.root / "queries" / f"{self.qid - 1:04d}.ceal.json"
        if not prev.is_file():
            return None
        from ..training import PseudoLabels

        doc = json.loads(prev.read_text(encoding="utf-8"))
        row_of = {int(i): r for r, i in enumerate(self.pd.ids)}
        keep = [(row_of[i], c) for i, c in zip(doc["image_ids"], doc["labels"])
                if i in row_of and self.pd.data.y_train[row_of[i]] < 0]
        if not keep:
            return None
        rows, labels = zip(*keep)
        return PseudoLabels(indices=np.array(rows, dtype=np.int64),
                            labels=np.array(labels, dtype=np.int64),
                            weights=np.ones(len(rows), dtype=np.float32))

    def _save_ceal_pseudo(self, pseudo: Any) -> None:
        if pseudo is None:
            return
        doc = {"image_ids": [int(self.pd.ids[r]) for r in pseudo.indices],
               "labels": [int(v) for v in pseudo.labels]}
        path = self.project.root / "queries" / f"{self.qid:04d}.ceal.json"
        path.write_text(json.dumps(doc), encoding="utf-8")

    # ------------------------------------------------------------------ output

    def _write(self, rows: np.ndarray, method: str, model_id: int | None
               ) -> tuple[Path, np.ndarray]:
        """The CSV file (atomically), then the query's records in one transaction; returns the
        file and the rows written (those labeled while training are left out)."""
        import csv
        import io

        pd, project = self.pd, self.project
        labeled_since = project.current_labels()  # the page stays usable while a query trains
        kept = [r for r in rows if int(pd.ids[r]) not in labeled_since]
        if len(kept) < len(rows):
            self.lines.append(f"{len(rows) - len(kept)} image(s) of the batch were labeled while "
                              "the model trained: left out of it")
            rows = np.asarray(kept, dtype=np.int64)
        path = Path(self.opts.out) if self.opts.out else \
            project.root / "queries" / f"{self.qid:04d}.csv"
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path"])
        w.writerows([pd.paths[r]] for r in rows)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(buf.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            raise ProjectError(f"--out {path}: cannot write ({e.strerror})") from None
        preds = project.predictions(model_id) if model_id is not None else {}
        items = [(int(pd.ids[r]), *preds.get(int(pd.ids[r]), (None, None))[:2]) for r in rows]
        options = {"semi": self.opts.semi, "pretrain": self.opts.pretrain,
                   "requested_method": self.opts.method, "device": str(self.device)}
        project.record_query(self.qid, method=method, budget=len(rows), options=options,
                             model_id=model_id, file=str(path.resolve()), items=items)
        return path, rows


def _last_batch_accuracy(project: Project) -> list[str]:
    """How the previous model did on the images of the last batch labeled since (held out)."""
    q = project.last_query()
    if q is None or q["model_id"] is None:
        return []
    labels = project.current_labels()
    judged = [(it["predicted"], labels[it["image_id"]]) for it in q["items"]
              if it["image_id"] in labels and it["predicted"] is not None]
    if not judged:
        return []
    right = sum(int(p == t) for p, t in judged)
    return [f"the previous model was right on {right} of the {len(judged)} images of query "
            f"{q['id']} labeled since ({100.0 * right / len(judged):.1f} %, held-out images "
            f"chosen by {q['method']})"]


def _pool_distribution(classes: list[str], probs: np.ndarray, pool: np.ndarray,
                       fitted: Any) -> list[str]:
    """The class distribution of the unlabeled images' pseudo-labels."""
    if fitted.refresh is not None and fitted.refresh.last is not None:
        lab, src = fitted.refresh.last.labels[pool], "label propagation"
    else:
        lab, src = probs[pool].argmax(axis=1), "the model's predictions"
    counts = np.bincount(lab, minlength=len(classes))
    parts = ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
    return [f"unlabeled images by class ({src}): {parts}"]
