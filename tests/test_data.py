"""Datasets, splits and the loaders — including the downloaded ones, on tiny files written here."""
import gzip
import os
import pickle
import struct
import urllib.error

import numpy as np
import pytest
import torch

from sslteach import data
from sslteach.data import (DatasetUnavailableError, IndexSampler, balanced_split, load_dataset, long_tailed_counts,
                           long_tailed_split, open_set_split, read_idx)


def test_digits_fixed_split(digits):
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.y_train) == 1347 and len(digits.y_test) == 450
    assert 0.0 <= float(digits.x_train.min()) and float(digits.x_train.max()) <= 1.0
    again = load_dataset("digits")
    assert torch.equal(again.y_test, digits.y_test)  # the train/test split is fixed


def test_two_moons():
    ds = load_dataset("two_moons")
    assert ds.input_shape == (2,) and ds.num_classes == 2 and ds.kind == "points"
    assert len(ds.y_train) == len(ds.y_test) == 1000


def test_unknown_dataset_names_valid_values():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; valid values: two_moons, digits"):
        load_dataset("imagenet")


@pytest.mark.parametrize("lpc", [1, 2, 7])
def test_balanced_split_exact_counts(digits, lpc):
    s = balanced_split(digits, lpc, seed=3)
    assert torch.bincount(s.y_lb, minlength=10).tolist() == [lpc] * 10
    assert len(s.y_lb) + len(s.y_ulb) == len(digits.y_train)
    lb, ulb = s.info["labeled_index"], s.info["unlabeled_index"]
    assert not set(lb.tolist()) & set(ulb.tolist())  # disjoint
    assert sorted(lb.tolist() + ulb.tolist()) == list(range(len(digits.y_train)))  # together: the training set
    assert torch.equal(s.x_lb, digits.x_train[lb]) and torch.equal(s.y_ulb, digits.y_train[ulb])
    assert s.info["labels_per_class"] == lpc


def test_balanced_split_seeded(digits):
    a, b, c = balanced_split(digits, 2, seed=0), balanced_split(digits, 2, seed=0), balanced_split(digits, 2, seed=1)
    assert torch.equal(a.x_lb, b.x_lb) and torch.equal(a.y_ulb, b.y_ulb)
    assert not torch.equal(a.x_lb, c.x_lb)


@pytest.mark.parametrize("bad", [0, -1, 500, 2.5, True])
def test_balanced_split_bad_budget(digits, bad):
    with pytest.raises(ValueError, match="labels_per_class"):
        balanced_split(digits, bad)


def test_labels_per_class_too_large_says_the_range(digits):
    with pytest.raises(ValueError, match=r"labels_per_class must be in \[1, \d+\] for digits"):
        balanced_split(digits, 1000)


def test_long_tailed_counts_formula():
    # N_k = N_max * gamma^(-k/(C-1)): first N_max, last N_max / gamma
    n = long_tailed_counts(100, 10.0, 10)
    assert n[0] == 100 and n[-1] == 10
    assert n[5] == int(100 * 10 ** (-5 / 9))
    assert all(a >= b for a, b in zip(n, n[1:]))


def test_long_tailed_split(digits):
    s = long_tailed_split(digits, n_max=20, imbalance_ratio=10, m_max=100, seed=0)
    assert torch.bincount(s.y_lb, minlength=10).tolist() == long_tailed_counts(20, 10, 10)
    assert torch.bincount(s.y_ulb, minlength=10).tolist() == long_tailed_counts(100, 10, 10)
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tailed_split(digits, n_max=20, imbalance_ratio=0.5)
    with pytest.raises(ValueError, match="n_max"):
        long_tailed_split(digits, n_max=10_000, imbalance_ratio=10)


def test_open_set_split(digits):
    s = open_set_split(digits, known_classes=6, labels_per_class=3, seed=0)
    assert s.num_classes == 6
    assert torch.bincount(s.y_lb, minlength=6).tolist() == [3] * 6
    assert (s.y_ulb == -1).sum() == (digits.y_train >= 6).sum()  # every unknown-class image is unlabeled
    assert set(s.y_test.tolist()) == set(range(6))
    assert (s.info["y_test_open"] == -1).sum() == (digits.y_test >= 6).sum()
    with pytest.raises(ValueError, match="known_classes"):
        open_set_split(digits, known_classes=[0, 11], labels_per_class=2)
    with pytest.raises(ValueError, match="unknown"):
        open_set_split(digits, known_classes=10, labels_per_class=2)


def test_index_sampler_covers_every_item_each_epoch():
    s = IndexSampler(20, 8, torch.Generator().manual_seed(0))
    idx = torch.cat([next(s) for _ in range(5)])  # 40 = two epochs
    assert sorted(idx[:20].tolist()) == list(range(20)) and sorted(idx[20:].tolist()) == list(range(20))
    big = IndexSampler(5, 12, torch.Generator().manual_seed(0))
    assert len(next(big)) == 12


# ---------------------------------------------------------------- downloaded datasets, on tiny files
def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())


def _write_mnist(folder, n_train=30, n_test=10, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    _write_idx(folder / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_train, 28, 28)), gz)
    _write_idx(folder / f"train-labels-idx1-ubyte{ext}", np.arange(n_train) % 10, gz)
    _write_idx(folder / f"t10k-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", np.arange(n_test) % 10, gz)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte.gz", arr, gz=True)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)


def test_mnist_loader_reads_torchvision_layout(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw")
    ds = load_dataset("mnist", root=tmp_path, download=False)
    assert ds.input_shape == (1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert len(ds.y_train) == 30 and ds.y_train[:10].tolist() == list(range(10))


def test_fashion_mnist_from_debian_folder(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "deb", gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "deb")
    ds = load_dataset("fashion_mnist", root=tmp_path / "cache", download=False)
    assert ds.name == "fashion_mnist" and ds.flip and ds.class_names[9] == "Ankle boot"


def test_cifar10_loader(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f)
    ds = load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.input_shape == (3, 32, 32) and len(ds.y_train) == 20 and len(ds.y_test) == 4 and ds.flip


def test_svhn_loader_maps_label_10_to_0(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 6), ("test_32x32.mat", 3)):
        savemat(folder / name, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                "y": np.array([[10], [1], [2], [10], [4], [5]][:n], dtype=np.uint8)})
    ds = load_dataset("svhn", root=tmp_path, download=False)
    assert ds.input_shape == (3, 32, 32) and ds.y_train.tolist() == [0, 1, 2, 0, 4, 5]


def test_offline_download_gives_one_line_fix(tmp_path, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetUnavailableError) as e:
        load_dataset("mnist", root=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "SSLTEACH_DATA" in msg and "digits" in msg and "fashion_mnist" in msg


def test_download_false_never_touches_network(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SSLTEACH_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path


def test_import_does_not_download():
    import subprocess
    import sys

    code = ("import socket\n"
            "def boom(*a, **k): raise SystemExit('network used at import')\n"
            "socket.socket.connect = boom\n"
            "import sslteach, sslteach.widgets, sslteach.cli\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- damaged files are reported, never trusted
@pytest.mark.parametrize("damage", ["cut_gzip", "cut_raw", "padded", "not_idx"])
def test_damaged_dataset_file_gives_a_clear_one_line_error(tmp_path, damage):
    folder = tmp_path / "MNIST" / "raw"
    _write_mnist(folder, gz=damage == "cut_gzip")
    name = "train-images-idx3-ubyte" + (".gz" if damage == "cut_gzip" else "")
    path = folder / name
    raw = path.read_bytes()
    if damage in ("cut_gzip", "cut_raw"):
        path.write_bytes(raw[: len(raw) // 2])  # a download that stopped half-way
    elif damage == "padded":
        path.write_bytes(raw + b"\x00" * 7)
    else:
        path.write_bytes(b"<html>proxy error</html>")
    with pytest.raises(data.CorruptDataError) as e:
        load_dataset("mnist", root=tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "delete it" in msg


def test_real_fashion_mnist_from_the_debian_package():
    """The offline real-image dataset of the collection (notebook 06, the Fashion-MNIST presets). Under CI the
    package must be there (.ci/run installs it); elsewhere the skip says how to get it."""
    if not all((data.DEBIAN_FASHION_MNIST / f).exists() for f in ("train-images-idx3-ubyte.gz",
                                                                 "t10k-labels-idx1-ubyte.gz")):
        why = f"{data.DEBIAN_FASHION_MNIST} is missing: sudo apt-get install dataset-fashion-mnist"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    ds = load_dataset("fashion_mnist", download=False)
    assert ds.input_shape == (1, 28, 28) and len(ds.y_train) == 60000 and len(ds.y_test) == 10000
    assert ds.class_counts().tolist() == [6000] * 10 and ds.x_train.dtype == torch.uint8


def test_split_settings_for_every_kind(digits):
    from sslteach.data import SplitConfig, make_split, split_settings

    lt = make_split(digits, kind="long_tailed", imbalance_ratio=10, seed=2)
    info = split_settings(lt)
    assert info["kind"] == "long_tailed" and info["n_max"] == 50 and info["m_max"] == 80
    assert info["labeled_counts"][0] == 50 and info["labeled_counts"][-1] == 5 and info["tail_classes"] == [7, 8, 9]
    assert not any(isinstance(v, torch.Tensor) for v in info.values())
    op = make_split(digits, kind="open_set", known_classes=[0, 2, 4], labels_per_class=3, seed=1)
    assert split_settings(op)["known_classes"] == [0, 2, 4] and op.num_classes == 3
    with pytest.raises(ValueError, match="unknown split 'lt'"):
        SplitConfig(kind="lt").validate()
    with pytest.raises(ValueError, match="n_max must be at least imbalance_ratio"):
        make_split(digits, kind="long_tailed", imbalance_ratio=100)
    with pytest.raises(ValueError, match="imbalance_ratio must be in"):
        make_split(digits, kind="long_tailed", imbalance_ratio=0.5)
