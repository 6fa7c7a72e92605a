"""Reading a streamed trace folder (written by hwmodels.stream.TraceWriter) as memory-mapped columns; the
folder layout is described in hwmodels.stream. hwmodels.trace.EventTrace.open builds the trace from them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hwmodels.npzfile import decode_meta, file_name, load_npy, quote
from hwmodels.trace_meta import TRACE_META, TRACE_VERSIONS_READ, activity_columns, optional_meta


#: the .npy columns of a trace folder: (name, dtype kind of hwmodels.npzfile.KINDS, required)
COLUMNS = (("offsets", "int", True), ("indices", "int", True), ("values", "float", False),
           ("labels", "int", False), ("predictions", "int", False))


def read_trace_folder(path: str | os.PathLike) -> dict:
    """The EventTrace constructor arguments of a trace folder written by hwmodels.stream.TraceWriter, as
    read-only memory maps: {populations, n_samples, n_timesteps, offsets, indices, values, labels, activity,
    predictions, sizes, graph_fingerprint} (EventTrace.open builds the trace from them).

    Raises FileNotFoundError when `path` or its meta.json is missing (an incomplete folder) and a one-line
    ValueError naming the file and what was expected for anything else: a file instead of a folder (an .npz
    trace loads with EventTrace.load), a meta.json or column that is a symlink (the folder itself may be one),
    meta.json that is not a JSON object with the trace's keys (or is the meta of another kind of file), an unknown
    format version, a missing, truncated or wrongly typed .npy column, or columns the EventTrace constructor
    refuses.
    """
    path = Path(path)
    meta = _folder_meta(path)
    name = file_name(path)
    cols = {col: load_npy(path / f"{col}.npy", "trace folder", kind)
            if required or os.path.lexists(path / f"{col}.npy") else None for col, kind, required in COLUMNS}
    n_s, n_t = meta["n_samples"], meta["n_timesteps"]
    activity = {pop: _activity_column(path / f"activity{i}.npy", n_s, n_t, meta["activity"][pop])
                for pop, i in activity_columns(meta, name, dict).items()}
    return dict(populations=meta["populations"], n_samples=n_s, n_timesteps=n_t, **cols, activity=activity,
                **optional_meta(meta, name))


def _folder_meta(path: Path) -> dict:
    """The checked meta.json of trace folder `path` (see read_trace_folder for the errors)."""
    if not path.exists():
        raise FileNotFoundError(f"{file_name(path)}: no such trace folder")
    if path.is_file():
        raise ValueError(f"{file_name(path)}: is a file, not a trace folder; load an .npz trace with EventTrace.load")
    meta_path = path / "meta.json"
    if meta_path.is_symlink():
        raise ValueError(f"{file_name(meta_path)}: is a symlink; a trace folder's meta.json must be a file inside it")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{file_name(meta_path)}: missing; {file_name(path)} is not a complete trace folder")
    try:
        raw = meta_path.read_bytes()
    except OSError as exc:  # e.g. not readable by this user
        raise ValueError(f"{file_name(meta_path)}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    meta = decode_meta(raw, file_name(meta_path), "event trace", TRACE_META)
    if meta["format_version"] not in TRACE_VERSIONS_READ:
        raise ValueError(f"{file_name(meta_path)}: format_version {quote(meta['format_version'])} is not one of "
                         f"{', '.join(map(str, TRACE_VERSIONS_READ))}")
    return meta


def _activity_column(path: Path, n_samples: int, n_timesteps: int, row_bytes: object) -> np.ndarray:
    """The packed activity column `path` as (n_samples, n_timesteps + 1, row_bytes); ValueError naming the file
    when its length does not fit."""
    a = load_npy(path, "trace folder", "uint8")
    if not isinstance(row_bytes, int) or row_bytes < 1 or a.size != n_samples * (n_timesteps + 1) * row_bytes:
        raise ValueError(f"{file_name(path)}: {a.size} bytes do not fill ({n_samples}, {n_timesteps + 1}, "
                         f"{quote(row_bytes)}) activity rows")
    return a.reshape(n_samples, n_timesteps + 1, row_bytes)
