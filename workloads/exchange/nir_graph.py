"""Normalise a NIR graph before import: inline nested subgraphs (snnTorch writes RLeaky/RSynaptic as one) and drop
a batch dimension that nirtorch writes into the Input shape (`extract_nir_graph` takes the sample's whole shape).
"""
from __future__ import annotations

import nir
import numpy as np

#: per-sample rank a node type consumes (weight and pooling nodes; neurons: their parameter arrays' rank)
_RANK = {nir.Conv2d: 3, nir.Conv1d: 2, nir.Affine: 1, nir.Linear: 1, nir.AvgPool2d: 3, nir.SumPool2d: 3}


def inline(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with every nested NIRGraph node replaced by its nodes ("<key>.<inner key>"), its Input and Output
    becoming pass-through edges. Raises ValueError for a subgraph without exactly one Input and one Output."""
    if not any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        return graph
    nodes, edges, ends = {}, [], {}
    for key, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[key] = node
            continue
        sub = inline(node)
        ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
        outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"node {key!r}: a nested NIR graph needs one Input and one Output, got {ins}, {outs}")
        first = [f"{key}.{b}" for a, b in sub.edges if a == ins[0]]
        last = [f"{key}.{a}" for a, b in sub.edges if b == outs[0]]
        ends[key] = (first, last)
        nodes.update({f"{key}.{k}": n for k, n in sub.nodes.items() if k not in (ins[0], outs[0])})
        edges += [(f"{key}.{a}", f"{key}.{b}") for a, b in sub.edges if a != ins[0] and b != outs[0]]
    for a, b in graph.edges:
        srcs = ends[a][1] if a in ends else [a]
        dsts = ends[b][0] if b in ends else [b]
        edges += [(s, d) for s in srcs for d in dsts]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)


def _rank(node: nir.NIRNode) -> int | None:
    """Per-sample rank `node` consumes, or None when it does not say."""
    for t, r in _RANK.items():
        if isinstance(node, t):
            return r
    if isinstance(node, nir.Flatten) and node.input_type and "input" in node.input_type:
        return len(np.atleast_1d(node.input_type["input"]))
    arr = getattr(node, "v_threshold", None)
    return np.ndim(arr) if arr is not None and np.ndim(arr) > 0 else None


def drop_batch(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with the leading dimension of each Input dropped when the Input's consumers take one dimension
    less (nirtorch writes the sample's batch size there); other graphs unchanged."""
    nodes = dict(graph.nodes)
    for key, node in graph.nodes.items():
        if not isinstance(node, nir.Input):
            continue
        shape = np.atleast_1d(node.input_type["input"])
        ranks = {_rank(graph.nodes[b]) for a, b in graph.edges if a == key} - {None}
        if len(ranks) == 1 and len(shape) == ranks.pop() + 1:
            nodes[key] = nir.Input(input_type=np.array(shape[1:]), metadata=dict(node.metadata or {}))
    if nodes == graph.nodes:
        return graph
    return nir.NIRGraph(nodes=nodes, edges=graph.edges, metadata=graph.metadata, type_check=False)


def normalise(graph: nir.NIRGraph) -> nir.NIRGraph:
    """inline, then drop_batch."""
    return drop_batch(inline(graph))
