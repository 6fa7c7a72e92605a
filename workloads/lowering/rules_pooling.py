"""Pooling and layout layers: max-pool (an OR population), average pools (kept pending and folded into the next
weight layer), Flatten/Unflatten (per-sample; top-level plain nn.Flatten(2) / nn.Unflatten(2, ...) are seen as
Flatten(1) / Unflatten(1, ...) by workloads.lowering.interpreter), Spikformer's token layout and the layers that
change nothing at eval (Dropout, Identity).
"""
from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

from hwmodels.trace import NeuronModel, Population
from workloads.lowering.build import Build, emit, reshape_population
from workloads.lowering.geometry import check_line, conv_out, maxpool_geometry, pair, seen_shape, single, unflattened
from workloads.lowering.naming import base_type, described, layer_error, tag
from workloads.lowering.values import Current, Feed, Stage, layout_fn, spikes_of
from workloads.models.spikformer import TokenMean, ToTokens


def maxpool_rule(build: Build, m: nn.Module, name: str, at, args) -> Feed:
    """MaxPool2d (or MaxPool1d: window (1, k) on (C, 1, L)) of binary spikes == OR over the window == IF(threshold
    1, reset 0) population "pool<k>" fed by a depthwise all-ones conv "maxpool<k>" (zero padding: torch pads
    max-pool with -inf, so both see only the in-bounds spikes). ValueError for a window that reads padding only
    (dilation > 1), where torch outputs -inf, which no spike train expresses."""
    what, where = base_type(m).__name__, described(name, m)
    feed = spikes_of(args[0], tag(name, m), what)
    if not feed.plain or feed.layout != "chw" or len(feed.pop.shape) != 3:
        raise layer_error(where, f"{what} must directly follow a spiking neuron layer or the input")
    if feed.pop.graded:
        raise layer_error(where, f"max-pooling graded values of {feed.pop.name!r} is not an OR; not supported")
    if m.return_indices:
        raise layer_error(where, "return_indices=True is not supported")
    check_line(feed.shape, feed.line, where, isinstance(m, nn.MaxPool1d))
    k, s, p, d = maxpool_geometry(m)
    c = feed.pop.shape[0]
    out = conv_out(feed.pop.shape, c, k, s, p, d, where)
    if any(_padding_windows(n_in, n_out, *g) for n_in, n_out, g in zip(feed.pop.shape[1:], out[1:], zip(k, s, p, d))):
        raise layer_error(where, f"kernel {k}, padding {p} and dilation {d} leave a window with only padding "
                                 "(torch outputs -inf there, not a spike or a silence); not supported")
    if m.ceil_mode and tuple(torch.nn.functional.max_pool2d(
            torch.zeros((1,) + feed.pop.shape), k, s, p, d, ceil_mode=True).shape[1:]) != out:
        raise layer_error(where, "ceil_mode=True adds a partial window here; a conv projection cannot express it")
    pop = Population(build.next_name("pool"), out, NeuronModel("IF", 1.0, None, 0.0))
    stage = Stage(feed.pop.name, "conv", torch.ones((c, 1) + k, dtype=torch.float64), what, [tag(name, m)], s, p, d,
                  c, bits=1, name=build.next_name("maxpool"))
    emit(build, Current([stage], None, out, "chw", feed.line), pop, [tag(name, m)], at, layout_fn("chw"))
    return Feed(pop, "chw", line=feed.line)


def _padding_windows(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> bool:
    """Whether some of the n_out windows along one axis (kernel k, stride s, padding p, dilation d over n_in
    positions) read no in-bounds position (possible with d > 1 only)."""
    pos = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
    return not bool(((pos >= 0) & (pos < n_in)).any(axis=1).all())


def _pending_pool(build: Build, m: nn.Module, name: str, value, kernel) -> Feed:
    """The spikes `value` with average-pool window `kernel` (a function of the (C, H, W) shape) pending; ValueError
    when they are no (C, H, W) spikes, the map is smaller than the window, or the window does not tile it under
    ceil_mode=True (a partial window averages fewer inputs). Otherwise a window that does not tile the map drops its
    last rows and columns, as torch does (they get weight 0 in the layer it folds into)."""
    where = described(name, m)
    feed = spikes_of(value, tag(name, m), type(m).__name__)
    if feed.layout != "chw" or feed.flat or len(feed.shape) != 3:
        raise layer_error(where, "average pooling must follow a spiking layer (it is folded into the next "
                                 "Conv2d/Linear); pooling of currents before a neuron is not supported; got per-sample "
                                 f"shape {seen_shape(feed.shape, feed.line)}")
    check_line(feed.shape, feed.line, where, isinstance(m, (nn.AvgPool1d, nn.AdaptiveAvgPool1d)))
    c, h, w = feed.shape
    kh, kw = kernel(feed)
    if h < kh or w < kw:
        raise layer_error(where, f"input {h}x{w} is smaller than the pooling window {(kh, kw)}")
    if (h % kh or w % kw) and getattr(m, "ceil_mode", False):
        raise layer_error(where, f"ceil_mode=True on input {h}x{w}, which the window {(kh, kw)} does not tile: its "
                                 "partial windows average fewer inputs, which no folded weight expresses; use "
                                 "ceil_mode=False")
    return Feed(feed.pop, "chw", feed.pools + ((kh, kw),), tags=feed.tags + (tag(name, m),), line=feed.line)


def _avgpool_window(m: nn.Module, where: str) -> tuple[int, int]:
    """The (kh, kw) window of a non-overlapping AvgPool2d / AvgPool1d ((1, k)); ValueError for any other."""
    if isinstance(m, nn.AvgPool1d):
        kernel, stride = (1, single(m.kernel_size)), (1, single(m.kernel_size if m.stride is None else m.stride))
        padding, override = (0, single(m.padding)), None
    else:
        kernel = pair(m.kernel_size)
        stride, padding, override = kernel if m.stride is None else pair(m.stride), pair(m.padding), m.divisor_override
    if stride != kernel or padding != (0, 0) or override is not None:
        raise layer_error(where, f"only non-overlapping windows fold exactly (stride == kernel_size, padding 0, no "
                                 f"divisor_override); got kernel {kernel}, stride {stride}, padding {m.padding}")
    return kernel


def avgpool_rule(build: Build, m: nn.Module, name: str, at, args) -> Feed:
    """AvgPool2d / AvgPool1d (non-overlapping windows) on spikes: kept pending."""
    window = _avgpool_window(m, described(name, m))
    return _pending_pool(build, m, name, args[0], lambda feed: window)


def adaptive_avgpool_rule(build: Build, m: nn.Module, name: str, at, args) -> Feed:
    """AdaptiveAvgPool2d / AdaptiveAvgPool1d on spikes whose size the output size divides: a pending window."""
    def window(feed: Feed) -> tuple[int, int]:
        shape = feed.shape
        if isinstance(m, nn.AdaptiveAvgPool1d):
            out = (1, shape[2] if m.output_size is None else single(m.output_size))
        else:
            sizes = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
            out = tuple(shape[1 + i] if o is None else int(o) for i, o in enumerate(sizes))
        if shape[1] % out[0] or shape[2] % out[1]:
            raise layer_error(described(name, m), f"input {seen_shape(shape, feed.line)[1:]} is not "
                                                  f"divisible by output_size {out}")
        return (shape[1] // out[0], shape[2] // out[1])
    return _pending_pool(build, m, name, args[0], window)


def flatten_rule(build: Build, m: nn.Flatten, name: str, at, args) -> Feed:
    """Flatten(1) of each sample's spikes (layout only: the pending pools stay, C-order kept); a no-op on flat
    spikes."""
    where = described(name, m)
    if (m.start_dim, m.end_dim) != (1, -1):
        raise layer_error(where, f"only start_dim=1, end_dim=-1 is supported, got ({m.start_dim}, {m.end_dim})")
    feed = spikes_of(args[0], tag(name, m), type(m).__name__)
    if len(feed.shape) == 1:
        return feed
    if feed.layout != "chw" or feed.flat or len(feed.pop.shape) != 3:
        raise layer_error(where, f"expects a (C, H, W) input, got {feed.layout} of shape {feed.shape}")
    return Feed(feed.pop, "chw", feed.pools, flat=True, tags=feed.tags, line=feed.line)


def unflatten_rule(build: Build, m: nn.Unflatten, name: str, at, args) -> Feed | Current:
    """Unflatten(1, sizes) of a flat per-sample tensor: a flat current of dense stages takes the shape (its neurons
    numbered in the same C-order); spikes undo their Flatten, or their population (no conv output) takes the
    shape. A 2-D shape (C, L) is a 1-D signal, held as (C, 1, L)."""
    where, value, t = described(name, m), args[0], tag(name, m)
    held = value.shape if isinstance(value, Feed) else value.out_shape
    if m.dim not in (1, -1) or len(held) != 1:
        raise layer_error(where, f"only dim=1 (2 at top level) of a flat tensor is supported, got dim {m.dim} on "
                                 f"per-sample shape {held}")
    shape = unflattened(m.unflattened_size, held[0], t)
    line = len(shape) == 2 or (value.line and len(shape) != 3)
    if len(shape) == 2:
        shape = (shape[0], 1, shape[1])
    layout = "chw" if len(shape) == 3 else "flat"
    if isinstance(value, Current):
        if value.layout != "flat" or any(s.kind != "dense" for s in value.stages):
            raise layer_error(where, "only a flat current of dense weight layers can be unflattened")
        return Current(value.tagged(t).stages, value.bias, shape, layout, line)
    if value.pools or value.mean or value.layout == "tokens":
        if not value.flat or shape != value.chw:
            raise layer_error(where, f"only undoing the Flatten of a pooled or conv output is supported, got {shape}")
        return Feed(value.pop, "chw", value.pools, tags=value.tags + (t,), line=line)
    pop = value.pop if value.pop.shape == shape else reshape_population(build, value.pop, shape, t)
    return Feed(pop, layout, tags=value.tags + (t,), line=line)


def to_tokens_rule(build: Build, m: nn.Module, name: str, at, args) -> Feed:
    """ToTokens: a plain (D, H, W) population read as L = H*W tokens of D features."""
    feed = spikes_of(args[0], tag(name, m), "ToTokens")
    if not feed.plain or feed.layout != "chw":
        raise layer_error(tag(name, m), "ToTokens needs a plain (D, H, W) population output")
    return Feed(feed.pop, "tokens")


def token_mean_rule(build: Build, m: nn.Module, name: str, at, args) -> Feed:
    """TokenMean: tokens averaged, pending (folded into the head Linear)."""
    feed = spikes_of(args[0], tag(name, m), "TokenMean")
    if not feed.plain or feed.layout != "tokens":
        raise layer_error(tag(name, m), "TokenMean needs plain tokens")
    return Feed(feed.pop, "tokens", mean=True, tags=(tag(name, m),))


def identity_rule(build: Build, m: nn.Module, name: str, at, args):
    """Dropout (identity at eval) and Identity change nothing."""
    return args[0]


#: exact module type -> rule, the plain torch class and its SpikingJelly multi-step wrapper
RULES = {
    **{t: maxpool_rule for t in (nn.MaxPool2d, layer.MaxPool2d, nn.MaxPool1d, layer.MaxPool1d)},
    **{t: avgpool_rule for t in (nn.AvgPool2d, layer.AvgPool2d, nn.AvgPool1d, layer.AvgPool1d)},
    **{t: adaptive_avgpool_rule for t in (nn.AdaptiveAvgPool2d, layer.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d,
                                          layer.AdaptiveAvgPool1d)},
    nn.Flatten: flatten_rule, layer.Flatten: flatten_rule, nn.Unflatten: unflatten_rule,
    ToTokens: to_tokens_rule, TokenMean: token_mean_rule,
    **{t: identity_rule for t in (nn.Dropout, nn.Dropout2d, nn.Identity, layer.Dropout, layer.Dropout2d)},
}
