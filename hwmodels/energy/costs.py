"""The energy model, in one place: action counts x an energy table (the Accelergy/Timeloop split: counts and
costs are separate artifacts; Wu, Emer, Sze, "Accelergy", ICCAD 2019).

- Action counts (ACTIONS, per sample and core, from hwmodels.events.actions + the routes + the chip's neuron rules):
  synaptic events per storage format, synapse-memory bits read, neuron accesses, neuron updates of spiking and
  quiet neurons, neuron-state bits read + written, dendritic-accumulator bits read + written, messages out and
  in, hops by kind (east-west, north-south, chip-to-chip), core busy time.
- Energy table (EnergyTable, from the ChipSpec and the mapping): J per action; memory costs are per bit and
  depend on each core's memory capacity (CoreSpec.synapse_memory / state_memory, hwmodels.chip.spec.MemoryAccess);
  static power per used core (core leakage, SRAM leakage per bit, the chip's uncore and the idle cores of
  ungated chips spread evenly over the used cores).
- Energy = counts x table, by ENERGY_COMPONENTS: synapse compute (events x synop + dendrite), synapse memory
  (bits read x J/bit; 0 when folded into synop), neuron compute (accesses, updates), neuron memory (state and
  accumulator bits x J/bit; 0 when folded), network (messages out/in, hops), static (power x latency).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.events.actions import Actions
from hwmodels.mapping.map import Mapping
from hwmodels.mapping.partition import PORT_TYPE
from hwmodels.events.network import HOP_KINDS, RouteUse
from hwmodels.events.neuron_rules import neuron_work
from hwmodels.kernels.sums import delivery_sums, flow_sums
from hwmodels.chip.spec import ChipSpec, CoreSpec
from hwmodels.mapping.storage import state_bits_per_neuron
from hwmodels.trace import NetworkGraph

ENERGY_COMPONENTS = ("synapse_compute", "synapse_memory", "neuron_compute", "neuron_memory", "network", "static")
#: the action counts kept per core (SimResult.action_counts), besides "synops_<format>" per storage format
ACTIONS = ("synapse_bits_read", "neuron_accesses", "neuron_updates_spiking", "neuron_updates_quiet",
           "state_bits_rw", "accumulator_bits_rw", "messages_out", "messages_in", "hops_ew", "hops_ns", "hops_chip")


@dataclass(frozen=True, eq=False)
class EnergyTable:
    """Energy per action on one chip and mapping (J; per-core arrays are float (n_cores,)).

    synop_j: {storage format: J per synaptic event, dendrite accumulate included}; synapse_read_j_per_bit:
    per core; neuron_access_j / neuron_spiking_j / neuron_quiet_j: per access, per update of a neuron that
    spikes (update + spike out) / does not; state_j_per_bit: per core, read + write of one bit of neuron state
    (also the accumulator's); message_out_j / message_in_j; hop_j: {ew, ns, chip} per message-hop;
    static_w: per used core, W (sums to the chip's static power, see `energy_table`); state_bits /
    accumulator_bits: bits per update / per event. A folded memory (hwmodels.chip.spec.MemoryAccess) has 0 J per bit.
    """

    synop_j: dict[str, float]
    synapse_read_j_per_bit: np.ndarray
    neuron_access_j: float
    neuron_spiking_j: float
    neuron_quiet_j: float
    state_j_per_bit: np.ndarray
    state_bits: np.ndarray
    accumulator_bits: int
    message_out_j: float
    message_in_j: float
    hop_j: dict[str, float]
    static_w: np.ndarray

    def as_dict(self, synapse_bits: np.ndarray | None = None, state_bits: np.ndarray | None = None) -> dict[str, float]:
        """Flat {action: J per action} for reports. The per-core memory prices are means over the used cores,
        weighted by the bits each core reads when given: synapse_bits (synapse bits read, per core) weights
        synapse_read_j_per_bit and state_bits (state + accumulator bits read and written, per core)
        state_rw_j_per_bit, so that the total bits x the price is the energy (a plain mean over the cores, the
        input's included, when no bit is read or none are given; on a chip whose price depends on each core's
        memory size, e.g. lemaire-45nm, the plain mean was 40 % off)."""
        out = {f"synop_{f}_j": v for f, v in self.synop_j.items()}
        out.update({"synapse_read_j_per_bit": _weighted(self.synapse_read_j_per_bit, synapse_bits),
                    "neuron_access_j": self.neuron_access_j, "neuron_update_spiking_j": self.neuron_spiking_j,
                    "neuron_update_quiet_j": self.neuron_quiet_j,
                    "state_rw_j_per_bit": _weighted(self.state_j_per_bit, state_bits),
                    "message_out_j": self.message_out_j, "message_in_j": self.message_in_j,
                    **{f"hop_{k}_j": v for k, v in self.hop_j.items()}, "static_w": float(self.static_w.sum())})
        return out


def _weighted(price: np.ndarray, bits: np.ndarray | None) -> float:
    """The mean of the per-core `price` weighted by `bits` (per core), or its plain mean without bits."""
    price = np.broadcast_to(np.asarray(price, float), np.shape(bits) if bits is not None else np.shape(price))
    if bits is None or not np.sum(bits):
        return float(np.mean(price))
    return float(np.sum(price * bits) / np.sum(bits))


def _capacities(chip: ChipSpec, mapping: Mapping, state_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(synapse memory, state memory) capacity per used core in bits, physical (of the core's own type) or used
    as each spec says."""
    c = chip.core
    if chip.core_types is None:
        syn_phys = np.full(mapping.cores_used, float(c.synapse_memory_bits))
        state_phys = np.full(mapping.cores_used, float(c.neuron_memory_bits)) if c.neuron_memory_bits \
            else c.neurons_per_core * state_bits.astype(float)
    else:
        specs = [chip.core if t == PORT_TYPE else chip.core_specs[t] for t in mapping.core_type]
        syn_phys = np.array([s.synapse_memory_bits for s in specs], float)
        state_phys = np.array([s.neuron_memory_bits or s.neurons_per_core * b for s, b in zip(specs, state_bits)],
                              float).reshape(mapping.cores_used)
    syn = mapping.core_synapse_bits.astype(float) if c.synapse_memory.capacity == "used" else syn_phys
    state = mapping.core_state_bits.astype(float) if c.state_memory.capacity == "used" else state_phys
    return syn, state


def _core_static_w(c: CoreSpec) -> float:
    """Leakage of one powered core of spec `c`: core leakage + its SRAM bits x leakage per bit."""
    return c.static_power_w + c.sram_static_w_per_bit * (c.synapse_memory_bits + (c.neuron_memory_bits or 0))


def static_power_w(chip: ChipSpec, mapping: Mapping) -> float:
    """Static power of the chip(s) during an inference, W: powered cores x (core leakage + SRAM bits x leakage per
    bit) + powered chips x uncore leakage. power_gating "cores": the used cores and the chips holding them are
    powered; "none": every core of all n_chips chips. SRAM bits = synapse_memory_bits + neuron_memory_bits of
    each core's own type. An input port's pseudo-cores (ChipSpec.input_location "port") are not cores: they leak
    nothing here."""
    gated = chip.power_gating == "cores"
    chips = mapping.chips_used if gated else chip.n_chips
    if chip.core_types is None:
        cores = mapping.chip_cores_used if gated else chip.n_cores_total
        return cores * _core_static_w(chip.core) + chips * chip.static_power_chip_w
    per_type = np.array([_core_static_w(s) for s in chip.core_specs])
    types = mapping.core_type[~mapping.is_port] if gated else chip.slot_types()
    return float(per_type[types].sum()) + chips * chip.static_power_chip_w


def energy_table(chip: ChipSpec, mapping: Mapping, graph: NetworkGraph) -> EnergyTable:
    """The EnergyTable of `graph` mapped by `mapping` on `chip` (see the module docstring)."""
    c, r = chip.core, chip.router
    state_bits = np.array([state_bits_per_neuron(graph.populations[p], c) for p in mapping.core_population], float)
    syn_cap, state_cap = _capacities(chip, mapping, state_bits)
    state_j = c.state_memory.energy_per_bit(state_cap) + c.state_memory.energy_per_bit(state_cap, write=True)
    leaks = ~mapping.is_port if (~mapping.is_port).any() else np.ones(mapping.cores_used, bool)
    static_w = np.where(leaks, static_power_w(chip, mapping) / max(int(leaks.sum()), 1), 0.0)
    return EnergyTable(
        synop_j={f: c.synop_energy_j.of(f) + c.dendrite_energy_j for f in ("dense", "sparse", "conv", "bitmap")},
        synapse_read_j_per_bit=c.synapse_memory.energy_per_bit(syn_cap), neuron_access_j=c.neuron_access_energy_j,
        neuron_spiking_j=c.neuron_active_energy_j, neuron_quiet_j=c.neuron_inactive_energy_j,
        state_j_per_bit=state_j, state_bits=state_bits, accumulator_bits=c.accumulator_bits,
        message_out_j=c.message_out_energy_j, message_in_j=c.message_in_energy_j,
        hop_j={"ew": r.hop_energy_ew_j, "ns": r.hop_energy_ns_j, "chip": float(r.chip_link_energy_j or 0.0)},
        static_w=static_w)


def count(a: Actions, use: RouteUse, chip: ChipSpec) -> dict[str, np.ndarray]:
    """Action counts of a batch, {name: float (n_samples, n_cores)}: "synops_<format>" for every format in
    a.formats, their total "synops", and every name in ACTIONS (state and accumulator bits need the table's
    widths: see `energy`).

    Graded and ternary spikes: a trace event is one spike whatever its value (EventTrace.values is never read
    here), so a -1 spike of a ternary population (QT-SNN, arXiv 2407.05310) counts exactly as a +1: ONE message
    per destination core (or multicast route), the same hops, the same synaptic events and synapse bits read;
    the synaptic op applies the sign (a subtract, priced as the add) or a graded value (no multiply charged).
    No preset charges payload bits for a value (each preset's notes["graded spikes"] says what its chip would
    need instead)."""
    nb, n = a.n_samples, a.n_cores
    acc, spiking, quiet = neuron_work(a, chip)
    # per (sample, core) sums of the deliveries' and the flows' columns, one compiled pass each
    # (hwmodels.kernels.sums: np.bincount's sums, bit for bit), reading strided columns in place (the unicast
    # deliveries' events and bits are columns of one array: copying them cost ~6 ms on Spikformer-4-384's batch)
    i64 = lambda v: np.asarray(v, np.int64)
    deliv = delivery_sums(i64(a.deliv_flow), i64(a.deliv_dst), i64(a.flow_sample), n, nb * n,
                          i64(a.deliv_events).reshape(len(a.deliv_flow), len(a.formats)), i64(a.deliv_bits),
                          i64(a.deliv_messages)).reshape(-1, nb, n)
    flows = flow_sums(i64(a.flow_sample), i64(a.flow_src), n, nb * n, i64(a.flow_messages),
                      i64(use.hop_kinds).reshape(len(a.flow_sample), len(HOP_KINDS))).reshape(-1, nb, n)
    nf = len(a.formats)
    out = {f"synops_{f}": deliv[j] for j, f in enumerate(a.formats)}
    out["synops"], out["synapse_bits_read"] = deliv[nf], deliv[nf + 1]
    out["neuron_accesses"] = acc.sum(axis=1).astype(float)
    out["neuron_updates_spiking"] = spiking.sum(axis=1).astype(float)
    out["neuron_updates_quiet"] = quiet.sum(axis=1).astype(float)
    out["messages_out"], out["messages_in"] = flows[0], deliv[nf + 2]
    for k, kind in enumerate(HOP_KINDS):
        out[f"hops_{kind}"] = flows[1 + k]
    return out


def energy(counts: dict[str, np.ndarray], table: EnergyTable, formats: tuple[str, ...],
           latency_s: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Energy of a batch by component, {component: float (n_samples, n_cores)} J, and the derived bit counts
    {"state_bits_rw", "accumulator_bits_rw": (n_samples, n_cores)}. latency_s: (n_samples,) per-sample latency
    for static energy. A spike message is priced messages_out x message_out_j + messages_in x message_in_j +
    hops x hop_j, the same for a binary, ternary (-1 or +1) or graded spike (see `count`)."""
    t = table
    updates = counts["neuron_updates_spiking"] + counts["neuron_updates_quiet"]
    bits = {"state_bits_rw": 2.0 * updates * t.state_bits,
            "accumulator_bits_rw": 2.0 * counts["synops"] * t.accumulator_bits}
    half = t.state_j_per_bit / 2.0  # state_j_per_bit is read + write of one bit
    zero = np.zeros_like(counts["messages_in"])
    e = {"synapse_compute": sum((counts[f"synops_{f}"] * t.synop_j[f] for f in formats), zero),
         "synapse_memory": counts["synapse_bits_read"] * t.synapse_read_j_per_bit,
         "neuron_compute": (counts["neuron_accesses"] * t.neuron_access_j
                            + counts["neuron_updates_spiking"] * t.neuron_spiking_j
                            + counts["neuron_updates_quiet"] * t.neuron_quiet_j),
         "neuron_memory": (bits["state_bits_rw"] + bits["accumulator_bits_rw"]) * half,
         "network": (counts["messages_out"] * t.message_out_j + counts["messages_in"] * t.message_in_j
                     + sum(counts[f"hops_{k}"] * t.hop_j[k] for k in HOP_KINDS)),
         "static": np.asarray(latency_s, float)[:, None] * t.static_w[None, :]}
    return e, bits
