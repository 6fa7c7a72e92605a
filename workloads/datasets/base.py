"""The `Dataset` container and the seeded split, subsampling and data-root helpers every loader shares."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

#: environment variable giving the default root folder of datasets read from local files
ENV_ROOT = "CODESIGN_DATA_DIR"
#: root used when neither `root=` nor $CODESIGN_DATA_DIR is given (relative to the working directory)
DEFAULT_ROOT = "data"
#: independent random streams drawn from one run seed (see `stream_seed`)
STREAMS = {"split": 1, "train": 2, "test": 3, "trajectory_train": 4, "trajectory_test": 5}


@dataclass(frozen=True)
class Dataset:
    """A train/test split of an image- or event-classification set.

    Static sets (temporal False): x_train, x_test float32 (N, C, H, W) in [0, 1]. Event sets (temporal True):
    float32 event frames (N, T, C, H, W), C = 2 polarity channels (0 = OFF, 1 = ON), values event counts per
    bin (or 0/1 when loaded with binary=True); encode them with encoding "events". y_train, y_test: int64 (N,)
    in [0, n_classes). in_shape = (C, H, W) of one image or frame. class_names: label names by index, when known.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    in_shape: tuple[int, int, int]
    temporal: bool = False
    class_names: tuple[str, ...] = ()

    @property
    def n_frames(self) -> Optional[int]:
        """Frames T per sample of an event set, None for a static set."""
        return int(self.x_train.shape[1]) if self.temporal else None


def make_dataset(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 n_classes: int, temporal: bool = False, class_names: Sequence[str] = ()) -> Dataset:
    """Dataset from numpy (x, y) pairs: x cast to contiguous float32, y to int64; in_shape = x.shape[-3:]."""
    def tensors(x, y):
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.asarray(y, dtype=np.int64)))

    (xtr, ytr), (xte, yte) = tensors(*train), tensors(*test)
    return Dataset(name, xtr, ytr, xte, yte, int(n_classes), tuple(int(s) for s in xtr.shape[-3:]), temporal,
                   tuple(class_names))


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


def stream_seed(seed: int, stream: str) -> int:
    """An integer seed for one named use (a key of STREAMS) of the run seed, independent of the other uses.

    Drawn with numpy's SeedSequence([seed, STREAMS[stream]]), so e.g. the train and test subsamples of one seed,
    or of seeds 0 and 1, are not correlated. Raises ValueError for an unknown stream or a negative seed.
    """
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {sorted(STREAMS)}, got {stream!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(1)[0])


def subsample_indices(y: np.ndarray, n: Optional[int], seed: int, field: str) -> np.ndarray:
    """Sorted indices of a seeded, stratified subset of `n` of the labels y (`stratified_split`'s test part);
    all indices when n is None or len(y). Raises ValueError naming `field` unless 1 <= n <= len(y)."""
    if n is None or n == len(y):
        return np.arange(len(y))
    if not 1 <= n <= len(y):
        raise ValueError(f"{field} must be in [1, {len(y)}] or None, got {n}")
    return stratified_split(np.asarray(y), n, seed)[1]


def subsample(ds: Dataset, n_train: Optional[int], n_test: Optional[int], seed: int) -> Dataset:
    """`ds` with seeded stratified subsets of n_train train and n_test test samples (None: keep all).

    The subsets use the "train" and "test" streams of `seed`; the same arguments give the same subsets.
    Raises ValueError naming n_train / n_test when larger than the split or < 1.
    """
    if n_train is None and n_test is None:
        return ds
    tr = torch.from_numpy(subsample_indices(ds.y_train.numpy(), n_train, stream_seed(seed, "train"), "n_train"))
    te = torch.from_numpy(subsample_indices(ds.y_test.numpy(), n_test, stream_seed(seed, "test"), "n_test"))
    return dataclasses.replace(ds, x_train=ds.x_train[tr].contiguous(), y_train=ds.y_train[tr].contiguous(),
                               x_test=ds.x_test[te].contiguous(), y_test=ds.y_test[te].contiguous())


def data_root(root: Optional[str | os.PathLike]) -> Path:
    """Root folder of local dataset files: `root` when given, else $CODESIGN_DATA_DIR, else ./data (read at call
    time; "~" expanded, made absolute so error messages name the full path)."""
    chosen = root if root is not None else (os.environ.get(ENV_ROOT) or DEFAULT_ROOT)
    return Path(chosen).expanduser().absolute()


def missing(name: str, expected: str | Path, contents: str, source: str) -> ValueError:
    """The one-line ValueError for absent dataset files: names the dataset, the expected path and its format,
    where to get it, and how to point the loader at it."""
    return ValueError(f"dataset {name}: expected {contents} at {expected} — get it from {source} and pass "
                      f"root= or set {ENV_ROOT}")
