"""Per-hardware-timestep action counts (spikes, neuron updates, message flows, synaptic events) shared by the
DES and the analytic model, and their conversion to per-action times on a given chip.

Fan-out tables are built once per (graph, mapping) and reused for every batch of samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from hwmodels.connectivity import PAID_COUNT, core_fanout
from hwmodels.mapping import Mapping
from hwmodels.spec import ChipSpec
from hwmodels.trace import STORAGE_FORMATS, EventTrace, NetworkGraph, Projection


def pipelined(graph: NetworkGraph, n_timesteps: int) -> tuple[int, dict[str, np.ndarray]]:
    """Layer-pipelined timesteps, as on Loihi: population at depth d emits its timestep-t spikes at hardware
    step h = t + d; T + L hardware steps per inference (L = graph.n_layers). Returns (n_steps, {pop: h[t]})."""
    return n_timesteps + graph.n_layers, {p: np.arange(n_timesteps) + graph.depth(p) for p in graph.populations}


#: timestep semantics name -> fn(graph, T) -> (hardware steps, {population: hardware step of each timestep t})
SEMANTICS: dict[str, Callable[[NetworkGraph, int], tuple[int, dict[str, np.ndarray]]]] = {"pipelined": pipelined}


def _global_cols(f: sp.csr_matrix, cores: np.ndarray, n_cores: int) -> sp.csr_matrix:
    """Re-index the columns of a core_fanout matrix from `cores` positions to global core ids."""
    c = f.tocoo()
    return sp.csr_matrix((c.data, (c.row, cores[c.col])), shape=(f.shape[0], n_cores), dtype=np.int64)


def _proj_fanout(proj: Projection, src_shape: tuple, target_core: np.ndarray, n_cores: int, count: str):
    """Core-level fan-out (n_source, n_cores) of one projection; dense structural without a dense ones matrix."""
    if proj.kind == "dense" and count == "structural":
        per_core = np.bincount(target_core, minlength=n_cores).astype(np.int64)
        cols = np.flatnonzero(per_core)
        n_src = int(np.prod(src_shape))
        rows = np.repeat(np.arange(n_src), len(cols))
        return sp.csr_matrix((np.tile(per_core[cols], n_src), (rows, np.tile(cols, n_src))),
                             shape=(n_src, n_cores), dtype=np.int64)
    return _global_cols(*core_fanout(proj, src_shape, target_core, count), n_cores)


@dataclass(frozen=True, eq=False)
class FanoutTables:
    """Fan-out of every source population over destination cores, built once per (graph, mapping).

    formats: storage formats present in the graph (STORAGE_FORMATS order).
    stack: {population: CSR int64 (n_source, n_cores * (1 + len(formats)))}: block 0 holds 1 where neuron i
        sends a message to core k (it has >= 1 synapse there that the storage format stores, i.e. a paid count
        > 0, union over its out-projections); block 1 + j the synaptic events paid in format formats[j].
    structural / nonzero: {population: int64 (n_source,)} total fan-out per neuron, for reporting.
    """

    formats: tuple[str, ...]
    n_cores: int
    stack: dict[str, sp.csr_matrix]
    structural: dict[str, np.ndarray]
    nonzero: dict[str, np.ndarray]


def build_fanout(graph: NetworkGraph, mapping: Mapping) -> FanoutTables:
    """Fan-out tables of `graph` on `mapping` (hwmodels.connectivity.core_fanout with the paid count)."""
    formats = tuple(f for f in STORAGE_FORMATS if any(p.storage == f for p in graph.projections))
    n = mapping.cores_used
    stack, structural, nonzero = {}, {}, {}
    for name, pop in graph.populations.items():
        outs = graph.out_projections(name)
        if not outs:
            continue
        paid = {f: sp.csr_matrix((pop.size, n), dtype=np.int64) for f in formats}
        structural[name], nonzero[name] = np.zeros(pop.size, np.int64), np.zeros(pop.size, np.int64)
        for proj in outs:
            tgt = mapping.core_of_neuron[proj.target]
            f_counts = {c: _proj_fanout(proj, pop.shape, tgt, n, c) for c in ("structural", "nonzero")}
            paid[proj.storage] = paid[proj.storage] + f_counts[PAID_COUNT[proj.storage]]
            structural[name] += np.asarray(f_counts["structural"].sum(axis=1)).ravel()
            nonzero[name] += np.asarray(f_counts["nonzero"].sum(axis=1)).ravel()
        total = sum(paid.values())
        msgs = sp.csr_matrix((total > 0).astype(np.int64))
        stack[name] = sp.hstack([msgs] + [paid[f] for f in formats], format="csr", dtype=np.int64)
    return FanoutTables(formats, n, stack, structural, nonzero)


@dataclass(frozen=True, eq=False)
class Actions:
    """Action counts of a batch of samples on one mapping.

    spikes / active / inactive: int64 (n_samples, n_steps, n_cores): spikes emitted by each core's neurons at
        each hardware step; neuron updates of neurons that spiked / did not spike in that step. Every non-input
        neuron is updated once in every hardware step in which its population is active (its timestep t maps
        to that step); input neurons are never updated.
    flow_*: one entry per flow = all messages from one source core to one destination core in one step, sorted
        by (sample, step, src, dst). flow_messages: int64 (n_flows,); flow_events: int64 (n_flows, n_formats)
        synaptic events paid per storage format in `formats`.
    synops_structural / synops_nonzero: int64 (n_samples,) totals of the two reporting counts.
    """

    formats: tuple[str, ...]
    n_samples: int
    n_steps: int
    n_cores: int
    spikes: np.ndarray
    active: np.ndarray
    inactive: np.ndarray
    flow_sample: np.ndarray
    flow_step: np.ndarray
    flow_src: np.ndarray
    flow_dst: np.ndarray
    flow_messages: np.ndarray
    flow_events: np.ndarray
    synops_structural: np.ndarray
    synops_nonzero: np.ndarray


def _gather(trace: EventTrace, samples: range, pop_i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron indices, sample - samples.start, timestep) of every spike of population pop_i in `samples`."""
    n_t, n_p = trace.n_timesteps, len(trace.populations)
    s, t = np.meshgrid(np.arange(samples.start, samples.stop), np.arange(n_t), indexing="ij")
    rows = ((s * n_t + t) * n_p + pop_i).ravel()
    lo, hi = trace.offsets[rows], trace.offsets[rows + 1]
    lengths = hi - lo
    pos = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    return (trace.indices[pos].astype(np.int64), np.repeat((s - samples.start).ravel(), lengths),
            np.repeat(t.ravel(), lengths))


def _flows(g: sp.csr_matrix, n_cores: int, n_formats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the (group row, block * n_cores + dst) count matrix into sorted flow keys, messages and events."""
    c = g.tocoo()
    block, dst = c.col // n_cores, c.col % n_cores
    keys = c.row.astype(np.int64) * n_cores + dst
    is_msg = block == 0
    order = np.argsort(keys[is_msg], kind="stable")
    flow_keys, messages = keys[is_msg][order], c.data[is_msg][order].astype(np.int64)
    events = np.zeros((len(flow_keys), n_formats), np.int64)
    for j in range(n_formats):
        sel = block == j + 1
        events[np.searchsorted(flow_keys, keys[sel]), j] = c.data[sel]
    return flow_keys, messages, events


def count_actions(graph: NetworkGraph, trace: EventTrace, mapping: Mapping, tables: FanoutTables,
                  samples: range, semantics: str = "pipelined") -> Actions:
    """Action counts of `samples` of `trace` (see Actions), under timestep `semantics` (SEMANTICS key).

    Raises ValueError when a graph population is missing from the trace or a spike index is out of range.
    """
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    nb, n, nf = len(samples), tables.n_cores, len(tables.formats)
    n_rows = nb * n_steps * n
    g = sp.csr_matrix((n_rows, n * (1 + nf)), dtype=np.int64)
    spikes = np.zeros(n_rows, np.int64)
    struct, nonzero = np.zeros(nb), np.zeros(nb)
    updated = np.zeros((n_steps, n), bool)
    for name, pop in graph.populations.items():
        if name not in trace.populations:
            raise ValueError(f"trace.populations: graph population {name!r} is missing; trace has "
                             f"{', '.join(trace.populations)}")
        idx, s, t = _gather(trace, samples, trace.populations.index(name))
        if len(idx) and (idx.min() < 0 or idx.max() >= pop.size):
            raise ValueError(f"trace.indices: population {name!r} has a spike index outside 0..{pop.size - 1}")
        row = (s * n_steps + step_of[name][t]) * n + mapping.core_of_neuron[name][idx]
        spikes += np.bincount(row, minlength=n_rows)
        if not pop.is_input:
            updated[np.ix_(step_of[name], np.unique(mapping.core_of_neuron[name]))] = True
        if name in tables.stack:
            a = sp.csr_matrix((np.ones(len(idx), np.int64), (row, idx)), shape=(n_rows, pop.size))
            g = g + a @ tables.stack[name]
            struct += np.bincount(s, weights=tables.structural[name][idx], minlength=nb)
            nonzero += np.bincount(s, weights=tables.nonzero[name][idx], minlength=nb)
    spikes = spikes.reshape(nb, n_steps, n)
    active = spikes * updated
    inactive = (mapping.core_neurons[None, None, :] - spikes) * updated
    keys, messages, events = _flows(g, n, nf)
    row, dst = keys // n, keys % n
    return Actions(tables.formats, nb, n_steps, n, spikes, active, inactive, row // (n_steps * n),
                   (row // n) % n_steps, row % n, dst, messages, events, np.rint(struct).astype(np.int64),
                   np.rint(nonzero).astype(np.int64))


@dataclass(frozen=True, eq=False)
class ActionTimes:
    """Durations (s) of the actions on a chip, the same for the DES and the analytic model.

    update_s: (n_samples, n_steps, n_cores) serial neuron-update time (active x t_active + inactive x t_inactive).
    flow_send_s: (n_flows,) messages x message_out latency (the source injects them one after another).
    flow_head_s: (n_flows,) contention-free head delay: XY hops x hop latency + one link time.
    flow_hold_s: (n_flows,) messages x link time, how long the flow holds each link it crosses.
    flow_work_s: (n_flows,) destination work: messages x message_in latency + sum_f events_f x synop latency_f.
    link_time_s: one message on one link; barrier_s: end-of-step barrier for the tiles in use.
    """

    update_s: np.ndarray
    flow_send_s: np.ndarray
    flow_head_s: np.ndarray
    flow_hold_s: np.ndarray
    flow_work_s: np.ndarray
    link_time_s: float
    barrier_s: float


def action_times(actions: Actions, chip: ChipSpec, mapping: Mapping) -> ActionTimes:
    """Convert the counts of `actions` into durations on `chip` (see ActionTimes)."""
    core, router = chip.core, chip.router
    ew, ns = mapping.hops()
    src, dst = actions.flow_src, actions.flow_dst
    synop_s = np.array([core.synop_latency_s.of(f) for f in actions.formats])
    msgs = actions.flow_messages.astype(float)
    return ActionTimes(
        update_s=actions.active * core.neuron_active_latency_s + actions.inactive * core.neuron_inactive_latency_s,
        flow_send_s=msgs * core.message_out_latency_s,
        flow_head_s=ew[src, dst] * router.hop_latency_ew_s + ns[src, dst] * router.hop_latency_ns_s
        + router.link_time_s,
        flow_hold_s=msgs * router.link_time_s,
        flow_work_s=msgs * core.message_in_latency_s + actions.flow_events @ synop_s,
        link_time_s=router.link_time_s,
        barrier_s=chip.barrier_latency_s(mapping.tiles_used))
