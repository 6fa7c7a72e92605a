"""Shared pieces of the NIR import: the result type (NirModel), the walk state, per-neuron parameter readers, the
exact folding of an input gain/offset into the preceding weight layer, and the chain order of a NIR graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
from torch import nn


@dataclass
class NirModel:
    """A NIR graph as a SpikingJelly model plus what lowering needs to reproduce the exported hardware settings.

    model: multi-step nn.Sequential (inputs (T, N, *input_shape)). compression: {"weight_bits", "storage",
    "state_bits"} keyed by module index (the form `workloads.lower(..., compression=)` takes). kinds: neuron module
    index -> NeuronModel kind written by `to_nir` ("PLIF", "sLIF"); graded_input: the Input node's "graded" flag;
    nodes: module index -> NIR node key; dt: seconds per timestep used; loops: neuron node key -> (key, node) of the
    Affine/Linear feeding its spikes back into it (workloads.exchange.nir_recurrent); readout: a trailing LI / I
    node's key, type and how predictions read it (None without one).
    """

    model: nn.Sequential
    input_shape: tuple[int, ...]
    dt: float
    compression: dict[str, dict] = field(default_factory=lambda: {"weight_bits": {}, "storage": {},
                                                                  "state_bits": {}})
    kinds: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    graded_input: bool = False
    loops: dict[str, tuple[str, nir.NIRNode]] = field(default_factory=dict)
    readout: dict | None = None


@dataclass
class Chain:
    """Walk state: layers so far, per-sample shape, pending sum-pool gain, the weight layer awaiting its neuron, the
    input gain last folded into it (in_gain) and how many nodes feed the current one (fed_by: > 1 at a merge)."""

    out: NirModel
    layers: list[nn.Module] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    gain: float = 1.0
    last_weight: nn.Module | None = None
    relay: bool = False
    maxpool: str | None = None
    readout: str | None = None
    in_gain: float = 1.0
    fed_by: int = 1

    @property
    def index(self) -> str:
        """Module index the next appended layer gets."""
        return str(len(self.layers))

    def add(self, key: str, module: nn.Module) -> str:
        """Append `module` for NIR node `key`; returns its index."""
        index = self.index
        self.layers.append(module)
        self.out.nodes[index] = key
        return index


def scalar(node: nir.NIRNode, name: str, key: str) -> float:
    """The one value of a per-neuron parameter; ValueError when it is NaN, varies across neurons or is empty."""
    a = np.asarray(getattr(node, name), np.float64).ravel()
    if np.isnan(a).any():
        raise ValueError(f"{type(node).__name__} node {key!r}: {name} holds NaN; it must be a number")
    if a.size == 0 or np.any(a != a[0]):
        raise ValueError(f"{type(node).__name__} node {key!r}: {name} must be one value for all neurons "
                         f"(SpikingJelly nodes take a scalar), got {np.unique(a)[:5]}")
    return float(a[0])


#: fields of a NIR node that hold one value per neuron (or one for all)
NEURON_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")


def check_size(key: str, node: nir.NIRNode, shape: tuple[int, ...]) -> None:
    """ValueError naming node `key` and the field when a per-neuron parameter of `node` (NEURON_FIELDS) holds
    neither one value, one per channel (snnTorch's conv RLeaky) nor one per neuron of the per-sample `shape` it
    receives, or when an Output's shape holds another number of values (a leading batch axis allowed)."""
    n = math.prod(shape)
    for name in NEURON_FIELDS:
        value = getattr(node, name, None)
        if value is not None and np.size(value) not in (1, n, shape[0] if shape else 1):  # or one per channel
            raise ValueError(f"{type(node).__name__} node {key!r}: {name} holds {np.size(value)} values for the "
                             f"{n} neurons of its input shape {list(shape)}")
    if isinstance(node, nir.Output) and node.output_type and "output" in node.output_type:
        want = [int(v) for v in np.atleast_1d(node.output_type["output"])]
        if want and math.prod(want) != n and not (len(want) == len(shape) + 1 and math.prod(want[1:]) == n):
            raise ValueError(f"Output node {key!r}: shape {want} does not hold the {n} values of its input shape "
                             f"{list(shape)}")


def meta(node: nir.NIRNode, name: str, default=None):
    """node.metadata[name] as a plain Python value (HDF5 gives numpy scalars), or default."""
    v = (node.metadata or {}).get(name, default)
    return v.item() if isinstance(v, np.generic) else v


def typed_meta(node: nir.NIRNode, name: str, key: str, kind: type):
    """meta(node, name) when it is absent (None) or of `kind` (int: not a bool, a float or a string); ValueError
    naming the node and the field otherwise."""
    value = meta(node, name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        want = "an integer" if kind is int else "a string"
        raise ValueError(f"node {key!r}: metadata {name!r} is {value!r}, expected {want}")
    return value


def pair(v) -> tuple[int, int]:
    """(a, b) ints from a scalar or a 1- or 2-element array (NIR stores stride/padding/kernel either way)."""
    a = np.asarray(v).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def fold(st: Chain, key: str, gain: float, offset: float) -> None:
    """Fold X' = gain * X + offset into the weight layer before neuron node `key` (exact; ValueError without one);
    st.in_gain = gain."""
    st.in_gain = gain
    if gain == 1.0 and offset == 0.0:
        return
    target = st.last_weight
    if target is None and st.fed_by > 1:
        raise ValueError(f"node {key!r}: input gain {gain:g} / offset {offset:g} cannot be folded: it is fed by "
                         f"{st.fed_by} nodes, not one weight layer")
    if target is None:
        raise ValueError(f"node {key!r}: input gain {gain:g} / offset {offset:g} needs a weight layer before it")
    target = getattr(target, "second", target)
    with torch.no_grad():
        target.weight.mul_(gain)
        if target.bias is None:
            target.bias = nn.Parameter(torch.zeros(target.weight.shape[0]))
        target.bias.mul_(gain).add_(offset)


def chain_order(graph: nir.NIRGraph) -> list[str]:
    """Node keys of a chain-shaped NIR graph from its Input to its Output.

    Raises ValueError for nested graphs (inline them first: workloads.exchange.nir_graph), not exactly one Input,
    branches or merges, or nodes off the chain.
    """
    for key, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(f"node {key!r}: nested NIR graphs (recurrent subgraphs) are not supported")
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"NIR graph: needs exactly one Input node, got {inputs}")
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    indeg = {k: 0 for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        indeg[b] += 1
    order = [inputs[0]]
    while succ[order[-1]]:
        nxt = succ[order[-1]]
        if len(nxt) > 1 or indeg[nxt[0]] > 1 or nxt[0] in order:
            raise ValueError(f"NIR graph: node {order[-1]!r} -> {nxt} is not a chain; only chain-shaped graphs "
                             "import (no branches, merges or recurrence)")
        order.append(nxt[0])
    if len(order) != len(graph.nodes):
        raise ValueError(f"NIR graph: nodes {sorted(set(graph.nodes) - set(order))} are not on the input chain")
    return order
