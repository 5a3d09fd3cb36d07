"""Real-data table of the k-center bench (benches/bench_kcenter.py --data real, the default).

Data sets (each row names its data; synthetic rows are labelled as such):
  fashion-pixels   Fashion-MNIST training images, 60,000 x 784, pixels scaled to [0, 1]
  fashion-pca128   the same projected on their first 128 principal components (float64 SVD)
  fashion-mlp128   128-d hidden ReLU features of a network (sklearn MLP 784-128-10) trained on
                   200 labelled Fashion-MNIST images, for all 60,000 training images
  digits-pixels    scikit-learn's digits, 1,797 x 64 (the only other real pixels on this
                   machine; small N)
  synthetic-clustered  50 Gaussian clusters on an 8-d subspace of R^128, 50,000 points
  synthetic-isotropic  isotropic Gaussian, 50,000 x 128, rows L2-normalised

For each: ours (default path), ours unpruned (``_prune=False``: every row every pick) and the
numpy GEMV loop, the three interleaved in each of --repeats rounds, medians. Bytes read per pick:
ours = (full rows x 4d + projected rows x (4m + 8) + members visited by pruned sweeps x 12) /
picks (counted by the kernel in an extra untimed run); numpy = N (4d + 16). GB/s = bytes per
pick / time per pick; %bw against the read bandwidth measured in the same run.
"""

from __future__ import annotations

import gzip
import statistics
import time
from pathlib import Path

import numpy as np

import dalcore
from dalcore._kcenter import _auto_dim, _kcenter_stats

FASHION = Path("/usr/share/datasets/fashion-mnist")
N_LABELED = 100


def fashion_pixels() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return x.astype(np.float32) / 255.0, y.astype(np.int64)


def pca128(x: np.ndarray) -> np.ndarray:
    c = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    w, v = np.linalg.eigh(c.T @ c)
    return (c @ v[:, ::-1][:, :128]).astype(np.float32)


def mlp128(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    import warnings

    from sklearn.neural_network import MLPClassifier

    rows = np.random.default_rng(seed).choice(len(x), size=200, replace=False)
    net = MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(x[rows], y[rows])
    return np.maximum(x @ net.coefs_[0] + net.intercepts_[0], 0.0).astype(np.float32)


def synthetic(kind: str, n: int = 50_000, d: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "isotropic":
        x = rng.standard_normal((n, d))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centres = rng.standard_normal((50, 8)) * 4.0
    z = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, 8))
    basis = np.linalg.qr(rng.standard_normal((d, 8)))[0].T
    return (z @ basis + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


def datasets(names: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if any(n.startswith("fashion") for n in names):
        if not (FASHION / "train-images-idx3-ubyte.gz").exists():
            raise SystemExit(f"bench_kcenter: Fashion-MNIST not found under {FASHION}")
        px, y = fashion_pixels()
        makers = {"fashion-pixels": lambda: px, "fashion-pca128": lambda: pca128(px),
                  "fashion-mlp128": lambda: mlp128(px, y)}
        for n in names:
            if n in makers:
                out[n] = np.ascontiguousarray(makers[n]())
    if "digits-pixels" in names:
        from sklearn.datasets import load_digits

        out["digits-pixels"] = load_digits().data.astype(np.float32)
    for kind in ("clustered", "isotropic"):
        if f"synthetic-{kind}" in names:
            out[f"synthetic-{kind}"] = synthetic(kind)
    return {n: out[n] for n in names if n in out}


def numpy_loop(x: np.ndarray, budget: int, labeled: np.ndarray) -> np.ndarray:
    """The numpy GEMV loop (float32): |x|^2 + |c|^2 - 2 X c per pick."""
    sq = np.einsum("ij,ij->i", x, x)
    md = np.full(x.shape[0], np.inf, dtype=np.float32)
    for s in range(0, len(labeled), 256):
        lab = labeled[s : s + 256]
        np.minimum(md, (sq[:, None] + sq[lab][None, :] - 2.0 * (x @ x[lab].T)).min(1), out=md)
    md[labeled] = -1.0
    out = np.empty(budget, dtype=np.int64)
    for t in range(budget):
        c = int(np.argmax(md))
        out[t] = c
        np.minimum(md, sq + sq[c] - 2.0 * (x @ x[c]), out=md)
        md[c] = -1.0
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_one(name: str, x: np.ndarray, budget: int, repeats: int, bw: float) -> list[object]:
    n, d = x.shape
    lab = np.random.default_rng(1).choice(n, size=min(N_LABELED, n // 4), replace=False)
    b = min(budget, n - len(lab))
    runs = {"ours": lambda: dalcore.kcenter(x, b, lab),
            "unpruned": lambda: dalcore.kcenter(x, b, lab, _prune=False),
            "numpy": lambda: numpy_loop(x, b, lab)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up (page faults, thread start)
    for _ in range(repeats):  # interleaved: each round runs all three
        for k, fn in runs.items():
            times[k].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    picks, st = _kcenter_stats(x, b, lab)
    assert np.array_equal(picks, runs["unpruned"]())  # same picks, always
    m = _auto_dim(n, d)
    ours_bytes = (st["full_rows"] * 4 * d + st["projected_rows"] * (4 * m + 8)
                  + st["visited"] * 12) / b
    np_bytes = n * (4 * d + 16)
    ours_bw = ours_bytes / (med["ours"] / b)
    np_bw = np_bytes / (med["numpy"] / b)
    return [name, n, d, b, m, med["ours"], med["unpruned"], med["numpy"],
            f"{med['numpy'] / med['ours']:.1f}x", f"{med['unpruned'] / med['ours']:.1f}x",
            f"{ours_bytes / 1e6:.3g}", f"{np_bytes / 1e6:.3g}",
            f"{ours_bw / 1e9:.2f} ({100 * ours_bw / bw:.0f}%)",
            f"{np_bw / 1e9:.2f} ({100 * np_bw / bw:.0f}%)"]


HEADER = ["data", "N", "d", "budget", "m", "ours s", "ours unpruned s", "numpy s",
          "numpy/ours", "unpruned/ours", "ours MB/pick", "numpy MB/pick", "ours GB/s (%bw)",
          "numpy GB/s (%bw)"]


def large_data(n: int, path: str, seed: int = 0) -> None:
    """Saves N x 128 to `path` (.npy): Fashion-MNIST's 128-PCA features repeated with noise
    (1 % of the per-feature spread)."""
    px, _ = fashion_pixels()
    base = pca128(px)
    del px
    rng = np.random.default_rng(seed)
    x = np.empty((n, 128), dtype=np.float32)
    sd = base.std(axis=0).astype(np.float32)
    for a in range(0, n, 65536):
        rows = rng.integers(0, len(base), size=min(65536, n - a))
        x[a : a + len(rows)] = base[rows] + 0.01 * sd * rng.standard_normal(
            (len(rows), 128), dtype=np.float32)
    np.save(path, x)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_run(path: str, budget: int, numpy_picks: int = 20) -> dict[str, float]:
    """Loads the data, runs kcenter once (timed) and reads the peak resident memory during the
    call (Linux: VmHWM reset just before, against VmRSS then), then times
    `numpy_picks` picks of the numpy GEMV loop (per pick, from the same labeled set)."""
    x = np.load(path)
    n = x.shape[0]
    lab = np.random.default_rng(1).choice(n, size=N_LABELED, replace=False)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak (VmHWM) to now
        f.write("5")
    rss0 = _status_kib("VmRSS") * 1024
    t = _timed(lambda: dalcore.kcenter(x, budget, lab))
    peak = _status_kib("VmHWM") * 1024
    t_np = _timed(lambda: numpy_loop(x, numpy_picks, lab))
    t_np1 = _timed(lambda: numpy_loop(x, 1, lab))  # the labeled-set part
    return {"n": n, "budget": budget, "seconds": t, "data_bytes": x.nbytes,
            "rss_before": rss0, "peak_rss": peak,
            "numpy_per_pick": (t_np - t_np1) / (numpy_picks - 1), "numpy_init": t_np1}
