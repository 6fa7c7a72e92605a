"""Model checkpoints: the module with its config, package versions and an architecture signature.

A checkpoint stores the whole module (so pruned, low-rank or quantized architectures reload without rebuilding
them) plus the signature of its parameters; `load_into` refuses a checkpoint whose signature differs from the
model it is loaded into, naming the first mismatching parameter.
"""
from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import spikingjelly
import torch
from torch import nn

CHECKPOINT_VERSION = 1


def signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter and buffer of `model`, in registration order."""
    items = list(model.named_parameters()) + list(model.named_buffers())
    return [(name, tuple(t.shape)) for name, t in items]


def versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "spikingjelly": getattr(spikingjelly, "__version__", "unknown")}


def save(model: nn.Module, path: str | os.PathLike, config: dict | None = None, extra: dict | None = None) -> None:
    """Write `model` (moved to CPU) with `config`, `extra`, versions and its signature; atomic (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": CHECKPOINT_VERSION, "model": model.to("cpu"), "signature": signature(model),
               "config": config or {}, "extra": extra or {}, "versions": versions()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint: {"model", "signature", "config", "extra", "versions"}.

    Raises FileNotFoundError when absent and ValueError for an unknown checkpoint version. Checkpoints are
    pickles written by this project; load only files you trust.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: version {payload.get('version')!r} is not {CHECKPOINT_VERSION}")
    return payload


def load_into(model: nn.Module, path: str | os.PathLike) -> dict:
    """Copy a checkpoint's weights into `model` after checking that the architectures match.

    Raises ValueError naming the first parameter whose name or shape differs (e.g. a pruned checkpoint loaded
    into the dense architecture). Returns the checkpoint payload.
    """
    payload = load(path)
    want, got = signature(model), payload["signature"]
    for (n_w, s_w), (n_g, s_g) in zip(want, got):
        if (n_w, s_w) != (n_g, s_g):
            raise ValueError(f"checkpoint {path}: architecture mismatch at {n_w!r} {s_w} (checkpoint has "
                             f"{n_g!r} {s_g})")
    if len(want) != len(got):
        raise ValueError(f"checkpoint {path}: architecture mismatch: model has {len(want)} tensors, "
                         f"checkpoint {len(got)}")
    model.load_state_dict(payload["model"].state_dict())
    return payload
