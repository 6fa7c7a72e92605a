"""Export a NetworkGraph (a lowered, possibly compressed model, or an imported Brian2 network) to a NIR graph.

One small converter per population kind (NEURON_EXPORT) and per projection kind (WEIGHT_EXPORT). Time constants
are written in seconds, tau_s = tau_steps * dt. What NIR has no field for (weight bits, storage format, state bits,
graded input, soft reset, the PLIF/sLIF kind, max-pool origin) travels in the nodes' `metadata`, which `nir.write`
and `nir.read` keep; `workloads.exchange.nir_import` reads it back. A max-pool (of binary spikes, an OR) is
written as nir.AvgPool2d + an OR LIF (NIR 1.0 has no max-pool node), which snnTorch's import_from_nir and
SpikingJelly's nir_exchange run with the same spikes and nir.read's type check accepts.

IF is written as a LIF that never leaks (another faithful encoding): nir.IF has no reading both peers share.
snnTorch 1.0's import_from_nir builds snn.Leaky(beta=0.9, reset_mechanism="subtract", init_hidden=False) for an
nir.IF (a leaky neuron whose (spk, mem) tuple feeds the next layer) and asserts r == 1; SpikingJelly's nir_exchange
requires r == 1/dt (forward Euler of dv/dt = R I) and refuses r = 1. A LIF with tau = IF_TAU_STEPS * dt,
r = IF_TAU_STEPS, v_leak = v_reset steps v' = v + (v_leak - v)/1e30 + I, which is v + I in float64 and float32:
snnTorch reads beta = 1 - dt/tau = 1.0 (reset to zero), SpikingJelly LIFNode(tau=1e30, decay_input=False), both
with our IF's spikes for a hard reset to 0; our import reads it back as an IF (nir_neurons.never_leaks). CubaLIF is
nir.CubaLIF with w_in = tau_syn/dt and r = tau_mem/dt (snnTorch's Synaptic and SpikingJelly's CUBALIFNode form).

What a peer cannot express is refused when `to_nir(..., portable=True)`, in one line naming the population: a soft
reset (NIR neurons reset to v_reset; both peers would reset to 0) and v_reset != 0 (snnTorch asserts v_leak == 0
and resets to 0). By default such populations are written with our metadata (exact for our import only).
Both peers fire on v > theta where our nodes fire on v >= theta: spikes differ only where v equals theta exactly.

Hand-written, not SpikingJelly's nir_exchange.export_to_nir / nirtorch.torch_to_nir: those export a torch model,
while this exports the lowered (possibly compressed, BN-folded, low-rank, Brian2-imported) NetworkGraph; they
refuse soft reset and grouped convs and have no BatchNorm, max-pool or per-layer bits.
"""
from __future__ import annotations

import math
from typing import Callable

import nir
import numpy as np

from hwmodels.trace import NetworkGraph, Population, Projection, conv_output_shape
from workloads.exchange.recurrent import has_cycle
from workloads.lowering.naming import fresh_name

#: seconds per timestep used when a caller gives none: snnTorch's NIR export convention (dt = 1e-4 s)
DT_S = 1e-4
#: metadata key of the graph-level producer tag
PRODUCER = "snn_codesign"
#: tau in timesteps of the LIF an IF is written as: its leak 1 - 1/tau is exactly 1 in float64 (and float32)
IF_TAU_STEPS = 1e30


def _full(pop: Population, value: float) -> np.ndarray:
    """A float64 array of the population's shape filled with `value` (NIR neuron parameters are per neuron)."""
    return np.full(pop.shape, float(value), np.float64)


def _reset_fields(pop: Population) -> tuple[np.ndarray, dict]:
    """(v_reset array, extra metadata): a soft reset (v_reset None) is written as v_reset 0 + {"reset": "subtract"}."""
    if pop.neuron.v_reset is None:
        return _full(pop, 0.0), {"reset": "subtract"}
    return _full(pop, pop.neuron.v_reset), {}


def _if(pop: Population, dt: float) -> nir.NIRNode:
    """IF v' = v + I as the LIF that never leaks: tau = IF_TAU_STEPS * dt s, r = IF_TAU_STEPS, v_leak = v_reset
    (0 for a soft reset), metadata kind "IF" (see the module docstring for why not nir.IF)."""
    v_reset, meta = _reset_fields(pop)
    meta.update(kind="IF", tau_steps=IF_TAU_STEPS)
    return nir.LIF(tau=_full(pop, IF_TAU_STEPS * dt), r=_full(pop, IF_TAU_STEPS), v_leak=v_reset.copy(),
                   v_threshold=_full(pop, pop.neuron.threshold), v_reset=v_reset, metadata=meta)


def _lif(pop: Population, dt: float) -> nir.NIRNode:
    """LIF family: tau_s = tau * dt; r = 1 when the input decays (SpikingJelly decay_input=True), r = tau (in
    timesteps, as snnTorch writes it) when it does not; v_leak = the potential the leak pulls to (v_reset, or 0 for a
    soft reset). Forward Euler with step dt then gives back SpikingJelly's H = V + (X - (V - V_reset)) / tau."""
    n = pop.neuron
    v_reset, meta = _reset_fields(pop)
    meta.update(kind=n.kind, tau_steps=float(n.tau))  # tau_steps: exact tau back despite tau * dt / dt rounding
    r = 1.0 if n.decay_input else n.tau
    return nir.LIF(tau=_full(pop, n.tau * dt), r=_full(pop, r), v_leak=v_reset.copy(),
                   v_threshold=_full(pop, n.threshold), v_reset=v_reset, metadata=meta)


def _cubalif(pop: Population, dt: float) -> nir.NIRNode:
    """CubaLIF (I' = I - I/tau_syn + X, H = V - (V - V_reset)/tau + I') -> nir.CubaLIF with tau_syn_s = tau_syn * dt,
    tau_mem_s = tau * dt, w_in = tau_syn and r = tau (in timesteps, as snnTorch writes Synaptic), v_leak = v_reset
    (0 for a soft reset): forward Euler with step dt gives back these equations. Exact steps in metadata."""
    n = pop.neuron
    v_reset, meta = _reset_fields(pop)
    meta.update(kind="CubaLIF", tau_steps=float(n.tau), tau_syn_steps=float(n.tau_syn))
    return nir.CubaLIF(tau_syn=_full(pop, n.tau_syn * dt), tau_mem=_full(pop, n.tau * dt), r=_full(pop, n.tau),
                       v_leak=v_reset.copy(), v_threshold=_full(pop, n.threshold), v_reset=v_reset,
                       w_in=_full(pop, n.tau_syn), metadata=meta)


def _relay(pop: Population, dt: float) -> nir.NIRNode:
    """A non-spiking relay (the rank-r middle of a low-rank layer) forwards its input: a Scale by ones."""
    return nir.Scale(scale=_full(pop, 1.0), metadata={"kind": "relay"})


#: NeuronModel.kind -> fn(population, dt) -> NIR node
NEURON_EXPORT: dict[str, Callable[[Population, float], nir.NIRNode]] = {
    "IF": _if, "LIF": _lif, "PLIF": _lif, "sLIF": _lif, "CubaLIF": _cubalif, "relay": _relay}


def _dense(proj: Projection, src_shape: tuple[int, ...]) -> nir.NIRNode:
    """Dense (n_target, n_source) weights -> nir.Affine (with bias) or nir.Linear (without)."""
    if proj.bias is None:
        return nir.Linear(weight=proj.weight.copy())
    return nir.Affine(weight=proj.weight.copy(), bias=np.asarray(proj.bias, np.float32).copy())


def _conv(proj: Projection, src_shape: tuple[int, ...]) -> nir.NIRNode:
    """Conv -> nir.Conv2d; our per-target-neuron bias must be constant over each output channel (ValueError
    otherwise); no bias is written as zeros plus metadata {"bias": False}."""
    c_out = proj.weight.shape[0]
    meta = {}
    if proj.bias is None:
        bias, meta["bias"] = np.zeros(c_out, np.float32), False
    else:
        per = np.asarray(proj.bias, np.float32).reshape(c_out, -1)
        if np.any(per != per[:, :1]):
            raise ValueError(f"projection {proj.name!r}: conv bias varies within an output channel; NIR Conv2d "
                             "holds one bias per channel")
        bias = per[:, 0].copy()
    node = nir.Conv2d(input_shape=tuple(src_shape[1:]), weight=proj.weight.copy(), stride=proj.stride,
                      padding=proj.padding, dilation=proj.dilation, groups=proj.groups, bias=bias, metadata=meta)
    node.input_type = {"input": np.array(src_shape)}  # nir 1.0.8 takes C_in = weight.shape[1], ignoring groups
    # and the kernel height for both kernel sides: a (1, k) kernel (a Conv1d held as (C, 1, L)) failed the type check
    node.output_type = {"output": np.array(conv_output_shape(proj, tuple(src_shape)))}
    return node


def _avgpool(proj: Projection, src_shape: tuple[int, ...]) -> nir.NIRNode:
    """A max-pool projection (depthwise all-ones conv, lowering's OR) -> nir.AvgPool2d, which NIR readers (snnTorch,
    SpikingJelly) know; NIR 1.0 has no max-pool node, and a grouped conv fails nir's type check. ValueError for a
    dilated pool (AvgPool2d has no dilation)."""
    if tuple(proj.dilation) != (1, 1):
        raise ValueError(f"projection {proj.name!r}: a dilated max-pool has no NIR AvgPool2d form")
    return nir.AvgPool2d(kernel_size=np.array(proj.weight.shape[2:]), stride=np.array(proj.stride),
                         padding=np.array(proj.padding), metadata={"origin": "MaxPool2d"})


#: lowering origins of max-pool projections: a MaxPool1d's (1, k) window on its (C, 1, L) population is written as
#: the same nir.AvgPool2d + OR neuron as a MaxPool2d's
MAXPOOL_ORIGINS = ("MaxPool1d", "MaxPool2d")
#: Projection.kind -> fn(projection, source shape) -> NIR node
WEIGHT_EXPORT: dict[str, Callable[[Projection, tuple[int, ...]], nir.NIRNode]] = {"dense": _dense, "conv": _conv}


def _is_readout(graph: NetworkGraph, pop: Population) -> bool:
    """A non-spiking readout (IF with an infinite threshold, as lowering's "output") that feeds nothing."""
    return pop.neuron.kind == "IF" and np.isinf(pop.neuron.threshold) and not graph.out_projections(pop.name)


def _maxpool_in(graph: NetworkGraph, pop: Population) -> Projection | None:
    """The max-pool projection feeding `pop` (lowering's OR population), else None."""
    origin = graph.metadata.get("origin", {})
    ins = [p for p in graph.in_projections(pop.name) if origin.get(p.name) in MAXPOOL_ORIGINS]
    return ins[0] if ins else None


def _or_neuron(pop: Population, proj: Projection, dt: float) -> nir.NIRNode:
    """The OR neuron of a max-pool of binary spikes after nir.AvgPool2d: LIF(tau 2 dt, r 2, threshold 1/(2 k^2)).
    Its potential is 0 at every step start (any input fires and resets it), so it spikes iff the window holds a
    spike; snnTorch (beta 0.5, no input scaling) and SpikingJelly (tau 2, decay_input False) read it exactly."""
    k = int(np.prod(proj.weight.shape[2:]))
    return nir.LIF(tau=_full(pop, 2 * dt), r=_full(pop, 2.0), v_leak=_full(pop, 0.0),
                   v_threshold=_full(pop, 0.5 / k), v_reset=_full(pop, 0.0),
                   metadata={"kind": "IF", "origin": "MaxPool2d", "tau_steps": 2.0})


def _check_portable(pop: Population) -> None:
    """ValueError naming `pop` when snnTorch's import_from_nir or SpikingJelly's nir_exchange would not run its
    neurons as ours: a soft reset (NIR neurons reset to v_reset) or v_reset != 0 (snnTorch resets to 0)."""
    if pop.neuron.v_reset is None:
        raise ValueError(f"population {pop.name!r}: a soft reset has no NIR form (snnTorch's import_from_nir and "
                         "SpikingJelly's nir_exchange reset to v_reset); not portable")
    if pop.neuron.v_reset != 0.0:
        raise ValueError(f"population {pop.name!r}: v_reset {pop.neuron.v_reset:g} != 0 (snnTorch's import_from_nir "
                         "resets to 0 and asserts v_leak == 0); not portable")


def _population_node(graph: NetworkGraph, pop: Population, dt: float, portable: bool = False) -> nir.NIRNode:
    """The NIR node of one population (Input, Output for a readout, the OR neuron of a max-pool, else its neuron
    converter; portable: _check_portable first)."""
    pool = _maxpool_in(graph, pop)
    if pool is not None:
        node = _or_neuron(pop, pool, dt)
        node.metadata["state_bits"] = int(pop.state_bits)
        return node
    if pop.is_input:
        return nir.Input(input_type=np.array(pop.shape), metadata={"graded": bool(pop.graded)})
    if _is_readout(graph, pop):
        return nir.Output(output_type=np.array(pop.shape))
    if pop.graded and pop.neuron.kind != "relay":
        raise ValueError(f"population {pop.name!r}: graded (ternary) spikes have no NIR equivalent")
    if pop.neuron.kind not in NEURON_EXPORT:
        raise ValueError(f"population {pop.name!r}: neuron kind {pop.neuron.kind!r} is not one of "
                         f"{', '.join(NEURON_EXPORT)}")
    qlif = _is_qlif(graph, pop)
    if portable and pop.neuron.kind != "relay":
        _check_portable(pop)
        if qlif:
            raise ValueError(f"population {pop.name!r}: a QLIF neuron (its potential set to Q_b(tanh V) after every "
                             "reset) has no NIR form a peer runs; not portable")
    node = NEURON_EXPORT[pop.neuron.kind](pop, dt)
    node.metadata["state_bits"] = int(pop.state_bits)
    if qlif:  # nir_workload rebuilds the QLIFNode from it; NIR's LIF alone would run without the state quantizer
        node.metadata["qlif_bits"] = int(pop.state_bits)
    return node


def _is_qlif(graph: NetworkGraph, pop: Population) -> bool:
    """True when lowering recorded `pop` as made by a workloads.neurons.QLIFNode (Q-SNN; its layer tags
    "<index>:QLIFNode"), whose NeuronModel is a LIF with state_bits = the node's bits."""
    tags = graph.metadata.get("layers", {}).get("populations", {}).get(pop.name) or []
    return pop.neuron.kind == "LIF" and any(str(t).endswith(":QLIFNode") for t in tags)


def _projection_nodes(graph: NetworkGraph, proj: Projection,
                      used: set[str]) -> tuple[dict[str, nir.NIRNode], list[tuple]]:
    """Nodes and edges of one projection: [Flatten ->] weight node, wired from source to target population (the
    Flatten named by fresh_name against the node names in `used`, which it joins)."""
    src = graph.populations[proj.source]
    if getattr(proj, "gate", None) is not None:
        raise ValueError(f"projection {proj.name!r}: gated (spike-valued, e.g. attention) weights have no NIR "
                         "equivalent")
    origin = graph.metadata.get("origin", {}).get(proj.name)
    maxpool = origin in MAXPOOL_ORIGINS
    node = _avgpool(proj, src.shape) if maxpool else WEIGHT_EXPORT[proj.kind](proj, src.shape)
    node.metadata.update({"weight_bits": int(proj.weight_bits), "storage": proj.storage})
    if origin and not maxpool:  # a MaxPool1d's pool is the AvgPool2d of its (C, 1, L) population: "MaxPool2d"
        node.metadata["origin"] = str(origin)
    nodes, head = {proj.name: node}, proj.source
    if proj.kind == "dense" and len(src.shape) > 1:
        flat = fresh_name(f"{proj.name}_flatten", used)
        nodes[flat] = nir.Flatten(input_type={"input": np.array(src.shape)}, start_dim=0, end_dim=-1)
        head = flat
        return nodes, [(proj.source, flat), (flat, proj.name), (proj.name, proj.target)]
    return nodes, [(head, proj.name), (proj.name, proj.target)]


def _check_names(graph: NetworkGraph) -> set[str]:
    """The names of the graph's populations and projections (the NIR nodes named like them); ValueError naming
    the first that cannot be a node name of a .nir file (an HDF5 group: empty, ".", "..", a "/" or a control
    character) or that a population and a projection share (one node each)."""
    used: set[str] = set()
    for what, names in (("population", list(graph.populations)), ("projection", [p.name for p in graph.projections])):
        for name in names:
            if not name or name in (".", "..") or "/" in name or not name.isprintable():
                raise ValueError(f"{what} name {name!r} cannot name a NIR node (an HDF5 group): use a non-empty "
                                 "name without '/' or control characters, other than '.' and '..'")
            if name in used:
                raise ValueError(f"{what} name {name!r} is also a population's name; NIR has one node per name")
            used.add(name)
    return used


def _check_finite_times(node: nir.NIRNode, name: str, dt: float) -> None:
    """ValueError when a time constant or factor of a population's node (tau * dt and the like) is not finite:
    a dt so large that the product overflows float64."""
    for field in ("tau", "tau_mem", "tau_syn", "r", "w_in"):
        value = getattr(node, field, None)
        if value is not None and not np.isfinite(np.asarray(value, np.float64)).all():
            raise ValueError(f"dt: {dt!r} s makes {field} of population {name!r} overflow (not finite); use a "
                             "smaller dt")


def to_nir(graph: NetworkGraph, dt: float = DT_S, portable: bool = False) -> nir.NIRGraph:
    """NIR graph of `graph`: one node per population and per projection, named like them.

    Populations: "input" kind -> nir.Input; IF -> nir.LIF that never leaks (tau_s = IF_TAU_STEPS * dt,
    r = IF_TAU_STEPS, v_leak = v_reset; module docstring); LIF/PLIF/sLIF -> nir.LIF (tau_s = tau * dt,
    r = 1 if decay_input else tau, v_leak = v_reset); CubaLIF -> nir.CubaLIF (tau_syn_s = tau_syn * dt,
    tau_mem_s = tau * dt, w_in = tau_syn, r = tau); relay -> nir.Scale(1); a trailing non-spiking readout
    (IF, threshold inf, no out-projection) -> nir.Output; every other population without out-projections is
    followed by an Output node "<name>_out". Projections: dense -> nir.Affine / nir.Linear (a nir.Flatten
    "<name>_flatten" first when the source is not 1-D), conv -> nir.Conv2d. An added node whose name a population
    or projection already has is named "<name>_2" (_3, ...; workloads.lowering.naming.fresh_name). Recurrent
    graphs export too (NIR edges may form cycles). dt: seconds per timestep (finite, > 0), stored in
    graph.metadata["dt"]. portable: refuse populations snnTorch's or SpikingJelly's NIR import would run with
    other spikes (soft reset, v_reset != 0).
    Raises ValueError for a dt that is not finite and > 0 or makes a time constant overflow, a population or
    projection name that cannot name a NIR node ("/", control characters, "." or "..", empty) or that a
    population and a projection share, an unknown neuron kind, graded (ternary) spiking populations, gated
    (attention) projections, a conv bias that varies within a channel, or (portable) a population named by
    _check_portable.
    """
    real = isinstance(dt, (int, float, np.integer, np.floating)) and not isinstance(dt, (bool, np.bool_))
    if not (real and math.isfinite(dt) and dt > 0):  # numpy scalars (np.float32(1e-3)) are numbers; True is not
        raise ValueError(f"dt: {dt!r} must be a finite number of seconds > 0")
    dt = float(dt)
    used = _check_names(graph)
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    for pop in graph.populations.values():
        nodes[pop.name] = _population_node(graph, pop, float(dt), portable)
        _check_finite_times(nodes[pop.name], pop.name, dt)
        if not pop.is_input and not graph.out_projections(pop.name) and not _is_readout(graph, pop):
            out = fresh_name(f"{pop.name}_out", used)
            nodes[out] = nir.Output(output_type=np.array(pop.shape))
            edges.append((pop.name, out))
    for proj in graph.projections:
        more_nodes, more_edges = _projection_nodes(graph, proj, used)
        nodes.update(more_nodes)
        edges.extend(more_edges)
    meta = {"dt": float(dt), "name": graph.name, "producer": PRODUCER}
    recurrent = has_cycle(list(graph.populations), graph.projections)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=not recurrent)
