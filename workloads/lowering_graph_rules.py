"""Per-module rules of the graph lowering (workloads.lowering_graph): each maps a traced module call on symbolic
values (lowering_values.Feed / Current) to its result, emitting populations and projections on the way.

Weight layers, BatchNorm, pooling and Flatten reuse the Sequential rules of workloads.lowering_rules on a
one-layer Walk (same folding, same checks); tokens (Spikformer's (L, D) layout) are handled here: a token-wise
Linear is a 1x1 conv over the (D, H, W) population, and a Linear after TokenMean spreads its weight over the tokens.
"""
from __future__ import annotations

from typing import Callable

import torch
from spikingjelly.activation_based import layer
from torch import nn

from hwmodels.trace import NeuronModel, Population
from workloads.compression.dsp import LowRankConv2d, LowRankLinear
from workloads.lowering_rules import (NEURON_RULES, Walk, _adaptive_avgpool, _adaptive_avgpool1d, _avgpool,
                                      _avgpool1d, _base_type, _batchnorm, _check_line, _conv, _conv1d, _conv_out,
                                      _flatten, _linear, _Weight, maxpool_geometry, neuron_population,
                                      reshape_population, unflattened)
from workloads.lowering_values import (Current, Feed, GraphBuild, Term, add_currents, add_population, as_current,
                                       emit, layout_fn, relay_of_sum)
from workloads.models.spikformer import TokenBatchNorm, TokenMean, ToTokens

Rule = Callable[[GraphBuild, nn.Module, str, object, list], object]


def _err(tag: str, msg: str) -> ValueError:
    return ValueError(f"layer {tag}: {msg}")


def _one_layer_walk(build: GraphBuild, feed: Feed, shape: tuple[int, ...] | None = None) -> Walk:
    """A Walk positioned on `feed` (its population, tensor shape or `shape`, pending pools), sharing the per-layer
    settings, on which one Sequential rule of workloads.lowering_rules runs."""
    w = build.walk
    return Walk(feed.pop, shape or feed.shape, w.weight_bits, w.storage, w.layer_bits, w.layer_storage,
                w.state_bits, pools=list(feed.pools), spatial=feed.chw if feed.flat else None, line=w.line)


def _feed(value, tag: str, what: str) -> Feed:
    if not isinstance(value, Feed):
        raise _err(tag, f"{what} needs spikes (a neuron layer's output) as input, got a current: two weight layers "
                        "or a pooling of currents without a spiking neuron between them are not supported")
    return value


def _term(wt: _Weight, source: str, tags: list[str]) -> Term:
    return Term(source, wt.kind, wt.w, wt.origin, tags, wt.stride, wt.padding, wt.dilation, wt.groups, wt.bits,
                wt.storage)


def weight_stage(build: GraphBuild, m: nn.Module, name: str, feed: Feed, tag: str) -> Current:
    """Conv1d, Conv2d or Linear `m` (module name `name`) on a Feed: one Term (pools folded in, lowering_rules) and the
    layer bias as the Current's bias. Tokens: a Linear acts per token (1x1 conv); after TokenMean its weight is
    spread over the L tokens (w / L each)."""
    is_conv = isinstance(m, (nn.Conv1d, nn.Conv2d))
    if feed.layout == "tokens" and not is_conv:
        return _token_linear(build, m, name, feed, tag)
    if feed.layout == "tokens":
        raise _err(tag, f"a {type(m).__name__} on tokens is not supported")
    walk = _one_layer_walk(build, feed)
    (_linear if not is_conv else _conv1d if isinstance(m, nn.Conv1d) else _conv)(walk, m, name)
    wt = walk.weight
    return Current([_term(wt, feed.pop.name, list(feed.tags) + walk.tags)], wt.b, wt.out_shape,
                   "chw" if is_conv else "flat")


def _token_linear(build: GraphBuild, m: nn.Linear, name: str, feed: Feed, tag: str) -> Current:
    d, h, w = feed.pop.shape
    walk = _one_layer_walk(build, feed, (d,))
    _linear(walk, m, name)
    wt, tags = walk.weight, list(feed.tags) + walk.tags
    if feed.mean:  # TokenMean then Linear: neuron (c, l) of the population reaches every output with w[:, c] / L
        wt.w = wt.w.repeat_interleave(h * w, dim=1) / (h * w)
        return Current([_term(wt, feed.pop.name, tags)], wt.b, wt.out_shape, "flat")
    wt.kind, wt.w = "conv", wt.w.reshape(wt.w.shape + (1, 1))
    return Current([_term(wt, feed.pop.name, tags)], wt.b, (wt.w.shape[0], h, w), "tokens")


def _weight(build, m, name, node, args):
    return weight_stage(build, m, name, _feed(args[0], _tag(name, m), type(m).__name__), _tag(name, m))


def _lowrank(build, m, name, node, args):
    """DSP low-rank layer: "<base>_b" -> relay population "<base>_relay" (graded, rank r per position/token) ->
    "<base>_a", as lowering_rules._lowrank does for Sequentials; both stages take the layer's bits/storage."""
    feed = _feed(args[0], _tag(name, m), type(m).__name__)
    first = weight_stage(build, m.first, f"{name}.first", feed, _tag(f"{name}.first", m.first))
    base = build.walk.next_name("conv" if isinstance(m, LowRankConv2d) else "fc")
    relay = Population(f"{base}_relay", first.out_shape, NeuronModel("relay"), graded=True)
    _stamp(build, first, name, f"{base}_b", type(m).__name__)
    emit(build, first, relay, [_tag(f"{name}.first", m.first)], m.first, layout_fn(first.layout))
    second = weight_stage(build, m.second, f"{name}.second", Feed(relay, first.layout),
                          _tag(f"{name}.second", m.second))
    return _stamp(build, second, name, f"{base}_a", type(m).__name__)


def _stamp(build: GraphBuild, cur: Current, key: str, name: str, origin: str) -> Current:
    """Name the (single) term of a low-rank stage and give it the bits/storage of the low-rank layer `key`."""
    for t in cur.terms:
        t.name, t.origin = name, origin
        t.bits, t.storage = build.walk.layer_bits.get(key), build.walk.layer_storage.get(key)
    return cur


def _batchnorm_rule(layouts: tuple[str, ...]) -> Rule:
    """Fold an eval BatchNorm into every term of the current it normalises (per channel)."""
    def rule(build, m, name, node, args):
        tag, cur = _tag(name, m), args[0]
        if not isinstance(cur, Current) or cur.layout not in layouts:
            raise _err(tag, f"BatchNorm must follow a weight layer (or a sum of them) with a {'/'.join(layouts)} "
                            "output")
        c = cur.out_shape[0]
        probe = Walk(None, cur.out_shape, 1, None)
        probe.weight = _Weight("dense", torch.ones(c, 1, dtype=torch.float64), None, cur.out_shape, "")
        _batchnorm(probe, m, name)  # validates and gives w = scale, b = shift - mean * scale
        return cur.scaled(probe.weight.w[:, 0], probe.weight.b, tag)
    return rule


def _neuron(build, m, name, node, args):
    tag, cur = _tag(name, m), args[0]
    if isinstance(cur, Feed) and cur.pop.is_input and not (cur.pools or cur.mean) and cur.layout != "tokens":
        return _input_current_neuron(build, m, name, node, cur)
    if not isinstance(cur, Current):
        raise _err(tag, "a spiking neuron layer needs a weight layer (Conv2d/Linear, or a sum) or the input tensor "
                        "before it")
    pop = neuron_population(build.walk, m, name, cur.out_shape)
    emit(build, cur, pop, [tag], node.name, layout_fn(cur.layout))
    return Feed(pop, cur.layout)


def _input_current_neuron(build, m, name, node, feed: Feed) -> Feed:
    """A spiking node fed by the input tensor (maybe flattened): a population with no in-projection, its neurons
    integrating that current (lowering.lower, "Input current"); listed in walk.input_current."""
    layout = "flat" if len(feed.shape) == 1 else "chw"
    pop = neuron_population(build.walk, m, name, feed.shape)
    build.walk.input_current.append(pop.name)
    add_population(build, pop, [_tag(name, m)], node.name, layout_fn(layout))
    return Feed(pop, layout)


def _maxpool(build, m, name, node, args):
    """MaxPool1d/2d of binary spikes = OR over the window: an IF(threshold 1) population fed by a depthwise
    all-ones conv (lowering_rules._maxpool; MaxPool1d: window (1, k) on (C, 1, L))."""
    what = _base_type(m).__name__
    tag, feed = _tag(name, m), _feed(args[0], _tag(name, m), what)
    if not feed.plain or feed.layout != "chw" or feed.pop.graded or m.return_indices or m.ceil_mode:
        raise _err(tag, f"{what} needs the plain binary (C, H, W) spikes of a population (no ceil_mode, no "
                        "return_indices)")
    _check_line(_one_layer_walk(build, feed), m, name, isinstance(m, nn.MaxPool1d))
    k, s, p, d = maxpool_geometry(m)
    c = feed.pop.shape[0]
    out = _conv_out(feed.pop.shape, c, k, s, p, d, name, m)
    pop = Population(build.walk.next_name("pool"), out, NeuronModel("IF", 1.0, None, 0.0))
    term = Term(feed.pop.name, "conv", torch.ones((c, 1) + k, dtype=torch.float64), what, [tag], s, p, d, c,
                bits=1, name=build.walk.next_name("maxpool"))
    emit(build, Current([term], None, out, "chw"), pop, [tag], node.name, layout_fn("chw"))
    return Feed(pop, "chw")


def _feed_op(op) -> Rule:
    """AvgPool2d / AdaptiveAvgPool2d / Flatten on spikes: the Sequential rule on a one-layer walk, kept pending."""
    def rule(build, m, name, node, args):
        feed = _feed(args[0], _tag(name, m), type(m).__name__)
        if feed.layout != "chw" or feed.flat:
            raise _err(_tag(name, m), f"expects a (C, H, W) input, got {feed.layout} of shape {feed.shape}")
        walk = _one_layer_walk(build, feed)
        op(walk, m, name)
        return Feed(feed.pop, "chw", tuple(walk.pools), flat=len(walk.shape) == 1, tags=feed.tags + tuple(walk.tags))
    return rule


def _plain_flatten(build, m, name, node, args):
    """A plain nn.Flatten(start_dim=2) sees (T, N, ...): the per-sample Flatten(1) of layer.Flatten."""
    if (m.start_dim, m.end_dim) != (2, -1):
        raise _err(_tag(name, m), f"a plain Flatten sees (T, N, ...) tensors: only start_dim=2, end_dim=-1 is "
                                  f"supported, got ({m.start_dim}, {m.end_dim})")
    return _feed_op(_flatten)(build, nn.Flatten(1, -1), name, node, args)


def _unflatten(build, m, name, node, args):
    """nn.Unflatten(2 or -1, sizes) on (T, N, F): a flat current (dense terms) or flat spikes take the per-sample
    shape sizes (spikes: their population is reshaped unless a conv made it), or it undoes the last Flatten."""
    tag, value = _tag(name, m), args[0]
    if m.dim not in (2, -1) or len(value.shape if isinstance(value, Feed) else value.out_shape) != 1:
        raise _err(tag, f"only Unflatten(2, sizes) (or dim -1) of (T, N, F) tensors is supported, got dim {m.dim}")
    if isinstance(value, Current):
        if value.layout != "flat" or any(t.kind != "dense" for t in value.terms):
            raise _err(tag, "only a flat current of dense weight layers can be unflattened")
        shape = unflattened(m.unflattened_size, value.out_shape[0], tag)
        return Current(value.terms, value.bias, shape, "chw")
    shape = unflattened(m.unflattened_size, value.shape[0], tag)
    if value.flat and shape == value.chw:  # undoes the Flatten: pools stay pending
        return Feed(value.pop, "chw", value.pools, tags=value.tags + (tag,))
    if value.layout != "flat":
        raise _err(tag, f"only undoing a Flatten of {value.pop.name!r} {value.chw} is supported, got {shape}")
    return Feed(reshape_population(build.walk, value.pop, shape, tag), "chw", tags=value.tags + (tag,))


def _to_tokens(build, m, name, node, args):
    feed = _feed(args[0], _tag(name, m), "ToTokens")
    if not feed.plain or feed.layout != "chw":
        raise _err(_tag(name, m), "ToTokens needs a plain (D, H, W) population output")
    return Feed(feed.pop, "tokens")


def _token_mean(build, m, name, node, args):
    feed = _feed(args[0], _tag(name, m), "TokenMean")
    if not feed.plain or feed.layout != "tokens":
        raise _err(_tag(name, m), "TokenMean needs plain tokens")
    return Feed(feed.pop, "tokens", mean=True, tags=(_tag(name, m),))


def add_rule(build: GraphBuild, a, b, tag: str, node: object):
    """a + b. Currents add (their target neurons receive both: two incoming projections); a current plus spikes
    takes the spikes through an identity projection; spikes plus spikes become a graded relay population."""
    if isinstance(a, Feed) and isinstance(b, Feed):
        return relay_of_sum(build, a, b, tag, node)
    return add_currents(as_current(a, tag), as_current(b, tag), tag)


def _tag(name: str, m: nn.Module) -> str:
    return f"{name}:{_base_type(m).__name__}"


RULES: dict[type, Rule] = {
    layer.Conv2d: _weight, layer.Conv1d: _weight, layer.Linear: _weight, nn.Linear: _weight,
    LowRankLinear: _lowrank, LowRankConv2d: _lowrank,
    layer.BatchNorm2d: _batchnorm_rule(("chw",)), layer.BatchNorm1d: _batchnorm_rule(("flat", "chw")),
    TokenBatchNorm: _batchnorm_rule(("tokens",)),
    layer.MaxPool2d: _maxpool, layer.AvgPool2d: _feed_op(_avgpool), layer.AdaptiveAvgPool2d: _feed_op(_adaptive_avgpool),
    layer.MaxPool1d: _maxpool, layer.AvgPool1d: _feed_op(_avgpool1d),
    layer.AdaptiveAvgPool1d: _feed_op(_adaptive_avgpool1d),
    layer.Flatten: _feed_op(_flatten), nn.Flatten: _plain_flatten, nn.Unflatten: _unflatten, ToTokens: _to_tokens,
    TokenMean: _token_mean,
    nn.Identity: lambda build, m, name, node, args: args[0], nn.Dropout: lambda build, m, name, node, args: args[0],
    layer.Dropout: lambda build, m, name, node, args: args[0],
    **{t: _neuron for t in NEURON_RULES},
}
