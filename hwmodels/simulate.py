"""Entry point: simulate a NetworkGraph + EventTrace on a chip (map, count actions, cost energy, time with the
DES or the analytic model) and return a SimResult. Energy is computed once from the action counts, identically
for both latency models; only static energy (power x latency) depends on the model's latency.
"""
from __future__ import annotations

import numpy as np

from hwmodels import analytic, des
from hwmodels.actions import SEMANTICS, Actions, ActionTimes, action_times, build_fanout, count_actions
from hwmodels.mapping import Mapping, map_network
from hwmodels.result import ENERGY_COMPONENTS, SimResult
from hwmodels.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph

#: latency model name -> fn(actions, times, mapping, chip) -> (n_samples, n_steps) step latencies in s
MODELS = {"des": des.step_latencies,
          "analytic": lambda actions, times, mapping, chip: analytic.step_latencies(actions, times)}


def _per_core(index: np.ndarray, weights: np.ndarray, n_cores: int) -> np.ndarray:
    """Sum `weights` by core id `index` into a float array (n_cores,)."""
    return np.bincount(index, weights=weights, minlength=n_cores)


class _Totals:
    """Sums over samples of the per-core counts, energies (J) and work (s) of one simulation."""

    def __init__(self, n_cores: int, n_steps: int):
        self.core = {k: np.zeros(n_cores) for k in ("synapse_j", "neuron_j", "network_j", "busy_s", "synops",
                                                     "spikes", "messages_out", "messages_in")}
        self.latency: list[float] = []
        self.step_latency = np.zeros(n_steps)
        self.synops_structural = self.synops_nonzero = self.hops = 0.0

    def add(self, a: Actions, t: ActionTimes, chip: ChipSpec, mapping: Mapping, latency: np.ndarray) -> None:
        """Accumulate one batch: its actions `a`, their durations `t` and step latencies (n_samples, n_steps)."""
        c, r, n, k = chip.core, chip.router, a.n_cores, self.core
        ew, ns = (h[a.flow_src, a.flow_dst] for h in mapping.hops())
        msgs = a.flow_messages.astype(float)
        synop_j = np.array([c.synop_energy_j.of(f) for f in a.formats])
        src, dst = a.flow_src, a.flow_dst
        k["synapse_j"] += _per_core(dst, a.flow_events @ synop_j, n)
        k["neuron_j"] += (a.active.sum(axis=(0, 1)) * c.neuron_active_energy_j
                          + a.inactive.sum(axis=(0, 1)) * c.neuron_inactive_energy_j)
        k["network_j"] += (_per_core(src, msgs * (c.message_out_energy_j + ew * r.hop_energy_ew_j
                                                  + ns * r.hop_energy_ns_j), n)
                           + _per_core(dst, msgs * c.message_in_energy_j, n))
        k["busy_s"] += (t.update_s.sum(axis=(0, 1)) + _per_core(src, t.flow_send_s, n)
                        + _per_core(dst, t.flow_work_s, n))
        k["synops"] += _per_core(dst, a.flow_events.sum(axis=1).astype(float), n)
        k["spikes"] += a.spikes.sum(axis=(0, 1))
        k["messages_out"] += _per_core(src, msgs, n)
        k["messages_in"] += _per_core(dst, msgs, n)
        self.hops += float(msgs @ (ew + ns))
        self.synops_structural += float(a.synops_structural.sum())
        self.synops_nonzero += float(a.synops_nonzero.sum())
        self.latency.extend(latency.sum(axis=1).tolist())
        self.step_latency += latency.sum(axis=0)


def _tables(tot: _Totals, mapping: Mapping, chip: ChipSpec, n: int, latency_s: float) -> tuple:
    """Per-core and per-population DataFrames (means per inference) from the totals."""
    k = {name: v / n for name, v in tot.core.items()}
    k["static_j"] = np.full(mapping.cores_used, chip.core.static_power_w * latency_s)
    cores = mapping.table().set_index("core")
    for name in ("spikes", "synops", "messages_out", "messages_in", "busy_s"):
        cores[name] = k[name]
    cores["utilization"] = k["busy_s"] / latency_s if latency_s > 0 else 0.0
    for comp in ENERGY_COMPONENTS:
        cores[f"energy_{comp}_j"] = k[f"{comp}_j"]
    cores["energy_j"] = sum(k[f"{comp}_j"] for comp in ENERGY_COMPONENTS)
    cols = ["neurons", "spikes", "synops", "energy_j"] + [f"energy_{c}_j" for c in ENERGY_COMPONENTS]
    pops = cores.groupby("population", sort=False)[cols].sum()
    pops.insert(0, "cores", cores.groupby("population", sort=False).size())
    return cores, pops


def _check_mapping(graph: NetworkGraph, mapping: Mapping) -> None:
    """Raise ValueError when `mapping` does not cover exactly the populations (and sizes) of `graph`."""
    for name, pop in graph.populations.items():
        got = mapping.core_of_neuron.get(name)
        if got is None or len(got) != pop.size:
            raise ValueError(f"mapping: population {name!r} ({pop.size} neurons) is not mapped as in the graph")


def simulate(graph: NetworkGraph, trace: EventTrace, chip: ChipSpec, mapping: Mapping | None = None,
             model: str = "des", semantics: str = "pipelined", batch_samples: int = 32) -> SimResult:
    """Simulate `trace` of `graph` on `chip`; returns a SimResult of per-inference means over the samples.

    mapping: from `map_network(graph, chip)` when None. model: "des" (simpy, link and synapse-unit contention)
    or "analytic" (no link contention). semantics: timestep semantics (hwmodels.actions.SEMANTICS).
    batch_samples: samples counted at once (bounds memory). Energy (J): synapse = events x synop energy of their
    storage format; neuron = active/inactive updates x their energies; network = messages x (message_out +
    message_in) + messages x (E-W hops x E_ew + N-S hops x E_ns); static = static_power_w x cores_used x latency.
    Raises ValueError for an unknown model/semantics, a mapping or trace that does not match the graph, and
    MappingError when the network does not fit.
    """
    if model not in MODELS:
        raise ValueError(f"model: {model!r} is not one of {', '.join(MODELS)}")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics: {semantics!r} is not one of {', '.join(SEMANTICS)}")
    if batch_samples < 1:
        raise ValueError(f"batch_samples: {batch_samples} must be >= 1")
    mapping = map_network(graph, chip) if mapping is None else mapping
    _check_mapping(graph, mapping)
    tables = build_fanout(graph, mapping)
    n_steps = SEMANTICS[semantics](graph, trace.n_timesteps)[0]
    tot = _Totals(mapping.cores_used, n_steps)
    for s0 in range(0, trace.n_samples, batch_samples):
        acts = count_actions(graph, trace, mapping, tables, range(s0, min(s0 + batch_samples, trace.n_samples)),
                             semantics)
        times = action_times(acts, chip, mapping)
        tot.add(acts, times, chip, mapping, MODELS[model](acts, times, mapping, chip))
    n = max(trace.n_samples, 1)
    latency_s = float(np.mean(tot.latency)) if tot.latency else 0.0
    cores, pops = _tables(tot, mapping, chip, n, latency_s)
    breakdown = {c: float(cores[f"energy_{c}_j"].sum()) for c in ENERGY_COMPONENTS}
    return SimResult(
        energy_j=float(sum(breakdown.values())), energy_breakdown_j=breakdown, latency_s=latency_s,
        latency_per_step_s=tot.step_latency / n, synops=float(cores["synops"].sum()),
        synops_structural=tot.synops_structural / n, synops_nonzero=tot.synops_nonzero / n,
        spikes=float(cores["spikes"].sum()), messages=float(cores["messages_out"].sum()), hops=tot.hops / n,
        cores_used=mapping.cores_used, tiles_used=mapping.tiles_used, n_samples=trace.n_samples,
        timesteps=trace.n_timesteps, hardware_steps=n_steps, populations=pops, cores=cores, model=model,
        chip=chip.name, placement=mapping.placement, semantics=semantics)
