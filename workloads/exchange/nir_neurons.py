"""Neuron converters of the NIR import (workloads.exchange.nir_import, whose docstring gives the discretisation):
NIR LIF, IF and CubaLIF nodes become SpikingJelly nodes, their input gain and offset folded into the weight layer
before them, wrapped in a recurrent container when the node has a loop (workloads.exchange.nir_recurrent).
"""
from __future__ import annotations

import nir
import numpy as np
from spikingjelly.activation_based import neuron
from torch import nn

from workloads.exchange.nir_chain import Chain, fold, meta, scalar, typed_meta
from workloads.exchange.nir_recurrent import wrap
from workloads.neurons import CubaLIFNode, NeuronOptions, QLIFNode


def never_leaks(tau_steps: float) -> bool:
    """True when the per-step leak factor 1 - 1/tau_steps rounds to exactly 1 in float64 (tau_steps > ~1e16):
    such a LIF (with r = tau_steps, v_leak = v_reset) is an IF in every float computation. to_nir writes IF
    populations that way (workloads.exchange.nir_export)."""
    return 1.0 - 1.0 / float(tau_steps) == 1.0


def _reset(node: nir.NIRNode, key: str) -> float | None:
    return None if meta(node, "reset") == "subtract" else scalar(node, "v_reset", key)


def _threshold(node: nir.NIRNode, key: str, base: float) -> float:
    """v_threshold of `node`; ValueError when it equals the potential `base` a neuron starts and resets at (v_reset,
    0 for a soft reset): NIR fires on v > theta, SpikingJelly on v >= theta, so the import would fire on every
    step at rest where NIR never does."""
    theta = scalar(node, "v_threshold", key)
    if theta == base:
        raise ValueError(f"{type(node).__name__} node {key!r}: v_threshold {theta:g} equals the reset potential "
                         f"{base:g}; NIR fires on v > threshold, the imported neuron on v >= threshold, so it would "
                         "fire on every step at rest")
    return theta


def _neuron_done(st: Chain, key: str, node: nir.NIRNode, module: nn.Module) -> None:
    """Append neuron `module` of node `key` (in a recurrent container when the node has a loop, the loop's weight
    bits and storage going to the container)."""
    loop = st.out.loops.get(key)
    if loop is not None:
        module = wrap(module, key, st.shape, loop, st.in_gain)
    index = st.add(key, module)
    for name, kind in (("weight_bits", int), ("storage", str)):
        if loop is not None and typed_meta(loop[1], name, loop[0], kind) is not None:
            st.out.compression[name][index] = meta(loop[1], name)
    if typed_meta(node, "state_bits", key, int) is not None:
        st.out.compression["state_bits"][index] = meta(node, "state_bits")
    if meta(node, "kind") is not None:
        st.out.kinds[index] = str(meta(node, "kind"))
    st.last_weight = None


def _steps(node: nir.NIRNode, dt: float, key: str, name: str, exact_key: str) -> float:
    """`name` / dt in timesteps: metadata[exact_key] (written by to_nir) when it agrees within float32 rounding
    (1e-6 relative), else snapped to the nearest integer within that rounding (snnTorch writes float32)."""
    x = scalar(node, name, key) / dt
    exact = meta(node, exact_key)
    if exact is not None and np.isclose(float(exact), x, rtol=1e-6, atol=0.0):
        return float(exact)
    return float(round(x)) if abs(x - round(x)) <= 1e-6 * abs(x) else x


def _tau_steps(node: nir.NIRNode, dt: float, key: str, name: str = "tau") -> float:
    """`name` / dt (tau, or a CubaLIF's tau_mem) via _steps with metadata "tau_steps". ValueError if <= 1."""
    x = _steps(node, dt, key, name, "tau_steps")
    if not x > 1.0:
        raise ValueError(f"{type(node).__name__} node {key!r}: {name}/dt = {x:g} timesteps must be > 1 (SpikingJelly "
                         f"LIFNode); pass a smaller dt (now {dt:g} s)")
    return x


def lif(st: Chain, key: str, node: nir.LIF) -> None:
    """NIR LIF -> LIFNode (decay_input when r != tau/dt or r == 1; gain and offset folded), or IFNode when it
    never leaks (never_leaks, r = tau/dt, v_leak = v_reset) and is not marked another kind: to_nir's form of IF.
    ValueError for tau/dt <= 1 or parameters that vary across neurons."""
    if maxpool_neuron(st, key, node):
        return
    tau = _tau_steps(node, st.out.dt, key)
    r, v_leak, v_reset = scalar(node, "r", key), scalar(node, "v_leak", key), _reset(node, key)
    base = 0.0 if v_reset is None else v_reset
    decay_input = not np.isclose(r, tau, rtol=1e-6, atol=0.0) or np.isclose(r, 1.0, rtol=1e-9, atol=0.0)
    if never_leaks(tau) and not decay_input and v_leak == base and meta(node, "kind") in (None, "IF"):
        fold(st, key, 1.0, 0.0)
        _neuron_done(st, key, node, neuron.IFNode(v_threshold=_threshold(node, key, base), v_reset=v_reset,
                                                  step_mode="m"))
        return
    if decay_input:
        fold(st, key, r, v_leak - base)
    else:
        fold(st, key, 1.0, (v_leak - base) / tau)
    bits = typed_meta(node, "qlif_bits", key, int)
    if bits is not None:
        _neuron_done(st, key, node, _qlif(node, key, tau, bool(decay_input), v_reset, bits))
        return
    _neuron_done(st, key, node, neuron.LIFNode(tau=tau, decay_input=bool(decay_input),
                                               v_threshold=_threshold(node, key, base), v_reset=v_reset,
                                               step_mode="m"))


def _qlif(node: nir.LIF, key: str, tau: float, decay_input: bool, v_reset: float | None, bits: int) -> nn.Module:
    """The workloads.neurons.QLIFNode that to_nir marked (metadata qlif_bits: its state bits): H = (1 - 1/tau) V +
    X, the potential set to Q_b(tanh V) after every reset, as the LIF node alone would not. ValueError when the
    node is not a QLIF's form (input decay, or a hard reset to a potential other than 0)."""
    if decay_input or v_reset not in (None, 0.0) or not 1 <= bits <= 32:
        raise ValueError(f"LIF node {key!r}: metadata qlif_bits {bits} marks a QLIF neuron, which has no input decay "
                         "(r = tau/dt), resets to 0 or softly, and holds 1-32 state bits")
    options = NeuronOptions(reset="soft" if v_reset is None else "hard", bits=bits)
    return QLIFNode(tau, _threshold(node, key, 0.0), options)


def if_(st: Chain, key: str, node: nir.IF) -> None:
    """NIR IF dv/dt = R I -> IFNode, v' = v + g I with g = 1 when r = 1/dt (forward Euler with step dt, as
    SpikingJelly's export writes it), else g = r (the per-step r of Sinabs and Norse, usually 1)."""
    if maxpool_neuron(st, key, node):
        return
    r = scalar(node, "r", key)
    fold(st, key, 1.0 if np.isclose(r * st.out.dt, 1.0, rtol=1e-6, atol=0.0) else r, 0.0)
    v_reset = _reset(node, key)
    _neuron_done(st, key, node, neuron.IFNode(v_threshold=_threshold(node, key, 0.0 if v_reset is None else v_reset),
                                              v_reset=v_reset, step_mode="m"))


def cubalif(st: Chain, key: str, node: nir.CubaLIF) -> None:
    """CubaLIF: I' = I + dt/tau_syn (w_in x - I), then the LIF equation on R I'. With tau_syn = dt (snnTorch's
    Synaptic with alpha 0) I' = w_in x holds no memory and the node is exactly a LIF with input gain w_in * R,
    costing what a LIF costs (unless to_nir marked it kind "CubaLIF"). A longer tau_syn keeps the current as a
    second state: workloads.neurons.CubaLIFNode (hwmodels kind "CubaLIF", two state variables per neuron), the
    gains folded into the weight layer; tau_syn/dt from metadata "tau_syn_steps" when to_nir wrote it.
    ValueError for v_leak != v_reset (0 with a soft reset): a constant drive of v behind the current filter
    cannot be folded into the weights."""
    syn = _steps(node, st.out.dt, key, "tau_syn", "tau_syn_steps")
    if syn == 1.0 and meta(node, "kind") != "CubaLIF":
        w_in = scalar(node, "w_in", key)
        as_lif = nir.LIF(tau=node.tau_mem, r=np.asarray(node.r) * w_in, v_leak=node.v_leak,
                         v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=node.metadata)
        lif(st, key, as_lif)
        return
    if not syn >= 1.0:
        raise ValueError(f"CubaLIF node {key!r}: tau_syn/dt = {syn:g} timesteps must be >= 1; pass a smaller dt "
                         f"(now {st.out.dt:g} s)")
    mem, v_reset = _tau_steps(node, st.out.dt, key, "tau_mem"), _reset(node, key)
    v_leak = scalar(node, "v_leak", key)
    if v_leak != (0.0 if v_reset is None else v_reset):
        raise ValueError(f"CubaLIF node {key!r}: v_leak {v_leak:g} != v_reset {v_reset}: a constant drive of the "
                         "membrane behind the synaptic current is not imported")
    fold(st, key, _unit_gain(scalar(node, "w_in", key), syn) * _unit_gain(scalar(node, "r", key), mem), 0.0)
    _neuron_done(st, key, node, CubaLIFNode(syn, mem, _threshold(node, key, 0.0 if v_reset is None else v_reset),
                                            v_reset))


def _unit_gain(factor: float, steps: float) -> float:
    """factor / steps (w_in dt/tau_syn or R dt/tau_mem); exactly 1 when factor equals steps within float32
    rounding (snnTorch's export: w_in = tau_syn/dt, R = tau_mem/dt)."""
    return 1.0 if np.isclose(factor, steps, rtol=1e-6, atol=0.0) else factor / steps


def maxpool_neuron(st: Chain, key: str, node: nir.NIRNode) -> bool:
    """True when `node` is the OR neuron of a max-pool written by to_nir (after an AvgPool2d: a LIF marked
    origin MaxPool2d; in older files, after a grouped conv: IF threshold 1), already emitted. ValueError when
    a max-pool is followed by another node or its OR neuron has a loop."""
    if st.maxpool is None:
        return False
    if key in st.out.loops:
        raise ValueError(f"node {key!r}: the OR neuron of max-pool {st.maxpool!r} cannot have a recurrent loop")
    legacy = isinstance(node, nir.IF) and scalar(node, "v_threshold", key) == 1.0
    if not (legacy or meta(node, "origin") == "MaxPool2d"):
        raise ValueError(f"node {key!r}: the max-pool {st.maxpool!r} must be followed by its OR neuron")
    st.maxpool = None
    return True
