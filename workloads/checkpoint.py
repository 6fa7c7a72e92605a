"""Model checkpoints that load without running code: tensors plus a JSON header, read with torch's weights-only
unpickler.

A checkpoint (format version 2) is one torch.save file holding only strings and tensors:
{"format": FORMAT, "version": 2, "header": JSON text, "tensors": {key: tensor}}. The header holds the config,
`extra`, package versions, the parameter signature and the architecture as data (`workloads.module_tree`: the
module tree with class names from an allow-list, every attribute a plain value), so pruned, low-rank, quantized and
neuron-swapped models reload exactly. `load` rebuilds the module and checks it against the stored signature;
`load_into` refuses a checkpoint whose signature differs from the model it is loaded into, naming the first
mismatching parameter. Version-1 checkpoints (whole pickled modules) are refused, never unpickled.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import platform
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import spikingjelly
import torch
from torch import nn

from hwmodels.atomic import write_atomic
import workloads.compression  # noqa: F401  (imports every module class a compressed model may hold)
import workloads.models  # noqa: F401  (the model zoo's module classes)
from workloads import module_tree

CHECKPOINT_VERSION = 2
#: the "format" entry of every checkpoint file
FORMAT = "snn-codesign-checkpoint"


def signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter and buffer of `model`, in registration order."""
    items = list(model.named_parameters()) + list(model.named_buffers())
    return [(name, tuple(t.shape)) for name, t in items]


def versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "spikingjelly": getattr(spikingjelly, "__version__", "unknown")}


def _json_value(v):
    """json.dumps default: numpy scalars and arrays as Python values; anything else is refused."""
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    raise TypeError(f"a {type(v).__name__} is not JSON data")


def _header(model: nn.Module, config: dict | None, extra: dict | None) -> tuple[str, dict[str, torch.Tensor]]:
    """The JSON header text and the tensors of a checkpoint of `model`."""
    tree, tensors = module_tree.describe(model)
    header = {"config": config or {}, "extra": extra or {}, "versions": versions(), "module": tree,
              "signature": [[name, list(shape)] for name, shape in signature(model)]}
    try:
        return json.dumps(header, default=_json_value), tensors
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config and extra must be JSON data ({exc})") from None


def save(model: nn.Module, path: str | os.PathLike, config: dict | None = None, extra: dict | None = None) -> None:
    """Write `model` (its tensors copied to CPU; the model itself is not moved) with `config`, `extra` (JSON
    data: numbers, strings, lists, dicts; numpy values become Python ones), package versions and its signature.
    Atomic (temp file + rename). Raises ValueError when the model holds something that cannot be stored as data
    (see `workloads.module_tree.describe`) or config/extra are not JSON data."""
    path = Path(path)
    try:
        text, tensors = _header(model, config, extra)
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from None
    payload = {"format": FORMAT, "version": CHECKPOINT_VERSION, "header": text, "tensors": tensors}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: _torch_save(payload, tmp, path))


def _torch_save(payload: dict, tmp: str, path: Path) -> None:
    """torch.save(payload, tmp), its failed writes (a full disk, a file size limit: torch's zip writer raises
    RuntimeError) raised as OSError naming the checkpoint `path`, as Python's own file writes do."""
    try:
        torch.save(payload, tmp)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise OSError(f"checkpoint {path}: writing failed (is the disk full or a file size limit reached?): "
                      f"{first}") from None


def _refusal(exc: BaseException) -> str:
    """One-line reason from torch's weights-only unpickler (e.g. 'refused pickle global posix.system')."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"refused pickle global {found.group(1)}"
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


def _read(path: Path) -> dict:
    """The raw payload dict, read with the weights-only unpickler after the zip archive's CRC-32 of every member is
    checked (torch's reader does not: a flipped byte in a weight loaded silently); ValueError (one line) for
    anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        bad = None  # not a zip archive: the reader below says what it is
    if bad is not None:
        raise ValueError(f"checkpoint {path}: member {bad!r} fails its CRC check (a damaged or edited file); re-create "
                         "it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as exc:  # OSError: torch's zip reader on a truncated file (EINVAL)
        raise ValueError(f"checkpoint {path}: not a readable version-{CHECKPOINT_VERSION} checkpoint "
                         f"({_refusal(exc)}); older checkpoints (pickled modules) are never loaded: re-create "
                         f"it") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: not a {FORMAT} file")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: version {payload.get('version')!r} is not {CHECKPOINT_VERSION}; "
                         "re-create it")
    return payload


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint: {"model", "signature", "config", "extra", "versions", "version"}.

    "model" is the rebuilt module on CPU (same classes, attributes, parameters and buffers as when saved);
    "signature" a list of (name, shape tuple). Nothing in the file can run code: it is read with torch's
    weights-only unpickler and the architecture is rebuilt from data (`workloads.module_tree`). Raises
    FileNotFoundError when absent and ValueError (one line) for another version, a foreign, truncated or
    tampered file, or a model that does not match its stored signature.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    payload = _read(path)
    try:
        header = json.loads(payload["header"])
        model = module_tree.rebuild(header["module"], payload["tensors"])
        stored = [(str(name), tuple(int(s) for s in shape)) for name, shape in header["signature"]]
        out = {"model": model, "signature": stored, "config": header["config"], "extra": header["extra"],
               "versions": header["versions"], "version": CHECKPOINT_VERSION}
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"checkpoint {path}: malformed content ({msg})") from None
    if signature(model) != stored:
        raise ValueError(f"checkpoint {path}: the rebuilt model does not match the stored signature")
    return out


def _check_modules(model: nn.Module, saved: nn.Module, path) -> None:
    """ValueError naming the first module of `model` whose class or settings (extra_repr: a neuron's threshold,
    tau, reset, a layer's stride ...) differ from the checkpoint's module `saved` at the same place. Compared on a
    copy of `model` holding the checkpoint's tensors, so settings shown from learned values (PLIF's tau) agree."""
    probe = copy.deepcopy(model)
    probe.load_state_dict(saved.state_dict())
    mine, theirs = list(probe.named_modules()), list(saved.named_modules())
    for (name, a), (_, b) in zip(mine, theirs):
        if type(a) is not type(b) or a.extra_repr() != b.extra_repr():
            raise ValueError(f"checkpoint {path}: architecture mismatch at module {name or '(the model)'!r}: "
                             f"{type(a).__name__}({a.extra_repr()[:80]}), checkpoint {type(b).__name__}"
                             f"({b.extra_repr()[:80]})")
    if len(mine) != len(theirs):
        raise ValueError(f"checkpoint {path}: architecture mismatch: model has {len(mine)} modules, checkpoint "
                         f"{len(theirs)}")


def load_into(model: nn.Module, path: str | os.PathLike) -> dict:
    """Copy a checkpoint's weights into `model` after checking that the architectures match.

    Raises ValueError naming the first parameter whose name or shape differs (e.g. a pruned checkpoint loaded
    into the dense architecture), or the first module whose class or settings differ (a LIF checkpoint into an
    IF model, another threshold or tau), and what `load` raises. Returns the checkpoint payload (see `load`).
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
    _check_modules(model, payload["model"], path)
    model.load_state_dict(payload["model"].state_dict())
    return payload
