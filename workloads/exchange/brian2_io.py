"""Import a Brian2 network (NeuronGroups, PoissonGroups/SpikeGeneratorGroups, Synapses, SpikeMonitors) as a
NetworkGraph + EventTrace, so computational-neuroscience networks run on the hardware model.

Groups become populations (subgroups map into their parent group), Synapses dense weight matrices over the parent
groups (stored "sparse" by default: one synapse per non-zero weight), SpikeMonitors the trace, with spike times
binned into timesteps of the groups' dt. A recurrent network gives a `RecurrentGraph`.
"""
from __future__ import annotations

import re
from typing import Iterable

import brian2
import numpy as np

from hwmodels.trace import STORAGE_FORMATS, EventTrace, NetworkGraph, NeuronModel, Population, Projection
from workloads.exchange.brian2_neurons import neuron_model
from workloads.exchange.recurrent import make_graph

#: Brian2 group types whose spikes are given, not computed: input populations
INPUT_GROUPS = (brian2.PoissonGroup, brian2.SpikeGeneratorGroup)
#: Brian2 group types that are populations
GROUP_TYPES = (brian2.NeuronGroup,) + INPUT_GROUPS


def _parent(group) -> tuple[object, int]:
    """(root group, index offset) of a group or (nested) Subgroup."""
    offset = 0
    while isinstance(group, brian2.Subgroup):
        offset += int(group.start)
        group = group.source
    return group, offset


def _objects(source) -> list:
    """Brian2 objects of a Network, or of an iterable (nested lists/tuples/dicts allowed)."""
    if isinstance(source, brian2.Network):
        return list(source.objects)
    if isinstance(source, dict):
        source = source.values()
    out = []
    for obj in source:
        out.extend(_objects(obj) if isinstance(obj, (list, tuple, set, dict)) else [obj])
    return out


def _natural(name: str) -> tuple:
    """Sort key: Brian2's "neurongroup_10" after "neurongroup_2"."""
    m = re.match(r"^(.*?)(?:_(\d+))?$", name)
    return m.group(1), int(m.group(2) or 0)


def _groups(objs: list) -> list:
    """Root groups: listed ones plus those referenced by Synapses and monitors; inputs first, natural name order."""
    found = {}
    for obj in objs:
        refs = [obj] if isinstance(obj, GROUP_TYPES + (brian2.Subgroup,)) else []
        if isinstance(obj, brian2.Synapses):
            refs = [obj.source, obj.target]
        elif isinstance(obj, brian2.SpikeMonitor):
            refs = [obj.source]
        for ref in refs:
            root = _parent(ref)[0]
            if isinstance(root, GROUP_TYPES):
                found[root.name] = root
    return sorted(found.values(), key=lambda g: (not isinstance(g, INPUT_GROUPS), _natural(g.name)))


def _dt(groups: list) -> float:
    """The groups' common time step in seconds; ValueError when they differ."""
    dts = {float(g.clock.dt_) for g in groups}
    if len(dts) != 1:
        raise ValueError(f"groups: time steps {sorted(dts)} s differ; all groups must share one dt")
    return dts.pop()


def _population(group, dt: float, namespace: dict | None, notes: dict) -> Population:
    if isinstance(group, INPUT_GROUPS):
        return Population(group.name, (len(group),), NeuronModel("input"))
    model, note = neuron_model(group, dt, namespace)
    if note:
        notes[group.name] = note
    return Population(group.name, (len(group),), model)


def _spike_pathway(syn, notes: dict) -> bool:
    """True when Synapses `syn` has the one on_pre pathway a projection models (an on_post pathway, e.g. STDP,
    is noted: its updates are not counted); False (with a note) when it has none (a gap junction or other
    summed-variable coupling: no spike events, no projection). Raises ValueError naming it for several on_pre
    pathways (named ones), whose events and delays differ per pathway."""
    pre = [path.objname for path in syn._pathways if path.prepost == "pre"]
    post = [path.objname for path in syn._pathways if path.prepost == "post"]
    if len(pre) > 1:
        raise ValueError(f"Synapses {syn.name!r}: on_pre pathways {pre} are not supported; a projection is one "
                         "on_pre pathway (on_pre='...')")
    if post:
        notes[syn.name] = "its on_post pathway (e.g. plasticity) is not counted"
    if not pre:
        notes[syn.name] = ("no on_pre pathway (e.g. a gap junction or summed variable): it carries no spike "
                           "events and is not a projection; the chip cost of its coupling is not counted")
    return bool(pre)


def _projection(syn, weight: str, weight_bits: int, storage: str, notes: dict) -> Projection:
    """Dense (n_target, n_source) weights of one Synapses object over the parent groups; duplicate (i, j) pairs
    add up, synapses with weight 0 vanish from the non-zero count (both noted)."""
    src, _ = _parent(syn.source)
    tgt, _ = _parent(syn.target)
    pre = np.asarray(syn.variables["_presynaptic_idx"].get_value(), np.int64)
    post = np.asarray(syn.variables["_postsynaptic_idx"].get_value(), np.int64)
    said = []
    if isinstance(syn.variables.get(weight), brian2.core.variables.Subexpression):  # e.g. "w = 0.3*(i+1) : 1"
        w = np.broadcast_to(np.asarray(getattr(syn, f"{weight}_")[:], np.float64), pre.shape)
    elif weight in syn.variables:
        w = np.broadcast_to(np.asarray(syn.variables[weight].get_value(), np.float64), pre.shape)
    else:
        w = np.ones(pre.shape)
        said.append(f"no synaptic variable {weight!r}; weight 1.0 used")
    mat = np.zeros((len(tgt), len(src)), np.float64)
    np.add.at(mat, (post, pre), w)
    if len(np.unique(pre * len(tgt) + post)) < len(pre):
        said.append("several synapses join one (i, j) pair; their weights are summed")
    if np.any(w == 0):
        said.append(f"{int(np.sum(w == 0))} synapses have weight 0 and are not counted")
    if np.any(np.asarray(syn.delay_) != 0):
        said.append("synaptic delays are ignored")
    if said:
        notes[syn.name] = "; ".join([notes[syn.name]] * (syn.name in notes) + said)
    return Projection(syn.name, src.name, tgt.name, "dense", mat.astype(np.float32), weight_bits=weight_bits,
                      storage=storage)


def _spike_rows(monitors: list, pops: list[Population], dt: float, n_steps: int):
    """(row, neuron index) of every recorded spike, unique and sorted; row = (sample * n_t + t) * n_pops + p."""
    index = {p.name: i for i, p in enumerate(pops)}
    rows, idx = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for mon in monitors:
        root, offset = _parent(mon.source)
        if mon.record is not True:
            raise ValueError(f"SpikeMonitor {mon.name!r}: record={mon.record!r}; it must record every neuron")
        step = np.rint(np.asarray(mon.t_) / dt).astype(np.int64)
        keep = step < n_steps
        step, i = step[keep], np.asarray(mon.i, np.int64)[keep] + offset
        rows.append(step * len(pops) + index[root.name])  # sample * n_t + t == step
        idx.append(i)
    width = max(p.size for p in pops)
    key = np.unique(np.concatenate(rows) * width + np.concatenate(idx))
    return key // width, key % width


def _monitored(monitors: list) -> set[str]:
    """Names of the groups the SpikeMonitors record; ValueError naming a group whose monitors (on Subgroups) leave
    some of its neurons unrecorded, whose spikes and synaptic events would be missing."""
    covered: dict[str, tuple[object, np.ndarray]] = {}
    for mon in monitors:
        root, offset = _parent(mon.source)
        seen = covered.setdefault(root.name, (mon, np.zeros(len(root), bool)))[1]
        seen[offset:offset + len(mon.source)] = True
    for name, (mon, seen) in covered.items():
        if not seen.all():
            raise ValueError(f"SpikeMonitor {mon.name!r}: the monitors of {name!r} record {int(seen.sum())} of its "
                             f"{seen.size} neurons; monitor the whole group (or Subgroups covering it)")
    return set(covered)


def _trace(monitors: list, pops: list[Population], projs: list[Projection], dt: float, duration_s: float,
           sample_duration: float | None) -> EventTrace:
    """EventTrace of the monitors' spikes, split into samples of `sample_duration` seconds (None: one sample)."""
    if not duration_s > 0:
        raise ValueError(f"duration: {duration_s} s; the network has not run yet (run it, then import it)")
    n_steps = int(round(duration_s / dt))
    n_t = n_steps if sample_duration is None else int(round(sample_duration / dt))
    if n_t < 1 or n_steps % n_t:
        raise ValueError(f"sample_duration: {sample_duration} s must divide the run time {duration_s} s into "
                         f"whole samples of >= 1 step (dt {dt} s)")
    monitored = _monitored(monitors)
    for proj in projs:
        if proj.source not in monitored:
            raise ValueError(f"population {proj.source!r}: feeds {proj.name!r} but has no SpikeMonitor; add one "
                             "so its synaptic events are counted")
    rows, idx = _spike_rows(monitors, pops, dt, n_steps)
    n_s = n_steps // n_t
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_s * n_t * len(pops)))])
    return EventTrace([p.name for p in pops], n_s, n_t, offsets, idx.astype(np.int32))


def from_brian2(source: brian2.Network | Iterable, *, namespace: dict | None = None, weight: str = "w",
                weight_bits: int = 8, storage: str = "sparse", sample_duration: float | None = None,
                duration: float | None = None, name: str = "brian2") -> tuple[NetworkGraph, EventTrace]:
    """NetworkGraph + EventTrace of a Brian2 network after it ran.

    source: a brian2.Network, or an iterable of its objects (groups, Synapses, SpikeMonitors; other objects such as
        StateMonitors are ignored, PoissonInput is noted as unrepresented drive). Populations: every NeuronGroup
        (neuron model from `brian2_neurons.neuron_model`), PoissonGroup and SpikeGeneratorGroup (kind "input"),
        named as in Brian2, shape (N,). Projections: one "dense" projection per Synapses, weight[j, i] = the
        synaptic variable `weight` (SI units; absent: 1.0), over parent-group indices.
    namespace: the run namespace for external constants in equations (Brian2 resolves them at run time; give
        e.g. the dict of values you ran with). storage / weight_bits: of every projection.
    duration: seconds simulated (None: the Network's t, or the groups' clock time). sample_duration: seconds per
        sample when the network was run several times for several samples (None: one sample).
    Synapses without an on_pre pathway (gap junctions) are noted and make no projection; several on_pre pathways
    are refused; an on_post pathway is noted and not counted.
    Returns (graph, trace); graph.metadata: "source" "brian2", "dt_s", "synapses" {projection: count},
    "notes" {population/projection: what was approximated}. Raises ValueError for differing group dt, a source
    population without a SpikeMonitor, several on_pre pathways of one Synapses, a partial monitor (record= a
    subset, or monitors of Subgroups that leave neurons of a group out), a network that has not run, bad
    sample_duration, a bad storage format, or a constant of the equations that Brian2 cannot resolve any more
    (pass namespace=).
    """
    if storage not in STORAGE_FORMATS or storage == "conv":
        raise ValueError(f"storage: {storage!r} is not one of dense, sparse, bitmap")
    objs = _objects(source)
    groups = _groups(objs)
    if not groups:
        raise ValueError("source: no NeuronGroup, PoissonGroup or SpikeGeneratorGroup found")
    dt, notes = _dt(groups), {}
    pops = [_population(g, dt, namespace, notes) for g in groups]
    syns = sorted((o for o in objs if isinstance(o, brian2.Synapses)), key=lambda s: _natural(s.name))
    spiking = [s for s in syns if _spike_pathway(s, notes)]
    projs = [_projection(s, weight, weight_bits, storage, notes) for s in spiking]
    for obj in objs:
        if isinstance(obj, brian2.PoissonInput):
            notes[obj.name] = "PoissonInput drive is not a population; its events are not counted"
    if duration is None:
        duration = float(np.asarray(source.t_ if isinstance(source, brian2.Network) else groups[0].clock.t_))
    monitors = [o for o in objs if isinstance(o, brian2.SpikeMonitor)]
    trace = _trace(monitors, pops, projs, dt, duration, sample_duration)
    meta = {"source": "brian2", "dt_s": dt, "n_timesteps": trace.n_timesteps, "notes": notes,
            "synapses": {s.name: int(len(s)) for s in syns}}
    return make_graph(pops, projs, name, meta), trace
