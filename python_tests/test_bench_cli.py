"""`dalcore bench kcenter|graph|propagate` from the command line (the package's benches, not
benches/): run in a subprocess as a user runs them, tables with one row per named data set whose
sizes are those of the data (read independently here), bad input refused with one line on
stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dalcore

ROOT = Path(__file__).resolve().parents[1]  # the repository (benches/)
#: Where the dalcore this process tests was imported from (the source tree after an in-place
#: build, site-packages after `pip install .`, as in CI): subprocesses must import the same one.
PKG_PATH = str(Path(dalcore.__file__).resolve().parents[1])


def bench(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PKG_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "dalcore",
                                                           "bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def table_rows(out: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the last Markdown table whose header starts with ``header_start``."""
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    assert starts, out
    i = starts[-1]
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def digits_shape() -> tuple[int, int]:
    from sklearn.datasets import load_digits

    return load_digits().data.shape


def check_refused(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_kcenter_quick_rows_named_by_data(tmp_path):
    x = np.random.default_rng(31).standard_normal((3000, 24)).astype(np.float32)
    np.save(tmp_path / "feats.npy", x)
    r = bench("kcenter", "--quick", "--data", f"digits,synthetic-isotropic,{tmp_path}/feats.npy")
    assert r.returncode == 0, r.stderr
    rows = {row["data"]: row for row in table_rows(r.stdout, "| data | N | d | budget |")}
    assert list(rows) == ["digits", "synthetic-isotropic", "feats.npy"]
    n, d = digits_shape()
    assert (int(rows["digits"]["N"]), int(rows["digits"]["d"])) == (n, d)
    assert (int(rows["synthetic-isotropic"]["N"]), int(rows["synthetic-isotropic"]["d"])) == \
        (10_000, 128)  # --quick: at most 10,000 rows of the 50,000
    assert (int(rows["feats.npy"]["N"]), int(rows["feats.npy"]["d"])) == x.shape
    for row in rows.values():
        assert int(row["budget"]) == 100
        assert float(row["numpy/ours"].rstrip("x")) > 0
        # numpy's bytes per pick: N (4d + 16), from the sizes alone
        assert float(row["numpy MB/pick"]) == pytest.approx(
            int(row["N"]) * (4 * int(row["d"]) + 16) / 1e6, rel=1e-2)
    assert "synthetic" in r.stdout.split("synthetic-isotropic:")[1].splitlines()[0]


def test_kcenter_quick_default_data():
    r = bench("kcenter", "--quick")
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout, "| data | N | d | budget |")
    assert [row["data"] for row in rows] == ["digits", "synthetic-clustered",
                                             "synthetic-isotropic"]
    # the synthetic rows say they are synthetic
    for name in ("synthetic-clustered", "synthetic-isotropic"):
        assert f"- {name}: synthetic:" in r.stdout


def test_kcenter_script_and_cli_print_the_same_table():
    args = ["--quick", "--data", "digits"]
    script = subprocess.run([sys.executable, str(ROOT / "benches" / "bench_kcenter.py"), *args],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=PKG_PATH))
    cli = bench("kcenter", *args)
    assert script.returncode == 0 and cli.returncode == 0, (script.stderr, cli.stderr)
    keys = ["data", "N", "d", "budget", "m", "numpy MB/pick"]
    a = table_rows(script.stdout, "| data | N |")
    b = table_rows(cli.stdout, "| data | N |")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


def test_kcenter_grid_quick():
    r = bench("kcenter", "--grid", "isotropic", "--sizes", "3000x32x50", "--peers", "numpy,scipy",
              "--repeats", "1", "--peer-picks", "5")
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout, "| N | d | budget |")
    assert len(rows) == 1 and (rows[0]["N"], rows[0]["d"], rows[0]["budget"]) == \
        ("3000", "32", "50")
    assert rows[0]["scipy s"].startswith("~")  # extrapolated from 5 picks
    assert "data: synthetic isotropic" in r.stdout


#: `dalcore bench kcenter` in a process where importing torch fails.
KCENTER_WITHOUT_TORCH = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] == 'torch':\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from dalcore.bench import main\n"
    "sys.exit(main('kcenter', sys.argv[1:]))\n"
)


def test_missing_optional_peer_is_skipped_with_a_line():
    code = KCENTER_WITHOUT_TORCH
    r = bench("--grid", "clustered", "--sizes", "3000x16x20", "--peers", "numpy,torch",
              "--repeats", "1", code=code)
    assert r.returncode == 0, r.stderr
    assert "# skipped: the torch peer (torch is not installed)" in r.stdout
    header = [line for line in r.stdout.splitlines() if line.startswith("| N |")][-1]
    assert "numpy s" in header and "torch" not in header


def test_graph_quick_real_data():
    r = bench("graph", "--quick", "--data", "digits", "-k", "10", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout, "| data | N |")
    assert [row["data"] for row in rows] == ["digits"]
    assert int(rows[0]["N"]) == digits_shape()[0]
    assert float(rows[0]["max abs diff"]) < 1e-5  # ours against the LP-DeepSSL scipy graph


def test_propagate_quick_real_data():
    r = bench("propagate", "--quick", "--data", "digits", "--k", "10", "--repeats", "1",
              "--peer-repeats", "1")
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout, "| data | N | C |")
    assert [(row["data"], int(row["N"]), int(row["C"])) for row in rows] == \
        [("digits", digits_shape()[0], 10)]
    err = [line for line in r.stdout.splitlines() if "|Z - Z_scipy|" in line][0]
    assert float(err.rsplit("=", 1)[1]) < 1e-3


@pytest.mark.parametrize("which, args, words", [
    ("kcenter", ["--data", "nope"], ["--data", "nope"]),
    ("kcenter", ["--data", "fashion-mnist:colour"], ["--data", "colour"]),
    ("kcenter", ["--data", "mnist"], ["--data mnist", "--data-dir"]),
    ("kcenter", ["--data", "digits", "--data-dir", "cifar=/tmp"], ["--data-dir", "cifar"]),
    ("kcenter", ["--repeats", "0"], ["--repeats"]),
    ("kcenter", ["--budget", "x"], ["--budget"]),
    ("kcenter", ["--grid", "isotropic", "--sizes", "10x"], ["--sizes"]),
    ("kcenter", ["--grid", "isotropic", "--sizes", "300x8x10", "--peers", "numpy,julia"],
     ["--peers", "julia"]),
    ("graph", ["--data", "digits", "-k", "5000"], ["-k"]),
    ("graph", ["--bogus"], ["--bogus"]),
    ("propagate", ["--classes", "-3"], ["--classes"]),
    ("propagate", ["--data", ","], ["--data"]),
])
def test_bad_arguments_exit_2_with_one_line(which, args, words):
    check_refused(bench(which, *args), *words)


def test_bad_npy_files_refused(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((4, 4, 4), dtype=np.float32))
    check_refused(bench("kcenter", "--data", str(tmp_path / "cube.npy")), "cube.npy", "(N, d)")
    np.save(tmp_path / "nan.npy", np.full((50, 3), np.nan, dtype=np.float32))
    check_refused(bench("kcenter", "--data", str(tmp_path / "nan.npy")), "NaN")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    check_refused(bench("kcenter", "--data", str(tmp_path / "junk.npy")), "junk.npy")
    check_refused(bench("kcenter", "--data", str(tmp_path / "missing.npy")), "missing.npy")


def test_unknown_bench_refused():
    check_refused(bench("nope"), "nope")


@pytest.mark.parametrize("kwargs, name", [
    ({"kind": "resnet"}, "kind"), ({"kind": "deepcluster", "epochs": 0}, "epochs"),
    ({"kind": "deepcluster", "epochs": 2.5}, "epochs"), ({"kind": "convnet", "epochs": True},
                                                         "epochs"),
    ({"kind": "deepcluster", "subset": 0}, "subset"),
    ({"kind": "deepcluster", "subset": 1000.5}, "subset"),
])
def test_network_features_refuse_bad_arguments(tmp_path, kwargs, name):
    from dalcore.bench.features import network_features

    with pytest.raises(ValueError, match=name):
        network_features(cache=tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())  # refused before anything was made


def write_idx(folder: Path, n: int, seed: int) -> np.ndarray:
    """MNIST-format training files (gzipped IDX) of n random 28x28 images; returns the pixels."""
    import gzip

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    lab = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], dtype=">i4").tobytes() + img.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + np.array([n], dtype=">i4").tobytes() + lab.tobytes())
    return img


def test_kcenter_idx_datasets_from_data_dir(tmp_path):
    # MNIST and KMNIST are not on this machine: --data-dir NAME=DIR names their IDX folders
    write_idx(tmp_path / "m", 600, 41)
    write_idx(tmp_path / "k", 700, 42)
    r = bench("kcenter", "--quick", "--data", "mnist,kmnist:pca128",
              "--data-dir", f"mnist={tmp_path / 'm'}", "--data-dir", f"kmnist={tmp_path / 'k'}")
    assert r.returncode == 0, r.stderr
    rows = {row["data"]: row for row in table_rows(r.stdout, "| data | N | d | budget |")}
    assert (rows["mnist"]["N"], rows["mnist"]["d"]) == ("600", "784")
    assert (rows["kmnist:pca128"]["N"], rows["kmnist:pca128"]["d"]) == ("700", "128")
    (tmp_path / "bad").mkdir()
    check_refused(bench("kcenter", "--data", "mnist", "--data-dir", f"mnist={tmp_path / 'bad'}"),
                  "train-images-idx3-ubyte")


def test_without_torch_the_network_rows_are_skipped_with_a_line():
    # torch (and so dalcore.data) blocked: the pixel rows still run, the network features and
    # the torch peer say they are skipped
    code = KCENTER_WITHOUT_TORCH
    r = bench("--quick", "--data", "digits,fashion-mnist:convnet,synthetic-isotropic",
              "--cache-dir", "/nonexistent-cache", code=code)
    assert r.returncode == 0, r.stderr
    assert "# skipped: fashion-mnist:convnet (needs torch, which is not installed)" in r.stdout
    rows = table_rows(r.stdout, "| data | N |")
    assert [row["data"] for row in rows] == ["digits", "synthetic-isotropic"]


def _find_window(images: list, patch: np.ndarray) -> set:
    """Every (image, top, left) whose 8 x 8 x 3 window equals ``patch`` (uint8), by brute
    force over all positions of both photographs."""
    found = set()
    for k, im in enumerate(images):
        h, w = im.shape[0] - 7, im.shape[1] - 7
        hit = np.ones((h, w), dtype=bool)
        for a in range(8):
            for b in range(8):
                hit &= (im[a:a + h, b:b + w] == patch[a, b]).all(axis=2)
        found.update((k, int(t), int(c)) for t, c in zip(*np.nonzero(hit)))
    return found


def test_photo_patches_are_seeded_sub_windows_of_the_two_photographs():
    from sklearn.datasets import load_sample_images

    from dalcore.bench.data import load, photo_patches

    x = load("photo-patches").x
    assert x.shape == (60_000, 192) and x.dtype == np.float32
    np.testing.assert_array_equal(x, photo_patches())  # deterministic
    assert not np.array_equal(x[:100], photo_patches(100, seed=1))  # the seed matters
    images = [np.asarray(im) for im in load_sample_images().images]  # independent copy
    rng = np.random.default_rng(7)
    both = set()
    for i in rng.choice(len(x), size=8, replace=False):
        pix = np.rint(x[i].astype(np.float64) * 255.0)
        np.testing.assert_allclose(pix / 255.0, x[i], rtol=1e-6)
        where = _find_window(images, pix.astype(np.uint8).reshape(8, 8, 3))
        assert where, f"row {i} is no 8 x 8 window of the sample photographs"
        both.update(k for k, _, _ in where)
    assert both == {0, 1}  # windows of both photographs
    # the PCA view: the patches centred and projected on their top 128 principal directions,
    # against scikit-learn's PCA (row norms: invariant to the basis chosen within the span)
    from sklearn.decomposition import PCA

    p = load("photo-patches:pca128").x
    ref = PCA(n_components=128, svd_solver="full").fit_transform(x.astype(np.float64))
    assert p.shape == ref.shape == (60_000, 128)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), np.linalg.norm(ref, axis=1),
                               rtol=1e-3, atol=1e-4)
