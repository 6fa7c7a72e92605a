"""Streaming EventTraces: write a trace batch of samples by batch into a folder of .npy files, and open a saved
folder memory-mapped (hwmodels.trace_folder, EventTrace.open), so a long trace (10,000 samples and more) never has
to sit in memory at once.

Folder layout (TRACE_FORMAT_VERSION of hwmodels.trace): offsets.npy (int64, CSR row offsets), indices.npy
(int32), values.npy (float32, graded traces only), labels.npy / predictions.npy (int64, when recorded),
activity<p>.npy (uint8, the packed neuron activity of population index p, hwmodels.activity, flattened),
meta.json (populations, n_samples, n_timesteps, format_version, activity: {population: bytes per row}, and when
known sizes: {population: neurons} and graph_fingerprint: NetworkGraph.fingerprint() of the recorded graph).
meta.json is written last, so a folder without it is incomplete. Every file is written into a new hidden folder
beside the trace folder (".<name>.partial-<random>", made by mkdtemp, so never a file or link planted there) that
is renamed to the trace folder's name only when complete: a failed or interrupted write leaves nothing under it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
import weakref
from pathlib import Path

import numpy as np

from hwmodels.activity import n_bytes
from hwmodels.atomic import umask
from hwmodels.npzfile import file_name, quote
from hwmodels.trace import EventTrace, is_int
from hwmodels.trace_meta import TRACE_FORMAT_VERSION

_HEADER_BYTES = 128  # fixed .npy v1.0 header, rewritten with the final length on close


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """A .npy v1.0 header of exactly _HEADER_BYTES bytes for a 1-D C-order array."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (np.dtype(dtype).str, length)
    body = text.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class _Column:
    """One growing 1-D .npy file: a placeholder header, raw appends, the real header on close."""

    def __init__(self, path: Path, dtype):
        self.path, self.dtype, self.length = path, np.dtype(dtype), 0
        self.fh = open(path, "xb")  # a new file in the writer's own new folder: never one already there
        self.fh.write(_npy_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        a = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(memoryview(a.reshape(-1)).cast("B"))  # the array's own bytes, no copy
        self.length += len(a)

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.length))
        self.fh.close()


def check_destination(path: Path) -> None:
    """Refuse, before anything is written, a trace folder `path` that exists already, unless it is an empty folder
    (renamed over): FileExistsError (one line, naming it) for a symbolic link (even to an empty folder or a dangling
    one: never followed), a file, or a folder holding anything; ValueError for a path without a folder name."""
    if path.name in ("", ".", ".."):
        raise ValueError(f"{file_name(path)}: not a new folder's name; give a new trace folder")
    if path.is_symlink():
        raise FileExistsError(f"{file_name(path)}: is a symbolic link; a trace folder is never written through one")
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise FileExistsError(f"{file_name(path)}: exists already and is not a folder; give a new trace folder")
    with os.scandir(path) as entries:
        if next(entries, None) is not None:
            raise FileExistsError(f"{file_name(path)}: exists already and is not empty (a trace, or a link planted "
                                  "in it); give a new or empty trace folder")


def _partial_folder(path: Path) -> Path:
    """A new empty folder ".<name>.partial-<random>" beside `path` (its parent folders created when missing), with
    the permissions a plain mkdir gives (mode 0777 less the umask; mkdtemp's own are 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name[:48]}.partial-"))  # 48: fits NAME_MAX
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


class TraceWriter:
    """Append EventTrace batches (same populations and timesteps) to a trace folder; use as a context manager.

    path: the trace folder, written atomically: every file goes into a new hidden folder beside it, renamed to
    `path` by close (its parent folders are created when missing); abort, or an exception in a `with` block or
    in a write, removes that folder, so nothing is ever left at `path` half-written. `path` must be new or an
    empty folder (replaced by the rename), checked before anything is created and again at close; a symbolic
    link is refused, never followed. graded: store spike values (float32); batches without values store 1.0.
    labels / predictions: store one label / predicted class per sample (every batch must then carry them).
    activity: {population: neurons} whose packed activity every batch carries.
    graph_fingerprint / sizes: NetworkGraph.fingerprint() of the recorded graph and {population: neurons}, written
    to meta.json; None: taken from the first batch that carries them (EventTrace.graph_fingerprint / sizes).
    Raises ValueError when an activity population is not one of `populations`, when a batch's populations or
    timesteps differ, when a batch has values but graded is False, labels, predictions or activity are missing,
    or its graph fingerprint or sizes differ from the writer's (such a batch is refused before any of it is
    written; the writer stays usable), or when the writer is used after close or abort; FileExistsError (see
    check_destination) when `path` exists already and is not an empty folder, or is a symbolic link.
    """

    def __init__(self, path: str | os.PathLike, populations: list[str], n_timesteps: int, graded: bool = False,
                 labels: bool = False, predictions: bool = False, activity: dict[str, int] | None = None,
                 graph_fingerprint: str | None = None, sizes: dict[str, int] | None = None):
        self.path = Path(path)
        check_destination(self.path)
        self.populations, self.n_timesteps, self.n_samples = tuple(populations), int(n_timesteps), 0
        self.graded, self.labels, self.predictions = graded, labels, predictions
        self.activity = dict(activity or {})
        for name in self.activity:
            if name not in self.populations:
                raise ValueError(f"activity: {quote(name)} is not one of the populations {list(self.populations)}")
        self.provenance = {"graph_fingerprint": graph_fingerprint, "sizes": None if sizes is None else dict(sizes)}
        self._cols, self._base, self._state = {}, 0, "open"
        self._tmp = _partial_folder(self.path)
        self._remove_tmp = weakref.finalize(self, shutil.rmtree, self._tmp, True)  # also when dropped unclosed
        try:
            self._open_columns()
        except BaseException:
            self.abort()
            raise

    def _open_columns(self) -> None:
        """Create the .npy columns in the temporary folder."""
        names = {"offsets": np.int64, "indices": np.int32, "values": np.float32 if self.graded else None,
                 "labels": np.int64 if self.labels else None, "predictions": np.int64 if self.predictions else None}
        for name, dtype in names.items():
            if dtype is not None:
                self._cols[name] = _Column(self._tmp / f"{name}.npy", dtype)
        for name in self.activity:
            self._cols[f"activity:{name}"] = _Column(self._tmp / f"activity{self.populations.index(name)}.npy",
                                                     np.uint8)
        self._cols["offsets"].append(np.zeros(1, np.int64))

    def _check_open(self) -> None:
        """ValueError once the writer is closed or aborted."""
        if self._state != "open":
            raise ValueError(f"{file_name(self.path)}: the trace writer is {self._state} already")

    def append(self, batch: EventTrace) -> None:
        """Write the samples of `batch` after those already written (an error while writing them aborts the
        writer)."""
        self._check_open()
        if batch.populations != self.populations or batch.n_timesteps != self.n_timesteps:
            raise ValueError("trace batch: populations and n_timesteps must match the writer's")
        if batch.values is not None and not self.graded:
            raise ValueError("trace batch: has spike values but the writer was opened with graded=False")
        for name in ("labels", "predictions"):
            if getattr(self, name) and getattr(batch, name) is None:
                raise ValueError(f"trace batch: {name} missing (the writer was opened with {name}=True)")
        for name, size in self.activity.items():
            if name not in batch.activity:
                raise ValueError(f"trace batch: activity of {name!r} missing (the writer records it)")
            if np.shape(batch.activity[name])[-1] != n_bytes(size):
                raise ValueError(f"trace batch: activity rows of {name!r} are {np.shape(batch.activity[name])[-1]} "
                                 f"bytes, the writer's {size} neurons pack into {n_bytes(size)}")
        self._adopt(batch)
        try:
            self._write(batch)
        except BaseException:
            self.abort()
            raise

    def _write(self, batch: EventTrace) -> None:
        """Append the checked `batch` to the columns."""
        self._cols["offsets"].append(np.asarray(batch.offsets[1:]) + self._base)
        self._cols["indices"].append(batch.indices)
        if self.graded:
            self._cols["values"].append(np.ones(len(batch.indices)) if batch.values is None else batch.values)
        for name in ("labels", "predictions"):
            if getattr(self, name):
                self._cols[name].append(getattr(batch, name))
        for name in self.activity:
            self._cols[f"activity:{name}"].append(np.asarray(batch.activity[name]).reshape(-1))
        self._base += int(batch.offsets[-1])
        self.n_samples += batch.n_samples

    def _adopt(self, batch: EventTrace) -> None:
        """Take the batch's graph fingerprint and sizes when the writer has none; ValueError when they differ."""
        for key in ("graph_fingerprint", "sizes"):
            self._adopt_value(key, getattr(batch, key))

    def _adopt_value(self, key: str, got) -> None:
        """Take `got` as provenance[key] when the writer has none; ValueError when it differs from the writer's."""
        have = self.provenance[key]
        if got is not None and have is not None and got != have:
            raise ValueError(f"trace batch: {key} {quote(got)} differs from the writer's {quote(have)} (a batch "
                             "recorded on another graph)")
        self.provenance[key] = have if have is not None else got

    def close(self, graph_fingerprint: str | None = None) -> None:
        """Finish the .npy headers, write meta.json and rename the temporary folder to `path` (the trace is there
        only then, complete). graph_fingerprint: the recorded graph's, when the writer and its batches had none
        (ValueError when it differs from theirs; the writer stays open). Any other failure, e.g. FileExistsError
        when something appeared at `path` meanwhile, aborts the writer."""
        self._check_open()
        if graph_fingerprint is not None:
            self._adopt_value("graph_fingerprint", graph_fingerprint)
        try:
            for col in self._cols.values():
                col.close()
            meta = {"format_version": TRACE_FORMAT_VERSION, "populations": list(self.populations),
                    "n_samples": self.n_samples, "n_timesteps": self.n_timesteps,
                    "activity": {name: n_bytes(size) for name, size in self.activity.items()},
                    **{k: v for k, v in self.provenance.items() if v is not None}}
            with open(self._tmp / "meta.json", "x", encoding="utf-8") as fh:
                fh.write(json.dumps(meta))
            check_destination(self.path)
            os.rename(self._tmp, self.path)  # replaces an empty folder; never follows a link
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        self._remove_tmp.detach()

    def abort(self) -> None:
        """Stop writing and remove the temporary folder: nothing is left at `path` (nothing to do once closed)."""
        if self._state != "open":
            return
        self._state = "aborted"
        for col in self._cols.values():
            with contextlib.suppress(OSError):
                col.fh.close()
        self._remove_tmp()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close the writer, or abort it when the block raised (nothing to do when closed or aborted there)."""
        if self._state != "open":
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_trace(path: str | os.PathLike, trace: EventTrace, batch_samples: int = 256) -> None:
    """Write a whole in-memory `trace` as the trace folder `path` (TraceWriter: atomically, into a new hidden folder
    beside it renamed to `path` when complete; `path` must be new or an empty folder, never a symbolic link, else
    FileExistsError before anything is written), batch_samples samples at a time (an integer >= 1, else ValueError
    naming it). A failed or interrupted write leaves nothing at `path` and no temporary folder."""
    if not is_int(batch_samples) or batch_samples < 1:
        raise ValueError(f"batch_samples: {batch_samples!r} must be an integer >= 1")
    sizes = {name: 8 * np.shape(a)[-1] for name, a in trace.activity.items()}  # row bytes are what is kept
    with TraceWriter(path, list(trace.populations), trace.n_timesteps, trace.values is not None,
                     trace.labels is not None, trace.predictions is not None, sizes, trace.graph_fingerprint,
                     trace.sizes) as w:
        for s0 in range(0, trace.n_samples, batch_samples):
            w.append(trace.select(slice(s0, min(s0 + batch_samples, trace.n_samples))))


def open_trace(path: str | os.PathLike) -> EventTrace:
    """EventTrace.open(path): a trace folder written by TraceWriter, memory-mapped (see EventTrace.open)."""
    return EventTrace.open(path)
