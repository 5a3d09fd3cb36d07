"""Tables and plots from one or more run folders: summary.md (mean ± std) and curves.png.

The table has the paper's form: one row per method (tagged ``PRE`` / ``SEMI`` when pre-training or
semi-supervision was on), one column per number of labels, cells ``mean ± std`` of the test accuracy
in percent over the repetitions (``std`` is numpy's default, ddof=0). Folders are merged: each
(folder, repeat) pair counts as one repetition, so runs made with different seeds add up.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Curve", "load_results", "summarize", "summary_markdown", "plot_curves", "write_report"]


@dataclass
class Curve:
    """Accuracies of one method (with its PRE/SEMI flags) on one dataset, by number of labels.

    Attributes
    ----------
    dataset, method : str
    pretrain, semi : bool
    labels : list of int
        Sorted numbers of labels.
    accuracies : list of numpy.ndarray
        For each entry of ``labels``, the accuracies (fractions) of every repetition.
    """

    dataset: str
    method: str
    pretrain: bool
    semi: bool
    labels: list[int]
    accuracies: list[np.ndarray]

    @property
    def name(self) -> str:
        """Row label: ``PRE + SEMI + method`` style, as in the paper's tables."""
        tags = (["PRE"] if self.pretrain else []) + (["SEMI"] if self.semi else [])
        return " + ".join(tags + [self.method])

    def mean(self) -> np.ndarray:
        """Mean accuracy per number of labels."""
        return np.array([a.mean() for a in self.accuracies])

    def std(self) -> np.ndarray:
        """Standard deviation (ddof=0) of the accuracy per number of labels."""
        return np.array([a.std() for a in self.accuracies])


def _to_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")


def load_results(dirs: Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of the results.csv of every folder, with a ``run`` key (the folder) added.

    Raises
    ------
    ValueError
        If a folder has no results.csv.
    """
    rows: list[dict] = []
    seen: set[Path] = set()
    for d in dirs:
        path = Path(d)
        if path.is_dir():
            path = path / "results.csv"
        if not path.is_file():
            raise ValueError(f"{d}: no results.csv there (expected a dalcore run folder)")
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]  # torn last line of an interrupted run
        for r in csv.DictReader(lines):
            r["run"] = str(key.parent)
            rows.append(r)
    return rows


def summarize(rows: Sequence[dict]) -> list[Curve]:
    """Group rows into curves, in order of first appearance."""
    groups: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        key = (r["dataset"], r["method"], _to_bool(r["pretrain"]), _to_bool(r["semi"]))
        groups.setdefault(key, defaultdict(list))[int(r["labels"])].append(float(r["accuracy"]))
    curves = []
    for (dataset, method, pre, semi), by_labels in groups.items():
        labels = sorted(by_labels)
        curves.append(Curve(dataset, method, pre, semi, labels,
                            [np.asarray(by_labels[n], dtype=np.float64) for n in labels]))
    return curves


def summary_markdown(curves: Sequence[Curve]) -> str:
    """Markdown tables, one per dataset: rows = methods, columns = number of labels."""
    parts = []
    for dataset in dict.fromkeys(c.dataset for c in curves):
        cs = [c for c in curves if c.dataset == dataset]
        labels = sorted({n for c in cs for n in c.labels})
        reps = sorted({len(a) for c in cs for a in c.accuracies})
        rep_text = str(reps[0]) if len(reps) == 1 else f"{reps[0]}-{reps[-1]}"
        parts.append(f"### {dataset}: test accuracy (%), mean ± std over {rep_text} "
                     f"repetition{'s' if reps[-1] != 1 else ''}\n")
        parts.append("| method | " + " | ".join(str(n) for n in labels) + " |")
        parts.append("|---|" + "---:|" * len(labels))
        for c in cs:
            cells = []
            for n in labels:
                if n in c.labels:
                    a = c.accuracies[c.labels.index(n)]
                    cells.append(f"{100 * a.mean():.2f} ± {100 * a.std():.2f}")
                else:
                    cells.append("")
            parts.append(f"| {c.name} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


_CONFIG_ORDER = ("base", "PRE", "SEMI", "PRE + SEMI")


def _config(c: Curve) -> str:
    tags = (["PRE"] if c.pretrain else []) + (["SEMI"] if c.semi else [])
    return " + ".join(tags) or "base"


def plot_curves(curves: Sequence[Curve], path: str | os.PathLike) -> None:
    """Accuracy vs number of labels, mean line with a ±std band: one row of panels per dataset,
    one panel per configuration (base, PRE, SEMI, PRE + SEMI) present, one colour per method
    (the same in every panel), one shared legend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(c.dataset for c in curves)) or [""]
    present = {_config(c) for c in curves}
    configs = [k for k in _CONFIG_ORDER if k in present] or ["base"]
    methods = list(dict.fromkeys(c.method for c in curves))
    nrow, ncol = len(datasets), len(configs)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol + 1.8, 3.8 * nrow), squeeze=False,
                             sharey="row")
    cmap = plt.get_cmap("tab10")
    handles: dict[str, object] = {}
    for r, dataset in enumerate(datasets):
        for col, config in enumerate(configs):
            ax = axes[r][col]
            mine = [c for c in curves if c.dataset == dataset and _config(c) == config]
            if not mine:
                ax.set_axis_off()
                continue
            for c in mine:
                color = cmap(methods.index(c.method) % 10)
                x = np.asarray(c.labels)
                m, s = 100 * c.mean(), 100 * c.std()
                (line,) = ax.plot(x, m, marker="o", color=color, label=c.method)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, linewidth=0)
                handles.setdefault(c.method, line)
            ax.set_title(f"{dataset}: {config}" if dataset else config)
            ax.set_xlabel("number of labels")
            if col == 0:
                ax.set_ylabel("test accuracy (%)")
            ax.grid(True, alpha=0.3)
    fig.legend(list(handles.values()), list(handles.keys()), loc="center right",
               title="method (mean ± std)")
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - 1.6 / (4.4 * ncol + 1.8), 1.0))
    tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> str:
    """Merge the results of ``dirs`` and write ``summary.md`` and ``curves.png`` into ``out``.

    Returns
    -------
    str
        The summary table (Markdown).
    """
    curves = summarize(load_results(dirs))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not curves:
        text = "(no finished cycles yet)\n"
        (out / "summary.md").write_text(text, encoding="utf-8")
        return text
    text = summary_markdown(curves)
    tmp = out / f".summary.md.tmp{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / "summary.md")
    plot_curves(curves, out / "curves.png")
    return text
