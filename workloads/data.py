"""Datasets for the workloads as torch tensors: a registry of loaders by name, each returning a frozen `Dataset`.

Shipped (offline): mnist5k, digits and mnist_dvs_emu (MNIST through an emulated event camera). Read from local
files under `root` (default $CODESIGN_DATA_DIR, else ./data): cifar10, cifar100 (python-pickle folders),
dvs_gesture, dvs_cifar10 (event files). Nothing is downloaded. Every split and subsample is seeded.
"""
from __future__ import annotations

import inspect
import os
import typing
from typing import Callable, Optional

import numpy as np
from pydantic import TypeAdapter, ValidationError

from workloads.datasets.base import (DEFAULT_ROOT, ENV_ROOT, Dataset, data_root, stratified_split, stream_seed,
                                     subsample)
from workloads.datasets.emulator import load_mnist_dvs_emu
from workloads.datasets.events import load_dvs_cifar10, load_dvs_gesture
from workloads.datasets.images import load_cifar10, load_cifar100, load_digits, load_mnist5k

__all__ = ["DATASETS", "DEFAULT_ROOT", "ENV_ROOT", "SHIPPED", "Dataset", "data_root", "data_source",
           "dataset_options", "load_dataset", "stratified_split", "stream_seed", "subsample"]

#: name -> loader(seed, root, *, options); the keyword-only parameters are the dataset's options
DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": load_mnist5k, "digits": load_digits, "mnist_dvs_emu": load_mnist_dvs_emu,
    "cifar10": load_cifar10, "cifar100": load_cifar100, "dvs_gesture": load_dvs_gesture,
    "dvs_cifar10": load_dvs_cifar10,
}

#: datasets that ship with the packages (no local files, `root` ignored)
SHIPPED = ("mnist5k", "digits", "mnist_dvs_emu")


def data_source(name: str, root: Optional[str | os.PathLike] = None) -> str | None:
    """Where dataset `name` is read from: None for a SHIPPED set, else the absolute folder data_root(root)
    resolves to now ($CODESIGN_DATA_DIR and the working directory included), so two runs with the same config
    on different files can be told apart (codesign's model cache keys hold it)."""
    return None if name in SHIPPED else str(data_root(root))


def dataset_options(name: str) -> dict[str, object]:
    """The options dataset `name` accepts, with their defaults. Raises ValueError for an unknown name."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    params = inspect.signature(DATASETS[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_dataset(name: str, seed: int = 0, root: Optional[str | os.PathLike] = None, **options) -> Dataset:
    """Load dataset `name` (a key of DATASETS) with splits and subsets drawn by `seed`.

    root: folder holding local dataset files (None: $CODESIGN_DATA_DIR, else ./data); shipped sets ignore it.
    options: the dataset's own keyword options (`dataset_options(name)`), e.g. n_train / n_test (seeded
    stratified subsets, every dataset), n_frames / size / binary (event sets). Static sets give x (N, C, H, W)
    in [0, 1]; event sets (Dataset.temporal) give frames (N, T, 2, H, W), to be encoded with "events".
    Raises ValueError naming `dataset` and the accepted names for an unknown name, naming the option and the
    accepted ones for an unknown option, naming the option and its type for a value of another type, naming
    `seed` when it is not an integer >= 0, and naming the expected path and format when local files are absent.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: {seed!r} must be an integer >= 0")
    accepted = dataset_options(name)
    for key in options:
        if key not in accepted:
            raise ValueError(f"option {key!r} is not accepted by dataset {name!r}; accepted: {sorted(accepted)}")
    return DATASETS[name](seed, root, **_typed_options(name, options))


def _typed_options(name: str, options: dict) -> dict:
    """`options` checked against the loader's annotations, strictly (100.0 is not an int, "false" not a bool; an
    int is taken as a float). Raises ValueError naming the option, its value and the expected type."""
    hints = typing.get_type_hints(DATASETS[name])
    out = {}
    for key, value in options.items():
        try:
            out[key] = TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"option {key!r} of dataset {name!r} is {value!r}; expected {_kind(hints[key])}"
                             ) from None
    return out


def _kind(hint) -> str:
    """'an integer', 'a number', 'true or false', 'a string', with ' or null' for Optional[...]."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    text = names.get(args[0], getattr(args[0], "__name__", str(args[0])))
    return text + (" or null" if type(None) in typing.get_args(hint) else "")
