"""Entry point: simulate a NetworkGraph + EventTrace on a chip (map, count actions batch by batch, cost energy,
time with the DES or the analytic model) and return a SimResult. Energy is computed once from the action counts,
identically for both latency models; only static energy (power x latency) depends on the model's latency.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hwmodels import analytic, des, pipeline
from hwmodels.actions import SEMANTICS, Actions, FanoutTables, build_fanout, count_actions
from hwmodels.analytic import Timing
from hwmodels.mapping import Mapping, map_network
from hwmodels.network import Network, RouteUse, route_use
from hwmodels.pipeline import ActionTimes, action_times
from hwmodels.result import ENERGY_COMPONENTS, SimResult
from hwmodels.simcache import SimCache
from hwmodels.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph

#: latency model name -> fn(batches [(actions, times, route use)], network, buffer depth) -> [Timing per batch]
MODELS = {"des": des.timing_batches, "analytic": analytic.timing_batches}
#: samples of consecutive batches a model times together (the DES's vector engine solves all their steps in one
#: go); memory holds one group of batches
GROUP_SAMPLES = {"des": 128, "analytic": 1}


def _per_core(index: np.ndarray, weights: np.ndarray, n_cores: int) -> np.ndarray:
    """Sum `weights` by core id `index` into a float array (n_cores,)."""
    return np.bincount(index, weights=weights, minlength=n_cores)


class _Totals:
    """Sums over samples of the per-core counts, energies (J) and work (s), and per-link loads."""

    def __init__(self, n_cores: int, n_steps: int):
        self.core = {k: np.zeros(n_cores) for k in ("synapse_j", "neuron_j", "network_j", "busy_s", "synops",
                                                     "spikes", "messages_out", "messages_in")}
        self.latency_sum, self.samples = 0.0, 0
        self.step_latency = np.zeros(n_steps)
        self.synops_structural = self.synops_nonzero = self.hops = 0.0
        self.links = {"messages": np.zeros(0), "held_s": np.zeros(0), "seen": np.zeros(0, bool)}

    def add(self, a: Actions, t: ActionTimes, chip: ChipSpec, use: RouteUse, timing: Timing) -> None:
        """Accumulate one batch: its actions `a`, their durations `t`, routes `use` and the model's `timing`."""
        c, n, k = chip.core, a.n_cores, self.core
        msgs, dmsgs = a.flow_messages.astype(float), a.deliv_messages.astype(float)
        synop_j = np.array([c.synop_energy_j.of(f) for f in a.formats]) + pipeline.dendrite_costs(chip)[1]
        src, dst = a.flow_src, a.deliv_dst
        k["synapse_j"] += _per_core(dst, a.deliv_events @ synop_j, n)
        k["neuron_j"] += (a.active.sum(axis=(0, 1)) * c.neuron_active_energy_j
                          + a.inactive.sum(axis=(0, 1)) * c.neuron_inactive_energy_j)
        k["network_j"] += (_per_core(src, msgs * (c.message_out_energy_j + use.hop_j), n)
                           + _per_core(dst, dmsgs * c.message_in_energy_j, n))
        k["busy_s"] += pipeline.core_busy_s(a, t)
        k["synops"] += _per_core(dst, a.deliv_events.sum(axis=1).astype(float), n)
        k["spikes"] += a.spikes.sum(axis=(0, 1))
        k["messages_out"] += _per_core(src, msgs, n)
        k["messages_in"] += _per_core(dst, dmsgs, n)
        self.hops += float(msgs @ use.hops)
        self.synops_structural += float(a.synops_structural.sum())
        self.synops_nonzero += float(a.synops_nonzero.sum())
        self.latency_sum += float(timing.step_s.sum())
        self.samples += timing.step_s.shape[0]
        self.step_latency += timing.step_s.sum(axis=0)
        ids, link_msgs, _ = use.link_totals(t.link_s, t.out_s)
        if len(ids) and ids[-1] >= len(self.links["seen"]):  # ids are sorted: grow the per-link-id arrays
            grow = int(ids[-1]) + 1 - len(self.links["seen"])
            self.links = {k: np.concatenate([v, np.zeros(grow, v.dtype)]) for k, v in self.links.items()}
        self.links["messages"][ids] += link_msgs
        self.links["held_s"][ids] += timing.link_held_s
        self.links["seen"][ids] = True


def _tables(tot: _Totals, mapping: Mapping, chip: ChipSpec, n: int, latency_s: float) -> tuple:
    """Per-core and per-population DataFrames (means per inference) from the totals."""
    k = {name: v / n for name, v in tot.core.items()}
    k["static_j"] = np.full(mapping.cores_used, chip.core.static_power_w * latency_s)
    cols = {c: v for c, v in mapping.table().items() if c != "core"}
    cols.update({name: k[name] for name in ("spikes", "synops", "messages_out", "messages_in", "busy_s")})
    cols["utilization"] = k["busy_s"] / latency_s if latency_s > 0 else np.zeros(mapping.cores_used)
    cols.update({f"energy_{comp}_j": k[f"{comp}_j"] for comp in ENERGY_COMPONENTS})
    cols["energy_j"] = sum(k[f"{comp}_j"] for comp in ENERGY_COMPONENTS)
    cores = pd.DataFrame(cols, index=pd.Index(np.arange(mapping.cores_used), name="core"))
    cols = ["neurons", "spikes", "synops", "energy_j"] + [f"energy_{c}_j" for c in ENERGY_COMPONENTS]
    pops = cores.groupby("population", sort=False)[cols].sum()
    pops.insert(0, "cores", cores.groupby("population", sort=False).size())
    return cores, pops


def _links_table(tot: _Totals, net: Network, link_s: float, n: int, latency_s: float) -> pd.DataFrame:
    """One row per directed link used: link name, end tiles, messages, busy_s (messages x link time), held_s
    (time owned by flows, waits behind full buffers included) and utilization (busy_s / latency), per inference."""
    ids = np.flatnonzero(tot.links["seen"])
    ends = [net.link_of(i) for i in ids.tolist()]
    msgs, held = tot.links["messages"][ids] / n, tot.links["held_s"][ids] / n
    df = pd.DataFrame({"link": [net.link_name(i) for i in ids.tolist()], "src_x": [e[0] for e in ends],
                       "src_y": [e[1] for e in ends], "dst_x": [e[0] + e[2] for e in ends],
                       "dst_y": [e[1] + e[3] for e in ends], "messages": msgs, "busy_s": msgs * link_s,
                       "held_s": held})
    df["utilization"] = df["busy_s"] / latency_s if latency_s > 0 else 0.0
    return df.set_index("link")


def _check_args(model: str, semantics: str, batch_samples: int) -> None:
    """Raise ValueError for an unknown model/semantics or a bad batch size."""
    if model not in MODELS:
        raise ValueError(f"model: {model!r} is not one of {', '.join(MODELS)}")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics: {semantics!r} is not one of {', '.join(SEMANTICS)}")
    if batch_samples < 1:
        raise ValueError(f"batch_samples: {batch_samples} must be >= 1")


def _check_mapping(graph: NetworkGraph, mapping: Mapping) -> None:
    """Raise ValueError when `mapping` does not cover exactly the populations (and sizes) of `graph`."""
    for name, pop in graph.populations.items():
        got = mapping.core_of_neuron.get(name)
        if got is None or len(got) != pop.size:
            raise ValueError(f"mapping: population {name!r} ({pop.size} neurons) is not mapped as in the graph")


def _inputs(graph: NetworkGraph, chip: ChipSpec, mapping: Mapping | None, multicast: bool,
            cache: SimCache | None) -> tuple[Mapping, FanoutTables, Network]:
    """Mapping, fan-out tables and network of a run, from `cache` when given (the same values either way)."""
    if cache is None:
        mapping = map_network(graph, chip) if mapping is None else mapping
        _check_mapping(graph, mapping)
        return mapping, build_fanout(graph, mapping, multicast), Network(mapping, chip)
    mapping = cache.mapping(graph, chip) if mapping is None else mapping
    _check_mapping(graph, mapping)
    return mapping, cache.tables(graph, mapping, multicast), cache.network(mapping, chip)


def _batch(graph: NetworkGraph, trace: EventTrace, mapping: Mapping, tables: FanoutTables, net: Network,
           samples: range, semantics: str, cache: SimCache | None) -> tuple[Actions, RouteUse]:
    """Action counts and routes of one batch of samples, from `cache` when given."""
    if cache is None:
        acts = count_actions(graph, trace, mapping, tables, samples, semantics)
        return acts, route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)
    acts = cache.actions(graph, trace, mapping, tables, samples, semantics)
    return acts, cache.routes(acts, net)


def _timings(model: str, group: list, net: Network, chip: ChipSpec, cache: SimCache | None) -> list[Timing]:
    """The latency model's Timing of each batch of `group`, from `cache` when given."""
    run = lambda: MODELS[model](group, net, chip.router.buffer_depth)
    return run() if cache is None else cache.timings(model, group, chip, run)


def simulate(graph: NetworkGraph, trace: EventTrace, chip: ChipSpec, mapping: Mapping | None = None,
             model: str = "des", semantics: str = "pipelined", batch_samples: int = 32,
             multicast: bool = False, cache: SimCache | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Simulate `trace` of `graph` on `chip`; returns a SimResult of per-inference means over the samples.

    mapping: from `map_network(graph, chip)` when None. model: "des" (discrete-event network, hwmodels.des:
    channel contention, finite buffers router.buffer_depth) or "analytic" (no waits in the network); see
    hwmodels.pipeline for the core pipeline.
    semantics: "pipelined" or "layer_serial" (hwmodels.actions.SEMANTICS). multicast: one message per spike,
    copied at the forks of its XY tree, instead of one message per destination core. batch_samples: samples
    counted at once; memory stays bounded by one group of batches (GROUP_SAMPLES; a memory-mapped trace,
    EventTrace.open, streams).
    cache: a hwmodels.SimCache to reuse the mapping, fan-out tables, action counts, routes and timings of
    earlier calls on the same graph and trace objects (results are bit-identical; a cache keeps up to its
    max_entries batches, so a long streamed trace should not use one); None (default) recomputes everything.
    on_progress: called as on_progress(samples done, total samples) after each group of samples is timed (e.g. to
    drive a progress bar; hwmodels itself draws none).
    Energy (J): synapse = events x (synop energy of their format + dendrite energy); neuron = active/inactive
    updates x their energies; network = messages out x message_out + message copies received x message_in +
    message-hops x hop energy by direction (chip-to-chip links at their cost); static = static_power_w x
    cores_used x latency. Raises ValueError for an unknown model/semantics, a mapping or trace that does not
    match the graph, and MappingError when the network does not fit.
    """
    _check_args(model, semantics, batch_samples)
    mapping, tables, net = _inputs(graph, chip, mapping, multicast, cache)
    n_steps = SEMANTICS[semantics](graph, trace.n_timesteps)[0]
    tot = _Totals(mapping.cores_used, n_steps)
    group, in_group = [], 0
    for s0 in range(0, trace.n_samples, batch_samples):
        samples = range(s0, min(s0 + batch_samples, trace.n_samples))
        acts, use = _batch(graph, trace, mapping, tables, net, samples, semantics, cache)
        group.append((acts, action_times(acts, chip, mapping), use))
        in_group += len(samples)
        if in_group >= GROUP_SAMPLES[model] or samples.stop == trace.n_samples:
            for (a, t, u), tm in zip(group, _timings(model, group, net, chip, cache)):
                tot.add(a, t, chip, u, tm)
            group, in_group = [], 0
            if on_progress is not None:
                on_progress(samples.stop, trace.n_samples)
    n = max(trace.n_samples, 1)
    latency_s = tot.latency_sum / tot.samples if tot.samples else 0.0
    cores, pops = _tables(tot, mapping, chip, n, latency_s)
    breakdown = {c: float(cores[f"energy_{c}_j"].sum()) for c in ENERGY_COMPONENTS}
    return SimResult(
        energy_j=float(sum(breakdown.values())), energy_breakdown_j=breakdown, latency_s=latency_s,
        latency_per_step_s=tot.step_latency / n, synops=float(cores["synops"].sum()),
        synops_structural=tot.synops_structural / n, synops_nonzero=tot.synops_nonzero / n,
        spikes=float(cores["spikes"].sum()), messages=float(cores["messages_out"].sum()), hops=tot.hops / n,
        cores_used=mapping.cores_used, tiles_used=mapping.tiles_used, n_samples=trace.n_samples,
        timesteps=trace.n_timesteps, hardware_steps=n_steps, populations=pops, cores=cores,
        links=_links_table(tot, net, chip.router.link_time_s, n, latency_s), model=model, chip=chip.name,
        placement=mapping.placement, semantics=semantics, multicast=multicast)
