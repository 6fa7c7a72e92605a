"""Build a SpikingJelly multi-step nn.Sequential from a chain-shaped NIR graph (an fx.GraphModule for graphs with
branches and residual adds, workloads.exchange.nir_dag), so `workloads.lower` turns it into a NetworkGraph +
EventTrace. One small converter per NIR node type (IMPORTERS; neurons in workloads.exchange.nir_neurons). Nested
subgraphs are inlined and a batch dimension in the Input shape dropped first (workloads.exchange.nir_graph). A
neuron with a recurrent loop through one Affine/Linear (snnTorch's RLeaky/RSynaptic) becomes a
LinearRecurrentContainer, one through a Conv2d (RLeaky with conv2d_channels) a ConvRecurrentContainer
(workloads.exchange.nir_recurrent); Conv1d nodes take (C, L) inputs (lowered as (C, 1, L)); a CubaLIF with
tau_syn > dt becomes the two-state workloads.neurons.CubaLIFNode. Not imported: Delay, other cycles.

Hand-written, not SpikingJelly's nir_exchange.import_from_nir: that returns a GraphModule threading a state dict
through single-step wrappers, which lowering cannot trace; it refuses IF with r != 1/dt (Sinabs' and Norse's
per-step r = 1), v_leak != v_reset and soft reset, and drops our metadata (weight bits, storage, low-rank relays,
max-pools). nirtorch is used by the peers' exporters whose graphs this module reads.

Discretisation (dt seconds per timestep): NIR LIF  tau dv/dt = (v_leak - v) + R I  by forward Euler is
v' = v + (dt/tau)(v_leak - v + R I); with tau_steps = tau/dt this is SpikingJelly's LIFNode
H = V + (X - (V - V_reset)) / tau_steps with X = R I + (v_leak - V_reset) (decay_input=True), or, when
R = tau_steps (snnTorch's export), H = V - (V - V_reset) / tau_steps + X with X = I + (v_leak - V_reset) / tau_steps
(decay_input=False). A gain R != 1 and an offset v_leak != V_reset are folded exactly into the weight layer before
the neuron. A LIF with R = tau_steps, v_leak = V_reset and a leak 1 - 1/tau_steps that is 1 in float64 (our
export's IF) is an IFNode. NIR IF  dv/dt = R I  is v' = v + I when R = 1/dt (forward Euler, SpikingJelly's
export), else read per timestep, v' = v + R I (as Sinabs and Norse use it); an IFNode either way.
NIR CubaLIF  tau_syn dI/dt = -I + w_in x,  tau_mem dv/dt = (v_leak - v) + R I  by forward Euler, the membrane step
on the current of the same step (as snnTorch's Synaptic: syn = alpha syn + x, mem = beta mem + syn):
I' = I + (dt/tau_syn)(w_in x - I), v' = v + (dt/tau_mem)(v_leak - v + R I'), i.e. CubaLIFNode on the current
scaled by R dt/tau_mem, with X = (w_in dt/tau_syn)(R dt/tau_mem) x folded into the weight layer.
NIR fires on v > theta, SpikingJelly on H >= theta: they differ only when H equals theta exactly. NIR leaves the
initial state open; the imported model starts at v = v_reset (SpikingJelly's initial state; 0 for a soft reset).
"""
from __future__ import annotations

import math
from typing import Callable

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

from hwmodels.trace import MAX_NEURONS
from workloads.compression.dsp import LowRankConv2d, LowRankLinear
from workloads.exchange.nir_chain import (Chain, NirModel, chain_order, check_size, fold, meta, pair, scalar,
                                           typed_meta)
from workloads.exchange.nir_export import DT_S
from workloads.exchange.nir_dag import build_dag
from workloads.exchange.nir_graph import normalise
from workloads.exchange.nir_neurons import cubalif, if_, lif
from workloads.exchange.nir_recurrent import split_loops


def _delay(st: Chain, key: str, node: nir.Delay) -> None:
    """Refused: the hardware contract (hwmodels.trace Projection) has no axonal delay field."""
    raise ValueError(f"Delay node {key!r}: the chip model has no axonal delay (hwmodels.trace projections carry "
                     "none), so NIR Delay is not imported")


def _weight(st: Chain, key: str, node: nir.NIRNode, module: nn.Module) -> None:
    """Append a weight layer (scaled by a pending sum-pool gain), merging a relay pair into a low-rank layer."""
    if st.gain != 1.0:
        with torch.no_grad():
            module.weight.mul_(st.gain)
        st.gain = 1.0
    if st.relay:
        module = _low_rank(st.layers.pop(), module, key)
        st.relay = False
    index = st.add(key, module)
    for name, kind in (("weight_bits", int), ("storage", str)):
        value = typed_meta(node, name, key, kind)
        if value is not None and index not in st.out.compression[name]:
            st.out.compression[name][index] = value
    st.last_weight = module


def _low_rank(first: nn.Module, second: nn.Module, key: str) -> nn.Module:
    """LowRankLinear / LowRankConv2d holding `first` (B) and `second` (A) weights."""
    if isinstance(first, layer.Linear) and isinstance(second, layer.Linear):
        lr = LowRankLinear(first.in_features, second.out_features, first.out_features, second.bias is not None)
    elif isinstance(first, layer.Conv2d) and isinstance(second, layer.Conv2d) and second.kernel_size == (1, 1):
        template = layer.Conv2d(first.in_channels, second.out_channels, first.kernel_size, first.stride,
                                first.padding, first.dilation, bias=second.bias is not None, step_mode="m")
        lr = LowRankConv2d(template, first.out_channels)
    else:
        raise ValueError(f"node {key!r}: a relay must sit between two Affine/Linear or a Conv2d and a 1x1 Conv2d")
    lr.first.load_state_dict(first.state_dict())
    lr.second.load_state_dict(second.state_dict())
    return lr


def _linear(st: Chain, key: str, node: nir.NIRNode) -> None:
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    if w.dim() != 2 or st.shape != (w.shape[1],):
        raise ValueError(f"{type(node).__name__} node {key!r}: weight {tuple(w.shape)} does not fit the per-sample "
                         f"input shape {st.shape} (a Flatten is needed after a (C, H, W) layer)")
    has_bias = isinstance(node, nir.Affine)
    m = layer.Linear(w.shape[1], w.shape[0], bias=has_bias, step_mode="m")
    with torch.no_grad():
        m.weight.copy_(w)
        if has_bias:
            bias = torch.as_tensor(np.asarray(node.bias), dtype=torch.float32).reshape(-1)
            if bias.numel() != w.shape[0]:
                raise ValueError(f"Affine node {key!r}: bias of {bias.numel()} values does not fit weight "
                                 f"{tuple(w.shape)} ({w.shape[0]} outputs)")
            m.bias.copy_(bias)
    st.shape = (int(w.shape[0]),)
    _weight(st, key, node, m)


def _conv(st: Chain, key: str, node: nir.Conv2d) -> None:
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    pad = node.padding if isinstance(node.padding, str) else pair(node.padding)
    has_bias = meta(node, "bias", True) is not False
    if meta(node, "origin") == "MaxPool2d":
        st.maxpool = key
        st.add(key, layer.MaxPool2d(tuple(w.shape[2:]), pair(node.stride), pad, pair(node.dilation),
                                    step_mode="m"))
        st.shape = _conv_shape(st.shape, w.shape[0], tuple(w.shape[2:]), node, pad)
        return
    m = layer.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), pair(node.stride), pad,
                     pair(node.dilation), int(node.groups), bias=has_bias, step_mode="m")
    with torch.no_grad():
        m.weight.copy_(w)
        if has_bias:
            m.bias.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32).reshape(-1))
    st.shape = _conv_shape(st.shape, w.shape[0], tuple(w.shape[2:]), node, pad)
    _weight(st, key, node, m)


def _conv1d(st: Chain, key: str, node: nir.Conv1d) -> None:
    """Conv1d on a (C, L) signal: layer.Conv1d (lowered as a (C, 1, L) population with a (1, k) kernel)."""
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    groups = int(node.groups)
    if w.dim() != 3 or len(st.shape) != 2 or st.shape[0] != w.shape[1] * groups:
        raise ValueError(f"Conv1d node {key!r}: weight {tuple(w.shape)} (groups {groups}) does not fit the "
                         f"per-sample input shape {st.shape}, expected (C, L)")
    pad = node.padding if isinstance(node.padding, str) else int(np.asarray(node.padding).ravel()[0])
    stride, dilation = (int(np.asarray(v).ravel()[0]) for v in (node.stride, node.dilation))
    has_bias = meta(node, "bias", True) is not False and node.bias is not None
    m = layer.Conv1d(st.shape[0], w.shape[0], w.shape[2], stride, pad, dilation, groups, bias=has_bias,
                     step_mode="m")
    with torch.no_grad():
        m.weight.copy_(w)
        if has_bias:
            m.bias.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32).reshape(-1))
    k, length = int(w.shape[2]), st.shape[1]
    p = 0 if pad == "valid" else pad
    out = length if pad == "same" else (length + 2 * p - dilation * (k - 1) - 1) // stride + 1
    st.shape = (int(w.shape[0]), int(out))
    _weight(st, key, node, m)


def _conv_shape(shape, c_out, k, node, pad) -> tuple[int, ...]:
    """Output (C, H, W) of a conv/pool node on `shape` (torch arithmetic; 'same' keeps H, W)."""
    if pad == "same":
        return (int(c_out),) + tuple(shape[1:])
    p = (0, 0) if pad == "valid" else pad
    s, d = pair(node.stride), pair(getattr(node, "dilation", 1))
    return (int(c_out),) + tuple((shape[1 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))


def _pool(st: Chain, key: str, node: nir.NIRNode) -> None:
    """AvgPool2d -> layer.AvgPool2d (marked origin MaxPool2d by to_nir: layer.MaxPool2d, its OR neuron skipped);
    SumPool2d = AvgPool2d times kh*kw, the factor going into the next weights."""
    k, s, p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
    if meta(node, "origin") == "MaxPool2d":
        st.maxpool = key
        st.add(key, layer.MaxPool2d(k, s, p, step_mode="m"))
    else:
        st.add(key, layer.AvgPool2d(k, s, p, step_mode="m"))
    if isinstance(node, nir.SumPool2d):
        st.gain *= k[0] * k[1]
    st.shape = (st.shape[0],) + tuple((st.shape[1 + i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))


def _flatten(st: Chain, key: str, node: nir.Flatten) -> None:
    """Flatten of all per-sample dims: NIR start_dim 0, or 1 when the node's input type includes the batch axis
    (Sinabs writes torch's dims); a flatten of an already 1-D input is dropped."""
    in_type = (node.input_type or {}).get("input")
    rank = len(st.shape)
    batch_rank = in_type is not None and len(np.atleast_1d(in_type)) == rank + 1
    if int(node.end_dim) != -1 or int(node.start_dim) not in ((0, 1) if batch_rank else (0,)):
        raise ValueError(f"Flatten node {key!r}: only a flatten of all per-sample dims is supported "
                         f"(start_dim 0, end_dim -1), got ({node.start_dim}, {node.end_dim})")
    if rank > 1:
        st.add(key, layer.Flatten(step_mode="m"))
        st.shape = (int(np.prod(st.shape)),)


def _scale(st: Chain, key: str, node: nir.Scale) -> None:
    """A relay Scale (to_nir's low-rank middle) pairs the weight layers around it; another Scale with one value
    folds into the weight layer before it."""
    if meta(node, "kind") == "relay":
        if st.last_weight is None or st.relay:
            raise ValueError(f"Scale node {key!r}: a relay must follow a weight layer")
        st.relay = True
        return
    fold(st, key, scalar(node, "scale", key), 0.0)


def _readout(st: Chain, key: str, node: nir.NIRNode) -> None:
    """A trailing LI / I (non-spiking readout): the weight layer before it becomes lowering's "output", whose
    synaptic events the chip counts; predictions are the argmax of its input current averaged over the timesteps
    (workloads.lower). That is the argmax of an I node's potential at the last timestep when its r is one positive
    value (v = r dt sum I), not of an LI's leaky potential nor under per-neuron or non-positive r: st.out.readout
    says which (graph.metadata["nir"]["readout"])."""
    st.readout = key
    r = np.asarray(node.r, np.float64).ravel()
    exact = isinstance(node, nir.I) and r.size > 0 and bool(np.all(r == r[0])) and r[0] > 0
    how = ("argmax of its potential at the last timestep (= of its summed input current)" if exact else
           "argmax of its input current averaged over the timesteps, not of its potential: its "
           + ("tau, r and v_leak are" if isinstance(node, nir.LI) else "per-neuron or non-positive r is")
           + " not simulated")
    st.out.readout = {"node": key, "type": type(node).__name__, "predictions": how}


def _input(st: Chain, key: str, node: nir.Input) -> None:
    shape = np.atleast_1d(node.input_type["input"])
    if shape.dtype.kind not in "iuf" or not np.array_equal(shape, np.floor(shape)) or (shape < 1).any():
        raise ValueError(f"node {key!r}: input shape {shape.tolist()} must be positive integers")
    st.shape = tuple(int(s) for s in shape)
    if math.prod(st.shape) > MAX_NEURONS:
        raise ValueError(f"node {key!r}: input shape {list(st.shape)} holds {math.prod(st.shape)} neurons; at most "
                         f"{MAX_NEURONS}")
    st.out.input_shape = st.shape
    graded = meta(node, "graded", False)
    if not isinstance(graded, bool):
        raise ValueError(f"node {key!r}: metadata 'graded' is {graded!r}, expected true or false")
    st.out.graded_input = graded


def _output(st: Chain, key: str, node: nir.Output) -> None:
    """The end of the chain."""


#: NIR node type -> converter(state, node key, node)
IMPORTERS: dict[type, Callable[[Chain, str, nir.NIRNode], None]] = {
    nir.Input: _input, nir.Output: _output, nir.Affine: _linear, nir.Linear: _linear, nir.Conv2d: _conv,
    nir.Conv1d: _conv1d, nir.LIF: lif, nir.IF: if_, nir.Flatten: _flatten, nir.SumPool2d: _pool,
    nir.AvgPool2d: _pool, nir.Scale: _scale, nir.LI: _readout, nir.I: _readout, nir.CubaLIF: cubalif,
    nir.Delay: _delay,
}


def _input_shape(graph: nir.NIRGraph) -> tuple[int, ...]:
    node = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    return tuple(int(s) for s in np.atleast_1d(node.input_type["input"]))


def build_model(graph: nir.NIRGraph, dt: float | None = None) -> NirModel:
    """SpikingJelly model of an acyclic NIR graph: a chain, or a DAG with one Input and one Output (see the module
    docstring for the neuron mapping).

    dt: seconds per timestep; None: graph.metadata["dt"] when present, else DT_S (1e-4 s, snnTorch's export).
    Loops neuron -> Affine/Linear or Conv2d -> same neuron are recurrent projections (spikes of t act at t + 1).
    Raises ValueError for an unsupported node type (naming it and the supported ones), another cycle, a
    branching graph without one Output, a Delay, a CubaLIF with v_leak != v_reset, parameters that vary across
    neurons, tau/dt <= 1, a dense loop on a non-flat neuron or a conv loop that does not keep its (C, H, W), nodes
    after a trailing LI/I readout, an edge listed twice, a node off the Input-to-Output paths, per-neuron
    parameters or an Output shape that do not fit the shape the node receives, or an Affine bias that does not fit
    its weight.
    """
    dt = float(dt if dt is not None else (graph.metadata or {}).get("dt", DT_S))
    if not dt > 0:
        raise ValueError(f"dt: {dt} must be > 0 seconds")
    twice = sorted({tuple(e) for e in graph.edges if list(graph.edges).count(e) > 1})
    if twice:
        raise ValueError(f"NIR graph: edge {twice[0]} is listed more than once (an edge adds its source once)")
    graph, loops = split_loops(normalise(graph))
    try:
        order = chain_order(graph)
    except ValueError:
        if not any(isinstance(n, nir.Output) for n in graph.nodes.values()):
            raise
        res = build_dag(graph, NirModel(nn.Sequential(), (), dt, loops=loops), IMPORTERS)
        res.input_shape = _input_shape(graph)
        return res
    st = Chain(NirModel(nn.Sequential(), (), dt, loops=loops))
    for key in order:
        node = graph.nodes[key]
        rule = IMPORTERS.get(type(node))
        if rule is None:
            raise ValueError(f"node {key!r}: NIR type {type(node).__name__} is not supported; supported: "
                             f"{', '.join(sorted(t.__name__ for t in IMPORTERS))}")
        if st.readout is not None and not isinstance(node, nir.Output):
            raise ValueError(f"node {key!r}: only an Output may follow the readout {st.readout!r}")
        rule(st, key, node)
        check_size(key, node, st.shape)
    st.out.model = nn.Sequential(*st.layers)
    return st.out
