"""dalcore.data: every loader on small files of the real format, written here into tmp_path, and
checked against independent numpy / PIL references; the class-balanced draw against counting;
augmentation against a per-pixel reflection reference."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dalcore.data import (
    DATASETS,
    DataError,
    Dataset,
    augment,
    class_balanced_indices,
    load_dataset,
    shift_flip,
)
from dalcore.data import idx as idx_module

# ----------------------------------------------------------------------------- references


def ref_normalise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C, H, W) float64 pixels in [0, 1] -> per-channel (train mean/std) normalised."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    return (train - mean) / std, (test - mean) / std, mean.reshape(-1)


def pil_resize(img: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) float -> (C, size, size) by PIL's bilinear filter (float mode 'F')."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(ch.astype(np.float32), mode="F").resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for ch in img
        ]
    )


def reflect_index(k: int, n: int) -> int:
    """Mirror an index about the edge pixels (edge not repeated) until it lies in [0, n)."""
    while k < 0 or k >= n:
        k = -k if k < 0 else 2 * (n - 1) - k
    return k


def ref_shift_flip(img: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """out[c, i, j] = img[c, reflect(i - dy), reflect(j - dx)], then mirrored if flip."""
    c, h, w = img.shape
    out = np.empty_like(img)
    for i in range(h):
        for j in range(w):
            out[:, i, j] = img[:, reflect_index(i - dy, h), reflect_index(j - dx, w)]
    return out[:, :, ::-1] if flip else out


def assert_normalised(d: Dataset) -> None:
    x = d.x_train.double()
    assert torch.allclose(
        x.mean(dim=(0, 2, 3)), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-5
    )
    assert torch.allclose(
        x.std(dim=(0, 2, 3), unbiased=False), torch.ones(x.shape[1], dtype=torch.float64), atol=1e-4
    )
    assert d.x_train.dtype == torch.float32 and d.x_test.dtype == torch.float32
    assert d.y_train.dtype == torch.int64 and d.y_test.dtype == torch.int64


def pixels(d: Dataset, x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: back to [0, 1] pixels (float64)."""
    m = np.asarray(d.mean).reshape(1, -1, 1, 1)
    s = np.asarray(d.std).reshape(1, -1, 1, 1)
    return x.double().numpy() * s + m


# ----------------------------------------------------------------------------- writers


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_idx_dir(
    root: Path, rng: np.random.Generator, *, gz: bool, layout: str = "flat", ntr=30, nte=12
):
    d = {"flat": root, "torchvision": root / "MNIST" / "raw"}[layout]
    d.mkdir(parents=True, exist_ok=True)
    xtr = rng.integers(0, 256, (ntr, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, ntr).astype(np.uint8)
    xte = rng.integers(0, 256, (nte, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, nte).astype(np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(d / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    write_idx(d / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    write_idx(d / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    write_idx(d / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    return xtr, ytr, xte, yte


def cifar_batches(name: str, rng: np.random.Generator):
    if name == "cifar10":
        names, key, ncls = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        names, key, ncls = ["train", "test"], b"fine_labels", 100
    out = {}
    for nm in names:
        n = int(rng.integers(3, 7)) if nm != "train" else 25
        batch = {
            b"batch_label": nm.encode(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            key: [int(v) for v in rng.integers(0, ncls, n)],
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        if name == "cifar100":
            batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
        out[nm] = batch
    meta_name, meta_key = (
        ("batches.meta", b"label_names") if name == "cifar10" else ("meta", b"fine_label_names")
    )
    out[meta_name] = {meta_key: [f"class{i}".encode() for i in range(ncls)]}
    return out, names, key, ncls


def write_cifar(root: Path, name: str, batches: dict, *, archive: bool) -> None:
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    src = root / folder if not archive else root / "_src" / folder
    src.mkdir(parents=True)
    for nm, b in batches.items():
        with open(src / nm, "wb") as f:
            pickle.dump(b, f, protocol=2)
    if archive:
        tname = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}[name]
        with tarfile.open(root / tname, "w:gz") as tar:
            tar.add(src, arcname=folder)


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_unknown():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "folder")
    with pytest.raises(ValueError, match="digits") as e:
        load_dataset("imagenet")
    assert "cifar100" in str(e.value)
    with pytest.raises(TypeError):
        load_dataset(3)  # type: ignore[arg-type]
    assert issubclass(DataError, ValueError)


# ----------------------------------------------------------------------------- digits


def test_digits_split_shapes_and_content():
    from sklearn.datasets import load_digits

    sk = load_digits()
    d = load_dataset("digits")
    assert d.x_train.shape == (1297, 1, 32, 32) and d.x_test.shape == (500, 1, 32, 32)
    assert d.num_classes == 10 and d.translate == 0 and d.flip is False
    assert np.bincount(d.y_test.numpy(), minlength=10).tolist() == [50] * 10
    assert_normalised(d)
    # The 8x8 version: train + test is exactly sklearn's set of (image, label) pairs.
    d8 = load_dataset("digits", image_size=8)
    assert d8.x_train.shape == (1297, 1, 8, 8)
    assert torch.equal(d8.y_train, d.y_train) and torch.equal(d8.y_test, d.y_test)
    got = np.concatenate([pixels(d8, d8.x_train), pixels(d8, d8.x_test)]).reshape(1797, 64) * 16
    got = np.concatenate([got, np.concatenate([d8.y_train, d8.y_test])[:, None]], axis=1)
    np.testing.assert_allclose(got, np.round(got), atol=1e-4)
    ref = np.concatenate([sk.data, sk.target[:, None]], axis=1)
    assert sorted(map(tuple, np.round(got).astype(int))) == sorted(map(tuple, ref.astype(int)))
    # Bilinear upsampling 8 -> 32 of the same images (PIL reference).
    p8, p32 = pixels(d8, d8.x_test[:20]), pixels(d, d.x_test[:20])
    for a, b in zip(p8, p32):
        np.testing.assert_allclose(b, pil_resize(a, 32), atol=1e-5)
    # The split is fixed.
    again = load_dataset("digits")
    assert torch.equal(again.y_train, d.y_train) and torch.equal(again.x_test, d.x_test)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize(
    "name,gz,layout",
    [("mnist", True, "flat"), ("mnist", False, "torchvision"), ("fashion-mnist", False, "flat")],
)
def test_idx_loader(tmp_path, rng, name, gz, layout):
    xtr, ytr, xte, yte = make_idx_dir(tmp_path, rng, gz=gz, layout=layout)
    d = load_dataset(name, tmp_path)
    assert d.name == name and d.num_classes == 10
    assert d.x_train.shape == (30, 1, 32, 32) and d.x_test.shape == (12, 1, 32, 32)
    assert d.translate == 4 and d.flip is (name == "fashion-mnist")
    np.testing.assert_array_equal(d.y_train.numpy(), ytr)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)
    pad = lambda a: np.pad(a / 255.0, ((0, 0), (2, 2), (2, 2)))[:, None]  # noqa: E731
    rtr, rte, _ = ref_normalise(pad(xtr.astype(np.float64)), pad(xte.astype(np.float64)))
    np.testing.assert_allclose(d.x_train.numpy(), rtr, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), rte, atol=1e-5)
    assert_normalised(d)
    # The 2-px border is the padding zero.
    border = pixels(d, d.x_train)[:, 0]
    for sl in (border[:, :2], border[:, -2:], border[:, :, :2], border[:, :, -2:]):
        np.testing.assert_allclose(sl, 0.0, atol=1e-6)


def test_idx_image_size_resizes_after_padding(tmp_path, rng):
    xtr, _, xte, _ = make_idx_dir(tmp_path, rng, gz=True)
    d = load_dataset("mnist", tmp_path, image_size=16)
    assert d.x_train.shape == (30, 1, 16, 16) and d.translate == 2
    assert_normalised(d)
    ref = [pil_resize(np.pad(im / 255.0, 2)[None], 16) for im in xte[:5]]
    np.testing.assert_allclose(pixels(d, d.x_test[:5]), np.stack(ref), atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist", tmp_path, image_size=2)
    with pytest.raises(TypeError, match="image_size"):
        load_dataset("mnist", tmp_path, image_size=16.0)  # type: ignore[arg-type]


def test_idx_missing_files(tmp_path, rng, monkeypatch):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    for f in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert f in msg
    assert "http" in msg
    with pytest.raises(DataError, match="data-dir"):
        load_dataset("mnist", None)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nowhere")
    # One file missing: named alone.
    make_idx_dir(tmp_path, rng, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)
    # Fashion-MNIST without data_dir and without Debian's package: says how to install it.
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip", "count"])
def test_idx_corrupt_files(tmp_path, rng, damage):
    make_idx_dir(tmp_path, rng, gz=damage == "gzip")
    sfx = ".gz" if damage == "gzip" else ""
    target = tmp_path / f"train-images-idx3-ubyte{sfx}"
    raw = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(raw[:-7])
    elif damage == "magic":
        target.write_bytes(b"\x12\x34" + raw[2:])
    elif damage == "gzip":
        target.write_bytes(raw[: len(raw) // 2])
    else:  # labels for a different number of images
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8), gz=False)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    assert "train-" in str(e.value)


@pytest.mark.parametrize("dims", [(-30, -28, 28), (0, 28, 28), (4, 0, 28), (-1, 28, 28)])
def test_idx_header_with_bad_dimensions(tmp_path, rng, dims):
    """Negative or zero dimensions (whose product may still match the data) are refused."""
    make_idx_dir(tmp_path, rng, gz=False)
    target = tmp_path / "train-images-idx3-ubyte"
    raw = target.read_bytes()
    n_data = len(raw) - 16
    header = raw[:4] + np.asarray(dims, dtype=">i4").tobytes()
    body = raw[16:] if math.prod(dims) == n_data else raw[16:16 + max(math.prod(dims), 0)]
    target.write_bytes(header + body)
    with pytest.raises(DataError, match="dimension") as e:
        load_dataset("mnist", tmp_path)
    assert "train-images" in str(e.value)


def test_fashion_mnist_debian_files():
    root = idx_module.DEBIAN_FASHION_MNIST
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    d = load_dataset("fashion-mnist", str(root))
    assert d.x_train.shape == (60000, 1, 32, 32) and d.x_test.shape == (10000, 1, 32, 32)
    assert np.bincount(d.y_train.numpy(), minlength=10).tolist() == [6000] * 10
    assert np.bincount(d.y_test.numpy(), minlength=10).tolist() == [1000] * 10
    assert_normalised(d)
    # Independent parse of the test images: 16-byte header, then raw bytes.
    raw = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())
    ref = np.frombuffer(raw, np.uint8, offset=16).reshape(10000, 28, 28)[:50] / 255.0
    got = pixels(d, d.x_test[:50])[:, 0]
    np.testing.assert_allclose(got[:, 2:30, 2:30], ref, atol=1e-5)
    np.testing.assert_allclose(got[:, :2], 0.0, atol=1e-6)
    lab = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    np.testing.assert_array_equal(d.y_test.numpy(), np.frombuffer(lab, np.uint8, offset=8))


def test_fashion_mnist_defaults_to_debian_folder(tmp_path, rng, monkeypatch):
    _, ytr, _, yte = make_idx_dir(tmp_path, rng, gz=True)
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST", tmp_path)
    d = load_dataset("fashion-mnist", image_size=16)
    assert d.x_train.shape == (30, 1, 16, 16)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)
    with pytest.raises(DataError, match="data-dir"):
        load_dataset("mnist")  # only fashion-mnist has a default folder


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("source", ["parent", "folder", "archive"])
def test_cifar_loader(tmp_path, rng, name, source):
    batches, names, key, ncls = cifar_batches(name, rng)
    write_cifar(tmp_path, name, batches, archive=source == "archive")
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    d = load_dataset(name, tmp_path / folder if source == "folder" else tmp_path)
    train_names, test_names = names[:-1], names[-1:]
    xtr = np.concatenate([batches[n][b"data"] for n in train_names]).reshape(-1, 3, 32, 32)
    xte = np.concatenate([batches[n][b"data"] for n in test_names]).reshape(-1, 3, 32, 32)
    ytr = np.concatenate([batches[n][key] for n in train_names])
    yte = np.concatenate([batches[n][key] for n in test_names])
    assert d.num_classes == ncls and d.translate == 4 and d.flip is True
    assert d.x_train.shape == (len(ytr), 3, 32, 32)
    np.testing.assert_array_equal(d.y_train.numpy(), ytr)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)
    rtr, rte, mean = ref_normalise(xtr / 255.0, xte / 255.0)
    np.testing.assert_allclose(d.x_train.numpy(), rtr, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), rte, atol=1e-5)
    np.testing.assert_allclose(d.mean, mean, atol=1e-9)
    assert_normalised(d)
    assert d.classes == [f"class{i}" for i in range(ncls)]


def test_cifar_pickles_written_by_numpy1(tmp_path, rng):
    """The official files name numpy.core.multiarray (numpy 1); they load without warnings."""
    batches, names, key, _ = cifar_batches("cifar10", rng)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for nm, b in batches.items():
        raw = pickle.dumps(b, protocol=2).replace(
            b"numpy._core.multiarray", b"numpy.core.multiarray"
        )
        (folder / nm).write_bytes(raw)
    assert b"numpy.core.multiarray" in (folder / "test_batch").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = load_dataset("cifar10", tmp_path)
    ref = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(pixels(d, d.x_test), ref, atol=1e-5)
    np.testing.assert_array_equal(d.y_test.numpy(), batches["test_batch"][key])


def test_cifar_missing_and_corrupt(tmp_path, rng):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert "data_batch_1" in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)
    batches, *_ = cifar_batches("cifar10", rng)
    write_cifar(tmp_path, "cifar10", batches, archive=False)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
    # Garbage bytes.
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)

    # A pickle that would run code is refused.
    class Evil:
        def __reduce__(self):
            return (print, ("pickle executed code",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="unexpected object"):
        load_dataset("cifar10", tmp_path)
    # Wrong shape of b"data".
    bad = dict(batches["data_batch_3"])
    bad[b"data"] = bad[b"data"][:, :100]
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="3072"):
        load_dataset("cifar10", tmp_path)
    # Corrupt archive.
    other = tmp_path / "arch"
    other.mkdir()
    (other / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b" + b"\0" * 50)
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", other)


# ----------------------------------------------------------------------------- SVHN


def test_svhn_loader_and_errors(tmp_path, rng):
    from scipy.io import savemat

    def mat(path, n):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10
        savemat(path, {"X": x, "y": y})
        return x, y.reshape(-1)

    with pytest.raises(DataError, match="train_32x32.mat") as e:
        load_dataset("svhn", tmp_path)
    assert "test_32x32.mat" in str(e.value) and "http" in str(e.value)
    xtr, ytr = mat(tmp_path / "train_32x32.mat", 20)
    xte, yte = mat(tmp_path / "test_32x32.mat", 7)
    d = load_dataset("svhn", tmp_path)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (7, 3, 32, 32)
    assert d.translate == 4 and d.flip is False
    np.testing.assert_array_equal(d.y_train.numpy(), np.where(ytr == 10, 0, ytr))
    np.testing.assert_array_equal(d.y_test.numpy(), np.where(yte == 10, 0, yte))
    # x[n, c, h, w] = X[h, w, c, n]
    ref_tr = np.einsum("hwcn->nchw", xtr) / 255.0
    ref_te = np.einsum("hwcn->nchw", xte) / 255.0
    rtr, rte, _ = ref_normalise(ref_tr, ref_te)
    np.testing.assert_allclose(d.x_train.numpy(), rtr, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), rte, atol=1e-5)
    assert_normalised(d)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, corrupt" + bytes(range(256)))
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_dataset("svhn", tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": xte, "labels": yte})
    with pytest.raises(DataError, match="X and y"):
        load_dataset("svhn", tmp_path)


# ----------------------------------------------------------------------------- folder


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_train_test_layout(tmp_path, rng):
    classes = ["cat", "dog", "eel"]
    ref = {"train": [], "test": []}
    for split, n in (("train", 4), ("test", 2)):
        for ci, c in enumerate(classes):
            for k in range(n):
                side = int(rng.integers(20, 48))
                arr = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
                _save(tmp_path / split / c / f"{k:02d}.png", arr)
                # PIL's own uint8 bilinear resize of the RGB image is the reference.
                small = np.asarray(Image.fromarray(arr).resize((16, 16), Image.Resampling.BILINEAR))
                ref[split].append((small.transpose(2, 0, 1) / 255.0, ci))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    d = load_dataset("folder", tmp_path, image_size=16)
    assert d.classes == classes and d.num_classes == 3
    assert d.x_train.shape == (12, 3, 16, 16) and d.x_test.shape == (6, 3, 16, 16)
    assert d.translate == 2 and d.flip is True
    rtr = np.stack([a for a, _ in ref["train"]])
    rte = np.stack([a for a, _ in ref["test"]])
    np.testing.assert_array_equal(d.y_train.numpy(), [c for _, c in ref["train"]])
    np.testing.assert_array_equal(d.y_test.numpy(), [c for _, c in ref["test"]])
    ntr, nte, _ = ref_normalise(rtr, rte)
    np.testing.assert_allclose(d.x_train.numpy(), ntr, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), nte, atol=1e-5)
    assert_normalised(d)


def test_folder_seeded_split_grayscale(tmp_path, rng):
    counts = {"a": 10, "b": 5, "c": 1}
    originals = {}
    for c, n in counts.items():
        for k in range(n):
            arr = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            _save(tmp_path / c / f"{k}.png", arr)
            originals[arr.tobytes()] = c
    d = load_dataset("folder", tmp_path)
    assert d.x_train.shape[1:] == (1, 32, 32) and d.classes == ["a", "b", "c"]
    assert np.bincount(d.y_test.numpy(), minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(d.y_train.numpy(), minlength=3).tolist() == [8, 4, 1]
    # Every image lands exactly once, with its folder's label.
    seen = []
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        px = np.round(pixels(d, x)[:, 0] * 255).astype(np.uint8)
        for img, lab in zip(px, y.tolist()):
            assert originals[img.tobytes()] == d.classes[lab]
            seen.append(img.tobytes())
    assert sorted(seen) == sorted(originals)
    again = load_dataset("folder", tmp_path)
    assert torch.equal(again.x_test, d.x_test)


def test_folder_errors(tmp_path, rng):
    with pytest.raises(DataError, match="sub-folder"):
        load_dataset("folder", tmp_path)
    _save(tmp_path / "a" / "0.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset("folder", tmp_path)


def test_folder_16bit_png_is_scaled_not_clipped(tmp_path, rng):
    refs = {}
    for c in ("a", "b"):
        for k in range(3):
            arr = rng.integers(0, 65536, (32, 32)).astype(np.uint16)
            _save(tmp_path / c / f"{k}.png", arr)
            refs[(c, k)] = np.rint(arr.astype(np.float64) * 255.0 / 65535.0) / 255.0
    with Image.open(tmp_path / "a" / "0.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    d = load_dataset("folder", tmp_path)
    got = np.concatenate([pixels(d, d.x_train), pixels(d, d.x_test)])[:, 0]
    want = np.stack(list(refs.values()))
    # every reference image is found among the loaded ones (split order aside)
    for ref in want:
        assert np.min(np.abs(got - ref).reshape(len(got), -1).max(axis=1)) < 1e-5
    assert got.std() > 0.2  # spread over [0, 1], not clipped to white (std 0)


def test_folder_decompression_bomb_is_refused(tmp_path, rng, monkeypatch):
    from PIL import Image as PILImage

    for c in ("a", "b"):
        for k in range(2):
            _save(tmp_path / c / f"{k}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    _save(tmp_path / "b" / "bomb.png", np.zeros((64, 64), dtype=np.uint8))
    # 64 x 64 = 4096 pixels: over a limit of 3000 (warning) and of 1500 (error)
    for limit in (3000, 1500):
        monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DataError, match="bomb.png"):
            load_dataset("folder", tmp_path)


def test_folder_single_class_and_empty_test(tmp_path, rng):
    for k in range(4):
        _save(tmp_path / "one" / "only" / f"{k}.png", rng.integers(0, 256, (8, 8), np.uint8))
    with pytest.raises(DataError, match="only one class"):
        load_dataset("folder", tmp_path / "one")
    for c in ("a", "b"):  # train/ and test/ layout with an empty test/
        _save(tmp_path / "two" / "train" / c / "0.png", rng.integers(0, 256, (8, 8), np.uint8))
    (tmp_path / "two" / "test").mkdir()
    with pytest.raises(DataError, match="test set is empty"):
        load_dataset("folder", tmp_path / "two")
    for c in ("a", "b"):  # one image per class: the seeded split leaves nothing to test on
        _save(tmp_path / "three" / c / "0.png", rng.integers(0, 256, (8, 8), np.uint8))
    with pytest.raises(DataError, match="test set is empty"):
        load_dataset("folder", tmp_path / "three")


def test_cifar_protocol5_pickles(tmp_path, rng):
    batches, names, key, _ = cifar_batches("cifar10", rng)
    for nm in names:
        batches[nm][key] = np.asarray(batches[nm][key], dtype=np.int64)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for nm, b in batches.items():
        (folder / nm).write_bytes(pickle.dumps(b, protocol=5))
    assert b"_frombuffer" in (folder / "test_batch").read_bytes()
    d = load_dataset("cifar10", tmp_path)
    ref = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(pixels(d, d.x_test), ref, atol=1e-5)
    np.testing.assert_array_equal(d.y_test.numpy(), batches["test_batch"][key])


@pytest.mark.parametrize("labels", [["a", "b"], [0.5, 1.0], [float("nan"), 1.0], [-1, 2]])
def test_cifar_labels_that_are_not_integers(tmp_path, rng, labels):
    batches, names, key, _ = cifar_batches("cifar10", rng)
    n = len(batches["data_batch_2"][key])
    batches["data_batch_2"][key] = (labels * n)[:n]
    write_cifar(tmp_path, "cifar10", batches, archive=False)
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path)


# ----------------------------------------------------------------------------- Dataset


def test_dataset_subset_and_to():
    d = load_dataset("digits", image_size=8)
    idx = np.array([5, 0, 100, 7])
    s = d.subset_train(idx)
    assert torch.equal(s.x_train, d.x_train[idx]) and torch.equal(s.y_train, d.y_train[idx])
    assert s.x_test is d.x_test and s.mean == d.mean and s.std == d.std
    assert torch.equal(d.subset_train(torch.tensor(idx)).y_train, s.y_train)
    with pytest.raises(ValueError, match="indices"):
        d.subset_train([0, 1297])
    with pytest.raises(ValueError, match="distinct"):
        d.subset_train([3, 3])
    with pytest.raises(TypeError, match="indices"):
        d.subset_train(np.array([0.5]))
    moved = d.to("cpu")
    assert moved.device.type == "cpu" and torch.equal(moved.x_train, d.x_train)
    assert moved.in_channels == 1 and moved.image_size == 8


# ------------------------------------------------------------------------ class_balanced_indices


def check_balanced(y: np.ndarray, out: np.ndarray, n: int, num_classes: int) -> None:
    counts = np.bincount(y, minlength=num_classes)
    assert out.dtype == np.int64 and out.shape == (n,)
    assert np.all(np.diff(out) > 0)  # sorted and distinct
    k = np.bincount(y[out], minlength=num_classes)
    assert k.sum() == n and np.all(k <= counts)
    for a in range(num_classes):
        if k[a] < counts[a]:  # a class with samples left is at most one below any other
            assert k[a] >= k.max() - 1, (k, counts)


def test_class_balanced_indices_counting(rng):
    for _ in range(30):
        c = int(rng.integers(1, 12))
        sizes = rng.integers(0, 25, c)
        sizes[rng.integers(0, c)] += 1
        y = rng.permutation(np.repeat(np.arange(c), sizes))
        for n in {0, 1, int(rng.integers(0, y.size + 1)), y.size}:
            seed = int(rng.integers(2**31))
            out = class_balanced_indices(y, n, c, np.random.default_rng(seed))
            check_balanced(y, out, n, c)
            again = class_balanced_indices(torch.from_numpy(y), n, c, np.random.default_rng(seed))
            np.testing.assert_array_equal(out, again)


def test_class_balanced_indices_uniform_within_class():
    y = np.repeat([0, 1], 10)
    gen = np.random.default_rng(1)
    freq = np.zeros(20)
    for _ in range(2000):
        freq[class_balanced_indices(y, 4, 2, gen)] += 1
    np.testing.assert_allclose(freq / 2000, 0.2, atol=0.05)
    draws = {tuple(class_balanced_indices(y, 4, 2, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10  # seeds matter


def test_class_balanced_indices_errors(rng):
    y = np.array([0, 1, 1, 2])
    with pytest.raises(ValueError, match="n"):
        class_balanced_indices(y, 5, 3, rng)
    with pytest.raises(ValueError, match="y"):
        class_balanced_indices(y, 2, 2, rng)
    with pytest.raises(TypeError, match="rng"):
        class_balanced_indices(y, 2, 3, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="y"):
        class_balanced_indices(y.astype(float), 2, 3, rng)


# ----------------------------------------------------------------------------- augmentation


def test_shift_flip_matches_reflection_reference(rng):
    x = torch.from_numpy(rng.standard_normal((16, 3, 9, 7)).astype(np.float32))
    dy = torch.from_numpy(rng.integers(-6, 7, 16))
    dx = torch.from_numpy(rng.integers(-5, 6, 16))
    fl = torch.from_numpy(rng.random(16) < 0.5)
    out = shift_flip(x, dy, dx, fl).numpy()
    for b in range(16):
        ref = ref_shift_flip(x[b].numpy(), int(dy[b]), int(dx[b]), bool(fl[b]))
        np.testing.assert_array_equal(out[b], ref)
    with pytest.raises(ValueError, match="one reflection"):
        shift_flip(x, dy * 0 + 9, dx * 0, None)


def _match(img: np.ndarray, out: np.ndarray, t: int, flips: tuple[bool, ...]) -> list[tuple]:
    return [
        (dy, dx, f)
        for dy in range(-t, t + 1)
        for dx in range(-t, t + 1)
        for f in flips
        if np.array_equal(ref_shift_flip(img, dy, dx, f), out)
    ]


@pytest.mark.parametrize("flip", [False, True])
def test_augment_draws_exact_shifts(rng, flip):
    t = 2
    x = torch.from_numpy(rng.standard_normal((120, 2, 8, 8)).astype(np.float32))
    out = augment(x, translate=t, flip=flip, generator=torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype
    used = []
    for b in range(x.shape[0]):
        m = _match(x[b].numpy(), out[b].numpy(), t, (False, True) if flip else (False,))
        assert len(m) == 1, f"sample {b}: {m}"
        used.append(m[0])
    dys = {u[0] for u in used}
    dxs = {u[1] for u in used}
    assert dys == set(range(-t, t + 1)) and dxs == set(range(-t, t + 1))
    n_flip = sum(u[2] for u in used)
    assert (20 < n_flip < 100) if flip else n_flip == 0
    same = augment(x, translate=t, flip=flip, generator=torch.Generator().manual_seed(7))
    other = augment(x, translate=t, flip=flip, generator=torch.Generator().manual_seed(8))
    assert torch.equal(out, same) and not torch.equal(out, other)


def test_augment_identity_flip_only_and_errors(rng):
    x = torch.from_numpy(rng.standard_normal((10, 3, 6, 6)).astype(np.float32))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, translate=0, flip=False, generator=g), x)
    out = augment(x, translate=0, flip=True, generator=g)
    for b in range(10):
        assert torch.equal(out[b], x[b]) or torch.equal(out[b], x[b].flip(-1))
    with pytest.raises(ValueError, match="translate"):
        augment(x, translate=6, flip=False, generator=g)
    with pytest.raises(ValueError, match="translate"):
        augment(x, translate=-1, flip=False, generator=g)
    with pytest.raises(ValueError, match="x"):
        augment(x[0], translate=1, flip=False, generator=g)
    with pytest.raises(TypeError, match="x"):
        augment(x.long(), translate=1, flip=False, generator=g)
    with pytest.raises(TypeError, match="generator"):
        augment(x, translate=1, flip=False, generator=0)  # type: ignore[arg-type]
    assert augment(x[:0], translate=2, flip=True, generator=g).shape == (0, 3, 6, 6)


@pytest.mark.gpu
def test_augment_on_cuda(rng):
    x = torch.from_numpy(rng.standard_normal((40, 3, 8, 8)).astype(np.float32))
    for gen in (torch.Generator(device="cuda").manual_seed(3), torch.Generator().manual_seed(3)):
        out = augment(x.cuda(), translate=2, flip=True, generator=gen)
        assert out.is_cuda
        o = out.cpu().numpy()
        for b in range(x.shape[0]):
            assert len(_match(x[b].numpy(), o[b], 2, (False, True))) == 1
