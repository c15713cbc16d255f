"""Datasets by name, and the labeled / unlabeled splits every method trains on.

Everything lives in memory as tensors: images as ``uint8`` (``[N, C, H, W]``) or ``float32`` in [0, 1], 2-D points
as ``float32`` ``[N, 2]``. Batches are drawn by index (:class:`IndexSampler`), with no per-image Python work.

Offline first: ``two_moons`` and ``digits`` are built in; ``fashion_mnist`` is read from the Debian package
``dataset-fashion-mnist`` when it is installed. ``mnist``, ``cifar10`` and ``svhn`` (and Fashion-MNIST without the
Debian package) go through torchvision's downloaders into :func:`data_dir`. Nothing is downloaded at import time.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .utils import check_choice, check_float, check_int

OFFLINE_DATASETS = ("two_moons", "digits", "fashion_mnist")
DATASETS = ("two_moons", "digits", "fashion_mnist", "mnist", "cifar10", "svhn")
#: Where the Debian package ``dataset-fashion-mnist`` puts its files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable (for example: no network)."""


class CorruptDataError(ValueError):
    """A data file on disk is truncated or corrupt: reported, never trusted."""


def data_dir() -> Path:
    """Cache folder for downloaded datasets: ``$SSLTEACH_DATA`` if set, else ``~/.cache/sslteach``."""
    return Path(os.environ.get("SSLTEACH_DATA", Path.home() / ".cache" / "sslteach")).expanduser()


@dataclass
class Dataset:
    """A dataset in memory: fixed train/test tensors and what the augmentations need to know about them."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    kind: str  # "points" (2-D features) or "image" ([C, H, W])
    flip: bool = False  # does a horizontal flip keep the class? (clothes, CIFAR: yes; digits, SVHN: no)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.y_train, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.num_classes} classes, input {self.input_shape})")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Images stored as ``uint8`` become ``float32`` in [0, 1]; float tensors pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


# ============================================================================ loaders
def load_dataset(name: str, root: str | Path | None = None, download: bool = True) -> Dataset:
    """Load a dataset by name: one of :data:`DATASETS`.

    ``root`` overrides the cache folder (:func:`data_dir`); ``download=False`` never touches the network.
    A dataset that is missing and cannot be downloaded raises :class:`DatasetUnavailableError` with the fix.
    """
    check_choice("dataset", name, DATASETS)
    root = Path(root) if root is not None else data_dir()
    key = (name, str(root))
    if key not in _LOADED:  # loaded once per process: a notebook trains many runs on the same data
        _LOADED[key] = _LOADERS[name](root, download)
    return _LOADED[key]


_LOADED: dict[tuple[str, str], "Dataset"] = {}


def _two_moons(root, download) -> Dataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.1, random_state=0)
    x = (x - x.mean(0)) / x.std(0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return Dataset("two_moons", x[:1000], y[:1000], x[1000:], y[1000:], 2, ["upper moon", "lower moon"], "points")


def _digits(root, download) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), split 1347 train / 450 test, stratified, seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target)
    itr, ite = train_test_split(np.arange(len(y)), test_size=450, stratify=d.target, random_state=0)
    itr, ite = torch.tensor(itr), torch.tensor(ite)
    return Dataset("digits", x[itr], y[itr], x[ite], y[ite], 10, [str(i) for i in range(10)], "image")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not. A truncated or corrupt file raises a one-line
    :class:`CorruptDataError` that names the file and the fix; its contents are never used."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as e:  # a cut-off download: gzip says "Compressed file ended ..."
        raise CorruptDataError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); delete it (or reinstall "
                               f"its package) and load the dataset again") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise CorruptDataError(f"{path} is not an unsigned-byte IDX file; delete it (or reinstall its package)")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(data) != expected:
        raise CorruptDataError(f"{path} is truncated or padded: {len(data)} bytes, expected {expected} for shape "
                               f"{shape}; delete it (or reinstall its package) and load the dataset again")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _read_mnist_folder(folder: Path, name: str, classes: list[str], flip: bool) -> Dataset | None:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = [_find(folder, s) for s in stems]
    if any(p is None for p in paths):
        return None
    xtr, ytr, xte, yte = (torch.from_numpy(read_idx(p).copy()) for p in paths)
    return Dataset(name, xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long(), 10, classes, "image", flip)


def _offline_hint(name: str, exc: BaseException | None = None) -> str:
    why = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})" if exc and str(exc) else ""
    return (f"dataset {name!r} is not in {data_dir()} and could not be downloaded{why}; connect to the internet "
            f"once, or point SSLTEACH_DATA at a folder that holds it, or use an offline dataset: "
            f"{', '.join(OFFLINE_DATASETS[:2])}, or fashion_mnist (apt-get install dataset-fashion-mnist)")


def _download(name: str, fn, download: bool) -> None:
    if not download:
        raise DatasetUnavailableError(_offline_hint(name).replace("could not be downloaded", "download=False"))
    try:
        fn()
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        raise DatasetUnavailableError(_offline_hint(name, exc)) from None


def _fashion_mnist(root: Path, download: bool) -> Dataset:
    ds = _read_mnist_folder(DEBIAN_FASHION_MNIST, "fashion_mnist", FASHION_CLASSES, True)
    if ds is None:
        folder = root / "FashionMNIST" / "raw"
        ds = _read_mnist_folder(folder, "fashion_mnist", FASHION_CLASSES, True)
        if ds is None:
            import torchvision

            _download("fashion_mnist", lambda: torchvision.datasets.FashionMNIST(root, train=True, download=True),
                      download)
            ds = _read_mnist_folder(folder, "fashion_mnist", FASHION_CLASSES, True)
    return ds


def _mnist(root: Path, download: bool) -> Dataset:
    folder = root / "MNIST" / "raw"
    ds = _read_mnist_folder(folder, "mnist", [str(i) for i in range(10)], False)
    if ds is None:
        import torchvision

        _download("mnist", lambda: torchvision.datasets.MNIST(root, train=True, download=True), download)
        ds = _read_mnist_folder(folder, "mnist", [str(i) for i in range(10)], False)
    return ds


def _read_cifar10_folder(folder: Path) -> Dataset | None:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).exists() for n in names):
        return None
    parts = []
    for n in names:
        with open(folder / n, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        parts.append((np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(d["labels"])))
    xtr = torch.from_numpy(np.concatenate([p[0] for p in parts[:5]]))
    ytr = torch.from_numpy(np.concatenate([p[1] for p in parts[:5]])).long()
    xte, yte = torch.from_numpy(parts[5][0].copy()), torch.from_numpy(parts[5][1]).long()
    return Dataset("cifar10", xtr, ytr, xte, yte, 10, CIFAR10_CLASSES, "image", flip=True)


def _cifar10(root: Path, download: bool) -> Dataset:
    folder = root / "cifar-10-batches-py"
    ds = _read_cifar10_folder(folder)
    if ds is None:
        import torchvision

        _download("cifar10", lambda: torchvision.datasets.CIFAR10(root, train=True, download=True), download)
        ds = _read_cifar10_folder(folder)
    return ds


def _read_svhn_folder(folder: Path) -> Dataset | None:
    files = [folder / "train_32x32.mat", folder / "test_32x32.mat"]
    if not all(f.exists() for f in files):
        return None
    from scipy.io import loadmat

    out = []
    for f in files:
        m = loadmat(f)
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1))).astype(np.uint8))
        y = torch.from_numpy(m["y"].astype(np.int64).reshape(-1) % 10)  # SVHN stores digit 0 as label 10
        out += [x, y]
    return Dataset("svhn", out[0], out[1], out[2], out[3], 10, [str(i) for i in range(10)], "image", flip=False)


def _svhn(root: Path, download: bool) -> Dataset:
    folder = root / "svhn"
    ds = _read_svhn_folder(folder)
    if ds is None:
        import torchvision

        def fetch():
            torchvision.datasets.SVHN(folder, split="train", download=True)
            torchvision.datasets.SVHN(folder, split="test", download=True)

        _download("svhn", fetch, download)
        ds = _read_svhn_folder(folder)
    return ds


_LOADERS = {"two_moons": _two_moons, "digits": _digits, "fashion_mnist": _fashion_mnist,
            "mnist": _mnist, "cifar10": _cifar10, "svhn": _svhn}


# ============================================================================ splits
@dataclass
class Split:
    """A labeled / unlabeled / test split of a :class:`Dataset`.

    ``y_ulb`` holds the *hidden* true labels of the unlabeled images. Training code never uses them; they exist so
    a notebook can measure how accurate the pseudo-labels are (unknown classes of an open-set split are ``-1``).
    """

    dataset: Dataset
    x_lb: torch.Tensor
    y_lb: torch.Tensor
    x_ulb: torch.Tensor
    y_ulb: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    kind: str = "balanced"
    seed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.info.get("num_classes", self.dataset.num_classes))

    def __repr__(self) -> str:
        return (f"Split({self.dataset.name}, {self.kind}: {len(self.y_lb)} labeled, {len(self.y_ulb)} unlabeled, "
                f"{len(self.y_test)} test, seed {self.seed})")

    def to(self, device) -> "Split":
        moved = {k: getattr(self, k).to(device) for k in ("x_lb", "y_lb", "x_ulb", "y_ulb", "x_test", "y_test")}
        return Split(self.dataset, **moved, kind=self.kind, seed=self.seed, info=dict(self.info))


def _as_dataset(dataset) -> Dataset:
    return load_dataset(dataset) if isinstance(dataset, str) else dataset


def balanced_split(dataset: Dataset | str, labels_per_class: int, seed: int = 0) -> Split:
    """Exactly ``labels_per_class`` labeled images per class (chosen with ``seed``); every other training image is
    unlabeled (its label kept aside in ``y_ulb`` for diagnostics only)."""
    ds = _as_dataset(dataset)
    smallest = int(ds.class_counts().min())
    check_int("labels_per_class", labels_per_class, 1)
    if labels_per_class > smallest - 1:
        raise ValueError(f"labels_per_class must be in [1, {smallest - 1}] for {ds.name} (its smallest class has "
                         f"{smallest} training images, one must stay unlabeled); got {labels_per_class}")
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    lb = []
    for c in range(ds.num_classes):
        idx = torch.nonzero(ds.y_train == c).flatten()
        lb.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    lb = torch.cat(lb)
    is_ulb = torch.ones(len(ds.y_train), dtype=torch.bool)
    is_ulb[lb] = False
    ulb = torch.nonzero(is_ulb).flatten()
    return Split(ds, ds.x_train[lb], ds.y_train[lb], ds.x_train[ulb], ds.y_train[ulb], ds.x_test, ds.y_test,
                 "balanced", seed, {"labels_per_class": labels_per_class, "labeled_index": lb,
                                    "unlabeled_index": ulb})


def long_tailed_counts(n_max: int, imbalance_ratio: float, num_classes: int) -> list[int]:
    """N_k = N_max * gamma^(-k / (C - 1)) for k = 0..C-1 (CoSSL / DARP convention): class 0 has N_max, the last
    class N_max / gamma."""
    check_int("n_max", n_max, 1)
    check_float("imbalance_ratio", imbalance_ratio, 1.0)
    # + 1e-9: N_max = gamma must give the last class exactly 1, not int(0.9999999) = 0
    return [int(n_max * imbalance_ratio ** (-k / (num_classes - 1)) + 1e-9) for k in range(num_classes)]


def long_tailed_split(dataset: Dataset | str, n_max: int, imbalance_ratio: float, m_max: int | None = None,
                      unlabeled_imbalance_ratio: float | None = None, seed: int = 0) -> Split:
    """A long-tailed split: N_k labeled and M_k unlabeled images of class k, both decaying with ratio gamma.

    ``m_max`` defaults to every remaining image of class 0; ``unlabeled_imbalance_ratio`` defaults to gamma.
    The test set stays balanced, as in CoSSL.
    """
    ds = _as_dataset(dataset)
    c = ds.num_classes
    n = long_tailed_counts(n_max, imbalance_ratio, c)
    counts = ds.class_counts().tolist()
    if n[0] >= counts[0]:
        raise ValueError(f"n_max must be in [1, {counts[0] - 1}] for {ds.name} (class 0 has {counts[0]} images); "
                         f"got {n_max}")
    if min(n) < 1:
        raise ValueError(f"n_max must be at least imbalance_ratio ({imbalance_ratio:g}) so that the rarest class keeps a "
                         f"labeled image (N_k = N_max * gamma^(-k/(C-1)) gives {n}); got n_max={n_max}")
    if m_max is None:
        m_max = counts[0] - n[0]
    m = long_tailed_counts(m_max, unlabeled_imbalance_ratio or imbalance_ratio, c)
    for k in range(c):
        if n[k] + m[k] > counts[k]:
            raise ValueError(f"class {k} needs {n[k]} labeled + {m[k]} unlabeled images but has {counts[k]}; "
                             f"lower n_max / m_max")
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    lb, ulb = [], []
    for k in range(c):
        idx = torch.nonzero(ds.y_train == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        lb.append(idx[: n[k]])
        ulb.append(idx[n[k]: n[k] + m[k]])
    lb, ulb = torch.cat(lb), torch.cat(ulb)
    return Split(ds, ds.x_train[lb], ds.y_train[lb], ds.x_train[ulb], ds.y_train[ulb], ds.x_test, ds.y_test,
                 "long_tailed", seed, {"labeled_counts": n, "unlabeled_counts": m, "imbalance_ratio": imbalance_ratio,
                                       "n_max": n_max, "m_max": m_max,
                                       "unlabeled_imbalance_ratio": unlabeled_imbalance_ratio or imbalance_ratio,
                                       "tail_classes": tail_classes(n)})


def tail_classes(counts: Sequence[int], share: float = 0.3) -> list[int]:
    """The rarest ``share`` of the classes (at least one), by labeled count: the "tail" whose mean recall the
    long-tailed notebooks report (CIFAR-10-LT: the last 3 of 10)."""
    k = max(1, int(round(share * len(counts))))
    order = sorted(range(len(counts)), key=lambda c: (counts[c], -c))
    return sorted(order[:k])


def open_set_split(dataset: Dataset | str, known_classes: Sequence[int] | int, labels_per_class: int,
                   seed: int = 0) -> Split:
    """Open-set split (OpenMatch): labeled images only from ``known_classes`` (relabelled 0..K-1); the unlabeled
    set holds the other known-class images *and* every unknown-class image (hidden label ``-1``).

    ``x_test``/``y_test`` keep only known classes (closed-set accuracy); ``info["x_test_open"]`` and
    ``info["y_test_open"]`` hold the whole test set with unknowns as ``-1`` (for AUROC).
    """
    ds = _as_dataset(dataset)
    known = list(range(known_classes)) if isinstance(known_classes, int) else list(known_classes)
    if not known or any(k < 0 or k >= ds.num_classes for k in known) or len(set(known)) != len(known):
        raise ValueError(f"known_classes must be distinct classes in [0, {ds.num_classes - 1}]; got {known_classes}")
    if len(known) == ds.num_classes:
        raise ValueError("known_classes must leave at least one class unknown for an open-set split")
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(known)] = torch.arange(len(known))
    counts = ds.class_counts()[torch.tensor(known)]
    check_int("labels_per_class", labels_per_class, 1, int(counts.min()) - 1)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    lb = []
    for k in known:
        idx = torch.nonzero(ds.y_train == k).flatten()
        lb.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    lb = torch.cat(lb)
    is_ulb = torch.ones(len(ds.y_train), dtype=torch.bool)
    is_ulb[lb] = False
    ulb = torch.nonzero(is_ulb).flatten()
    y_test_open = remap[ds.y_test]
    keep = y_test_open >= 0
    info = {"known_classes": known, "num_classes": len(known), "labels_per_class": labels_per_class,
            "x_test_open": ds.x_test, "y_test_open": y_test_open}
    return Split(ds, ds.x_train[lb], remap[ds.y_train[lb]], ds.x_train[ulb], remap[ds.y_train[ulb]],
                 ds.x_test[keep], y_test_open[keep], "open_set", seed, info)


# ============================================================================ split settings
SPLIT_KINDS = ("balanced", "long_tailed", "open_set")
#: Long-tailed defaults per dataset: (N_max labeled, M_max unlabeled images of the largest class). CIFAR-10 is
#: CoSSL's setting; digits (about 135 training images per class) keeps a labeled image of every class up to
#: gamma = 50, the larger datasets up to gamma = 300.
LONG_TAILED_DEFAULTS = {"digits": (50, 80), "fashion_mnist": (300, 600), "mnist": (300, 600),
                        "cifar10": (1500, 3000), "svhn": (1500, 3000), "two_moons": (100, 300)}


def _setting(default, help: str, splits: tuple, type=None, low=None):
    """A split setting with the metadata the command line builds its flag from: ``splits`` are the split kinds it
    applies to, ``type`` the value's type where the default does not say it (``"classes"``: K or a list)."""
    return field(default=default, metadata={"help": help, "splits": splits, "type": type, "low": low})


@dataclass
class SplitConfig:
    """Everything that decides a labeled / unlabeled split besides the dataset and the seed.

    ``kind="balanced"`` uses ``labels_per_class``; ``"long_tailed"`` uses ``imbalance_ratio`` (gamma), ``n_max``,
    ``m_max`` and ``unlabeled_imbalance_ratio`` (``None``: the dataset's default from :data:`LONG_TAILED_DEFAULTS`,
    and gamma for the unlabeled ratio); ``"open_set"`` uses ``known_classes`` (a number K: classes 0..K-1, or a list)
    and ``labels_per_class``.
    """

    kind: str = "balanced"
    labels_per_class: int = 2
    imbalance_ratio: float = _setting(50.0, "gamma = N_max / N_min, labeled and unlabeled", ("long_tailed",),
                                      low=1.0)
    n_max: int | None = _setting(None, "labeled images of the largest class (default: per dataset, digits 50)",
                                 ("long_tailed",), type=int, low=1)
    m_max: int | None = _setting(None, "unlabeled images of the largest class (default: per dataset, digits 80)",
                                 ("long_tailed",), type=int, low=0)
    unlabeled_imbalance_ratio: float | None = _setting(None, "gamma of the unlabeled set (default: imbalance_ratio)",
                                                       ("long_tailed",), type=float, low=1.0)
    known_classes: int | list = _setting(6, "K (classes 0..K-1 are known) or a list of classes", ("open_set",),
                                         type="classes")

    def validate(self) -> "SplitConfig":
        check_choice("split", self.kind, SPLIT_KINDS)
        check_int("labels_per_class", self.labels_per_class, 1)
        check_float("imbalance_ratio", self.imbalance_ratio, 1.0)
        if self.n_max is not None:
            check_int("n_max", self.n_max, 1)
        if self.m_max is not None:
            check_int("m_max", self.m_max, 0)
        if self.unlabeled_imbalance_ratio is not None:
            check_float("unlabeled_imbalance_ratio", self.unlabeled_imbalance_ratio, 1.0)
        if isinstance(self.known_classes, (list, tuple)):
            self.known_classes = [check_int("known_classes", k, 0) for k in self.known_classes]
        else:
            check_int("known_classes", self.known_classes, 1)
        return self

    def settings(self) -> dict:
        """The settings that matter for this kind of split (what a result records)."""
        if self.kind == "balanced":
            return {"kind": "balanced", "labels_per_class": self.labels_per_class}
        if self.kind == "long_tailed":
            return {"kind": "long_tailed", "imbalance_ratio": self.imbalance_ratio, "n_max": self.n_max,
                    "m_max": self.m_max, "unlabeled_imbalance_ratio": self.unlabeled_imbalance_ratio}
        return {"kind": "open_set", "known_classes": self.known_classes, "labels_per_class": self.labels_per_class}


def make_split(dataset: Dataset | str, config: SplitConfig | None = None, seed: int = 0, **settings) -> Split:
    """The split that ``config`` (or keyword ``settings``, the fields of :class:`SplitConfig`) describes::

        make_split("digits", kind="long_tailed", imbalance_ratio=10, seed=1)
    """
    cfg = (config or SplitConfig(**settings)).validate()
    ds = _as_dataset(dataset)
    if cfg.kind == "balanced":
        return balanced_split(ds, cfg.labels_per_class, seed=seed)
    if cfg.kind == "long_tailed":
        n_max, m_max = LONG_TAILED_DEFAULTS.get(ds.name, (None, None))
        n_max = cfg.n_max if cfg.n_max is not None else n_max
        m_max = cfg.m_max if cfg.m_max is not None else m_max
        if n_max is None:
            raise ValueError(f"n_max must be given for a long-tailed split of {ds.name}")
        return long_tailed_split(ds, n_max, cfg.imbalance_ratio, m_max, cfg.unlabeled_imbalance_ratio, seed=seed)
    return open_set_split(ds, cfg.known_classes, cfg.labels_per_class, seed=seed)


def all_labels_split(dataset="digits") -> Split:
    """Every training image labeled, none unlabeled: the split of the all-labels ceiling (a name or a
    :class:`Dataset`)."""
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    return Split(ds, ds.x_train, ds.y_train, ds.x_train[:0], ds.y_train[:0], ds.x_test, ds.y_test, "all_labels", 0,
                 {"labels_per_class": int(ds.class_counts().min())})


def split_settings(split: Split) -> dict:
    """JSON-ready settings of a split: its kind, seed, sizes and the numbers that define it (no tensors)."""
    out = {"kind": split.kind, "seed": split.seed, "dataset": split.dataset.name, "num_labeled": len(split.y_lb),
           "num_unlabeled": len(split.y_ulb), "num_test": len(split.y_test), "num_classes": split.num_classes}
    for k, v in split.info.items():
        if not isinstance(v, torch.Tensor):
            out[k] = v
    return out


# ============================================================================ sampling
class IndexSampler:
    """Endless shuffled indices into ``n`` items, ``batch_size`` at a time (epoch by epoch, no replacement within an
    epoch; a batch larger than ``n`` spans several epochs). Works on any device; no per-item Python work."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device="cpu"):
        check_int("batch_size", batch_size, 1)
        if n < 1:
            raise ValueError("cannot sample batches from an empty set")
        self.n, self.batch_size, self.g, self.device = n, batch_size, generator, device
        self.epoch = 0
        self._buf = torch.empty(0, dtype=torch.long)

    def __next__(self) -> torch.Tensor:
        while len(self._buf) < self.batch_size:
            self._buf = torch.cat([self._buf, torch.randperm(self.n, generator=self.g)])
            self.epoch += 1
        idx, self._buf = self._buf[: self.batch_size], self._buf[self.batch_size:]
        return idx.to(self.device)

    def __iter__(self):
        return self
