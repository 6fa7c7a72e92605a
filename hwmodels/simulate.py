"""Entry point: simulate a NetworkGraph + EventTrace on a chip (map, count actions batch by batch, time with the
DES or the analytic model, cost energy with hwmodels.energy.costs) and return a SimResult. Dynamic energy is computed
from the action counts, identically for both latency models; only static energy (power x latency) depends on
the model's latency.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from hwmodels.energy import costs as energy
from hwmodels.timing import analytic, des, des_density
from hwmodels.events.actions import SEMANTICS, Actions, FanoutTables
from hwmodels.timing.analytic import Timing
from hwmodels.energy.costs import ENERGY_COMPONENTS, EnergyTable
from hwmodels.mapping.map import Mapping
from hwmodels.mapping.check import check_mapping
from hwmodels.mapping.connectivity import FanoutStore
from hwmodels.events.network import HOP_KINDS, Network, RouteUse
from hwmodels.timing.core_times import ActionTimes, core_busy_s
from hwmodels.result import ResultTables, SimResult
from hwmodels.simcache import SimCache
from hwmodels.chip.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph, is_int

#: latency model name -> fn(batches [(actions, times, route use)], network, buffer depth) -> [Timing per batch]
MODELS = {"des": des.timing_batches, "analytic": analytic.timing_batches}
#: samples of consecutive batches a model times together (the DES's vector engine solves all their steps in one
#: go); memory holds one group of batches
GROUP_SAMPLES = {"des": 128, "analytic": 1}
#: channel nodes (flow x route channel, summed over a group's batches) after which a model's group is closed
#: early, bounding the memory of the DES's vector engine whatever the samples' traffic (measured: about 200 bytes
#: of peak memory per node, VGG-11 at 32x32 with 4.65 M nodes per 128 samples; 2^23 nodes ~ 1.7 GiB); a group
#: holds at least one batch (a batch over it is played in chunks of whole steps, hwmodels.timing.des.CHUNK_NODES).
#: Groups only batch independent hardware steps (the steps of every sample are numbered
#: apart, hwmodels.timing.des), so results do not depend on where a group ends (tests/hwmodels/test_simulate_groups.py)
GROUP_NODES = {"des": des.CHUNK_NODES, "analytic": None}
#: per-sample columns of SimResult.samples besides the energy components
SAMPLE_COLUMNS = ("latency_s", "synops", "spikes", "messages", "hops")


@dataclass(frozen=True, eq=False)
class _BatchSums:
    """What one timed batch adds to the totals at any energies: per-core sums over its samples of every action
    count (`counts`, float (n_cores,)) and of spikes; busy time per sample and core (s, (n_samples, n_cores));
    per-sample columns `sample` (latency_s, synops, spikes, messages, hops; float (n_samples,)); the reporting
    synop counts; step latencies per sample (s, (n_samples, n_steps)); and per-link ids, messages and held
    time (s)."""

    counts: dict[str, np.ndarray]
    spikes: np.ndarray
    busy_s: np.ndarray
    sample: dict[str, np.ndarray]
    synops_structural: float
    synops_nonzero: float
    step_s: np.ndarray
    link_ids: np.ndarray
    link_messages: np.ndarray
    link_held_s: np.ndarray


def _batch_sums(a: Actions, t: ActionTimes, counts: dict[str, np.ndarray], use: RouteUse,
                timing: Timing) -> _BatchSums:
    """The _BatchSums of a batch: actions `a`, durations `t`, action counts (hwmodels.energy.costs.count), routes
    `use` and the latency model's `timing`."""
    hops = sum(counts[f"hops_{k}"] for k in HOP_KINDS)
    sample = {"latency_s": timing.step_s.sum(axis=1), "synops": counts["synops"].sum(axis=1),
              "spikes": a.spikes.sum(axis=(1, 2)), "messages": counts["messages_out"].sum(axis=1),
              "hops": hops.sum(axis=1)}
    ids, link_msgs = use.link_messages
    return _BatchSums({name: _core_sum(v) for name, v in counts.items()}, _core_sum(a.spikes.sum(axis=1)),
                      core_busy_s(a, t), sample, float(a.synops_structural.sum()), float(a.synops_nonzero.sum()),
                      timing.step_s, ids, link_msgs, timing.link_held_s)


def _add_rows(total: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """total (n,) + the float rows (k, n) added one after the other (numpy reduces axis 0 of a C-ordered array row
    by row), so a sum over samples has the same bits whatever the batches' sizes."""
    return np.vstack([total[None], np.asarray(rows, float).reshape(-1, len(total))]).sum(axis=0)


def _core_sum(per_sample_core: np.ndarray) -> np.ndarray:
    """float (n_cores,): the sum over samples of a (n_samples, n_cores) array."""
    return np.asarray(per_sample_core, float).sum(axis=0)


class _Totals:
    """Sums over samples of the per-core action counts, energies (J) and work (s), per-sample totals, and
    per-link loads."""

    def __init__(self, n_cores: int, n_steps: int, n_samples: int, table: EnergyTable):
        self.table, self.n_cores = table, n_cores
        self.core: dict[str, np.ndarray] = {}
        self.sample = np.zeros((len(ENERGY_COMPONENTS) + len(SAMPLE_COLUMNS), n_samples))
        self.row = {k: i for i, k in enumerate((*ENERGY_COMPONENTS, *SAMPLE_COLUMNS))}
        self.done = 0
        self.step_latency = np.zeros(n_steps)
        self.synops_structural = self.synops_nonzero = 0.0
        self.links = {"messages": np.zeros(0), "held_s": np.zeros(0), "seen": np.zeros(0, bool)}

    def _add_core(self, name: str, total: np.ndarray) -> None:
        self.core[name] = self.core.get(name, np.zeros(self.n_cores)) + total

    def _add_samples(self, name: str, per_sample: np.ndarray) -> None:
        """Add float (n_samples, n_cores) values onto the running per-core total, sample by sample (_add_rows)."""
        self.core[name] = _add_rows(self.core.get(name, np.zeros(self.n_cores)), per_sample)

    def add(self, a: Actions, counts: dict[str, np.ndarray], sums: _BatchSums) -> None:
        """Accumulate one batch (the next samples in order): its actions `a`, action counts
        (hwmodels.energy.costs.count) and what it adds at any energies (`sums`); its energies are costed here."""
        rows = slice(self.done, self.done + a.n_samples)
        self.done += a.n_samples
        joules, bits = energy.energy(counts, self.table, a.formats, sums.sample["latency_s"])
        for name, v in sums.counts.items():
            self._add_core(name, v)
        for name, v in bits.items():
            self._add_core(name, _core_sum(v))
        for comp, v in joules.items():
            self._add_samples(f"{comp}_j", v)
            self.sample[self.row[comp], rows] = v.sum(axis=1)
        self._add_core("spikes", sums.spikes)
        self._add_samples("busy_s", sums.busy_s)
        for name, v in sums.sample.items():
            self.sample[self.row[name], rows] = v
        self.synops_structural += sums.synops_structural
        self.synops_nonzero += sums.synops_nonzero
        self.step_latency = _add_rows(self.step_latency, sums.step_s)
        self._add_links(sums)

    def _add_links(self, sums: _BatchSums) -> None:
        ids = sums.link_ids
        if len(ids) and ids[-1] >= len(self.links["seen"]):  # ids are sorted: grow the per-link-id arrays
            grow = int(ids[-1]) + 1 - len(self.links["seen"])
            self.links = {k: np.concatenate([v, np.zeros(grow, v.dtype)]) for k, v in self.links.items()}
        self.links["messages"][ids] += sums.link_messages
        self.links["held_s"][ids] += sums.link_held_s
        self.links["seen"][ids] = True

    def sample_columns(self, trace: EventTrace) -> dict[str, np.ndarray]:
        """{"energy_j", "latency_s", "hops", and "correct" when the trace records labels and predictions}: float
        (n_samples,) per-sample values (as in `samples`, without building it)."""
        comps = self.sample[[self.row[c] for c in ENERGY_COMPONENTS]]
        out = {"energy_j": comps.T.sum(axis=1), "latency_s": self.sample[self.row["latency_s"]],
               "hops": self.sample[self.row["hops"]]}
        if trace.labels is not None and trace.predictions is not None:
            out["correct"] = (np.asarray(trace.labels) == np.asarray(trace.predictions)).astype(float)
        return out

    def samples(self, trace: EventTrace) -> pd.DataFrame:
        """One row per sample: energy_j, energy_<component>_j, latency, counts, and label/prediction/correct."""
        df = pd.DataFrame(self.sample.T, columns=[f"energy_{k}_j" if k in ENERGY_COMPONENTS else k
                                                 for k in self.row], copy=False)
        df.insert(0, "energy_j", df[[f"energy_{c}_j" for c in ENERGY_COMPONENTS]].sum(axis=1))
        for name in ("labels", "predictions"):
            if getattr(trace, name) is not None:
                df[name[:-1]] = np.asarray(getattr(trace, name))
        if "label" in df and "prediction" in df:
            df["correct"] = (df["label"] == df["prediction"]).astype(float)
        df.index.name = "sample"
        return df


def _tables(tot: _Totals, mapping: Mapping, n: int, latency_s: float) -> tuple:
    """Per-core, per-population and action-count DataFrames (means per inference) from the totals."""
    k = {name: v / n for name, v in tot.core.items()}
    idx = pd.Index(np.arange(mapping.cores_used), name="core")
    cols = {c: v for c, v in mapping.table().items() if c != "core"}
    cols.update({name: k[name] for name in ("spikes", "synops", "messages_out", "messages_in", "busy_s")})
    cols["utilization"] = k["busy_s"] / latency_s if latency_s > 0 else np.zeros(mapping.cores_used)
    cols.update({f"energy_{comp}_j": k[f"{comp}_j"] for comp in ENERGY_COMPONENTS})
    cols["energy_j"] = sum(k[f"{comp}_j"] for comp in ENERGY_COMPONENTS)
    cols["port"] = mapping.is_port
    cores = pd.DataFrame(cols, index=idx)
    cols = ["neurons", "spikes", "synops", "energy_j"] + [f"energy_{c}_j" for c in ENERGY_COMPONENTS]
    pops = cores.groupby("population", sort=False)[cols].sum()
    pops.insert(0, "cores", (~cores["port"]).groupby(cores["population"], sort=False).sum().astype(np.int64))
    names = [c for c in k if c.startswith("synops_")] + list(energy.ACTIONS) + ["busy_s"]
    actions = pd.DataFrame({c: k[c] for c in names if c in k}, index=idx)
    actions["idle_s"] = np.maximum(latency_s - actions["busy_s"], 0.0)
    return cores, pops, actions


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


def _check_args(model: str, semantics: str, batch_samples: int, multicast: bool) -> None:
    """Raise ValueError for an unknown model/semantics, a batch size that is not an integer >= 1 (bools and
    fractions refused) or a multicast that is not a bool (numpy's too; a string such as "false" would be true)."""
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model: {model!r} is not one of {', '.join(MODELS)}")
    if not isinstance(semantics, str) or semantics not in SEMANTICS:
        raise ValueError(f"semantics: {semantics!r} is not one of {', '.join(SEMANTICS)}")
    if not is_int(batch_samples) or batch_samples < 1:
        raise ValueError(f"batch_samples: {batch_samples!r} must be an integer >= 1")
    if not isinstance(multicast, (bool, np.bool_)):
        raise ValueError(f"multicast: {multicast!r} must be True or False")


def _check_types(graph: object, trace: object, chip: object, mapping: object, cache: object) -> None:
    """Raise TypeError naming the argument when graph, trace, chip, mapping or cache is not of its type (e.g. a
    preset name where a ChipSpec is expected, or graph and trace swapped)."""
    wanted = (("graph", graph, NetworkGraph, "a hwmodels.NetworkGraph"),
              ("trace", trace, EventTrace, "a hwmodels.EventTrace"),
              ("chip", chip, ChipSpec, "a hwmodels.ChipSpec, e.g. hwmodels.load_preset('loihi')"),
              ("mapping", mapping, (Mapping, type(None)), "a hwmodels.Mapping (map_network) or None"),
              ("cache", cache, (SimCache, type(None)), "a hwmodels.SimCache or None"))
    for name, value, kind, accepted in wanted:
        if not isinstance(value, kind):
            raise TypeError(f"{name}: got {type(value).__name__} {str(value)[:40]!r}, expected {accepted}")


def _inputs(graph: NetworkGraph, chip: ChipSpec, mapping: Mapping | None, multicast: bool,
            cache: SimCache) -> tuple[Mapping, FanoutTables, Network]:
    """Mapping, fan-out tables and network of a run, through `cache`. A mapping given by the caller is checked
    against the graph and every core limit of the chip; the per-projection core fan-outs the check counts are
    passed on to the fan-out tables (a FanoutStore that lives for this call only), so each is counted once."""
    fanouts: FanoutStore = {}
    if mapping is not None:
        mapping = cache.keep(("checked", id(graph), id(mapping), cache.signature("mapping", chip)),
                             lambda: check_mapping(graph, mapping, chip, fanouts), (graph, mapping))
    mapping = cache.mapping(graph, chip) if mapping is None else mapping
    # map_network and check_mapping both leave the mapping_key of the mapping they return in verified_for
    key = mapping.verified_for[1] if mapping.verified_for is not None else None
    return mapping, cache.tables(graph, mapping, multicast, chip.core, fanouts, key), cache.network(mapping, chip)


def _batch(graph: NetworkGraph, trace: EventTrace, chip: ChipSpec, mapping: Mapping, tables: FanoutTables,
           net: Network, samples: range, semantics: str, cache: SimCache) -> tuple[Actions, ActionTimes, RouteUse]:
    """Action counts, their durations and the routes of one batch of samples, through `cache`."""
    acts = cache.actions(graph, trace, mapping, tables, samples, semantics)
    return acts, cache.times(acts, chip, mapping), cache.routes(acts, net)


def _timings(model: str, group: list, net: Network, chip: ChipSpec, cache: SimCache,
             messages: Callable[[int], des_density.Messages]) -> list[Timing]:
    """The latency model's Timing of each batch of `group`, through `cache`. The DES of a chip with
    router.congestion_model "density" is hwmodels.timing.des_density, which also needs messages(k), the Messages of
    the group's k-th sample."""
    depth = chip.router.buffer_depth
    if model == "analytic":
        run = lambda: analytic.timing_batches(group, net, depth)
    elif chip.router.congestion_model == "density":
        run = lambda: des_density.timing_batches(group, net, chip, messages)
    else:
        run = lambda: des.timing_batches(group, net, depth, keep=cache.keep)
    return cache.timings(model, group, chip, run)


def _add_group(tot: _Totals, group: list, timings: list[Timing], chip: ChipSpec, mapping: Mapping,
               cache: SimCache) -> None:
    """Add every (actions, times, routes) batch of `group`, timed by `timings`, to `tot`; the action counts and
    what a batch adds at any energies (_BatchSums) come through `cache`."""
    for (a, t, u), tm in zip(group, timings):
        counts = cache.counts(a, u, chip, mapping)
        sums = cache.keep(("sums", id(a), id(t), id(u), id(counts), id(tm)),
                          lambda: _batch_sums(a, t, counts, u, tm), (a, t, u, counts, tm))
        tot.add(a, counts, sums)


def _group_full(model: str, group: list, in_group: int) -> bool:
    """Whether a group of (actions, times, routes) batches holding `in_group` samples is timed now: it reached
    GROUP_SAMPLES[model] samples or GROUP_NODES[model] channel nodes."""
    nodes = GROUP_NODES[model]
    return in_group >= GROUP_SAMPLES[model] or (
        nodes is not None and sum(int(u.hops.sum()) for *_, u in group) >= nodes)


def simulate(graph: NetworkGraph, trace: EventTrace, chip: ChipSpec, mapping: Mapping | None = None,
             model: str = "des", semantics: str = "pipelined", batch_samples: int = 32,
             multicast: bool = False, cache: SimCache | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Simulate `trace` of `graph` on `chip`; returns a SimResult of per-inference means over the samples.

    mapping: from `map_network(graph, chip)` when None. model: "des" (discrete-event network, hwmodels.timing.des:
    channel contention, finite buffers router.buffer_depth; hwmodels.timing.des_density when
    chip.router.congestion_model is "density") or "analytic" (no waits in the network); see hwmodels.timing.core_times
    for the core pipeline.
    semantics: "pipelined" or "layer_serial" (hwmodels.events.actions.SEMANTICS). multicast: one message per spike,
    copied at the forks of its XY tree, instead of one message per destination core. batch_samples: samples
    counted at once; memory stays bounded by one group of batches (GROUP_SAMPLES samples or GROUP_NODES channel
    nodes, whichever comes first; a memory-mapped trace, EventTrace.open, streams). It changes no bit of the
    results but the links table's hold times (summed per batch; the energies, busy times and step latencies are
    added sample by sample).
    cache: a hwmodels.SimCache to reuse the mapping, fan-out tables, action counts, routes, timings and the
    energy-free per-batch sums of earlier calls on the same graph and trace objects (results are bit-identical;
    a cache keeps up to max_entries entries, about 6 a batch, and the first ones of a trace longer than that:
    SimCache); None (default) recomputes everything (a SimCache(max_entries=0), which keeps nothing).
    on_progress: called as on_progress(samples done, total samples) after each group of samples is timed (e.g. to
    drive a progress bar; hwmodels itself draws none).
    Energy (J): action counts x the chip's energy table, by component (hwmodels.energy.costs): synapse compute and
    memory, neuron compute and memory, network, static (static power x each sample's latency).
    Raises TypeError naming the argument when graph, trace, chip, mapping or cache is not of its type (a preset
    name for chip: load it with hwmodels.load_preset), and ValueError, before any event is counted (the graph
    fingerprint of the trace check is hashed beside the mapping check and the fan-out tables), for an unknown
    model/semantics, a batch_samples that is not an integer >= 1, a multicast that is not a bool, a trace that
    does not belong to the graph (hwmodels.trace_check: no samples, another graph's fingerprint, other
    populations, sizes or timesteps), or a given mapping made for another chip, that does not cover the graph or
    breaks a core limit (hwmodels.mapping.check), and MappingError when the network does not fit.
    """
    _check_types(graph, trace, chip, mapping, cache)
    _check_args(model, semantics, batch_samples, multicast)
    multicast = bool(multicast)
    cache = SimCache(max_entries=0) if cache is None else cache
    cache.begin_pass()
    with cache.checking(graph, trace):  # the fingerprint is hashed beside the fan-out tables
        mapping, tables, net = _inputs(graph, chip, mapping, multicast, cache)
    n_steps = SEMANTICS[semantics](graph, trace.n_timesteps)[0]
    table = energy.energy_table(chip, mapping, graph)
    tot = _Totals(mapping.cores_used, n_steps, trace.n_samples, table)
    group, in_group, orders = [], 0, {}  # orders: the density model's core orders, found once per mapping
    for s0 in range(0, trace.n_samples, batch_samples):
        samples = range(s0, min(s0 + batch_samples, trace.n_samples))
        group.append(_batch(graph, trace, chip, mapping, tables, net, samples, semantics, cache))
        in_group += len(samples)
        if _group_full(model, group, in_group) or samples.stop == trace.n_samples:
            first = samples.stop - in_group
            msgs = lambda k: des_density.messages(graph, trace, mapping, tables, range(first + k, first + k + 1),
                                                  semantics, chip, orders)
            _add_group(tot, group, _timings(model, group, net, chip, cache, msgs), chip, mapping, cache)
            group, in_group = [], 0
            if on_progress is not None:
                on_progress(samples.stop, trace.n_samples)
    n = max(trace.n_samples, 1)
    return _result(tot, trace, mapping, net, chip, n, n_steps, dict(model=model, chip=chip.name,
                   placement=mapping.placement, semantics=semantics, multicast=multicast))


def _result(tot: _Totals, trace: EventTrace, mapping: Mapping, net: Network, chip: ChipSpec, n: int, n_steps: int,
            names: dict) -> SimResult:
    """The SimResult of the totals: scalars now, the DataFrames (ResultTables) when first read."""
    cols = tot.sample_columns(trace)
    latency_s = float(np.mean(cols["latency_s"])) if trace.n_samples else 0.0
    k = {name: v / n for name, v in tot.core.items()}
    # from the per-sample values, in sample order: the same bits whatever batch_samples (per-core sums over batches
    # are added in another order at another batch size), and equal to the samples table's mean
    breakdown = {c: float(np.sum(tot.sample[tot.row[c]]) / n) for c in ENERGY_COMPONENTS}

    def build() -> dict[str, pd.DataFrame]:
        cores, pops, actions = _tables(tot, mapping, n, latency_s)
        return {"samples": tot.samples(trace), "populations": pops, "cores": cores, "action_counts": actions,
                "links": _links_table(tot, net, chip.router.link_time_s, n, latency_s)}

    return SimResult(
        energy_j=float(sum(breakdown.values())), energy_breakdown_j=breakdown, latency_s=latency_s,
        latency_per_step_s=tot.step_latency / n, synops=float(np.sum(k["synops"])),
        synops_structural=tot.synops_structural / n, synops_nonzero=tot.synops_nonzero / n,
        spikes=float(np.sum(k["spikes"])), messages=float(np.sum(k["messages_out"])),
        hops=float(np.mean(cols["hops"])) if trace.n_samples else 0.0,
        cores_used=mapping.chip_cores_used, tiles_used=mapping.tiles_used, n_samples=trace.n_samples,
        timesteps=trace.n_timesteps, hardware_steps=n_steps, tables=ResultTables(build, cols),
        energy_table=tot.table.as_dict(k.get("synapse_bits_read"), _state_bits(k)),
        static_power_w=float(tot.table.static_w.sum()), **names)


def _state_bits(per_core: dict[str, np.ndarray]) -> np.ndarray | None:
    """State and accumulator bits read and written per core (the neuron memory's bits), None when not counted."""
    parts = [per_core[k] for k in ("state_bits_rw", "accumulator_bits_rw") if k in per_core]
    return sum(parts) if parts else None
