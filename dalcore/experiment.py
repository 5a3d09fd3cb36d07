"""The active-learning experiment: cycles x repetitions x methods, checkpoints, resume, results.

Protocol (Siméoni et al., ICPR 2020; DESIGN.md section 4)
--------------------------------------------------------
For every repetition ``r`` (seed ``seed + r``) an initial labeled set of one ``budget``, balanced
over the classes, is drawn; every method starts from that same set. Cycle ``c`` (0-based) trains a
model rebuilt from scratch (or from the pre-trained backbone) on ``(c + 1) * budget`` labels,
evaluates it on the test set, records a row in ``results.csv`` and then, unless it is the last
cycle, asks the method's acquisition strategy for ``budget`` more pool images.

Determinism and resume
----------------------
Every random choice is derived from ``(seed, repeat, cycle, method)`` (:func:`derive_seed`), so the
state that must survive a crash is only the labeled set and CEAL's pending pseudo-labels. After each
finished cycle the state of that (method, repeat) is written atomically to
``checkpoints/<method>_r<repeat>.json`` (it also keeps the cycle's result row) and then the row is
appended to ``results.csv`` (flush + fsync). Running the same command again skips every finished
cycle, re-appends a row the crash lost between the two writes, drops a half-written last line, and
refuses to continue a folder whose ``config.json`` differs from the current configuration.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import importlib.util
import io
import json
import os
import signal
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .loop import StepSettings, fit, pretrained_backbone, select
from .presets import PRESETS, Preset, get_preset

__all__ = [
    "COLUMNS",
    "DEFAULT_METHODS",
    "ExperimentConfig",
    "ExperimentError",
    "SimulatedCrash",
    "derive_seed",
    "run_experiment",
]

#: Columns of results.csv, in order.
COLUMNS: tuple[str, ...] = (
    "dataset", "method", "pretrain", "semi", "repeat", "cycle", "labels", "accuracy", "seconds",
)
DEFAULT_METHODS: tuple[str, ...] = ("random", "uncertainty", "coreset", "ceal")
GRAPH_MODES: tuple[str, ...] = ("reciprocal", "union")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Test hook: ``"N"`` or ``"N:checkpoint"`` raises :class:`SimulatedCrash` after the N-th cycle this
#: process finishes (after the results row, or between the checkpoint and the row); ``"N:kill"``
#: sends the process SIGKILL between the checkpoint and the row (a real ``kill -9``).
CRASH_ENV = "DALCORE_TEST_CRASH_AFTER"

#: Fields of the configuration that must match to resume a run (the rest only say where/how to run).
_RESULT_FIELDS: tuple[str, ...] = (
    "dataset", "data_dir", "methods", "budget", "cycles", "repeats", "preset", "epochs", "width",
    "pool_size", "seed", "pretrain", "semi", "graph", "class_balance",
)


class ExperimentError(ValueError):
    """A configuration that cannot run (bad argument, mismatching run folder, missing feature)."""


class SimulatedCrash(RuntimeError):
    """Raised by the test hook :data:`CRASH_ENV` to simulate a crash between cycles."""


@dataclass
class ExperimentConfig:
    """Everything ``dalcore run`` accepts.

    Attributes
    ----------
    dataset : str
        Dataset name (see ``dalcore.data.DATASETS``).
    data_dir : str or None
        Folder of the dataset files (not needed for the embedded ``digits``).
    methods : tuple of str
        Acquisition strategies run side by side.
    budget : int
        Labels added per cycle; also the size of the initial labeled set.
    cycles : int
        Number of cycles; cycle ``c`` trains on ``(c + 1) * budget`` labels.
    repeats : int
        Repetitions; repetition ``r`` uses seed ``seed + r`` for its split and model init.
    preset : str
        ``paper`` or ``cpu`` (:mod:`dalcore.presets`).
    epochs, width : int / float or None
        Override the preset's training length / network width.
    pool_size : int or None
        Use a class-balanced random subset of this many training images as the pool.
    device : str
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    seed : int
        Base seed; the same seed gives the same results.
    out : str or None
        Output folder; ``None`` -> ``runs/<timestamp>``.
    pretrain, semi : bool
        DeepCluster pre-training (PRE) / label-propagation semi-supervision (SEMI).
    graph : str
        k-NN graph of SEMI: ``reciprocal`` or ``union``.
    class_balance : bool
        Class-balanced pseudo-label weights in SEMI.
    threads : int or None
        torch CPU threads (``torch.set_num_threads``); ``None`` takes the preset's (1 for
        ``cpu``, torch's choice for ``paper``).
    progress : bool
        Show progress bars (cycles and epochs).
    verbose : bool
        Print one line per finished cycle and the summary at the end.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    budget: int = 20
    cycles: int = 5
    repeats: int = 3
    preset: str = "cpu"
    epochs: int | None = None
    width: float | None = None
    pool_size: int | None = None
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    pretrain: bool = False
    semi: bool = False
    graph: str = "reciprocal"
    class_balance: bool = False
    threads: int | None = None
    progress: bool = True
    verbose: bool = True

    def result_fields(self) -> dict[str, Any]:
        """The fields that determine the results (compared on resume), JSON-ready."""
        d = {k: getattr(self, k) for k in _RESULT_FIELDS}
        d["methods"] = list(self.methods)
        if d["data_dir"] is not None:
            d["data_dir"] = str(Path(d["data_dir"]).expanduser().resolve())
        return d


# --------------------------------------------------------------------------------------------
# Seeds


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived from integers and strings (stable across processes and platforms)."""
    ints = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1 << 31, 1], dtype=np.uint64)) & ((1 << 63) - 1))


# --------------------------------------------------------------------------------------------
# Validation


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


PRETRAIN_MODULE = "dalcore.unsupervised.deepcluster"
SEMI_MODULE = "dalcore.semi.label_propagation"


def validate_config(cfg: ExperimentConfig) -> Preset:
    """Check every argument that can be checked before loading data; returns the preset.

    Raises
    ------
    ExperimentError
        Naming the argument and what was expected.
    """
    from . import data as _data
    from .acquisition import STRATEGIES

    aliases = getattr(_data, "_ALIASES", {})
    dataset = cfg.dataset.strip().lower() if isinstance(cfg.dataset, str) else cfg.dataset
    dataset = aliases.get(dataset, dataset)
    if dataset not in _data.DATASETS:
        raise ExperimentError(
            f"--dataset: unknown dataset {cfg.dataset!r}; expected one of: "
            f"{', '.join(_data.DATASETS)}"
        )
    if not cfg.methods:
        raise ExperimentError("--methods: expected at least one method")
    unknown = [m for m in cfg.methods if m not in STRATEGIES]
    if unknown:
        raise ExperimentError(
            f"--methods: unknown method {unknown[0]!r}; expected a comma-separated list of: "
            f"{', '.join(sorted(STRATEGIES))}"
        )
    if len(set(cfg.methods)) != len(cfg.methods):
        raise ExperimentError(f"--methods: a method is listed twice in {','.join(cfg.methods)}")
    for name, value in (("--budget", cfg.budget), ("--cycles", cfg.cycles),
                        ("--repeats", cfg.repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExperimentError(f"{name}: expected a positive integer, got {value!r}")
    if cfg.epochs is not None and (not isinstance(cfg.epochs, int) or cfg.epochs < 1):
        raise ExperimentError(f"--epochs: expected a positive integer, got {cfg.epochs!r}")
    if cfg.width is not None and not (isinstance(cfg.width, (int, float))
                                      and np.isfinite(cfg.width) and cfg.width > 0):
        raise ExperimentError(f"--width: expected a positive number, got {cfg.width!r}")
    if cfg.pool_size is not None and (not isinstance(cfg.pool_size, int) or cfg.pool_size < 1):
        raise ExperimentError(f"--pool-size: expected a positive integer, got {cfg.pool_size!r}")
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or cfg.threads < 1):
        raise ExperimentError(f"--threads: expected a positive integer, got {cfg.threads!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ExperimentError(f"--seed: expected a non-negative integer, got {cfg.seed!r}")
    if cfg.device not in DEVICES:
        raise ExperimentError(f"--device: expected one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.graph not in GRAPH_MODES:
        raise ExperimentError(
            f"--graph: expected one of {', '.join(GRAPH_MODES)}, got {cfg.graph!r}"
        )
    cfg.dataset = dataset
    try:
        preset = get_preset(cfg.preset)
    except ValueError as e:
        raise ExperimentError(f"--preset: {e}") from None
    if cfg.pretrain and not _module_available(PRETRAIN_MODULE):
        raise ExperimentError(
            "--pretrain: DeepCluster pre-training is not available yet "
            f"({PRETRAIN_MODULE} is not part of this version of dalcore)"
        )
    if cfg.semi and not _module_available(SEMI_MODULE):
        raise ExperimentError(
            "--semi: label-propagation semi-supervision is not available yet "
            f"({SEMI_MODULE} is not part of this version of dalcore)"
        )
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ExperimentError("--device cuda: no CUDA device is available to torch")
    return preset


def resolve_device(name: str):
    """``auto`` -> CUDA when torch sees a GPU, else CPU."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# --------------------------------------------------------------------------------------------
# Files: config.json, results.csv, checkpoints


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _format_row(row: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row[c] for c in COLUMNS])
    return buf.getvalue()


def _make_row(cfg: ExperimentConfig, method: str, repeat: int, cycle: int, labels: int,
              accuracy: float, seconds: float) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset, "method": method, "pretrain": int(cfg.pretrain),
        "semi": int(cfg.semi), "repeat": repeat, "cycle": cycle, "labels": labels,
        "accuracy": f"{accuracy:.6f}", "seconds": f"{seconds:.3f}",
    }


class _Results:
    """results.csv: read the finished rows, repair a torn last line, append rows durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[str, int, int]] = set()
        header = ",".join(COLUMNS) + "\n"
        if not path.exists() or path.stat().st_size == 0:
            _atomic_write_text(path, header)
            return
        raw = path.read_bytes().decode("utf-8")
        if not raw.endswith("\n"):  # a row torn by a crash mid-write: drop it, it is redone
            raw = raw[: raw.rfind("\n") + 1]
            _atomic_write_text(path, raw or header)
        if not raw:
            return
        rows = list(csv.DictReader(io.StringIO(raw)))
        lines = raw.splitlines()
        if not lines or tuple(lines[0].split(",")) != COLUMNS:
            raise ExperimentError(
                f"{path}: not a dalcore results.csv (expected the header {','.join(COLUMNS)})"
            )
        for r in rows:
            self.done.add((r["method"], int(r["repeat"]), int(r["cycle"])))

    def append(self, row: dict[str, Any]) -> None:
        key = (row["method"], int(row["repeat"]), int(row["cycle"]))
        if key in self.done:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(_format_row(row))
            f.flush()
            os.fsync(f.fileno())
        self.done.add(key)


@dataclass
class _State:
    """What survives between cycles of one (method, repeat)."""

    method: str
    repeat: int
    next_cycle: int
    labeled: np.ndarray
    pseudo: dict[str, list] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({
            "method": self.method, "repeat": self.repeat, "next_cycle": self.next_cycle,
            "labeled": [int(i) for i in self.labeled], "pseudo": self.pseudo, "rows": self.rows,
        })

    @classmethod
    def from_json(cls, text: str) -> _State:
        d = json.loads(text)
        return cls(method=d["method"], repeat=int(d["repeat"]), next_cycle=int(d["next_cycle"]),
                   labeled=np.asarray(d["labeled"], dtype=np.int64), pseudo=d.get("pseudo"),
                   rows=list(d.get("rows", [])))


def _checkpoint_path(out: Path, method: str, repeat: int) -> Path:
    return out / "checkpoints" / f"{method}_r{repeat}.json"


def _pseudo_to_json(pseudo) -> dict[str, list] | None:
    if pseudo is None:
        return None
    return {
        "indices": [int(i) for i in pseudo.indices],
        "labels": [int(v) for v in pseudo.labels],
        "weights": [float(w) for w in np.asarray(pseudo.weights, dtype=np.float32)],
        "class_weights": (None if pseudo.class_weights is None else
                          [float(w) for w in np.asarray(pseudo.class_weights, dtype=np.float32)]),
    }


def _pseudo_from_json(d: dict[str, list] | None, labeled: np.ndarray):
    if d is None:
        return None
    from .training import PseudoLabels

    idx = np.asarray(d["indices"], dtype=np.int64)
    keep = ~np.isin(idx, labeled)  # an image labeled since is trained on with its true label
    cw = d.get("class_weights")
    return PseudoLabels(
        indices=idx[keep],
        labels=np.asarray(d["labels"], dtype=np.int64)[keep],
        weights=np.asarray(d["weights"], dtype=np.float32)[keep],
        class_weights=None if cw is None else np.asarray(cw, dtype=np.float32),
    )


def _prepare_out(cfg: ExperimentConfig, config_doc: dict[str, Any]) -> Path:
    out = Path(cfg.out) if cfg.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ExperimentError(f"{cfg_path}: unreadable ({e}); use another --out") from None
        old_fields = dict(old.get("config", {}))
        new_fields = dict(config_doc["config"])
        for k, v in config_doc["preset"].items():  # a preset redefined since is a change too
            if k in ("name", "description", "threads"):
                continue
            new_fields[f"preset.{k}"] = v
            old_fields[f"preset.{k}"] = old.get("preset", {}).get(k)
        diff = [k for k in new_fields if old_fields.get(k) != new_fields[k]]
        if diff:
            k = diff[0]
            raise ExperimentError(
                f"--out {out}: this folder holds a run with a different configuration "
                f"({k}: {old_fields.get(k)!r} there, {new_fields[k]!r} now); rerun with the same "
                "arguments to resume it, or choose another --out"
            )
    else:
        _atomic_write_text(cfg_path, json.dumps(config_doc, indent=2) + "\n")
        _fsync_dir(out)
    return out


def _crash_hook() -> tuple[int, str] | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    n, _, where = spec.partition(":")
    return int(n), (where or "row")


# --------------------------------------------------------------------------------------------
# The loop


def _log(cfg: ExperimentConfig, msg: str) -> None:
    if cfg.verbose:
        from tqdm import tqdm

        tqdm.write(msg)


def _load_data(cfg: ExperimentConfig, preset: Preset):
    from . import data as _data

    ds = _data.load_dataset(cfg.dataset, cfg.data_dir, image_size=preset.image_size)
    n = int(ds.y_train.shape[0])
    if cfg.pool_size is not None:
        if cfg.pool_size > n:
            raise ExperimentError(
                f"--pool-size: {cfg.pool_size} is larger than the {n} training images of "
                f"{cfg.dataset}"
            )
        rng = np.random.default_rng(derive_seed(cfg.seed, "pool"))
        idx = _data.class_balanced_indices(ds.y_train, cfg.pool_size, ds.num_classes, rng)
        ds = ds.subset_train(idx)
        n = int(ds.y_train.shape[0])
    need = cfg.budget * cfg.cycles
    if cfg.budget > n or need > n:
        raise ExperimentError(
            f"--budget: {cfg.budget} labels x {cfg.cycles} cycles = {need} exceeds the pool of "
            f"{n} training images"
        )
    return ds


def run_experiment(cfg: ExperimentConfig,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Run (or resume) an experiment and write its outputs.

    Parameters
    ----------
    cfg : ExperimentConfig
        The configuration.
    on_row : callable, optional
        Called with each new results row (after it is written).

    Returns
    -------
    pathlib.Path
        The output folder, holding config.json, results.csv, checkpoints/, summary.md, curves.png.

    Raises
    ------
    ExperimentError
        For an invalid configuration or an output folder holding another configuration.
    dalcore.data.DataError
        When the dataset's files are missing or corrupt.
    """
    import torch

    threads = torch.get_num_threads()
    want = cfg.threads
    if want is None and cfg.preset in PRESETS:
        want = PRESETS[cfg.preset].threads
    if isinstance(want, int) and want >= 1:
        torch.set_num_threads(want)
    try:
        return _run(cfg, on_row)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, on_row: Callable[[dict[str, Any]], None] | None) -> Path:
    from tqdm import tqdm

    from . import report
    from .data import class_balanced_indices

    cfg = dataclasses.replace(cfg, methods=tuple(cfg.methods))
    preset = validate_config(cfg)
    width = float(cfg.width if cfg.width is not None else preset.width)
    settings = StepSettings(preset=preset, width=width, epochs=cfg.epochs, semi=cfg.semi,
                            graph=cfg.graph, class_balance=cfg.class_balance,
                            progress=cfg.progress)
    data = _load_data(cfg, preset)
    device = resolve_device(cfg.device)

    config_doc = {
        "config": cfg.result_fields(),
        "preset": preset.as_dict(),
        "resolved": {
            "width": width, "image_size": list(data.x_train.shape[2:]),
            "train_images": int(data.y_train.shape[0]), "test_images": int(data.y_test.shape[0]),
            "num_classes": int(data.num_classes), "device": str(device),
        },
    }
    out = _prepare_out(cfg, config_doc)
    results = _Results(out / "results.csv")
    _log(cfg, f"writing to {out} ({len(results.done)} cycles already done); after an "
              f"interruption, run the same command with --out {out} to resume")
    data = data.to(device)  # once: every epoch, extraction and evaluation reads it there

    y_train = data.y_train.cpu().numpy()
    total = len(cfg.methods) * cfg.repeats * cfg.cycles
    bar = tqdm(total=total, initial=len(results.done), desc="cycles", unit="cycle",
               disable=not cfg.progress, leave=True, dynamic_ncols=True)
    if cfg.semi and "ceal" in cfg.methods:
        _log(cfg, "note: with --semi, label propagation pseudo-labels the whole pool every "
                  "epoch and supersedes CEAL's pseudo-labels: ceal selects by entropy only")
    run = _Runner(cfg, settings, data, device, out, results, bar, on_row)
    try:
        for repeat in range(cfg.repeats):
            rseed = cfg.seed + repeat
            init_labeled = class_balanced_indices(
                y_train, cfg.budget, data.num_classes, np.random.default_rng(rseed)
            ).astype(np.int64)
            run.backbone = None
            for method in cfg.methods:
                run.method_repeat(method, repeat, rseed, init_labeled)
    finally:
        bar.close()

    table = report.write_report([out], out)
    if cfg.verbose:
        print(table)
        print(f"outputs in {out}")
    return out


class _Runner:
    """The cycles of one experiment: each cycle is one :mod:`dalcore.loop` step whose oracle is
    the dataset's known labels, then a checkpoint and a results row."""

    def __init__(self, cfg: ExperimentConfig, settings: StepSettings, data: Any, device: Any,
                 out: Path, results: _Results, bar: Any,
                 on_row: Callable[[dict[str, Any]], None] | None) -> None:
        self.cfg, self.settings, self.data, self.device = cfg, settings, data, device
        self.out, self.results, self.bar, self.on_row = out, results, bar, on_row
        self.crash = _crash_hook()
        self.finished_here = 0
        self.backbone: dict | None = None

    def method_repeat(self, method: str, repeat: int, rseed: int,
                      init_labeled: np.ndarray) -> None:
        """Run (or resume) every cycle of one (method, repeat)."""
        ckpt = _checkpoint_path(self.out, method, repeat)
        if ckpt.exists():
            state = _State.from_json(ckpt.read_text(encoding="utf-8"))
        else:
            state = _State(method=method, repeat=repeat, next_cycle=0,
                           labeled=np.sort(init_labeled))
        for row in state.rows:  # rows the crash lost after the checkpoint was written
            self.results.append(row)
        for cycle in range(state.next_cycle, self.cfg.cycles):
            state = self._cycle(state, cycle, rseed)

    def _backbone(self, rseed: int) -> dict | None:
        cfg = self.cfg
        if cfg.pretrain and self.backbone is None:
            path = self.out / f"pretrain_{rseed}.pt"
            if not path.exists():
                _log(cfg, f"pre-training (DeepCluster, {self.settings.preset.pretrain_epochs} "
                          f"epochs, seed {rseed})")
            self.backbone = pretrained_backbone(
                self.settings, self.data, self.device, path, rseed,
                num_clusters=5 * int(self.data.num_classes), log=lambda m: _log(cfg, m))
        return self.backbone

    def _cycle(self, state: _State, cycle: int, rseed: int) -> _State:
        from .training import evaluate

        cfg, data, method, repeat = self.cfg, self.data, state.method, state.repeat
        t0 = time.perf_counter()
        labeled = state.labeled
        pseudo = None if cfg.semi else _pseudo_from_json(state.pseudo, labeled)
        backbone = self._backbone(rseed)
        fitted = fit(
            self.settings, data, labeled, device=self.device,
            init_seed=derive_seed(rseed, "init", cycle),
            train_seed=derive_seed(rseed, "train", cycle, method if cycle else ""),
            pseudo=pseudo, backbone=backbone,
            desc=f"{method} r{repeat} c{cycle} ({len(labeled)} labels)",
        )
        acc = float(evaluate(fitted.model, data.x_test, data.y_test, device=self.device))
        refresh = fitted.refresh
        if refresh is not None and getattr(refresh, "accuracy", None):
            t = refresh.mean_timings()
            _log(cfg, f"  label propagation: pseudo-label accuracy on the pool "
                      f"{100 * refresh.accuracy[0]:.1f}% -> {100 * refresh.accuracy[-1]:.1f}%, "
                      f"{t.get('propagation', 0.0):.2f} s per refresh "
                      f"(+{t.get('extract', 0.0):.2f} s feature extraction)")
        next_labeled, next_pseudo = labeled, None
        if cycle + 1 < cfg.cycles:
            n_train = int(data.x_train.shape[0])
            pool = np.setdiff1d(np.arange(n_train, dtype=np.int64), labeled)
            sel = select(fitted, data, labeled, pool, method=method, budget=cfg.budget,
                         cycle=cycle, seed=derive_seed(rseed, "acquire", cycle, method),
                         device=self.device)
            next_labeled = np.sort(np.concatenate([labeled, sel.indices]))
            next_pseudo = _pseudo_to_json(sel.pseudo)
        seconds = time.perf_counter() - t0
        row = _make_row(cfg, method, repeat, cycle, len(labeled), acc, seconds)
        state = _State(method=method, repeat=repeat, next_cycle=cycle + 1,
                       labeled=next_labeled, pseudo=next_pseudo, rows=state.rows + [row])
        self._commit(state, row, seconds)
        return state

    def _commit(self, state: _State, row: dict[str, Any], seconds: float) -> None:
        """Checkpoint, then the results row (the crash hook may strike in between)."""
        cfg, crash = self.cfg, self.crash
        _atomic_write_text(_checkpoint_path(self.out, state.method, state.repeat),
                           state.to_json())
        self.finished_here += 1
        if crash and crash[1] in ("checkpoint", "kill") and self.finished_here >= crash[0]:
            if crash[1] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise SimulatedCrash(f"simulated crash after {self.finished_here} cycle(s)")
        self.results.append(row)
        self.bar.update(1)
        _log(cfg, f"{state.method:<12} repeat {state.repeat}  cycle {row['cycle']}  "
                  f"labels {row['labels']:>5}  accuracy {100 * float(row['accuracy']):6.2f}%  "
                  f"{seconds:7.1f} s")
        if self.on_row is not None:
            self.on_row(row)
        if crash and crash[1] == "row" and self.finished_here >= crash[0]:
            raise SimulatedCrash(f"simulated crash after {self.finished_here} cycle(s)")


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"random,uncertainty"`` -> ``("random", "uncertainty")`` (blanks dropped)."""
    if isinstance(text, str):
        text = text.split(",")
    return tuple(m.strip() for m in text if m.strip())
