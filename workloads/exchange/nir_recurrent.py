"""Recurrent NIR graphs: a neuron whose spikes come back into its own input through one Affine/Linear node (snnTorch's
RLeaky / RSynaptic with all_to_all, exported as lif -> w_rec -> lif) or one Conv2d node (RLeaky with conv2d_channels
and kernel_size: a (C, H, W) neuron). The loop is cut from the graph before import and the neuron is wrapped in
SpikingJelly's LinearRecurrentContainer, or for a Conv2d in workloads.exchange.conv_recurrent's
ConvRecurrentContainer, which `workloads.lower` turns into a self-projection "rec<k>" (dense or conv) with a
one-timestep delay (workloads.lowering.rules_recurrent, workloads.exchange.conv_recurrent).

Timing: NIR leaves a loop's delay open; snnTorch (and the container) feed back the spikes of the previous timestep,
i[t] = I_ff[t] + W_rec s[t-1] + b_rec with s[-1] = 0, so the bias b_rec acts from t = 0 on.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.exchange.conv_recurrent import ConvRecurrentContainer
from workloads.exchange.nir_chain import meta, pair

#: neuron node types a loop may close on, and weight node types that may carry it
NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)
WEIGHTS = (nir.Affine, nir.Linear, nir.Conv2d)


def split_loops(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, dict[str, tuple[str, nir.NIRNode]]]:
    """(graph without its loops, {neuron key: (weight key, weight node)}): a loop is a weight node whose only input
    and only output is the same neuron node. Other cycles stay (topo_order refuses them). Raises ValueError for a
    neuron with two loops."""
    loops: dict[str, tuple[str, nir.NIRNode]] = {}
    for key, node in graph.nodes.items():
        ins = [a for a, b in graph.edges if b == key]
        outs = [b for a, b in graph.edges if a == key]
        if not (isinstance(node, WEIGHTS) and len(ins) == 1 and outs == ins
                and isinstance(graph.nodes[ins[0]], NEURONS)):
            continue
        if ins[0] in loops:
            raise ValueError(f"node {ins[0]!r}: two recurrent loops ({loops[ins[0]][0]!r}, {key!r}); one is imported")
        loops[ins[0]] = (key, node)
    if not loops:
        return graph, loops
    cut = {w for w, _ in loops.values()}
    nodes = {k: n for k, n in graph.nodes.items() if k not in cut}
    edges = [(a, b) for a, b in graph.edges if a not in cut and b not in cut]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False), loops


def wrap(module: nn.Module, key: str, shape: tuple[int, ...], loop: tuple[str, nir.NIRNode],
         gain: float) -> nn.Module:
    """The recurrent container around neuron `module` (node `key`, per-sample `shape`); gain: the neuron's input
    gain already folded into the feed-forward weights, applied to the loop's weights and bias too. An Affine/Linear
    loop: LinearRecurrentContainer with rc = [I | gain W_rec], bias gain b_rec; raises ValueError unless the neuron
    is flat and the weight is (n, n). A Conv2d loop: conv_wrap."""
    w_key, node = loop
    if isinstance(node, nir.Conv2d):
        return conv_wrap(module, key, shape, loop, gain)
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    n = int(shape[0]) if len(shape) == 1 else -1
    if tuple(w.shape) != (n, n):
        raise ValueError(f"recurrent node {w_key!r}: weight {tuple(w.shape)} must be (n, n) on the flat population "
                         f"of node {key!r} (per-sample shape {shape}); a flat neuron needs an Affine/Linear loop")
    module.step_mode = "s"  # the container steps its node one timestep at a time
    c = layer.LinearRecurrentContainer(module, n, n, bias=True, step_mode="m")
    bias = np.asarray(node.bias).reshape(-1) if isinstance(node, nir.Affine) else np.zeros(n)
    with torch.no_grad():
        c.rc.weight.copy_(torch.cat([torch.eye(n), w * gain], dim=1))
        c.rc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32) * gain)
    return c


def conv_wrap(module: nn.Module, key: str, shape: tuple[int, ...], loop: tuple[str, nir.NIRNode],
              gain: float) -> ConvRecurrentContainer:
    """ConvRecurrentContainer around neuron `module` of per-sample `shape` (C, H, W) with the loop's Conv2d (weight
    and bias times `gain`; a bias of zeros, or metadata {"bias": False}, gives none). Raises ValueError unless the
    conv maps (C, H, W) to itself: C in and out channels, stride 1, padding that keeps H and W."""
    w_key, node = loop
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    groups = int(node.groups)
    pad = node.padding if isinstance(node.padding, str) else pair(node.padding)
    if len(shape) != 3 or w.dim() != 4 or w.shape[0] != shape[0] or w.shape[1] * groups != shape[0]:
        raise ValueError(f"recurrent node {w_key!r}: Conv2d weight {tuple(w.shape)} (groups {groups}) must map the "
                         f"channels of node {key!r} (per-sample shape {shape}) to themselves")
    bias = np.asarray(node.bias, np.float64).reshape(-1)
    has_bias = meta(node, "bias", True) is not False and bool(np.any(bias != 0))
    conv = nn.Conv2d(shape[0], shape[0], tuple(w.shape[2:]), pair(node.stride), pad, pair(node.dilation), groups,
                     bias=has_bias)
    with torch.no_grad():
        conv.weight.copy_(w * gain)
        if has_bias:
            conv.bias.copy_(torch.as_tensor(bias, dtype=torch.float32) * gain)
    out = conv(torch.zeros((1,) + tuple(shape))).shape[1:] if pair(node.stride) == (1, 1) else None
    if tuple(out or ()) != tuple(shape):
        raise ValueError(f"recurrent node {w_key!r}: Conv2d (stride {pair(node.stride)}, padding {pad}) does not "
                         f"keep the shape {shape} of node {key!r}")
    module.step_mode = "s"  # the container steps its node one timestep at a time
    return ConvRecurrentContainer(module, conv, step_mode="m")
