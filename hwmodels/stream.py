"""Streaming EventTraces: write a trace batch of samples by batch into a folder of .npy files, and open a saved
folder memory-mapped (hwmodels.trace_folder, EventTrace.open), so a long trace (10,000 samples and more) never has to sit in memory at once.

Folder layout (TRACE_FORMAT_VERSION of hwmodels.trace): offsets.npy (int64, CSR row offsets), indices.npy
(int32), values.npy (float32, graded traces only), labels.npy / predictions.npy (int64, when recorded),
activity<p>.npy (uint8, the packed neuron activity of population index p, hwmodels.activity, flattened),
meta.json (populations, n_samples, n_timesteps, format_version, activity: {population: bytes per row}, and when
known sizes: {population: neurons} and graph_fingerprint: NetworkGraph.fingerprint() of the recorded graph).
meta.json is written last, so a folder without it is incomplete.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from hwmodels.activity import n_bytes
from hwmodels.npzfile import quote
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
        self.fh = open(path, "wb")
        self.fh.write(_npy_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        a = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(memoryview(a.reshape(-1)).cast("B"))  # the array's own bytes, no copy
        self.length += len(a)

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.length))
        self.fh.close()


class TraceWriter:
    """Append EventTrace batches (same populations and timesteps) to a trace folder; use as a context manager.

    path: the folder (created; must not hold a trace already). graded: store spike values (float32); batches
    without values store 1.0. labels / predictions: store one label / predicted class per sample (every batch
    must then carry them). activity: {population: neurons} whose packed activity every batch carries.
    graph_fingerprint / sizes: NetworkGraph.fingerprint() of the recorded graph and {population: neurons}, written
    to meta.json; None: taken from the first batch that carries them (EventTrace.graph_fingerprint / sizes).
    Raises ValueError when a batch's populations or timesteps differ, when a batch has values but graded is
    False, labels, predictions or activity are missing, or its graph fingerprint or sizes differ from the
    writer's; FileExistsError when `path` already holds a meta.json.
    """

    def __init__(self, path: str | os.PathLike, populations: list[str], n_timesteps: int, graded: bool = False,
                 labels: bool = False, predictions: bool = False, activity: dict[str, int] | None = None,
                 graph_fingerprint: str | None = None, sizes: dict[str, int] | None = None):
        self.path = Path(path)
        if (self.path / "meta.json").exists():
            raise FileExistsError(f"{self.path}: already holds a trace (meta.json)")
        self.path.mkdir(parents=True, exist_ok=True)
        self.populations, self.n_timesteps, self.n_samples = tuple(populations), int(n_timesteps), 0
        self.graded, self.labels, self.predictions = graded, labels, predictions
        self.activity = dict(activity or {})
        self.provenance = {"graph_fingerprint": graph_fingerprint, "sizes": None if sizes is None else dict(sizes)}
        self._cols = {"offsets": _Column(self.path / "offsets.npy", np.int64),
                      "indices": _Column(self.path / "indices.npy", np.int32)}
        if graded:
            self._cols["values"] = _Column(self.path / "values.npy", np.float32)
        for name, on in (("labels", labels), ("predictions", predictions)):
            if on:
                self._cols[name] = _Column(self.path / f"{name}.npy", np.int64)
        for name in self.activity:
            self._cols[f"activity:{name}"] = _Column(self.path / f"activity{self.populations.index(name)}.npy",
                                                     np.uint8)
        self._cols["offsets"].append(np.zeros(1, np.int64))
        self._base = 0

    def append(self, batch: EventTrace) -> None:
        """Write the samples of `batch` after those already written."""
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
        """Finish the .npy headers and write meta.json (the trace is complete only then). graph_fingerprint: the
        recorded graph's, when the writer and its batches had none (ValueError when it differs from theirs)."""
        if graph_fingerprint is not None:
            self._adopt_value("graph_fingerprint", graph_fingerprint)
        for col in self._cols.values():
            col.close()
        meta = {"format_version": TRACE_FORMAT_VERSION, "populations": list(self.populations),
                "n_samples": self.n_samples, "n_timesteps": self.n_timesteps,
                "activity": {name: n_bytes(size) for name, size in self.activity.items()},
                **{k: v for k, v in self.provenance.items() if v is not None}}
        (self.path / "meta.json").write_text(json.dumps(meta))

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            for col in self._cols.values():
                col.fh.close()


def write_trace(path: str | os.PathLike, trace: EventTrace, batch_samples: int = 256) -> None:
    """Write a whole in-memory `trace` as a trace folder (TraceWriter), batch_samples samples at a time (an integer
    >= 1, else ValueError naming it)."""
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
