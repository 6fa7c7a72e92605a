"""Recurrent NIR graphs: a neuron whose spikes come back into its own input through one Affine/Linear node (snnTorch's
RLeaky / RSynaptic with all_to_all, exported as lif -> w_rec -> lif). The loop is cut from the graph before import and
the neuron is wrapped in SpikingJelly's LinearRecurrentContainer, which `workloads.lower` turns into a self-projection
"rec<k>" with a one-timestep delay (workloads.lowering_recurrent).

Timing: NIR leaves a loop's delay open; snnTorch (and the container) feed back the spikes of the previous timestep,
i[t] = I_ff[t] + W_rec s[t-1] + b_rec with s[-1] = 0, so the bias b_rec acts from t = 0 on.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

#: neuron node types a loop may close on, and weight node types that may carry it
NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)
WEIGHTS = (nir.Affine, nir.Linear)


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
         gain: float) -> layer.LinearRecurrentContainer:
    """LinearRecurrentContainer around neuron `module` (node `key`, per-sample `shape`): rc = [I | gain W_rec],
    bias gain b_rec (gain: the neuron's input gain already folded into the feed-forward weights). Raises ValueError
    unless the neuron is flat and the loop's weight is (n, n)."""
    w_key, node = loop
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    n = int(shape[0]) if len(shape) == 1 else -1
    if tuple(w.shape) != (n, n):
        raise ValueError(f"recurrent node {w_key!r}: weight {tuple(w.shape)} must be (n, n) on the flat population "
                         f"of node {key!r} (per-sample shape {shape}); convolutional recurrence is not imported")
    module.step_mode = "s"  # the container steps its node one timestep at a time
    c = layer.LinearRecurrentContainer(module, n, n, bias=True, step_mode="m")
    bias = np.asarray(node.bias).reshape(-1) if isinstance(node, nir.Affine) else np.zeros(n)
    with torch.no_grad():
        c.rc.weight.copy_(torch.cat([torch.eye(n), w * gain], dim=1))
        c.rc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32) * gain)
    return c
