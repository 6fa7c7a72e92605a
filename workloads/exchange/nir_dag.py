"""Import a NIR graph with branches and merges (residual adds, skip connections; recurrent loops are cut first,
workloads.exchange.nir_recurrent) as an fx.GraphModule of SpikingJelly modules, which `workloads.lower` lowers
through workloads.lowering (a merge of currents before a neuron becomes one projection per addend; spikes +
spikes a graded relay). Each node is converted by the chain importer's rule (IMPORTERS) on its predecessor's shape;
a node with several predecessors gets their sum (NIR adds the inputs of a node). Hand-written rather than
nirtorch.nir_to_torch: that GraphModule threads a state dict through every call, which our lowering cannot trace,
and it knows none of our folding of gains, pools and metadata.
"""
from __future__ import annotations

import copy
import operator
from graphlib import CycleError, TopologicalSorter

import networkx as nx
import nir
import torch
import torch.fx as fx
from torch import nn

from workloads.exchange.nir_chain import Chain, NirModel, check_size


def topo_order(graph: nir.NIRGraph) -> list[str]:
    """Node keys in dependency order. Raises ValueError for a cycle (a recurrent graph), naming its nodes."""
    preds = {k: set() for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].add(a)
    try:
        return list(TopologicalSorter(preds).static_order())
    except CycleError as exc:
        raise ValueError(f"NIR graph: edges {exc.args[1]} form a cycle; only a loop from a neuron through one "
                         "Affine/Linear or Conv2d back to it imports (a recurrent projection)") from exc


class _Node:
    """Per NIR node: its fx value, per-sample shape, weight module (for folding), the fx value its weight module
    reads and that module's index (weight_input, weight_index), pending max-pool flag and its number of successors
    (readers)."""

    def __init__(self, value, shape, weight=None, maxpool=None, weight_input=None, weight_index=None):
        self.value, self.shape, self.weight, self.maxpool = value, shape, weight, maxpool
        self.weight_input, self.weight_index, self.readers = weight_input, weight_index, 1


def build_dag(graph: nir.NIRGraph, out: NirModel, importers: dict) -> NirModel:
    """Fill `out` with an fx.GraphModule of `graph` (one Input, one Output). Raises ValueError for several Inputs
    or Outputs, a node off the Input-to-Output paths, a cycle, a sum-pool or low-rank relay whose next layer is
    not its only successor, or an input gain/offset to fold into a node that is fed by more than one weight
    layer."""
    ins = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"NIR graph: needs exactly one Input and one Output, got {ins} and {outs}")
    preds = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    readers = {k: sum(a == k for a, _ in graph.edges) for k in graph.nodes}
    _check_connected(graph, ins[0], outs[0])
    fxg, root, layers, state = fx.Graph(), nn.Module(), [], {}
    for key in topo_order(graph):
        node = graph.nodes[key]
        rule = importers.get(type(node))
        if rule is None:
            raise ValueError(f"node {key!r}: NIR type {type(node).__name__} is not supported; supported: "
                             f"{', '.join(sorted(t.__name__ for t in importers))}")
        state[key] = _convert(fxg, root, layers, out, key, node, rule, [state[p] for p in preds[key]])
        state[key].readers = readers[key]
    fxg.output(state[outs[0]].value)
    out.model = fx.GraphModule(root, fxg, class_name="NirDag")
    if out.model.graph.eliminate_dead_code():  # a weight module every reader of which has its own folded copy
        out.model.delete_all_unused_submodules()
        out.model.recompile()
    return out


def _check_connected(graph: nir.NIRGraph, first: str, last: str) -> None:
    """ValueError naming the first node (in graph order) that is not on a path from the Input `first` to the
    Output `last`: it would compute nothing the model outputs, or read nothing."""
    g = nx.DiGraph(list(graph.edges))
    g.add_nodes_from(graph.nodes)
    fed, feeding = nx.descendants(g, first) | {first}, nx.ancestors(g, last) | {last}
    for key in graph.nodes:
        if key not in fed or key not in feeding:
            where = "no path from the Input reaches it" if key not in fed else "it has no path to the Output"
            raise ValueError(f"NIR graph: node {key!r} is not connected ({where})")


def _merge(fxg: fx.Graph, key: str, inputs: list[_Node]):
    """The fx value feeding node `key`: its one input, or the sum of several (same shapes)."""
    if not inputs:
        return None
    if len({tuple(i.shape) for i in inputs}) > 1:
        raise ValueError(f"node {key!r}: inputs of shapes {[tuple(i.shape) for i in inputs]} cannot be added")
    value = inputs[0].value
    for other in inputs[1:]:
        value = fxg.call_function(operator.add, (value, other.value))
    return value


def _convert(fxg, root, layers, out, key, node, rule, inputs: list[_Node]) -> _Node:
    """Run the chain rule for one node on a walk state seeded from its inputs; emit its module(s) into fxg."""
    st = Chain(out, layers=layers, fed_by=len(inputs))
    shared = own = None
    if inputs:
        st.shape = inputs[0].shape
        st.last_weight = inputs[0].weight if len(inputs) == 1 else None
        st.maxpool = inputs[0].maxpool if len(inputs) == 1 else None
        if st.last_weight is not None and inputs[0].readers > 1:  # a fold must not reach the other readers
            shared = st.last_weight
            st.last_weight = own = copy.deepcopy(shared)
    first = len(layers)
    rule(st, key, node)
    check_size(key, node, st.shape)
    if st.gain != 1.0 or st.relay:
        raise ValueError(f"node {key!r}: a sum-pool or low-rank relay is only imported in chain-shaped graphs")
    if st.readout is not None:
        raise ValueError(f"node {key!r}: LI/I readouts are only imported in chain-shaped graphs")
    if isinstance(node, nir.Input):
        return _Node(fxg.placeholder("x"), st.shape)
    value = _merge(fxg, key, inputs)
    if shared is not None and _folded(shared, own):
        value = _own_weight(fxg, root, out, inputs[0], own)
    weight_input = weight_index = None
    for i in range(first, len(layers)):
        root.add_module(str(i), layers[i])
        weight_input, weight_index = value, str(i)
        value = fxg.call_module(str(i), (value,))
    new = layers[first:]
    weight = new[-1] if new and hasattr(new[-1], "weight") else None
    return _Node(value, st.shape, weight, st.maxpool, weight_input, weight_index)


def _folded(shared: nn.Module, own: nn.Module) -> bool:
    """True when the neuron's input gain/offset was folded into `own`, its copy of the weight module `shared`."""
    a, b = getattr(shared, "second", shared), getattr(own, "second", own)
    same_bias = (a.bias is None) == (b.bias is None) and (a.bias is None or torch.equal(a.bias, b.bias))
    return not (torch.equal(a.weight, b.weight) and same_bias)


def _own_weight(fxg: fx.Graph, root: nn.Module, out: NirModel, reads: _Node, own: nn.Module):
    """Emit `own` (a copy of the weight module of `reads`, with this neuron's gain/offset folded in) on the input of
    that module, so a weight node read by several neurons gives each its own gain (NIR scales each neuron's input
    by its own r; folding into the shared module applied every reader's gain to all of them). Returns its fx
    value."""
    index = f"{reads.weight_index}_{len(root._modules)}"
    root.add_module(index, own)
    out.nodes[index] = out.nodes[reads.weight_index]
    return fxg.call_module(index, (reads.weight_input,))
