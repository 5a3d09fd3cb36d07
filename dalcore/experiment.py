"""The active-learning experiment: cycles x repetitions x methods, checkpoints, resume, results.

Protocol (Siméoni et al., ICPR 2020; DESIGN.md section 4)
--------------------------------------------------------
For every repetition ``r`` (seed :func:`repeat_seed` ``(seed, r)``) an initial labeled set of one
``budget``, balanced over the classes, is drawn; every method starts from that same set. Cycle
``c`` (0-based) trains a model rebuilt from scratch (or from the pre-trained backbone) on
``(c + 1) * budget`` labels, evaluates it on the test set, records a row in ``results.csv`` and
asks the method's acquisition strategy for ``budget`` more pool images (also after the last cycle,
so that the run can be extended by more cycles without training that cycle again).

Determinism, resume and extension
---------------------------------
A repetition's seed is a hash of (base seed, repetition), so two base seeds share no repetition;
it is written in every row (``seed``). Every random choice is derived from ``(repetition seed,
cycle, method)`` (:func:`derive_seed`), so the state that must survive a crash is only the labeled
set and CEAL's pending pseudo-labels. After each finished cycle the state of that (method, repeat)
is written atomically to ``checkpoints/<method>_r<repeat>.json`` (it also keeps the cycle's result
row) and then the row is appended to ``results.csv`` (flush + fsync). Running the same command
again skips every finished cycle, re-appends a row the crash lost between the two writes and drops
a half-written last line. More ``--cycles``, ``--repeats`` or ``--methods`` into the same folder
compute only the new cycles; a change of any setting that alters finished results (the fields of
:data:`FIXED_FIELDS`, the preset's definition, or the dataset's content, fingerprinted in
``config.json``) is refused with the setting named.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .loop import StepSettings, fit, pretrained_backbone, select
from .presets import PRESETS, Preset, get_preset

__all__ = [
    "COLUMNS",
    "DEFAULT_METHODS",
    "FIXED_FIELDS",
    "ExperimentConfig",
    "ExperimentError",
    "derive_seed",
    "repeat_seed",
    "run_experiment",
]

#: Columns of results.csv, in order: the run's settings (everything that changes a result), the
#: repetition (index and its own seed), the cycle and the measurements.
COLUMNS: tuple[str, ...] = (
    "dataset", "method", "pretrain", "semi", "preset", "width", "image_size", "epochs_or_steps",
    "pool_size", "budget", "graph", "class_balance", "initial", "version",
    "repeat", "seed", "cycle", "labels", "accuracy", "seconds",
)
DEFAULT_METHODS: tuple[str, ...] = ("random", "uncertainty", "coreset", "ceal")
GRAPH_MODES: tuple[str, ...] = ("reciprocal", "union")
#: ``--graph-input``: what SEMI's graph is built on besides the model's features
#: (:class:`dalcore.semi.label_propagation.LabelPropagationRefresh`); ``none`` is the paper's.
GRAPH_INPUTS: tuple[str, ...] = ("none", "first", "always", "only")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Choices of cycle 0's labeled set: the paper's class-balanced draw (it reads the labels), or a
#: label-free choice (:func:`dalcore.acquisition.initial.select_initial`).
INITIAL_CHOICES: tuple[str, ...] = ("balanced", "random", "kcenter", "typiclust", "probcover")
#: Accepted ``--width`` range: at least one channel in the narrowest layer (128 x width), at most
#: 4x the paper's network (beyond that a CPU or GPU runs out of memory long before a result).
WIDTH_RANGE: tuple[float, float] = (1 / 128, 4.0)

#: Settings that alter finished results: a run folder refuses to continue when one changes.
#: ``methods``, ``cycles`` and ``repeats`` may grow (the run is extended), ``data_dir`` may move
#: (the dataset's fingerprint is compared instead).
FIXED_FIELDS: tuple[str, ...] = (
    "dataset", "budget", "preset", "epochs", "width", "pool_size", "seed", "pretrain", "semi",
    "graph", "class_balance", "initial", "input_graph",
)
#: Values of the fields added to FIXED_FIELDS since config.json was first written, for the
#: folders of runs that predate them (which then resume as before).
_ADDED_FIELDS: dict[str, Any] = {"input_graph": "none"}
_ALL_FIELDS: tuple[str, ...] = FIXED_FIELDS + ("data_dir", "methods", "cycles", "repeats")

#: Test seam: when set, called as ``hook(where, n)`` after the n-th cycle this process finishes,
#: with ``where`` = ``"checkpoint"`` (the checkpoint is written, the results row not yet) and then
#: ``"row"`` (both written). Tests set it to simulate a crash; nothing reads the environment.
_commit_hook: Callable[[str, int], None] | None = None


class ExperimentError(ValueError):
    """A configuration that cannot run (bad argument, mismatching run folder, missing feature)."""


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
        Repetitions; repetition ``r`` uses the seed ``repeat_seed(seed, r)`` (a hash) for its
        split and model init.
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
    input_graph : str
        ``--graph-input`` (:data:`GRAPH_INPUTS`): SEMI's graph on the model's features
        (``none``, the paper's), on the images for the first refresh (``first``), on both side
        by side (``always``) or on the images alone (``only``). Recorded in the ``graph``
        column as ``<graph>+images:<input_graph>`` when not ``none``.
    threads : int or None
        torch CPU threads (``torch.set_num_threads``); ``None`` takes the preset's (1 for
        ``cpu``, torch's choice for ``paper``).
    progress : bool
        Show progress bars (cycles and epochs).
    verbose : bool
        Print one line per finished cycle and the summary at the end.
    save_models : bool
        Keep each cycle's trained weights as ``models/<method>_r<repeat>_c<cycle>.pt``.
    initial : str
        Cycle 0's labeled set (:data:`INITIAL_CHOICES`): ``balanced`` (the paper's, which peeks
        at the labels) or a label-free choice on the pixels (on the DeepCluster features under
        ``pretrain``), as the human loop must make.
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
    input_graph: str = "none"
    threads: int | None = None
    progress: bool = True
    verbose: bool = True
    save_models: bool = False
    initial: str = "balanced"

    def result_fields(self) -> dict[str, Any]:
        """The fields that describe the results (:data:`FIXED_FIELDS` are compared on resume),
        JSON-ready."""
        d = {k: getattr(self, k) for k in _ALL_FIELDS}
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


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of repetition ``repeat`` of base seed ``seed``: a hash of both (numpy's
    SeedSequence), so that runs with different base seeds share no repetition (``seed + r``
    made ``--seed 0`` and ``--seed 1`` share all but one)."""
    return derive_seed(int(seed), "repeat", int(repeat))


# --------------------------------------------------------------------------------------------
# Validation


def validate_config(cfg: ExperimentConfig) -> Preset:
    """Check every argument that can be checked before loading data; returns the preset.

    Also checks that every optional dependency the run will need is installed (matplotlib for
    curves.png, scikit-learn for ``digits``, Pillow for ``folder``, faiss for ``--pretrain``), so
    that a run never trains for hours and then fails.

    Raises
    ------
    ExperimentError
        Naming the argument (or the missing package, with its install command).
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
    _check_numbers(cfg)
    if cfg.device not in DEVICES:
        raise ExperimentError(f"--device: expected one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.initial not in INITIAL_CHOICES:
        raise ExperimentError(
            f"--initial: expected one of {', '.join(INITIAL_CHOICES)}, got {cfg.initial!r}"
        )
    if cfg.graph not in GRAPH_MODES:
        raise ExperimentError(
            f"--graph: expected one of {', '.join(GRAPH_MODES)}, got {cfg.graph!r}"
        )
    if cfg.input_graph not in GRAPH_INPUTS:
        raise ExperimentError(
            f"--graph-input: expected one of {', '.join(GRAPH_INPUTS)}, got {cfg.input_graph!r}"
        )
    if cfg.input_graph != "none" and not cfg.semi:
        raise ExperimentError("--graph-input: only meaningful with --semi")
    cfg.dataset = dataset
    try:
        preset = get_preset(cfg.preset)
    except ValueError as e:
        raise ExperimentError(f"--preset: {e}") from None
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ExperimentError("--device cuda: no CUDA device is available to torch")
    _check_dependencies(cfg)
    return preset


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_numbers(cfg: ExperimentConfig) -> None:
    for name, value in (("--budget", cfg.budget), ("--cycles", cfg.cycles),
                        ("--repeats", cfg.repeats)):
        if not _positive_int(value):
            raise ExperimentError(f"{name}: expected a positive integer, got {value!r}")
    for name, value in (("--epochs", cfg.epochs), ("--pool-size", cfg.pool_size),
                        ("--threads", cfg.threads)):
        if value is not None and not _positive_int(value):
            raise ExperimentError(f"{name}: expected a positive integer, got {value!r}")
    lo, hi = WIDTH_RANGE
    if cfg.width is not None and not (isinstance(cfg.width, (int, float))
                                      and not isinstance(cfg.width, bool)
                                      and np.isfinite(cfg.width) and lo <= cfg.width <= hi):
        raise ExperimentError(
            f"--width: expected a number in [1/128, {hi:g}] (1 = the paper's network), "
            f"got {cfg.width!r}"
        )
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ExperimentError(f"--seed: expected a non-negative integer, got {cfg.seed!r}")


#: Optional packages: (import name, when needed, pip name).
_OPTIONAL = (
    ("matplotlib", "curves.png", "matplotlib"),
    ("sklearn", "--dataset digits (scikit-learn's copy)", "scikit-learn"),
    ("PIL", "--dataset folder", "pillow"),
    ("faiss", "--pretrain (DeepCluster's k-means)", "faiss-cpu"),
)


def _check_dependencies(cfg: ExperimentConfig) -> None:
    """ExperimentError naming the first missing package the run needs, with the install line."""
    import importlib.util

    needed = {"matplotlib": True, "sklearn": cfg.dataset == "digits",
              "PIL": cfg.dataset == "folder", "faiss": cfg.pretrain}
    for module, why, pip_name in _OPTIONAL:
        if not needed[module]:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ExperimentError(
                f"{why} needs {module}, which is not installed: pip install {pip_name}"
            )


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


def _make_row(settings: dict[str, Any], method: str, repeat: int, seed: int, cycle: int,
              labels: int, accuracy: float, seconds: float) -> dict[str, Any]:
    return {
        **settings, "method": method, "repeat": repeat, "seed": seed, "cycle": cycle,
        "labels": labels, "accuracy": f"{accuracy:.6f}", "seconds": f"{seconds:.3f}",
    }


def row_settings(cfg: ExperimentConfig, preset: Preset, width: float, image_size: int) -> dict:
    """The settings columns of every row of a run (see :data:`COLUMNS`)."""
    from . import __version__

    if cfg.epochs is not None:
        length = f"epochs:{cfg.epochs}"
    elif preset.steps is not None:
        length = f"steps:{preset.steps}"
    else:
        length = f"epochs:{preset.epochs}"
    graph = cfg.graph if cfg.input_graph == "none" else f"{cfg.graph}+images:{cfg.input_graph}"
    return {
        "dataset": cfg.dataset, "pretrain": int(cfg.pretrain), "semi": int(cfg.semi),
        "preset": preset.name, "width": f"{width:g}", "image_size": int(image_size),
        "epochs_or_steps": length, "pool_size": "" if cfg.pool_size is None else cfg.pool_size,
        "budget": cfg.budget, "class_balance": int(cfg.class_balance),
        "graph": graph,
        "initial": cfg.initial, "version": __version__,
    }


_OLDER = ("it was written by an older dalcore; its rows still load in `dalcore report`, but it "
          "cannot be resumed or extended: choose another --out")


class _Results:
    """results.csv: read the finished rows, repair a torn last line, append rows durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[str, int, int]] = set()
        header = ",".join(COLUMNS) + "\n"
        if not path.exists() or path.stat().st_size == 0:
            _atomic_write_text(path, header)
            return
        try:
            raw = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ExperimentError(f"{path}: not a dalcore results.csv (not UTF-8 text); "
                                  "choose another --out") from None
        if not raw.endswith("\n"):  # a row torn by a crash mid-write: drop it, it is redone
            raw = raw[: raw.rfind("\n") + 1]
            _atomic_write_text(path, raw or header)
        if raw:
            self._read(raw)

    def _read(self, raw: str) -> None:
        first = raw.splitlines()[0].split(",")
        if tuple(first) != COLUMNS:
            if {"dataset", "method", "repeat", "cycle", "accuracy"} <= set(first):
                raise ExperimentError(f"{self.path}: {_OLDER}")
            raise ExperimentError(
                f"{self.path}: not a dalcore results.csv (expected the header "
                f"{','.join(COLUMNS)}); choose another --out"
            )
        reader = csv.DictReader(io.StringIO(raw))
        try:
            for r in reader:
                self.done.add((r["method"], int(r["repeat"]), int(r["cycle"])))
        except (csv.Error, TypeError, ValueError):
            raise ExperimentError(
                f"{self.path}: line {reader.line_num} is not a results row (corrupt file); "
                "repair or delete that line to resume"
            ) from None

    def append(self, row: dict[str, Any]) -> None:
        key = (row["method"], int(row["repeat"]), int(row["cycle"]))
        if key in self.done:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(_format_row(row))
            f.flush()
            os.fsync(f.fileno())
        self.done.add(key)


#: Format of the checkpoint files (2: the selection is made after the last cycle too).
_STATE_FORMAT = 2


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
            "format": _STATE_FORMAT, "method": self.method, "repeat": self.repeat,
            "next_cycle": self.next_cycle, "labeled": [int(i) for i in self.labeled],
            "pseudo": self.pseudo, "rows": self.rows,
        })

    @classmethod
    def load(cls, path: Path, method: str, repeat: int, n_train: int) -> _State:
        """The checkpoint in ``path``; ExperimentError naming the file when it is corrupt."""
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
            if d.get("format") != _STATE_FORMAT:
                raise ExperimentError(f"{path}: {_OLDER}")
            st = cls(method=str(d["method"]), repeat=int(d["repeat"]),
                     next_cycle=int(d["next_cycle"]),
                     labeled=np.asarray(d["labeled"], dtype=np.int64), pseudo=d.get("pseudo"),
                     rows=[dict(r) for r in d.get("rows", [])])
            ok = (st.method == method and st.repeat == repeat and st.next_cycle >= 1
                  and st.labeled.ndim == 1 and st.labeled.size > 0
                  and st.labeled.min() >= 0 and st.labeled.max() < n_train
                  and len(st.rows) == st.next_cycle)
        except ExperimentError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise ExperimentError(
                f"{path}: corrupt checkpoint; delete it (its method and repetition start again) "
                "or choose another --out"
            )
        return st


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


def _out_folder(cfg: ExperimentConfig) -> Path:
    """``--out`` created (with checkpoints/); ExperimentError naming it when it cannot be."""
    out = Path(cfg.out) if cfg.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise ExperimentError(f"--out {out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        if cfg.save_models:
            (out / "models").mkdir(exist_ok=True)
    except OSError as e:
        raise ExperimentError(
            f"--out {out}: cannot create the folder ({e.strerror or e})"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExperimentError(f"--out {out}: the folder is not writable; choose another --out")
    return out


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The entries of a config.json document that must not change for a run to go on."""
    conf = doc.get("config", {}) if isinstance(doc.get("config"), dict) else {}
    fields = {k: conf.get(k, _ADDED_FIELDS.get(k)) for k in FIXED_FIELDS}
    preset = doc.get("preset", {}) if isinstance(doc.get("preset"), dict) else {}
    for k, v in preset.items():  # a preset redefined since is a change too
        if k not in ("name", "description", "threads"):
            fields[f"preset.{k}"] = v
    fields["dataset fingerprint"] = (doc.get("data") or {}).get("fingerprint")
    return fields


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the methods, cycles and repeats of ``old`` kept (a run only grows)."""
    doc = json.loads(json.dumps(new))
    oc, nc = old["config"], doc["config"]
    nc["methods"] = list(dict.fromkeys(list(oc.get("methods", [])) + list(nc["methods"])))
    nc["cycles"] = max(int(oc.get("cycles", 0)), int(nc["cycles"]))
    nc["repeats"] = max(int(oc.get("repeats", 0)), int(nc["repeats"]))
    return doc


def _prepare_out(cfg: ExperimentConfig, config_doc: dict[str, Any]) -> Path:
    """Create or check the output folder and write its config.json.

    An existing folder is continued (resumed, or extended by more cycles, repeats or methods)
    when every setting of :func:`_comparable` is unchanged; otherwise ExperimentError names the
    first one that differs.
    """
    out = _out_folder(cfg)
    cfg_path = out / "config.json"
    doc = config_doc
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_bytes().decode("utf-8"))
            if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
                raise ValueError("not a config.json of dalcore")
        except (OSError, ValueError) as e:
            raise ExperimentError(f"{cfg_path}: unreadable ({e}); use another --out") from None
        if "data" not in old:
            raise ExperimentError(f"{cfg_path}: {_OLDER}")
        was, now = _comparable(old), _comparable(config_doc)
        diff = [k for k in now if was.get(k) != now[k]]
        if diff:
            k = diff[0]
            raise ExperimentError(
                f"--out {out}: this folder holds a run with a different configuration "
                f"({k}: {was.get(k)!r} there, {now[k]!r} now); only --cycles, --repeats and "
                "--methods may change (to extend it): rerun with the same other arguments, "
                "or choose another --out"
            )
        doc = _merged(old, config_doc)
    _atomic_write_text(cfg_path, json.dumps(doc, indent=2) + "\n")
    _fsync_dir(out)
    return out


def data_fingerprint(data: Any) -> str:
    """SHA-256 of the loaded dataset (train and test images and labels, as the run sees them)."""
    h = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The loop


def _log(cfg: ExperimentConfig, msg: str) -> None:
    if cfg.verbose:
        from tqdm import tqdm

        tqdm.write(msg)


def _load_data(cfg: ExperimentConfig, preset: Preset) -> tuple[Any, str]:
    """The dataset (the pool subset when asked) and the fingerprint of the loaded files."""
    from . import data as _data

    ds = _data.load_dataset(cfg.dataset, cfg.data_dir, image_size=preset.image_size)
    fingerprint = data_fingerprint(ds)
    n = int(ds.y_train.shape[0])
    if cfg.pool_size is not None:
        if cfg.pool_size > n:
            raise ExperimentError(
                f"--pool-size: {cfg.pool_size} is larger than the {n} training images of "
                f"{cfg.dataset}"
            )
        rng = np.random.default_rng(derive_seed(cfg.seed, "pool"))
        try:
            idx = _data.class_balanced_indices(ds.y_train, cfg.pool_size, ds.num_classes, rng)
        except ValueError as e:
            raise ExperimentError(f"--pool-size: {e}") from None
        ds = ds.subset_train(idx)
        n = int(ds.y_train.shape[0])
    need = cfg.budget * cfg.cycles
    if cfg.budget > n or need > n:
        raise ExperimentError(
            f"--budget: {cfg.budget} labels x {cfg.cycles} cycles = {need} exceeds the pool of "
            f"{n} training images"
        )
    clusters = 5 * int(ds.num_classes)
    if cfg.pretrain and n < clusters:
        raise ExperimentError(
            f"--pretrain: DeepCluster's {clusters} clusters (5 per class) need at least "
            f"{clusters} training images, the pool has {n} (raise --pool-size)"
        )
    return ds, fingerprint


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

    cfg = dataclasses.replace(cfg, methods=tuple(cfg.methods))
    preset = validate_config(cfg)
    width = float(cfg.width if cfg.width is not None else preset.width)
    settings = StepSettings(preset=preset, width=width, epochs=cfg.epochs, semi=cfg.semi,
                            graph=cfg.graph, class_balance=cfg.class_balance,
                            input_graph=cfg.input_graph, progress=cfg.progress)
    data, fingerprint = _load_data(cfg, preset)
    device = distributed.join_from_env(resolve_device(cfg.device))  # torchrun: this rank's
    if distributed.world_size() > 1:
        cfg = _distributed_config(cfg)
    config_doc = {
        "config": cfg.result_fields(),
        "preset": preset.as_dict(),
        "data": {"fingerprint": fingerprint},
        "resolved": {
            "width": width, "image_size": list(data.x_train.shape[2:]),
            "train_images": int(data.y_train.shape[0]), "test_images": int(data.y_test.shape[0]),
            "num_classes": int(data.num_classes), "device": str(device),
        },
    }
    out, results = _prepare_outputs(cfg, config_doc)
    wanted = {(m, r, c) for m in cfg.methods for r in range(cfg.repeats) for c in range(cfg.cycles)}
    _log(cfg, f"writing to {out} ({len(results.done & wanted)} of the {len(wanted)} cycles "
              f"already done); after an interruption, run the same command with --out {out} "
              "to resume")
    data = data.to(device)  # once: every epoch, extraction and evaluation reads it there
    bar = tqdm(total=len(wanted), initial=len(results.done & wanted), desc="cycles",
               unit="cycle", disable=not cfg.progress, leave=True, dynamic_ncols=True)
    if cfg.semi and any(m.startswith("ceal") for m in cfg.methods):
        _log(cfg, "note: with --semi, label propagation pseudo-labels the whole pool every "
                  "epoch and supersedes CEAL's pseudo-labels: ceal selects by entropy only")
    columns = row_settings(cfg, preset, width, int(data.x_train.shape[-1]))
    run = _Runner(cfg, settings, data, device, out, results, bar, on_row, columns)
    try:
        for repeat in range(cfg.repeats):
            run.repetition(repeat)
    finally:
        bar.close()
    distributed.barrier()
    if not distributed.is_writer():
        return out
    try:
        table = report.write_report([out], out)
    except ValueError as e:  # every cycle is saved: only the report is missing
        raise ExperimentError(f"{e} (every cycle is saved; `dalcore report {out}` writes the "
                              "report again)") from None
    if cfg.verbose:
        print(table)
        print(f"outputs in {out}")
    return out


def _distributed_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Under torchrun: the ranks other than 0 neither print nor show progress."""
    if distributed.is_writer():
        return cfg
    return dataclasses.replace(cfg, verbose=False, progress=False)


class _NoResults:
    """results.csv as the ranks other than 0 see it: they write nothing."""

    done: set = set()

    def append(self, row: dict[str, Any]) -> None:
        pass


def _prepare_outputs(cfg: ExperimentConfig, config_doc: dict[str, Any]) -> tuple[Path, Any]:
    """The output folder and results.csv, made (or checked) by rank 0 alone; every rank gets
    the folder, or the error rank 0 raised."""
    out, err = None, None
    if distributed.is_writer():
        try:
            out = _prepare_out(cfg, config_doc)
        except ExperimentError as e:
            err = str(e)
    out, err = distributed.broadcast_object((out, err))
    if err is not None:
        raise ExperimentError(err)
    results = _Results(out / "results.csv") if distributed.is_writer() else _NoResults()
    distributed.barrier()  # config.json and results.csv exist before any rank goes on
    return out, results


class _Runner:
    """The cycles of one experiment: each cycle is one :mod:`dalcore.loop` step whose oracle is
    the dataset's known labels, then a checkpoint and a results row."""

    def __init__(self, cfg: ExperimentConfig, settings: StepSettings, data: Any, device: Any,
                 out: Path, results: _Results, bar: Any,
                 on_row: Callable[[dict[str, Any]], None] | None,
                 columns: dict[str, Any]) -> None:
        self.cfg, self.settings, self.data, self.device = cfg, settings, data, device
        self.out, self.results, self.bar, self.on_row = out, results, bar, on_row
        self.columns = columns
        self.finished_here = 0
        self.backbone: dict | None = None
        self.y_train = data.y_train.cpu().numpy()

    def repetition(self, repeat: int) -> None:
        """Every method of repetition ``repeat``, from the same initial labeled set."""
        rseed = repeat_seed(self.cfg.seed, repeat)
        self.backbone = None
        init_labeled = self._initial(repeat, rseed)
        for method in self.cfg.methods:
            self.method_repeat(method, repeat, rseed, init_labeled)

    def _initial(self, repeat: int, rseed: int) -> np.ndarray:
        """Cycle 0's labeled set: class-balanced (reads the labels) or label-free."""
        from .acquisition.initial import initial_features, select_initial
        from .data import class_balanced_indices

        cfg, data = self.cfg, self.data
        if cfg.initial == "balanced":
            return class_balanced_indices(self.y_train, cfg.budget, data.num_classes,
                                          np.random.default_rng(rseed)).astype(np.int64)
        feats, backbone = None, self._backbone(repeat, rseed)
        if cfg.initial != "random":
            model = None
            if backbone is not None:
                from .models import ConvNet13

                model = ConvNet13(in_channels=int(data.x_train.shape[1]),
                                  num_classes=int(data.num_classes), width=self.settings.width)
                model.load_backbone(backbone)
                model = model.to(self.device)
            feats = initial_features(data, model=model, device=self.device)
        picks = select_initial(cfg.initial, cfg.budget, features=feats,
                               n=int(data.x_train.shape[0]),
                               rng=np.random.default_rng(derive_seed(rseed, "initial")),
                               num_classes=int(data.num_classes))
        return np.sort(np.asarray(picks, dtype=np.int64))

    def method_repeat(self, method: str, repeat: int, rseed: int,
                      init_labeled: np.ndarray) -> None:
        """Run (or resume, or extend) every cycle of one (method, repeat)."""
        ckpt = _checkpoint_path(self.out, method, repeat)
        if ckpt.exists():
            state = _State.load(ckpt, method, repeat, len(self.y_train))
        else:
            state = _State(method=method, repeat=repeat, next_cycle=0,
                           labeled=np.sort(init_labeled))
        for row in state.rows:  # rows the crash lost after the checkpoint was written
            self.results.append(row)
        for cycle in range(state.next_cycle, self.cfg.cycles):
            state = self._cycle(state, cycle, rseed)

    def _backbone(self, repeat: int, rseed: int) -> dict | None:
        cfg = self.cfg
        if cfg.pretrain and self.backbone is None:
            path = self.out / f"pretrain_r{repeat}.pt"
            if not path.exists():
                _log(cfg, f"pre-training (DeepCluster, {self.settings.preset.pretrain_epochs} "
                          f"epochs, repetition {repeat})")
            # Under torchrun rank 0 pre-trains alone, as one process (the same backbone), and
            # writes the cache; the others wait and receive the backbone.
            self.backbone = distributed.on_writer(lambda: pretrained_backbone(
                self.settings, self.data, self.device, path, rseed,
                num_clusters=5 * int(self.data.num_classes), log=lambda m: _log(cfg, m)))
        return self.backbone

    def _cycle(self, state: _State, cycle: int, rseed: int) -> _State:
        from .training import evaluate

        cfg, data, method, repeat = self.cfg, self.data, state.method, state.repeat
        t0 = time.perf_counter()
        labeled = state.labeled
        pseudo = None if cfg.semi else _pseudo_from_json(state.pseudo, labeled)
        fitted = fit(
            self.settings, data, labeled, device=self.device,
            init_seed=derive_seed(rseed, "init", cycle),
            train_seed=derive_seed(rseed, "train", cycle, method if cycle else ""),
            pseudo=pseudo, backbone=self._backbone(repeat, rseed),
            desc=f"{method} r{repeat} c{cycle} ({len(labeled)} labels)",
        )
        acc = float(evaluate(fitted.model, data.x_test, data.y_test, device=self.device))
        self._log_propagation(fitted.refresh)
        if cfg.save_models and distributed.is_writer():
            self._save_model(fitted.model, method, repeat, cycle)
        next_labeled, next_pseudo = labeled, None
        pool = np.setdiff1d(np.arange(len(self.y_train), dtype=np.int64), labeled)
        if len(pool) >= cfg.budget:  # also after the last cycle: the run can be extended
            sel = select(fitted, data, labeled, pool, method=method, budget=cfg.budget,
                         cycle=cycle, seed=derive_seed(rseed, "acquire", cycle, method),
                         device=self.device)
            next_labeled = np.sort(np.concatenate([labeled, sel.indices]))
            next_pseudo = _pseudo_to_json(sel.pseudo)
        seconds = time.perf_counter() - t0
        row = _make_row(self.columns, method, repeat, rseed, cycle, len(labeled), acc, seconds)
        state = _State(method=method, repeat=repeat, next_cycle=cycle + 1,
                       labeled=next_labeled, pseudo=next_pseudo, rows=state.rows + [row])
        self._commit(state, row, seconds)
        return state

    def _log_propagation(self, refresh: Any) -> None:
        if refresh is not None and getattr(refresh, "accuracy", None):
            t = refresh.mean_timings()
            _log(self.cfg, f"  label propagation: pseudo-label accuracy on the pool "
                           f"{100 * refresh.accuracy[0]:.1f}% -> "
                           f"{100 * refresh.accuracy[-1]:.1f}%, "
                           f"{t.get('propagation', 0.0):.2f} s per refresh "
                           f"(+{t.get('extract', 0.0):.2f} s feature extraction)")

    def _save_model(self, model: Any, method: str, repeat: int, cycle: int) -> None:
        """``models/<method>_r<repeat>_c<cycle>.pt``: the state_dict, written atomically."""
        import torch

        path = self.out / "models" / f"{method}_r{repeat}_c{cycle}.pt"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _commit(self, state: _State, row: dict[str, Any], seconds: float) -> None:
        """Checkpoint, then the results row (the test seam may strike in between)."""
        cfg = self.cfg
        if distributed.is_writer():  # rank 0 writes; the others hold the same state
            _atomic_write_text(_checkpoint_path(self.out, state.method, state.repeat),
                               state.to_json())
        self.finished_here += 1
        if _commit_hook is not None:
            _commit_hook("checkpoint", self.finished_here)
        self.results.append(row)
        self.bar.update(1)
        _log(cfg, f"{state.method:<12} repeat {state.repeat}  cycle {row['cycle']}  "
                  f"labels {row['labels']:>5}  accuracy {100 * float(row['accuracy']):6.2f}%  "
                  f"{seconds:7.1f} s")
        if self.on_row is not None and distributed.is_writer():
            self.on_row(row)
        if _commit_hook is not None:
            _commit_hook("row", self.finished_here)


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"random,uncertainty"`` -> ``("random", "uncertainty")`` (blanks dropped)."""
    if isinstance(text, str):
        text = text.split(",")
    return tuple(m.strip() for m in text if m.strip())
