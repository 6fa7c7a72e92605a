"""Where the recorder's batches go: kept in memory and joined into one EventTrace, or streamed batch by batch
into a trace folder (hwmodels.stream.TraceWriter) that is renamed into place only when complete, so a long
recording never holds the whole trace in memory and never leaves a half-written folder under its name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from hwmodels.atomic import umask
from hwmodels.stream import TraceWriter, open_trace
from hwmodels.trace import EventTrace, NetworkGraph
from workloads.lowering.events import join_arrays


#: characters the temporary folder's name adds to the trace folder's (new_folder: "." + ".partial-" + 8 random)
_PARTIAL_EXTRA = 1 + len(".partial-") + 8


def check_out(out: str | os.PathLike) -> Path:
    """The trace folder `out` as a Path, checked before any work. Raises ValueError (one line) when it exists
    already (a symbolic link too, even a dangling one), its parent folder does not exist or this user cannot
    create folders in it, or its name is too long for the temporary folder it is written in first."""
    path = Path(out)
    if os.path.lexists(path):
        raise ValueError(f"out: {str(path)!r} exists already; give a new trace folder")
    if not path.parent.is_dir():
        raise ValueError(f"out: the parent folder of {str(path)!r} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot create a folder in {str(path.parent)!r} (not writable by this user)")
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(path.name)) + _PARTIAL_EXTRA > limit:
        raise ValueError(f"out: the name {path.name[:40]!r}... is too long ({len(os.fsencode(path.name))} bytes; at "
                         f"most {limit - _PARTIAL_EXTRA} here)")
    return path


def assemble(graph: NetworkGraph, n_t: int, batches: list[dict], labels: np.ndarray | None,
             fingerprint: str | bool | None = None) -> EventTrace:
    """The EventTrace of recorded batches (workloads.lowering.recorder.BatchRecord.result dicts), in order, with
    the sizes and fingerprint of `graph` (the graph the spikes were recorded on, so hwmodels.simulate refuses it
    with another graph; `fingerprint`: graph.fingerprint() when already known, None: computed here, False: left
    out, graph_fingerprint None, for a writer given it at close). labels: int64 (samples of the batches,) or None."""
    counts, indices, values = zip(*(b["csr"] for b in batches))
    offsets = np.concatenate([[0], np.cumsum(join_arrays(counts))]).astype(np.int64)
    activity = {name: join_arrays([b["activity"][name] for b in batches]) for name in batches[0]["activity"]}
    preds = [b["predictions"] for b in batches]
    n_samples = len(offsets[1:]) // (n_t * len(graph.populations))
    return EventTrace(list(graph.populations), n_samples, n_t, offsets, join_arrays(indices),
                      None if values[0] is None else join_arrays(values), labels, activity,
                      None if any(p is None for p in preds) else join_arrays(preds),
                      sizes={name: pop.size for name, pop in graph.populations.items()},
                      graph_fingerprint=graph.fingerprint() if fingerprint is None else (fingerprint or None))


def new_folder(out: Path) -> Path:
    """A new empty folder `.<out name>.partial-<random>` beside `out` (made by mkdtemp, which never reuses an
    existing path or follows a link), with the permissions a plain mkdir gives (mode 0777 less the umask)."""
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


class MemorySink:
    """Keeps every batch and joins them at the end (the default of workloads.lower). fingerprint: returns
    graph.fingerprint() (e.g. hashed on a worker meanwhile), called once by finish."""

    def __init__(self, graph: NetworkGraph, n_t: int, labels: np.ndarray | None,
                 fingerprint: Callable[[], str] | None = None):
        self.graph, self.n_t, self.labels, self.batches = graph, n_t, labels, []
        self.fingerprint = fingerprint or graph.fingerprint

    def add(self, start: int, batch: dict) -> None:
        """Take the recording of the samples from `start` on."""
        self.batches.append(batch)

    def finish(self) -> EventTrace:
        """The whole trace."""
        return assemble(self.graph, self.n_t, self.batches, self.labels, self.fingerprint())

    def abort(self) -> None:
        """Nothing to clean up."""


class FolderSink:
    """Streams every batch into a trace folder: written under a hidden temporary name beside `out` and renamed
    to `out` by finish (a crash leaves no folder named `out`; abort removes the temporary one). The temporary
    folder is made new with a random name (`new_folder`), so a link planted beside `out` is never written
    through. fingerprint:
    returns graph.fingerprint() (e.g. hashed on a worker meanwhile), called once by finish, whose meta.json is
    the only file that holds it (an exception it raises leaves the folder incomplete for abort to remove)."""

    def __init__(self, out: Path, graph: NetworkGraph, n_t: int, labels: np.ndarray | None,
                 fingerprint: Callable[[], str] | None = None):
        self.out, self.graph, self.n_t, self.labels = out, graph, n_t, labels
        self.tmp: Path | None = None
        self.writer: TraceWriter | None = None
        self._fingerprint = fingerprint or graph.fingerprint

    def add(self, start: int, batch: dict) -> None:
        """Append the recording of the samples from `start` on to the folder."""
        n = len(batch["csr"][0]) // (self.n_t * len(self.graph.populations))
        trace = assemble(self.graph, self.n_t, [batch], None if self.labels is None else self.labels[start:start + n],
                         False)
        if self.writer is None:
            self.tmp = new_folder(self.out)
            self.writer = TraceWriter(self.tmp, trace.populations, self.n_t,
                                      any(p.graded for p in self.graph.populations.values()),
                                      self.labels is not None, trace.predictions is not None,
                                      {n: self.graph.populations[n].size for n in trace.activity},
                                      trace.graph_fingerprint, trace.sizes)
        self.writer.append(trace)

    def finish(self) -> EventTrace:
        """Complete the folder, move it to `out` and open it memory-mapped (hwmodels.stream.open_trace)."""
        self.writer.close(self._fingerprint())
        os.rename(self.tmp, self.out)
        return open_trace(self.out)

    def abort(self) -> None:
        """Remove the temporary folder after a failure."""
        if self.writer is not None:
            self.writer.__exit__(RuntimeError, None, None)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
