"""Tables and plots from one or more run folders: summary.md (mean ± std) and curves.png.

The table has the paper's form: one row per method (tagged ``PRE`` / ``SEMI`` when pre-training or
semi-supervision was on), one column per number of labels, cells ``mean ± std`` of the test accuracy
in percent over the repetitions (``std`` is numpy's default, ddof=0).

Merging folders never averages unlike runs: rows are grouped by their full configuration (every
column of results.csv except the repetition, its seed, the cycle and the measurements), so two runs
that differ in any setting (``width``, ``preset``, ``budget``, ...) give separate rows and curves,
each labelled by the settings that differ. A repetition is identified by its own seed (the
``seed`` column): the same repetition found in two folders (a copy, a folder given twice, an
overlapping run) counts once. Rows of older runs, written before the ``seed`` column, are told
apart by (folder, repeat) instead; beside rows that record their settings they are labelled
"settings unknown (older run)".
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Curve", "load_results", "summarize", "summary_markdown", "plot_curves", "write_report",
    "require_matplotlib",
]

#: Columns every results.csv must have (those of the first dalcore versions).
REQUIRED: tuple[str, ...] = (
    "dataset", "method", "pretrain", "semi", "repeat", "cycle", "labels", "accuracy",
)
#: Columns that identify a repetition or hold its measurements, not its configuration.
NOT_CONFIG: frozenset[str] = frozenset(
    {"repeat", "seed", "cycle", "labels", "accuracy", "seconds", "run", "line"}
)
#: Configuration columns shown in the row name itself rather than in the variant label.
_NAMED = ("dataset", "method", "pretrain", "semi")


@dataclass
class Curve:
    """Accuracies of one configuration (method, PRE/SEMI flags, settings) on one dataset.

    Attributes
    ----------
    dataset, method : str
    pretrain, semi : bool
    labels : list of int
        Sorted numbers of labels.
    accuracies : list of numpy.ndarray
        For each entry of ``labels``, the accuracies (fractions) of every repetition.
    config : dict of str to str
        Every configuration column of the group's rows (``""`` where an older run lacks it).
    variant : str
        The settings that tell this curve apart from the others of its dataset, e.g.
        ``"width=0.5"``; empty when nothing else differs.
    """

    dataset: str
    method: str
    pretrain: bool
    semi: bool
    labels: list[int]
    accuracies: list[np.ndarray]
    config: dict[str, str] = field(default_factory=dict)
    variant: str = ""

    @property
    def name(self) -> str:
        """Row label: ``PRE + SEMI + method`` style, as in the paper's tables, plus the variant."""
        tags = (["PRE"] if self.pretrain else []) + (["SEMI"] if self.semi else [])
        base = " + ".join(tags + [self.method])
        return f"{base} ({self.variant})" if self.variant else base

    @property
    def legend(self) -> str:
        """Label of the curve in a panel (the panel names PRE / SEMI)."""
        return f"{self.method} ({self.variant})" if self.variant else self.method

    def mean(self) -> np.ndarray:
        """Mean accuracy per number of labels."""
        return np.array([a.mean() for a in self.accuracies])

    def std(self) -> np.ndarray:
        """Standard deviation (ddof=0) of the accuracy per number of labels."""
        return np.array([a.std() for a in self.accuracies])


def _to_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
        return text
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a dalcore results.csv (not UTF-8 text)") from None


def _check_row(path: Path, line: int, r: dict) -> None:
    """ValueError naming the file and line for a row that is not a results row."""
    if None in r or any(r.get(c) is None for c in REQUIRED):
        raise ValueError(f"{path}: line {line}: expected as many fields as the header")
    try:
        repeat, cycle, labels = int(r["repeat"]), int(r["cycle"]), int(r["labels"])
        acc = float(r["accuracy"])
    except ValueError:
        raise ValueError(
            f"{path}: line {line}: repeat, cycle and labels must be integers and accuracy a "
            "number"
        ) from None
    if repeat < 0 or cycle < 0 or labels < 1 or not (math.isfinite(acc) and 0 <= acc <= 1):
        raise ValueError(f"{path}: line {line}: repeat/cycle/labels/accuracy out of range")


def _read_rows(path: Path) -> list[dict]:
    text = _read_text(path)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # torn last line of an interrupted run
    if not lines:
        raise ValueError(f"{path}: empty (expected a dalcore results.csv with a header)")
    try:
        reader = csv.DictReader(lines)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(
                f"{path}: not a dalcore results.csv (no column {', '.join(missing)} in the header)"
            )
        rows = []
        for r in reader:
            _check_row(path, reader.line_num, r)
            r["line"] = str(reader.line_num)
            rows.append(r)
    except csv.Error as e:
        raise ValueError(f"{path}: not a dalcore results.csv ({e})") from None
    return rows


def load_results(dirs: Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of the results.csv of every folder, with a ``run`` key (the folder) added.

    A folder given twice is read once.

    Raises
    ------
    ValueError
        If a folder has no results.csv, or a file is not a dalcore results.csv (the message
        names the file and, for a bad row, the line).
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
        for r in _read_rows(path):
            r["run"] = str(key.parent)
            rows.append(r)
    return rows


def _repetition(r: dict) -> tuple:
    """What identifies the repetition of a row: its own seed, else (folder, repeat)."""
    seed = (r.get("seed") or "").strip()
    return ("seed", seed) if seed else ("run", r["run"], int(r["repeat"]))


#: Label of rows written before results.csv carried the settings.
OLDER = "settings unknown (older run)"


def _variants(configs: list[dict[str, str]]) -> list[str]:
    """For each configuration, the ``key=value`` pairs of the keys that vary among the
    configurations that record settings; :data:`OLDER` for rows without any setting."""
    keys = [k for k in dict.fromkeys(k for c in configs for k in c) if k not in _NAMED]
    known = [c for c in configs if any(c.get(k, "") for k in keys)]
    varying = [k for k in keys if len({c.get(k, "") for c in known}) > 1]
    if not known:
        return ["" for _ in configs]  # only older runs: nothing to tell apart
    return [", ".join(f"{k}={c.get(k, '') or '?'}" for k in varying)
            if any(c.get(k, "") for k in keys) else OLDER for c in configs]


def summarize(rows: Sequence[dict]) -> list[Curve]:
    """Group rows into curves by full configuration, in order of first appearance.

    Rows that differ in any configuration column are never averaged together; the same
    repetition (same configuration, same repetition seed, same number of labels) found more
    than once counts once (the first row read).
    """
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in NOT_CONFIG))
    groups: dict[tuple, dict[int, list[float]]] = {}
    seen: set[tuple] = set()
    for r in rows:
        config = tuple((k, (r.get(k) or "").strip()) for k in keys)
        labels = int(r["labels"])
        ident = (config, _repetition(r), labels)
        if ident in seen:
            continue
        seen.add(ident)
        groups.setdefault(config, defaultdict(list))[labels].append(float(r["accuracy"]))
    curves = []
    for config, by_labels in groups.items():
        cfg = dict(config)
        labels = sorted(by_labels)
        curves.append(Curve(cfg["dataset"], cfg["method"], _to_bool(cfg["pretrain"]),
                            _to_bool(cfg["semi"]), labels,
                            [np.asarray(by_labels[n], dtype=np.float64) for n in labels],
                            config=cfg))
    for dataset in dict.fromkeys(c.dataset for c in curves):
        mine = [c for c in curves if c.dataset == dataset]
        for c, v in zip(mine, _variants([c.config for c in mine])):
            c.variant = v
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
        common = _common_settings(cs)
        if common:
            parts.append(f"settings: {common}\n")
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


def _common_settings(curves: Sequence[Curve]) -> str:
    """``key=value`` of the settings shared by every curve that records its settings."""
    keys = [k for k in dict.fromkeys(k for c in curves for k in c.config) if k not in _NAMED]
    known = [c for c in curves if any(c.config.get(k, "") for k in keys)]
    same = [k for k in keys if len({c.config.get(k, "") for c in known}) == 1]
    return ", ".join(f"{k}={known[0].config[k]}" for k in same if known[0].config.get(k, ""))


def require_matplotlib() -> None:
    """ValueError with the install command when matplotlib (needed for curves.png) is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("curves.png needs matplotlib, which is not installed: "
                         "pip install matplotlib")


_CONFIG_ORDER = ("base", "PRE", "SEMI", "PRE + SEMI")


def _config(c: Curve) -> str:
    tags = (["PRE"] if c.pretrain else []) + (["SEMI"] if c.semi else [])
    return " + ".join(tags) or "base"


def plot_curves(curves: Sequence[Curve], path: str | os.PathLike) -> None:
    """Accuracy vs number of labels, mean line with a ±std band: one row of panels per dataset,
    one panel per configuration (base, PRE, SEMI, PRE + SEMI) present, one colour per method and
    variant (the same in every panel), one shared legend."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(c.dataset for c in curves)) or [""]
    present = {_config(c) for c in curves}
    configs = [k for k in _CONFIG_ORDER if k in present] or ["base"]
    names = list(dict.fromkeys(c.legend for c in curves))
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
                color = cmap(names.index(c.legend) % 10)
                x = np.asarray(c.labels)
                m, s = 100 * c.mean(), 100 * c.std()
                (line,) = ax.plot(x, m, marker="o", color=color, label=c.legend)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, linewidth=0)
                handles.setdefault(c.legend, line)
            ax.set_title(f"{dataset}: {config}" if dataset else config)
            ax.set_xlabel("number of labels")
            if col == 0:
                ax.set_ylabel("test accuracy (%)")
            ax.grid(True, alpha=0.3)
    fig.tight_layout()
    # outside the panels, right of them: the saved figure grows to hold it (long method names)
    legend = fig.legend(list(handles.values()), list(handles.keys()), loc="center left",
                        bbox_to_anchor=(1.0, 0.5), title="method (mean ± std)")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", bbox_extra_artists=(legend,))
    plt.close(fig)
    os.replace(tmp, path)


def write_report(dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> str:
    """Merge the results of ``dirs`` and write ``summary.md`` and ``curves.png`` into ``out``.

    Returns
    -------
    str
        The summary table (Markdown).

    Raises
    ------
    ValueError
        For a missing or malformed results.csv (naming the file), a folder that cannot be
        written, or a missing matplotlib (with the install command).
    """
    curves = summarize(load_results(dirs))
    require_matplotlib()
    out = Path(out)
    try:
        return _write(curves, out)
    except OSError as e:
        raise ValueError(f"{out}: cannot write the report there ({e.strerror or e})") from None


def _write(curves: list[Curve], out: Path) -> str:
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
