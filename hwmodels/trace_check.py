"""Check that an EventTrace belongs to a NetworkGraph before it is simulated or used as traffic, so a mismatched
pair is refused at the start with a one-line ValueError instead of failing (or, worse, running) deep inside.

A trace lowered by workloads.lowering records the fingerprint of its graph (NetworkGraph.fingerprint, or the legacy
SHA-256 form of traces lowered before it, checked as such: NetworkGraph.fingerprint_of); older
and hand-made traces are checked on what they hold: population names, sizes, spike indices and activity rows.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from hwmodels.activity import n_bytes
from hwmodels.kernels import threads
from hwmodels.kernels.unique import first_repeat
from hwmodels.npzfile import quote
from hwmodels.trace import EventTrace, NetworkGraph

#: CSR rows of the trace read at once by the spike-index bounds (bounds memory for memory-mapped traces)
CHUNK_ROWS = 1 << 15
#: spike values checked for NaN and inf at once (float32: 16 MiB)
VALUE_CHUNK = 1 << 22
#: weight bytes of a graph from which start_check hashes its fingerprint on a thread of its own (below, the
#: thread would cost more than the hash)
FINGERPRINT_THREAD_BYTES = 1 << 20


def check_trace(graph: NetworkGraph, trace: EventTrace) -> None:
    """Raise ValueError (one line, naming the field) unless `trace` can be simulated on `graph`: it has at least
    one sample; its graph fingerprint, when recorded, is the graph's; it has exactly the graph's populations;
    its n_timesteps is the graph's metadata["n_timesteps"] when the graph records one; its recorded sizes, its
    spike indices and its activity rows fit the graph's population sizes; no neuron appears twice in one CSR row
    (a population's spikes at one timestep of one sample); its spike values, if any, are finite."""
    start_check(graph, trace, background=False)()


def start_check(graph: NetworkGraph, trace: EventTrace, background: bool = True) -> Callable[[], None]:
    """check_trace(graph, trace) whose fingerprint check may end later: with `background`, more than one kernel
    thread (hwmodels.kernels.threads.count) and at least FINGERPRINT_THREAD_BYTES of graph arrays, the graph's
    fingerprint in the trace's form (NetworkGraph.fingerprint_of: XXH3, or SHA-256 for a trace lowered before
    it) is hashed on a thread of its own while the caller goes on (hashlib's SHA-256 releases the GIL; XXH3,
    ~6 ms for 82 MB, holds it, but the caller's compiled kernels do not need it), and every other check is made
    now. Returns wait(), which joins the hash and raises the fingerprint's ValueError (the caller calls it before
    it returns any result). Errors and their order are check_trace's: when another check fails, the fingerprint
    is waited for first and its error, if any, raised instead."""
    if trace.n_samples < 1:
        raise ValueError("trace.n_samples: 0; a trace needs at least one sample to simulate")
    wait = _fingerprint_check(graph, trace, background)
    try:
        _check_populations(graph, trace)
        _check_timesteps(graph, trace)
        _check_sizes(graph, trace)
        _check_indices(graph, trace)
        _check_repeats(trace)
        _check_values(trace)
    except ValueError:
        wait()
        raise
    return wait


def _fingerprint_check(graph: NetworkGraph, trace: EventTrace, background: bool) -> Callable[[], None]:
    """The fingerprint check (_check_fingerprint) made now, returning a no-op, or started on a thread (see
    start_check), returning the function that waits for it."""
    recorded = trace.graph_fingerprint
    if recorded is None:
        return lambda: None
    big = sum(p.weight.nbytes for p in graph.projections) >= FINGERPRINT_THREAD_BYTES
    if not (background and big and threads.count() > 1):
        _check_fingerprint(graph, trace, graph.fingerprint_of(recorded))
        return lambda: None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwmodels-fingerprint")
    digest = pool.submit(graph.fingerprint_of, recorded)
    pool.shutdown(wait=False)
    return lambda: _check_fingerprint(graph, trace, digest.result())


def _check_fingerprint(graph: NetworkGraph, trace: EventTrace, mine: str) -> None:
    """ValueError naming both fingerprints when the trace was recorded on another graph (mine: the graph's
    fingerprint in the trace's form, NetworkGraph.fingerprint_of)."""
    if trace.graph_fingerprint != mine:
        raise ValueError(f"trace.graph_fingerprint: the trace was recorded on a graph with fingerprint "
                         f"{trace.graph_fingerprint[:48]}, graph {quote(graph.name)} has {mine} (a trace of another "
                         "model); simulate a trace with the graph it was lowered with")


def _check_populations(graph: NetworkGraph, trace: EventTrace) -> None:
    """ValueError naming the first graph population the trace lacks, or trace population the graph lacks."""
    missing = [name for name in graph.populations if name not in trace.populations]
    extra = [name for name in trace.populations if name not in graph.populations]
    if missing:
        raise ValueError(f"trace.populations: graph population {quote(missing[0])} is missing; the trace has "
                         f"{quote(list(trace.populations))}")
    if extra:
        raise ValueError(f"trace.populations: {quote(extra[0])} is not a population of graph {quote(graph.name)}, "
                         f"which has {quote(list(graph.populations))}")


def _check_timesteps(graph: NetworkGraph, trace: EventTrace) -> None:
    """ValueError when the graph records its timesteps (metadata["n_timesteps"]) and the trace has others."""
    n_t = graph.metadata.get("n_timesteps")
    if isinstance(n_t, int) and not isinstance(n_t, bool) and n_t != trace.n_timesteps:
        raise ValueError(f"trace.n_timesteps: {trace.n_timesteps}, but graph {quote(graph.name)} was lowered with "
                         f"{n_t} timesteps (metadata['n_timesteps'])")


def _check_sizes(graph: NetworkGraph, trace: EventTrace) -> None:
    """ValueError naming the population whose recorded size or activity row width differs from the graph's."""
    for name, pop in graph.populations.items():
        size = (trace.sizes or {}).get(name)
        if size is not None and size != pop.size:
            raise ValueError(f"trace.sizes: population {quote(name)} has {size} neurons in the trace, {pop.size} in "
                             f"graph {quote(graph.name)}")
        packed = trace.activity.get(name)
        if packed is not None and packed.shape[-1] != n_bytes(pop.size):
            raise ValueError(f"trace.activity[{name!r}]: rows of {packed.shape[-1]} bytes; population {quote(name)} "
                             f"of graph {quote(graph.name)} has {pop.size} neurons, {n_bytes(pop.size)} bytes")


def _check_indices(graph: NetworkGraph, trace: EventTrace) -> None:
    """ValueError naming the first population with a spike index outside 0..size-1 of the graph."""
    low, high = index_bounds(trace)
    for p, name in enumerate(trace.populations):
        size = graph.populations[name].size
        if high[p] >= size or low[p] < 0:
            bad = int(high[p]) if high[p] >= size else int(low[p])
            raise ValueError(f"trace.indices: population {quote(name)} has a spike index outside 0..{size - 1} "
                             f"(neuron {bad}; graph {quote(graph.name)})")


def _check_repeats(trace: EventTrace) -> None:
    """ValueError naming the population, sample, timestep and neuron of the first neuron listed twice in one CSR row
    (it would count as two spikes: twice the synaptic events and messages). One compiled pass over the rows in
    place (hwmodels.kernels.unique.first_repeat: a comparison per event for the strictly increasing rows lowered
    traces hold; an unsorted row without a repeat is accepted)."""
    r, neuron = first_repeat(trace.offsets, trace.indices)
    if r >= 0:
        n_p = len(trace.populations)
        sample, t = divmod(r // n_p, trace.n_timesteps)
        raise ValueError(f"trace.indices: neuron {neuron} of population {quote(trace.populations[r % n_p])} is listed "
                         f"twice at timestep {t} of sample {sample}; a neuron spikes at most once per timestep (merge "
                         "repeated events)")


def _check_values(trace: EventTrace) -> None:
    """ValueError counting the NaN or infinite spike values of a graded trace (read VALUE_CHUNK at a time, so a
    memory-mapped column is not held whole)."""
    if trace.values is None:
        return
    bad = 0
    for lo in range(0, len(trace.values), VALUE_CHUNK):
        part = np.asarray(trace.values[lo:lo + VALUE_CHUNK])
        bad += len(part) - int(np.count_nonzero(np.isfinite(part)))
    if bad:
        raise ValueError(f"trace.values: {bad} spike value{'s are' if bad > 1 else ' is'} NaN or infinite; a graded "
                         "spike carries a finite value")


def index_bounds(trace: EventTrace) -> tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) spike index of every trace population, int64 (n_populations,) each (0 and -1 for a
    population that never spikes), read CHUNK_ROWS CSR rows at a time."""
    n_p, n_rows = len(trace.populations), len(trace.offsets) - 1
    low, high = np.zeros(n_p, np.int64), np.full(n_p, -1, np.int64)
    for r0 in range(0, n_rows, CHUNK_ROWS):
        off = np.asarray(trace.offsets[r0:min(r0 + CHUNK_ROWS, n_rows) + 1], np.int64)
        rows = np.flatnonzero(off[1:] > off[:-1])
        if not len(rows):
            continue
        idx = np.asarray(trace.indices[off[rows[0]]:off[rows[-1] + 1]])
        starts = off[rows] - off[rows[0]]
        pops = (r0 + rows) % n_p
        np.minimum.at(low, pops, np.minimum.reduceat(idx, starts).astype(np.int64))
        np.maximum.at(high, pops, np.maximum.reduceat(idx, starts).astype(np.int64))
    return low, high
