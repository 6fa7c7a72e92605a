"""Per-layer lowering rules: walk a SpikingJelly multi-step nn.Sequential and emit populations and projections.

Each supported module type has one small converter, found by exact type in LAYER_RULES (the plain torch layer
and its SpikingJelly `layer.*` wrapper) or NEURON_RULES. The linear stage between two populations (Conv2d or
Linear, with BatchNorm and AvgPool2d folded in) becomes one projection; MaxPool2d becomes an OR population; a
low-rank layer (DSP) two projections through a relay population. Per-layer weight bits, storage format and
neuron state bits of a compressed model come in through the Walk (from a CompressionResult).

1-D signals (audio, keyword spotting: inputs (T, N, C, L)) are held as (C, 1, L): a Conv1d is a conv projection
of kernel (1, k), MaxPool1d/AvgPool1d pool windows (1, k), so the hardware contract's (C, H, W) conv geometry
serves both; the neuron numbering (C-order) is the same. SpikingJelly's recurrent containers
(workloads.lowering_recurrent) add a projection from a neuron population to itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn
from torch.nn.utils import parametrize

from hwmodels.trace import NeuronModel, Population, Projection
from workloads.compression.dsp import LowRankConv2d, LowRankLinear
from workloads.neurons import CubaLIFNode, QLIFNode, SLIFNode


@dataclass
class _Weight:
    """A pending weight stage: weights (float64), bias per output channel/feature and torch conv geometry."""

    kind: str
    w: torch.Tensor
    b: torch.Tensor | None
    out_shape: tuple[int, ...]
    origin: str
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bits: int | None = None
    storage: str | None = None
    name: str | None = None


@dataclass
class Walk:
    """State of one lowering walk (passed to every rule, returned at the end).

    src: the population feeding the pending stage; shape: per-sample shape of the tensor at this point of the
    model (after pending pools/flatten); pools: pending average-pool kernels (kh, kw) to fold into the next
    weight layer; spatial: the (C, H, W) shape just before the last Flatten; hooks: population -> module whose
    forward output is that population's spike tensor. layer_bits / layer_storage / state_bits: per-layer
    settings by module index (a CompressionResult's weight_bits / storage / state_bits), see `hardware_of`.
    input_current: populations whose spiking node takes the input tensor as its current (no in-projection).
    line: the model's per-sample tensors are 1-D signals (C, L), held here as (C, 1, L) (Conv1d models).
    recurrent: {projection: delay in timesteps} of the projections from a population to itself.
    """

    src: Population
    shape: tuple[int, ...]
    weight_bits: int
    storage: str | None
    layer_bits: dict[str, int] = field(default_factory=dict)
    layer_storage: dict[str, str] = field(default_factory=dict)
    state_bits: dict[str, int] = field(default_factory=dict)
    populations: list[Population] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)
    hooks: dict[str, nn.Module] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {"populations": {}, "projections": {}})
    pools: list[tuple[int, int]] = field(default_factory=list)
    spatial: tuple[int, ...] | None = None
    weight: _Weight | None = None
    tags: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    input_current: list[str] = field(default_factory=list)
    line: bool = False
    recurrent: dict[str, int] = field(default_factory=dict)

    def next_name(self, prefix: str) -> str:
        """`prefix` followed by a 1-based counter per prefix (conv1, conv2, fc1, lif1, ...)."""
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]}"

    def storage_for(self, kind: str, layer: str | None = None) -> str:
        """Storage format of a projection of `kind`: the requested one (lower's storage=, for every projection),
        else the layer's own (`layer`, e.g. "sparse" after unstructured pruning), else "conv"/"dense" by kind; a
        "conv" request applies to conv projections only (dense projections stay "dense")."""
        wanted = self.storage if self.storage is not None else layer
        if wanted is None or (wanted == "conv" and kind != "conv"):
            return "conv" if kind == "conv" else "dense"
        return wanted

    def hardware_of(self, index: str, weight: "_Weight") -> None:
        """Stamp the per-layer weight bits and storage of module `index` (if any) on the pending weight stage."""
        weight.bits = self.layer_bits.get(index)
        weight.storage = self.layer_storage.get(index)


def _tag(index: str, module: nn.Module) -> str:
    return f"{index}:{type(module).__name__}"


def _err(index: str, module: nn.Module, msg: str) -> ValueError:
    return ValueError(f"layer {index} ({type(module).__name__}): {msg}")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ---------------------------------------------------------------- weight layers (and what folds into them)

def _conv_padding(m: nn.modules.conv._ConvNd, index: str) -> tuple[int, ...]:
    """Symmetric zero padding of a Conv1d/Conv2d, one entry per spatial axis; 'same' needs dilation*(k-1) even.
    Raises ValueError otherwise."""
    if m.padding_mode != "zeros":
        raise _err(index, m, f"padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
    if m.padding == "valid":
        return (0,) * len(m.kernel_size)
    if m.padding == "same":
        span = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(s % 2 for s in span):
            raise _err(index, m, "padding='same' with an even kernel span is asymmetric; not supported")
        return tuple(s // 2 for s in span)
    return tuple(int(p) for p in m.padding)


def _conv_out(shape, c_out, k, stride, padding, dilation, index, m) -> tuple[int, int, int]:
    size = [(shape[1 + i] + 2 * padding[i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
    if min(size) <= 0:
        raise _err(index, m, f"input of shape {shape} is smaller than the kernel")
    return (int(c_out), size[0], size[1])


def _fold_pool_into_conv(w, stride, padding, dilation, pool, index, m):
    """Conv after AvgPool2d(k, k) == conv on the un-pooled map with kernel kron(w, ones(k))/k^2, stride k*s,
    padding k*p (exact when the pooled map tiles the input, checked by the pool rule; needs dilation 1)."""
    if dilation != (1, 1):
        raise _err(index, m, f"cannot fold a preceding average pooling into a conv with dilation {dilation}")
    kh, kw = pool
    w = w.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
    return w, (stride[0] * kh, stride[1] * kw), (padding[0] * kh, padding[1] * kw)


def seen_shape(walk: Walk) -> tuple[int, ...]:
    """walk.shape as the model sees it: (C, L) for a 1-D signal held as (C, 1, L)."""
    if walk.line and len(walk.shape) == 3:
        return (walk.shape[0], walk.shape[2])
    return walk.shape


def _check_line(walk: Walk, m: nn.Module, index: str, line: bool) -> None:
    """Raise ValueError when a 2-D layer meets 1-D signals (C, L) or a 1-D layer meets images (C, H, W)."""
    if len(walk.shape) != 3 or walk.line == line:
        return
    if line:
        raise _err(index, m, f"needs 1-D signals (C, L), i.e. inputs (T, N, C, L); got per-sample shape "
                             f"{walk.shape} (images (C, H, W))")
    raise _err(index, m, f"needs images (C, H, W), i.e. inputs (T, N, C, H, W); got 1-D signals (C, L) = "
                         f"{seen_shape(walk)}")


def _conv(walk: Walk, m: nn.Conv2d, index: str) -> None:
    """Conv2d on (C, H, W): the pending conv stage (AvgPools before it folded in)."""
    _check_line(walk, m, index, False)
    _conv_stage(walk, m, index, m.weight.detach().cpu().double(), _pair(m.stride), _conv_padding(m, index),
                _pair(m.dilation), "Conv2d", f"(C={m.in_channels}, H, W)")


def _conv1d(walk: Walk, m: nn.Conv1d, index: str) -> None:
    """Conv1d on a (C, L) signal, held as (C, 1, L): a conv stage of weight (C_out, C_in/groups, 1, k), stride
    (1, s), padding (0, p), dilation (1, d); output (C_out, 1, L_out)."""
    _check_line(walk, m, index, True)
    _conv_stage(walk, m, index, m.weight.detach().cpu().double().unsqueeze(2), (1, int(m.stride[0])),
                (0, _conv_padding(m, index)[0]), (1, int(m.dilation[0])), "Conv1d", f"(C={m.in_channels}, L)")


def _conv_stage(walk: Walk, m: nn.modules.conv._ConvNd, index: str, w: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int], origin: str, wants: str) -> None:
    """The pending conv stage of `m` with 4-D weight w (C_out, C_in/groups, kh, kw) on walk.shape (C, H, W)."""
    if walk.weight is not None:
        raise _err(index, m, "two weight layers without a spiking neuron between them are not supported")
    if len(walk.shape) != 3 or walk.shape[0] != m.in_channels:
        raise _err(index, m, f"expects input {wants}, got per-sample shape {seen_shape(walk)}")
    out_shape = _conv_out(walk.shape, m.out_channels, tuple(w.shape[2:]), stride, padding, dilation, index, m)
    for pool in reversed(walk.pools):
        w, stride, padding = _fold_pool_into_conv(w, stride, padding, dilation, pool, index, m)
    b = None if m.bias is None else m.bias.detach().cpu().double()
    walk.weight = _Weight("conv", w, b, out_shape, origin, stride, padding, dilation, int(m.groups))
    walk.hardware_of(index, walk.weight)
    walk.shape, walk.pools = out_shape, []
    walk.tags.append(_tag(index, m))


def _linear(walk: Walk, m: nn.Linear, index: str) -> None:
    if walk.weight is not None:
        raise _err(index, m, "two weight layers without a spiking neuron between them are not supported")
    if len(walk.shape) != 1 or walk.shape[0] != m.in_features:
        raise _err(index, m, f"expects a flat input of {m.in_features} features, got per-sample shape "
                             f"{walk.shape} (a Flatten is needed after a (C, H, W) layer)")
    b = None if m.bias is None else m.bias.detach().cpu().double()
    dense_stage(walk, m.weight.detach().cpu().double(), b, "Linear")
    walk.hardware_of(index, walk.weight)
    walk.tags.append(_tag(index, m))


def dense_stage(walk: Walk, w: torch.Tensor, b: torch.Tensor | None, origin: str) -> None:
    """The pending dense stage of weight w (out, in) on the flat tensor walk.shape == (in,); pending average pools
    (before a Flatten) spread each pooled weight evenly over its window."""
    out = int(w.shape[0])
    if walk.pools:  # Linear after AvgPool+Flatten: each pooled input spreads evenly over its k x k window
        w = w.reshape((out,) + walk.spatial)
        for kh, kw in reversed(walk.pools):
            w = w.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
        w = w.reshape(out, -1)
    walk.weight = _Weight("dense", w, b, (out,), origin)
    walk.shape, walk.pools = (out,), []


def _batchnorm(walk: Walk, m: nn.modules.batchnorm._BatchNorm, index: str) -> None:
    """Fold eval-mode BN into the pending weights: w' = w*gamma/sqrt(var+eps), b' = (b-mean)*scale + beta (per
    output channel: every row of a channel for a dense stage unflattened to (C, H, W))."""
    wt = walk.weight
    if wt is None or walk.shape != wt.out_shape:
        raise _err(index, m, "BatchNorm must directly follow a Conv2d or Linear layer")
    if m.num_features != wt.out_shape[0]:
        raise _err(index, m, f"num_features {m.num_features} != {wt.out_shape[0]} channels of the layer before")
    if m.running_mean is None:
        raise _err(index, m, "track_running_stats=False uses batch statistics at eval; cannot be folded")
    scale = (m.running_var.detach().cpu().double() + m.eps).rsqrt()
    shift = torch.zeros_like(scale)
    if m.affine:
        scale = scale * m.weight.detach().cpu().double()
        shift = m.bias.detach().cpu().double()
    rows = wt.w.shape[0] // len(scale)  # a dense stage unflattened to (C, H, W) has H*W rows per channel
    scale, shift, mean = (t.repeat_interleave(rows) for t in (scale, shift, m.running_mean.detach().cpu().double()))
    b = torch.zeros_like(scale) if wt.b is None else wt.b
    wt.w = wt.w * scale.reshape((-1,) + (1,) * (wt.w.dim() - 1))
    wt.b = (b - mean) * scale + shift
    walk.tags.append(_tag(index, m))


def _add_pool(walk: Walk, m: nn.Module, index: str, kernel: tuple[int, int]) -> None:
    if walk.weight is not None or len(walk.shape) != 3:
        raise _err(index, m, "average pooling must follow a spiking layer (it is folded into the next "
                             "Conv2d/Linear); pooling of currents before a neuron is not supported")
    c, h, w = walk.shape
    if h % kernel[0] or w % kernel[1]:
        raise _err(index, m, f"input {h}x{w} is not divisible by the pooling window {kernel}: folding would "
                             "not be exact")
    walk.pools.append(kernel)
    walk.shape = (c, h // kernel[0], w // kernel[1])
    walk.tags.append(_tag(index, m))


def _single(v) -> int:
    return int(v) if isinstance(v, int) else int(v[0])


def _avgpool(walk: Walk, m: nn.AvgPool2d, index: str) -> None:
    _check_line(walk, m, index, False)
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None else _pair(m.stride)
    if stride != kernel or _pair(m.padding) != (0, 0) or m.divisor_override is not None:
        raise _err(index, m, f"only non-overlapping windows fold exactly (stride == kernel_size, padding 0, no "
                             f"divisor_override); got kernel {kernel}, stride {stride}, padding {m.padding}")
    _add_pool(walk, m, index, kernel)


def _avgpool1d(walk: Walk, m: nn.AvgPool1d, index: str) -> None:
    """AvgPool1d(k) on (C, L) signals: a pending (1, k) window, folded into the next weight layer."""
    _check_line(walk, m, index, True)
    k = _single(m.kernel_size)
    stride = k if m.stride is None else _single(m.stride)
    if stride != k or _single(m.padding) != 0:
        raise _err(index, m, f"only non-overlapping windows fold exactly (stride == kernel_size, padding 0); got "
                             f"kernel {k}, stride {stride}, padding {m.padding}")
    _add_pool(walk, m, index, (1, k))


def _adaptive_avgpool1d(walk: Walk, m: nn.AdaptiveAvgPool1d, index: str) -> None:
    _check_line(walk, m, index, True)
    if len(walk.shape) != 3:
        raise _err(index, m, f"expects a (C, L) input, got per-sample shape {seen_shape(walk)}")
    out = walk.shape[2] if m.output_size is None else _single(m.output_size)
    if walk.shape[2] % out:
        raise _err(index, m, f"input length {walk.shape[2]} is not divisible by output_size {out}")
    _add_pool(walk, m, index, (1, walk.shape[2] // out))


def _adaptive_avgpool(walk: Walk, m: nn.AdaptiveAvgPool2d, index: str) -> None:
    _check_line(walk, m, index, False)
    if len(walk.shape) != 3:
        raise _err(index, m, f"expects a (C, H, W) input, got per-sample shape {walk.shape}")
    out = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
    out = [walk.shape[1 + i] if o is None else int(o) for i, o in enumerate(out)]
    if walk.shape[1] % out[0] or walk.shape[2] % out[1]:
        raise _err(index, m, f"input {walk.shape[1:]} is not divisible by output_size {tuple(out)}")
    _add_pool(walk, m, index, (walk.shape[1] // out[0], walk.shape[2] // out[1]))


def _flatten(walk: Walk, m: nn.Flatten, index: str) -> None:
    if (m.start_dim, m.end_dim) != (1, -1):
        raise _err(index, m, f"only start_dim=1, end_dim=-1 is supported, got ({m.start_dim}, {m.end_dim})")
    if len(walk.shape) > 1:
        walk.spatial = walk.shape
    walk.shape = (int(np.prod(walk.shape)),)


def unflattened(sizes, n: int, tag: str) -> tuple[int, ...]:
    """nn.Unflatten's unflattened_size (one entry may be -1) resolved for `n` values; ValueError naming `tag`
    when the sizes do not multiply to n."""
    sizes = [int(s) for s in sizes]
    if sizes.count(-1) == 1:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = n // known if known > 0 else -1
    if any(s <= 0 for s in sizes) or int(np.prod(sizes)) != n:
        raise ValueError(f"layer {tag}: unflattened_size {tuple(sizes)} does not hold {n} values")
    return tuple(sizes)


def reshape_population(walk: Walk, pop: Population, shape: tuple[int, ...], tag: str) -> Population:
    """`pop` (one of walk.populations) given another shape of the same size, its C-order neuron numbering kept,
    and put in its place. Raises ValueError naming `tag` when a conv projection targets it (the convolution
    fixes its shape)."""
    if any(p.target == pop.name and p.kind == "conv" for p in walk.projections):
        raise ValueError(f"layer {tag}: {pop.name!r} is the output of a convolution, shape {pop.shape}; it cannot "
                         f"be reshaped to {shape}")
    new = replace(pop, shape=shape)
    walk.populations[[p.name for p in walk.populations].index(pop.name)] = new
    return new


def _unflatten(walk: Walk, m: nn.Unflatten, index: str) -> None:
    """Unflatten(1, sizes) of a flat per-sample tensor (a top-level Unflatten(2, sizes) is seen so): a pending
    dense current takes the shape (its neurons numbered in the same C-order), spikes take it by reshaping their
    population (not a conv output) unless it undoes the last Flatten. A 2-D shape (C, L) is a 1-D signal, held
    as (C, 1, L) (walk.line); a 3-D one an image."""
    if m.dim not in (1, -1) or len(walk.shape) != 1:
        raise _err(index, m, f"only dim=1 (2 at top level) of a flat tensor is supported, got dim {m.dim} on "
                             f"per-sample shape {walk.shape}")
    shape = unflattened(m.unflattened_size, walk.shape[0], _tag(index, m))
    line = len(shape) == 2 or (walk.line and len(shape) != 3)
    if len(shape) == 2:  # a (C, L) signal, held as (C, 1, L)
        shape = (shape[0], 1, shape[1])
    wt = walk.weight
    if walk.pools or (wt is not None and wt.kind == "conv"):
        if shape != (walk.spatial if walk.pools else wt.out_shape):
            raise _err(index, m, f"only undoing the Flatten of a pooled or conv output is supported, got {shape}")
    elif wt is not None:
        wt.out_shape = shape
    elif walk.src.shape != shape:
        walk.src = reshape_population(walk, walk.src, shape, _tag(index, m))
    walk.shape, walk.spatial, walk.line = shape, None, line
    walk.tags.append(_tag(index, m))


def _identity(walk: Walk, m: nn.Module, index: str) -> None:
    """Dropout (identity at eval) and Identity change nothing."""


# ---------------------------------------------------------------- populations

def _emit(walk: Walk, pop: Population, tags: list[str], hook: nn.Module | None, name: str | None = None) -> None:
    """Turn the pending weight stage into a projection (named `name`, else conv<k>/fc<k>) from walk.src to the new
    population `pop`; its weight bits and storage are the layer's (Walk.hardware_of) or the walk's defaults."""
    wt = walk.weight
    name = name or wt.name or walk.next_name("conv" if wt.kind == "conv" else "fc")
    bias = None
    if wt.b is not None:
        per_channel = wt.b.numpy().astype(np.float32)
        bias = np.repeat(per_channel, pop.size // len(per_channel))
    walk.projections.append(Projection(
        name=name, source=walk.src.name, target=pop.name, kind=wt.kind, weight=wt.w.numpy().astype(np.float32),
        stride=wt.stride, padding=wt.padding, dilation=wt.dilation, groups=wt.groups,
        weight_bits=wt.bits or walk.weight_bits, storage=walk.storage_for(wt.kind, wt.storage), bias=bias))
    walk.origin[name] = wt.origin
    walk.layers["projections"][name] = list(walk.tags)
    _add_population(walk, pop, tags, hook)


def _add_population(walk: Walk, pop: Population, tags: list[str], hook: nn.Module | None) -> None:
    if hook is not None and any(h is hook for h in walk.hooks.values()):
        raise ValueError(f"{tags[0]}: the same module object is used twice; its recorded spikes would mix")
    walk.populations.append(pop)
    walk.layers["populations"][pop.name] = tags
    if hook is not None:
        walk.hooks[pop.name] = hook
    walk.src, walk.weight, walk.tags = pop, None, []


def _maxpool(walk: Walk, m: nn.MaxPool2d, index: str) -> None:
    """MaxPool of binary spikes == OR over the window == IF(threshold 1, reset 0) fed by a depthwise all-ones
    conv (zero padding: torch pads max-pool with -inf, so both see only the in-bounds spikes)."""
    _check_line(walk, m, index, False)
    _maxpool_stage(walk, m, index, *maxpool_geometry(m))


def _maxpool1d(walk: Walk, m: nn.MaxPool1d, index: str) -> None:
    """MaxPool1d on (C, L) spikes held as (C, 1, L): the OR population of window (1, k) (see _maxpool)."""
    _check_line(walk, m, index, True)
    _maxpool_stage(walk, m, index, *maxpool_geometry(m))


def maxpool_geometry(m: nn.Module) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) pairs of a MaxPool2d, or of a MaxPool1d on (C, 1, L): (1, k) windows."""
    stride = m.kernel_size if m.stride is None else m.stride
    if isinstance(m, nn.MaxPool1d):
        return (1, _single(m.kernel_size)), (1, _single(stride)), (0, _single(m.padding)), (1, _single(m.dilation))
    return _pair(m.kernel_size), _pair(stride), _pair(m.padding), _pair(m.dilation)


def _maxpool_stage(walk: Walk, m: nn.Module, index: str, k: tuple[int, int], s: tuple[int, int],
                   p: tuple[int, int], d: tuple[int, int]) -> None:
    """The OR population "pool<k>" and its all-ones depthwise projection "maxpool<k>" (2-D window geometry)."""
    what = _base_type(m).__name__
    if walk.weight is not None or walk.pools or walk.shape != walk.src.shape:
        raise _err(index, m, f"{what} must directly follow a spiking neuron layer or the input")
    if walk.src.graded:
        raise _err(index, m, f"max-pooling graded values of {walk.src.name!r} is not an OR; not supported")
    if m.return_indices:
        raise _err(index, m, "return_indices=True is not supported")
    out = _conv_out(walk.shape, walk.shape[0], k, s, p, d, index, m)
    if m.ceil_mode and tuple(torch.nn.functional.max_pool2d(
            torch.zeros((1,) + walk.shape), k, s, p, d, ceil_mode=True).shape[1:]) != out:
        raise _err(index, m, "ceil_mode=True adds a partial window here; a conv projection cannot express it")
    c = walk.shape[0]
    name, pop = walk.next_name("maxpool"), Population(walk.next_name("pool"), out,
                                                      NeuronModel("IF", 1.0, None, 0.0))
    walk.projections.append(Projection(
        name=name, source=walk.src.name, target=pop.name, kind="conv", weight=np.ones((c, 1) + k, np.float32),
        stride=s, padding=p, dilation=d, groups=c, weight_bits=1, storage=walk.storage_for("conv")))
    walk.origin[name] = what
    walk.layers["projections"][name] = [_tag(index, m)]
    _add_population(walk, pop, [_tag(index, m)], m)
    walk.shape = out


def _threshold(m: neuron.BaseNode) -> float:
    return float(m.v_threshold)


def _reset(m: neuron.BaseNode) -> float | None:
    return None if m.v_reset is None else float(m.v_reset)


def _if(m: neuron.BaseNode) -> NeuronModel:
    return NeuronModel("IF", _threshold(m), None, _reset(m))


def _lif(m: neuron.BaseNode) -> NeuronModel:
    return NeuronModel("LIF", _threshold(m), float(m.tau), _reset(m), bool(m.decay_input))


def _mean_theta(m: SLIFNode) -> float:
    """Mean learned threshold of an sLIF node; ValueError while it is still lazily uninitialised."""
    if isinstance(m.theta, nn.parameter.UninitializedParameter):
        raise ValueError("sLIF node: threshold not initialised; run one forward pass before lowering")
    return float(m.theta.detach().double().mean())


def _decay(kind: str, threshold: Callable[[nn.Module], float]) -> Callable[[nn.Module], NeuronModel]:
    """workloads.neurons.DecayNode family, H = (1 - 1/tau) V + X: SpikingJelly's LIF form without input decay."""
    return lambda m: NeuronModel(kind, threshold(m), float(m.tau), _reset(m), False)


NEURON_RULES: dict[type, Callable[[nn.Module], NeuronModel]] = {
    neuron.IFNode: _if, neuron.TernaryIFNode: _if, neuron.LIFNode: _lif, neuron.TernaryLIFNode: _lif,
    neuron.ParametricLIFNode: lambda m: NeuronModel(  # learned tau = 1 / sigmoid(w) (Fang et al., ICCV 2021)
        "PLIF", _threshold(m), float(1.0 / torch.sigmoid(m.w.detach().cpu().double())), _reset(m),
        bool(m.decay_input)),
    # Q-SNN neuron: a LIF whose state after each reset is Q_b(tanh V); the graph keeps the LIF charge and the b
    # bits of state (STATE_BITS), the tanh/rounding is the chip's state format
    QLIFNode: _decay("LIF", _threshold),
    # sLIF: learnable per-neuron thresholds; NeuronModel holds one threshold, their mean
    SLIFNode: _decay("sLIF", lambda m: _mean_theta(m)),
    # current-based LIF (imported NIR CubaLIF, snnTorch Synaptic): two states per neuron, the chip charges both
    CubaLIFNode: lambda m: NeuronModel("CubaLIF", _threshold(m), float(m.tau), _reset(m), False, float(m.tau_syn)),
}
#: the chip's spiking neuron models (hwmodels.trace.NEURON_KINDS without "input" and "relay")
CHIP_NEURONS = ("IF", "LIF", "PLIF", "sLIF", "CubaLIF")
#: node type -> bits of membrane state it keeps (others: Population's default); a CompressionResult overrides
STATE_BITS: dict[type, Callable[[nn.Module], int]] = {QLIFNode: lambda m: int(m.bits)}


def _is_ternary(m: nn.Module) -> bool:
    """True when the node emits {-1, 0, 1} spikes (SpikingJelly Ternary*Node or a workloads.neurons node with
    ternary=True): its population is graded so the trace keeps the signs."""
    return isinstance(m, (neuron.TernaryIFNode, neuron.TernaryLIFNode)) or bool(getattr(m, "ternary", False))


def neuron_population(walk: Walk, m: neuron.BaseNode, index: str, shape: tuple[int, ...]) -> Population:
    """The population of spiking node `m` (module index/name `index`): its NeuronModel (NEURON_RULES), the next
    "<kind><k>" name (one counter over all neuron layers: lif1, if2, plif3, ...), graded when ternary, its state
    bits (the compression's, else the node's own, STATE_BITS)."""
    model = NEURON_RULES[type(m)](m)
    bits = walk.state_bits.get(index) or (STATE_BITS[type(m)](m) if type(m) in STATE_BITS else None)
    return Population(f"{model.kind.lower()}{walk.next_name('')}", shape, model, graded=_is_ternary(m),
                      **({"state_bits": int(bits)} if bits else {}))


def _neuron(walk: Walk, m: neuron.BaseNode, index: str) -> None:
    if walk.weight is None and walk.src.is_input and not walk.pools:
        pop = neuron_population(walk, m, index, walk.shape)
        walk.input_current.append(pop.name)
        _add_population(walk, pop, [_tag(index, m)], m)
        return
    if walk.weight is None:
        raise _err(index, m, "a spiking neuron layer needs a Conv2d or Linear layer (or the input tensor) before it")
    _emit(walk, neuron_population(walk, m, index, walk.weight.out_shape), [_tag(index, m)], m)


def _lowrank(walk: Walk, m: nn.Module, index: str) -> None:
    """A DSP low-rank layer (workloads.compression.dsp) = two projections through a relay population (hwmodels
    storage.low_rank_layers naming): "<base>_b" from the source to "<base>_relay" (r neurons, or r channels x
    the output positions for a conv; kind "relay", graded: it forwards the value B s every timestep) and
    "<base>_a" from the relay to the next population, into which BN folds as usual; <base> is conv<k>/fc<k>.
    The layer's weight bits (CompressionResult key = the low-rank module's index) apply to both stages."""
    stage = _conv if isinstance(m.first, nn.Conv2d) else _linear
    stage(walk, m.first, f"{index}.first")
    walk.hardware_of(index, walk.weight)
    base = walk.next_name("conv" if walk.weight.kind == "conv" else "fc")
    relay = Population(f"{base}_relay", walk.weight.out_shape, NeuronModel("relay"), graded=True)
    walk.weight.origin = type(m).__name__
    _emit(walk, relay, [_tag(index, m) + ".first"], m.first, name=f"{base}_b")
    stage(walk, m.second, f"{index}.second")
    walk.hardware_of(index, walk.weight)
    walk.weight.origin, walk.weight.name = type(m).__name__, f"{base}_a"


def finish(walk: Walk) -> None:
    """Close the walk: a trailing weight stage becomes the non-spiking readout population "output"; an input
    population that only feeds input currents is dropped (drop_unread_input)."""
    if walk.pools:
        raise ValueError("model: trailing average pooling has no Conv2d/Linear after it to fold into")
    if walk.weight is not None:
        readout = NeuronModel("IF", float("inf"), None, 0.0)
        _emit(walk, Population("output", walk.weight.out_shape, readout), list(walk.tags[-1:]), None)
    drop_unread_input(walk)


def drop_unread_input(walk: Walk) -> None:
    """When spiking nodes take the input tensor as their current (walk.input_current), remove the input
    populations no projection reads (as source or gate): nothing on the chip sends their values."""
    if not walk.input_current:
        return
    read = {p.source for p in walk.projections} | {p.gate for p in walk.projections if p.gate is not None}
    for pop in [p for p in walk.populations if p.is_input and p.name not in read]:
        walk.populations.remove(pop)
        walk.layers["populations"].pop(pop.name, None)


_LAYER_RULES_BY_NAME: dict[str, Callable[[Walk, nn.Module, str], None]] = {
    "Conv2d": _conv, "Linear": _linear, "BatchNorm1d": _batchnorm, "BatchNorm2d": _batchnorm,
    "AvgPool2d": _avgpool, "AdaptiveAvgPool2d": _adaptive_avgpool, "MaxPool2d": _maxpool, "Flatten": _flatten,
    "Unflatten": _unflatten, "Conv1d": _conv1d, "MaxPool1d": _maxpool1d, "AvgPool1d": _avgpool1d,
    "AdaptiveAvgPool1d": _adaptive_avgpool1d,
    "Dropout": _identity, "Dropout2d": _identity, "Identity": _identity,
}
#: exact module type -> rule, for the plain torch class and its SpikingJelly multi-step wrapper. Exact types,
#: not isinstance: a subclass (layer.WSConv2d, a fake-quantized conv) computes something else from its weights.
LAYER_RULES: dict[type, Callable[[Walk, nn.Module, str], None]] = {
    **{cls: rule for name, rule in _LAYER_RULES_BY_NAME.items()
       for cls in (getattr(nn, name), getattr(layer, name, None)) if cls is not None},
    LowRankLinear: _lowrank, LowRankConv2d: _lowrank,
}


def _base_type(module: nn.Module) -> type:
    """type(module), seen through torch.nn.utils.parametrize (which swaps in a dynamic subclass)."""
    if parametrize.is_parametrized(module):
        return type(module).__bases__[0]
    return type(module)


def find_rule(module: nn.Module) -> Callable[[Walk, nn.Module, str], None] | None:
    """The rule for `module` (exact type, see LAYER_RULES and NEURON_RULES); None when unsupported."""
    if type(module) in NEURON_RULES:
        return _neuron
    return LAYER_RULES.get(_base_type(module))


def supported_types() -> list[str]:
    """Names of all supported module types (for error messages)."""
    return sorted({c.__name__ for c in list(LAYER_RULES) + list(NEURON_RULES)})


def supported_neurons() -> list[str]:
    """Names of the spiking node types the chip's neuron models express (NEURON_RULES)."""
    return sorted(c.__name__ for c in NEURON_RULES)


def neuron_refusal(tag: str, m: nn.Module) -> ValueError:
    """The one-line ValueError for spiking node `m` (module index or name `tag`) whose dynamics none of the chip's
    neuron models (hwmodels.trace.NEURON_KINDS) expresses, e.g. QIFNode, IzhikevichNode, KLIFNode."""
    name = type(m).__name__
    return ValueError(f"layer {tag} ({name}): spiking neuron {name} is not supported: its dynamics are not one of "
                      f"the chip's neuron models ({', '.join(CHIP_NEURONS)}); supported neurons: "
                      f"{', '.join(supported_neurons())}")
