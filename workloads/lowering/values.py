"""Symbolic values of the lowering: what a tensor of the traced model is in hardware terms.

A tensor is either a `Feed` (a population's output on its way to the next weight layer, maybe average-pooled,
flattened or laid out as tokens) or a `Current` (a sum of pending weight stages, each a `Stage` from one population,
plus a per-channel bias: the input current of the neurons that will receive it). A spiking neuron turns a Current
into a population with one projection per stage; adding two Feeds (spikes + spikes, SEW style) makes a graded relay.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from hwmodels.trace import Population
from workloads.lowering.fold_kernel import eager_weight
from workloads.lowering.naming import layer_error


@dataclass(frozen=True)
class Feed:
    """A population's output as a downstream layer sees it.

    layout: "chw" (tensor (C, H, W) = pop.shape), "flat" ((F,) = pop.shape) or "tokens" (tensor (L, D) of a
    population of shape (D, H, W), L = H*W row-major, as workloads.models.spikformer.ToTokens lays it out).
    pools: pending non-overlapping average-pool kernels (kh, kw), folded into the next weight layer; flat: a
    Flatten came after them; mean: tokens averaged (TokenMean), tensor (D,); tags: the pending layers' tags;
    line: a (C, 1, L) population holds 1-D signals (C, L) (workloads.lowering.geometry).
    """

    pop: Population
    layout: str
    pools: tuple[tuple[int, int], ...] = ()
    flat: bool = False
    mean: bool = False
    tags: tuple[str, ...] = ()
    line: bool = False

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
        """Per-sample shape of the tensor as the lowering holds it ((C, 1, L) for a 1-D signal)."""
        if self.layout == "tokens":
            d = self.pop.shape[0]
            return (d,) if self.mean else (self.pop.size // d, d)
        if self.layout == "flat" or len(self.pop.shape) != 3:
            return self.pop.shape
        return (int(np.prod(self.chw)),) if self.flat else self.chw


@dataclass
class Stage:
    """One pending weight stage from population `source`: weights w in hwmodels.trace.Projection geometry
    (kind "conv": (C_out, C_in/groups, kh, kw) with stride/padding/dilation/groups; "dense": (out, in)) and what
    folded into it: tags ("<module name>:<type>"), origin (layer type), the layer's bits/storage (None: the
    lowering's defaults), an optional gate (attention, hwmodels.trace.Projection.gate) and a fixed projection name
    (else a counter by origin, see workloads.lowering.build.emit). w is float64, or a layer's own float32 weight
    (exact in float64) until an operation needs it in float64 (weight()). rows: pending float64 (C_out,) factors
    of the output rows (folded BatchNorm scales, oldest first), multiplied in by weight() or, straight to float32,
    by workloads.lowering.fold_kernel.stage_weight_f32: the same float64 products, without float64 copies of the
    weights."""

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
    rows: tuple[torch.Tensor, ...] = ()

    def weight(self) -> torch.Tensor:
        """w as float64 with the pending row factors multiplied in, in order (w * r1 * r2 ..., each a float64
        product per element)."""
        return eager_weight(self.w, self.rows)


@dataclass
class Current:
    """Input current of a (future) population of shape out_shape: sum of stages plus bias per channel (float64
    (C,), or per feature for a dense stage; None for no bias); layout and line of the tensor as in Feed
    ("tokens": (L, D) over out_shape (D, H, W))."""

    stages: list[Stage]
    bias: torch.Tensor | None
    out_shape: tuple[int, ...]
    layout: str
    line: bool = False

    def scaled(self, scale: torch.Tensor, shift: torch.Tensor, tag: str) -> "Current":
        """Per-channel affine map y = scale * x + shift (a folded BatchNorm) applied to every stage and the bias."""
        stages = []
        for t in self.stages:
            rows = scale if t.kind == "conv" else scale.repeat_interleave(t.w.shape[0] // len(scale))
            stages.append(replace(t, rows=t.rows + (rows.double(),), tags=t.tags + [tag]))
        if self.bias is not None and len(self.bias) != len(scale):  # per-feature bias of a dense stage unflattened
            rows = len(self.bias) // len(scale)
            scale, shift = scale.repeat_interleave(rows), shift.repeat_interleave(rows)
        bias = shift if self.bias is None else self.bias * scale + shift
        return Current(stages, bias, self.out_shape, self.layout, self.line)

    def tagged(self, tag: str) -> "Current":
        """The same current with `tag` appended to every stage's tags (a layer that only reshapes it)."""
        return replace(self, stages=[replace(t, tags=t.tags + [tag]) for t in self.stages])


def add_currents(a: Current, b: Current, tag: str) -> Current:
    """a + b: both stage lists, summed biases (per channel + per feature: per feature). Raises ValueError when the
    target shapes or layouts differ."""
    if a.out_shape != b.out_shape or a.layout != b.layout:
        raise ValueError(f"{tag}: cannot add currents of shapes {a.out_shape} ({a.layout}) and {b.out_shape} "
                         f"({b.layout})")
    bias = a.bias if b.bias is None else (b.bias if a.bias is None else _per_feature(a.bias, b.bias) + _per_feature(
        b.bias, a.bias))
    return Current(a.stages + b.stages, bias, a.out_shape, a.layout, a.line)


def _per_feature(bias, other):
    """`bias` as long as `other`: a per-channel bias (C,) beside a per-feature one (C*H*W,, a dense stage's output
    unflattened, channel-major) repeats each channel's value over its positions, as Current.affine does."""
    return bias.repeat_interleave(len(other) // len(bias)) if len(bias) < len(other) else bias


def spikes_of(value, tag: str, what: str) -> Feed:
    """`value` when it is spikes (a Feed); ValueError naming layer `tag` (what: its type name) for a current."""
    if not isinstance(value, Feed):
        raise layer_error(tag, f"{what} needs spikes (a neuron layer's output) as input, got a current: it must "
                               "directly follow a spiking neuron layer or the input; two weight layers or a pooling "
                               "of currents without a spiking neuron between them are not supported")
    return value


def diagonal_stage(source: str, shape: tuple[int, ...], scale: float, origin: str, tags: list[str],
                   bits: int | None = None, name: str | None = None) -> Stage:
    """`scale` times the identity on per-sample `shape` from population `source`: a 1x1 depthwise conv for
    (C, H, W) (C stored weights, fan-out 1: exact and cheap), for a flat shape an n x n diagonal matrix stored
    "sparse" (n stored weights, fan-out 1, as the conv; "dense" would pay n synaptic events a spike and n^2
    weights) unless lower's storage= or the layer's own asks for another."""
    if len(shape) == 3:
        c = shape[0]
        return Stage(source, "conv", torch.full((c, 1, 1, 1), scale, dtype=torch.float64), origin, tags, groups=c,
                     bits=bits, name=name)
    n = int(np.prod(shape))
    return Stage(source, "dense", torch.eye(n, dtype=torch.float64) * scale, origin, tags, bits=bits,
                 storage="sparse", name=name)


def identity_stage(feed: Feed, tag: str) -> Stage:
    """The population's output forwarded unchanged (diagonal_stage of weight 1, 1 bit, origin "Identity").
    Raises ValueError when the feed is pooled/flattened/averaged."""
    if not feed.plain:
        raise ValueError(f"{tag}: a pooled, flattened or averaged tensor cannot be added to another")
    return diagonal_stage(feed.pop.name, feed.pop.shape, 1.0, "Identity", [tag], bits=1)


def as_current(value, tag: str) -> Current:
    """A Current as is; a Feed as its identity projection onto a population of the same shape."""
    if isinstance(value, Current):
        return value
    return Current([identity_stage(value, tag)], None, value.pop.shape, value.layout, value.line)


def layout_fn(layout: str):
    """fn(output, args) -> (T, B, ...) whose C order is the population's neuron numbering: tokens (T, B, L, D) are
    read channel-major, as the view (T, B, D, L) (no copy: workloads.lowering.events reads such a view without
    one), others flattened to (T, B, n)."""
    if layout == "tokens":
        return lambda out, args: out.transpose(-1, -2)
    return lambda out, args: out.reshape(out.shape[0], out.shape[1], -1)
