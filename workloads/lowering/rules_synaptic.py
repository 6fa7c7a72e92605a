"""Synaptic layers: Conv1d, Conv2d and Linear (plain torch or SpikingJelly `layer.*`) become a pending weight stage
on the spikes they read (average pools before them folded in exactly), BatchNorm folds into the stages it
normalises, and a DSP low-rank layer (workloads.compression.dsp) becomes two projections through a relay.

Tokens (Spikformer's (L, D) layout): a token-wise Linear is a 1x1 conv over the (D, H, W) population, and a Linear
after TokenMean spreads its weight over the L tokens (w / L each).
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import nn

from hwmodels.trace import NeuronModel, Population
from workloads.compression.dsp import LowRankConv2d, LowRankLinear
from workloads.lowering.build import Build, emit
from workloads.lowering.geometry import (check_line, check_pool_fold, conv_out, conv_padding, fold_pool_into_conv,
                                         pair, seen_shape, spread_pools)
from workloads.lowering.naming import described, layer_error, tag
from workloads.lowering.values import Current, Feed, Stage, layout_fn, spikes_of
from workloads.models.spikformer import TokenBatchNorm


def _weights(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias or None) of a weight layer as CPU tensors (its effective weight: a parametrization or pruning
    mask applied): the bias float64, the weight float64 unless it is float32, which is kept as it is (a view, exact
    in float64: the Stage converts it when an operation needs float64, workloads.lowering.values.Stage)."""
    b = None if m.bias is None else m.bias.detach().cpu().double()
    w = m.weight.detach().cpu()
    return (w if w.dtype == torch.float32 else w.double()), b


def conv_stage(build: Build, m: nn.modules.conv._ConvNd, name: str, feed: Feed) -> Current:
    """Conv2d on (C, H, W) spikes, or Conv1d on a (C, L) signal held as (C, 1, L) (weight (C_out, C_in/groups,
    1, k), stride (1, s), padding (0, p), dilation (1, d)): one conv Stage, the pending pools folded in."""
    where, line = described(name, m), feed.line
    one_d = isinstance(m, nn.Conv1d)
    check_line(feed.shape, line, where, one_d)
    w, b = _weights(m)
    if one_d:
        w, stride, padding = w.unsqueeze(2), (1, int(m.stride[0])), (0, conv_padding(m, where)[0])
        dilation, wants = (1, int(m.dilation[0])), f"(C={m.in_channels}, L)"
    else:
        stride, padding, dilation = pair(m.stride), conv_padding(m, where), pair(m.dilation)
        wants = f"(C={m.in_channels}, H, W)"
    shape = feed.shape
    if one_d and not line and len(shape) == 2:  # e.g. x.unsqueeze(2) of a (T, N, L) input: the layout is 2-D
        raise layer_error(where, f"reads 1-D signals only as the model's own inputs (T, N, C, L); here its (C, L) = "
                                 f"{tuple(shape)} comes from a reshape inside the model, which is not supported: "
                                 "reshape the inputs instead and pass (T, N, C, L) to lower")
    if len(shape) != 3 or shape[0] != m.in_channels:
        raise layer_error(where, f"expects input {wants}, got per-sample shape {seen_shape(shape, line)}")
    out_shape = conv_out(shape, m.out_channels, tuple(w.shape[2:]), stride, padding, dilation, where)
    for pool in reversed(feed.pools):
        w, stride, padding = fold_pool_into_conv(w.double(), stride, padding, dilation, pool, where)
    if feed.pools:
        check_pool_fold(feed.pop.shape, feed.pools, out_shape, tuple(w.shape[2:]), stride, padding, where)
    stage = Stage(feed.pop.name, "conv", w, "Conv1d" if one_d else "Conv2d", list(feed.tags) + [tag(name, m)],
                  stride, padding, dilation, int(m.groups))
    return Current([build.settings.stamp(stage, name)], b, out_shape, "chw", line)


def linear_stage(build: Build, m: nn.Linear, name: str, feed: Feed) -> Current:
    """Linear on flat spikes: one dense Stage (pending pools before a Flatten spread over their windows); on tokens
    a 1x1 conv per token, after TokenMean a dense stage with the weight spread over the tokens."""
    if feed.layout == "tokens":
        return _token_linear(build, m, name, feed)
    shape = feed.shape
    if len(shape) != 1 or shape[0] != m.in_features:
        raise layer_error(described(name, m), f"expects a flat input of {m.in_features} features, got per-sample "
                                              f"shape {shape} (a Flatten is needed after a (C, H, W) layer)")
    w, b = _weights(m)
    if feed.pools:
        w = spread_pools(w.double(), feed.pop.shape, feed.pools)
    stage = Stage(feed.pop.name, "dense", w, "Linear", list(feed.tags) + [tag(name, m)])
    return Current([build.settings.stamp(stage, name)], b, (int(w.shape[0]),), "flat", feed.line)


def _token_linear(build: Build, m: nn.Linear, name: str, feed: Feed) -> Current:
    d, h, w = feed.pop.shape
    if m.in_features != d:
        raise layer_error(described(name, m), f"expects tokens of {m.in_features} features, got {d}")
    weight, b = _weights(m)
    tags = list(feed.tags) + [tag(name, m)]
    if feed.mean:  # TokenMean then Linear: neuron (c, l) of the population reaches every output with w[:, c] / L
        stage = Stage(feed.pop.name, "dense", weight.double().repeat_interleave(h * w, dim=1) / (h * w), "Linear",
                      tags)
        return Current([build.settings.stamp(stage, name)], b, (int(weight.shape[0]),), "flat")
    stage = Stage(feed.pop.name, "conv", weight.reshape(weight.shape + (1, 1)), "Linear", tags)
    return Current([build.settings.stamp(stage, name)], b, (int(weight.shape[0]), h, w), "tokens")


def weight_stage(build: Build, m: nn.Module, name: str, feed: Feed) -> Current:
    """The Current of Conv1d, Conv2d or Linear `m` (module name `name`) on spikes `feed`; ValueError naming the
    layer for any other module (e.g. a low-rank factor factorised again: DSP applied twice)."""
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if feed.layout == "tokens":
            raise layer_error(tag(name, m), f"a {type(m).__name__} on tokens is not supported")
        return conv_stage(build, m, name, feed)
    if not isinstance(m, nn.Linear):
        raise layer_error(described(name, m), f"a {type(m).__name__} where a Conv1d, Conv2d or Linear weight layer "
                                              "is expected (a low-rank factor must be a plain weight layer)")
    return linear_stage(build, m, name, feed)


def weight_rule(build: Build, m: nn.Module, name: str, at, args) -> Current:
    """Conv1d / Conv2d / Linear on spikes (see weight_stage)."""
    return weight_stage(build, m, name, spikes_of(args[0], tag(name, m), type(m).__name__))


def lowrank_rule(build: Build, m: nn.Module, name: str, at, args) -> Current:
    """DSP low-rank layer: "<base>_b" -> relay population "<base>_relay" (kind "relay", graded: it forwards the
    value B s every timestep; r neurons, or r channels x the output positions for a conv) -> "<base>_a", into
    which BN folds as usual; <base> is conv<k>/fc<k>. The layer's weight bits and storage (CompressionResult key:
    the low-rank module's name) apply to both stages, unless a factor's own key ("<name>.first") sets them."""
    feed = spikes_of(args[0], tag(name, m), type(m).__name__)
    first = weight_stage(build, m.first, f"{name}.first", feed)
    base = build.next_name("conv" if isinstance(m, LowRankConv2d) else "fc")
    relay = Population(f"{base}_relay", first.out_shape, NeuronModel("relay"), graded=True)
    _stamp(build, first, name, f"{base}_b", type(m).__name__)
    emit(build, first, relay, [tag(f"{name}.first", m.first)], m.first, layout_fn(first.layout))
    second = weight_stage(build, m.second, f"{name}.second", Feed(relay, first.layout, line=first.line))
    return _stamp(build, second, name, f"{base}_a", type(m).__name__)


def _stamp(build: Build, cur: Current, key: str, name: str, origin: str) -> Current:
    """Name the (single) stage of a low-rank factor and give it the bits/storage of the low-rank layer `key` where
    the factor's own module ("<key>.first" / "<key>.second", e.g. a quantizer's per-factor bits) sets none, as
    the weight_fit quantization reads them (workloads.lowering.fit._setting)."""
    bits, storage = build.settings.layer_bits.get(key), build.settings.layer_storage.get(key)
    for t in cur.stages:
        t.name, t.origin = name, origin
        t.bits = bits if t.bits is None else t.bits
        t.storage = storage if t.storage is None else t.storage
    return cur


def batchnorm_terms(m: nn.modules.batchnorm._BatchNorm, where: str) -> tuple[torch.Tensor, ...]:
    """(scale, mean, beta) float64 per channel of an eval BatchNorm, y = (x - mean) * scale + beta with scale =
    gamma / sqrt(var + eps). ValueError naming `where` when it uses batch statistics at eval."""
    if m.running_mean is None:
        raise layer_error(where, "track_running_stats=False uses batch statistics at eval; cannot be folded")
    scale = (m.running_var.detach().cpu().double() + m.eps).rsqrt()
    beta = torch.zeros_like(scale)
    if m.affine:
        scale = scale * m.weight.detach().cpu().double()
        beta = m.bias.detach().cpu().double()
    return scale, m.running_mean.detach().cpu().double(), beta


def batchnorm_rule(layouts: tuple[str, ...]):
    """The rule of a BatchNorm over currents of `layouts`: folded into every stage and the bias, per channel."""
    def rule(build: Build, m: nn.Module, name: str, at, args) -> Current:
        where, cur = described(name, m), args[0]
        if not isinstance(cur, Current) or cur.layout not in layouts:
            raise layer_error(where, f"BatchNorm must directly follow a Conv2d or Linear layer (or a sum of weight "
                                     f"layers) with a {'/'.join(layouts)} output")
        if m.num_features != cur.out_shape[0]:
            raise layer_error(where, f"num_features {m.num_features} != {cur.out_shape[0]} channels of the layer "
                                     "before")
        scale, mean, beta = batchnorm_terms(m, where)
        return cur.scaled(scale, (torch.zeros_like(scale) - mean) * scale + beta, tag(name, m))
    return rule


_WEIGHT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, layer.Conv1d, layer.Conv2d, layer.Linear)
#: exact module type -> rule. Exact types, not isinstance: a subclass (layer.WSConv2d, a fake-quantized conv)
#: computes something else from its weights.
RULES = {
    **{t: weight_rule for t in _WEIGHT_TYPES}, LowRankLinear: lowrank_rule, LowRankConv2d: lowrank_rule,
    nn.BatchNorm2d: batchnorm_rule(("chw",)), layer.BatchNorm2d: batchnorm_rule(("chw",)),
    nn.BatchNorm1d: batchnorm_rule(("flat", "chw")), layer.BatchNorm1d: batchnorm_rule(("flat", "chw")),
    TokenBatchNorm: batchnorm_rule(("tokens",)),
}
