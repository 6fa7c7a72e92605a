"""Symbolic values of the graph lowering (workloads.lowering_graph): what a tensor of a traced nn.Module is in
hardware terms, and how values become populations and projections.

A tensor is either a `Feed` (a population's output on its way to the next weight layer, maybe average-pooled,
flattened or laid out as tokens) or a `Current` (a sum of weight stages, each a `Term` from one population, plus a
per-channel bias: the input current of the neurons that will receive it). A spiking neuron turns a Current into a
population with one projection per term; adding two Feeds (spikes + spikes, SEW style) makes a graded relay.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from hwmodels.trace import NeuronModel, Population, Projection
from workloads.lowering_rules import Walk

#: projection-name prefix by the origin of a weight stage (others use "fc")
PREFIX = {"Conv1d": "conv", "Conv2d": "conv", "Linear": "fc", "Identity": "identity"}


@dataclass(frozen=True)
class Feed:
    """A population's output as a downstream layer sees it.

    layout: "chw" (tensor (C, H, W) = pop.shape), "flat" ((F,) = pop.shape) or "tokens" (tensor (L, D) of a
    population of shape (D, H, W), L = H*W row-major, as workloads.models.spikformer.ToTokens lays it out).
    pools: pending non-overlapping average-pool kernels (kh, kw), folded into the next weight layer; flat: a
    Flatten came after them; mean: tokens averaged (TokenMean), tensor (D,); tags: the pending layers' tags.
    """

    pop: Population
    layout: str
    pools: tuple[tuple[int, int], ...] = ()
    flat: bool = False
    mean: bool = False
    tags: tuple[str, ...] = ()

    @property
    def plain(self) -> bool:
        """True when the tensor is the population's output itself (no pooling, flattening or averaging)."""
        return not (self.pools or self.flat or self.mean)

    @property
    def chw(self) -> tuple[int, ...]:
        """(C, H, W) after the pending pools (chw layout)."""
        c, h, w = self.pop.shape
        for kh, kw in self.pools:
            h, w = h // kh, w // kw
        return (c, h, w)

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape of the tensor as the model sees it."""
        if self.layout == "tokens":
            d = self.pop.shape[0]
            return (d,) if self.mean else (self.pop.size // d, d)
        if self.layout == "flat":
            return self.pop.shape
        return (int(np.prod(self.chw)),) if self.flat else self.chw


@dataclass
class Term:
    """One weight stage from population `source` (float64 weights, Projection geometry) and what folded into it:
    tags ("<module name>:<type>"), origin (layer type), bits/storage of the layer, optional gate and a fixed
    name (else PREFIX[origin] + counter)."""

    source: str
    kind: str
    w: torch.Tensor
    origin: str
    tags: list[str]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bits: int | None = None
    storage: str | None = None
    gate: str | None = None
    gate_index: np.ndarray | None = None
    name: str | None = None


@dataclass
class Current:
    """Input current of a (future) population of shape out_shape: sum of terms plus bias per channel (float64
    (C,), or None); layout of the tensor as in Feed ("tokens": (L, D) over out_shape (D, H, W))."""

    terms: list[Term]
    bias: torch.Tensor | None
    out_shape: tuple[int, ...]
    layout: str

    def scaled(self, scale: torch.Tensor, shift: torch.Tensor, tag: str) -> "Current":
        """Per-channel affine map y = scale * x + shift (a folded BatchNorm) applied to every term and the bias."""
        terms = []
        for t in self.terms:
            rows = scale if t.kind == "conv" else scale.repeat_interleave(t.w.shape[0] // len(scale))
            terms.append(replace(t, w=t.w * rows.reshape((-1,) + (1,) * (t.w.dim() - 1)), tags=t.tags + [tag]))
        if self.bias is not None and len(self.bias) != len(scale):  # per-feature bias of a dense stage unflattened
            rows = len(self.bias) // len(scale)
            scale, shift = scale.repeat_interleave(rows), shift.repeat_interleave(rows)
        bias = shift if self.bias is None else self.bias * scale + shift
        return Current(terms, bias, self.out_shape, self.layout)


def add_currents(a: Current, b: Current, tag: str) -> Current:
    """a + b: both terms lists, summed biases. Raises ValueError when the target shapes or layouts differ."""
    if a.out_shape != b.out_shape or a.layout != b.layout:
        raise ValueError(f"{tag}: cannot add currents of shapes {a.out_shape} ({a.layout}) and {b.out_shape} "
                         f"({b.layout})")
    bias = a.bias if b.bias is None else (b.bias if a.bias is None else a.bias + b.bias)
    return Current(a.terms + b.terms, bias, a.out_shape, a.layout)


@dataclass
class GraphBuild:
    """State of one graph lowering: the shared Walk (populations, projections, names, per-layer settings,
    metadata) plus what the trace recorder needs: captures {population: (fx node name or module, fn(output,
    args) -> (T, B, n) tensor in the population's C-order)}, notes on inexact stages and the layout of the
    model output when it is the readout's input current (readout, None otherwise). walk.line: the model's
    (C, H, W) values are 1-D signals (C, L) held as (C, 1, L) (Conv1d models)."""

    walk: Walk
    captures: dict[str, tuple[object, object]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    readout: str | None = None


def layout_fn(layout: str):
    """fn(output, args) -> (T, B, n): tokens (T, B, L, D) are read channel-major ((D, L) order), others flattened."""
    if layout == "tokens":
        return lambda out, args: out.transpose(-1, -2).reshape(out.shape[0], out.shape[1], -1)
    return lambda out, args: out.reshape(out.shape[0], out.shape[1], -1)


def identity_term(feed: Feed, tag: str) -> Term:
    """The population's output forwarded unchanged: a 1x1 depthwise conv of weight 1 for a (C, H, W) population
    (C stored weights, fan-out 1: exact and cheap), a dense identity matrix for a flat one. Raises ValueError when
    the feed is pooled/flattened/averaged."""
    if not feed.plain:
        raise ValueError(f"{tag}: a pooled, flattened or averaged tensor cannot be added to another")
    if len(feed.pop.shape) == 3:
        c = feed.pop.shape[0]
        return Term(feed.pop.name, "conv", torch.ones(c, 1, 1, 1, dtype=torch.float64), "Identity", [tag], groups=c,
                    bits=1)
    return Term(feed.pop.name, "dense", torch.eye(feed.pop.size, dtype=torch.float64), "Identity", [tag], bits=1)


def as_current(value, tag: str) -> Current:
    """A Current as is; a Feed as its identity projection onto a population of the same shape."""
    if isinstance(value, Current):
        return value
    return Current([identity_term(value, tag)], None, value.pop.shape, value.layout)


def emit(build: GraphBuild, current: Current, pop: Population, tags: list[str], node: object, fn) -> None:
    """Add population `pop` (captured from `node`'s output through fn) and one projection per term of `current`
    into it; the current's bias goes to the first projection (repeated over each channel's neurons)."""
    walk = build.walk
    if pop.shape != current.out_shape:
        raise ValueError(f"{tags[0]}: population shape {pop.shape} != current shape {current.out_shape}")
    for i, t in enumerate(current.terms):
        name = t.name or walk.next_name(PREFIX.get(t.origin, "fc"))
        bias = None
        if i == 0 and current.bias is not None:
            bias = np.repeat(current.bias.numpy().astype(np.float32), pop.size // len(current.bias))
        gated = "conv" if t.kind == "conv" else "dense"  # gated synapses are paid structurally (trace.Projection)
        storage = gated if t.gate is not None else walk.storage_for(t.kind, t.storage)
        walk.projections.append(Projection(
            name=name, source=t.source, target=pop.name, kind=t.kind, weight=t.w.numpy().astype(np.float32),
            stride=t.stride, padding=t.padding, dilation=t.dilation, groups=t.groups, weight_bits=t.bits or
            walk.weight_bits, storage=storage, bias=bias, gate=t.gate, gate_index=t.gate_index))
        walk.origin[name] = t.origin
        walk.layers["projections"][name] = list(t.tags)
    add_population(build, pop, tags, node, fn)


def add_population(build: GraphBuild, pop: Population, tags: list[str], node: object, fn) -> None:
    """Register `pop` with its capture (node or module, fn); ValueError if the name is taken."""
    if any(p.name == pop.name for p in build.walk.populations):
        raise ValueError(f"{tags[0]}: population name {pop.name!r} is used twice")
    build.walk.populations.append(pop)
    build.walk.layers["populations"][pop.name] = list(tags)
    if node is not None:
        build.captures[pop.name] = (node, fn)


def relay_of_sum(build: GraphBuild, a: Feed, b: Feed, tag: str, node: object) -> Feed:
    """spikes + spikes (SEW-style residual after the neurons): a graded relay population (NeuronModel "relay",
    it forwards its summed value every timestep) fed by one identity projection from each addend."""
    if a.pop.shape != b.pop.shape or a.layout != b.layout:
        raise ValueError(f"{tag}: cannot add {a.pop.name} {a.pop.shape} ({a.layout}) and {b.pop.name} "
                         f"{b.pop.shape} ({b.layout})")
    pop = Population(build.walk.next_name("add"), a.pop.shape, NeuronModel("relay"), graded=True)
    current = Current([identity_term(a, tag), identity_term(b, tag)], None, a.pop.shape, a.layout)
    emit(build, current, pop, [tag], node, layout_fn(a.layout))
    return Feed(pop, a.layout)
