"""Shape and window arithmetic of the lowering rules: conv output sizes, padding, average-pool folding, max-pool
windows, Unflatten sizes and the 1-D signal convention.

1-D signals (audio, keyword spotting: inputs (T, N, C, L)) are held as (C, 1, L): a Conv1d is a conv projection of
kernel (1, k), MaxPool1d/AvgPool1d pool windows (1, k), so the hardware contract's (C, H, W) conv geometry serves
both; the neuron numbering (C-order) is the same.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workloads.lowering.naming import layer_error


def pair(v) -> tuple[int, int]:
    """(v, v) for an int, else the first two entries of v as ints."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def single(v) -> int:
    """v for an int, else its first entry (torch's 1-D layers keep sizes as 1-tuples)."""
    return int(v) if isinstance(v, int) else int(v[0])


def seen_shape(shape: tuple[int, ...], line: bool) -> tuple[int, ...]:
    """A held per-sample shape as the model sees it: (C, L) for a 1-D signal held as (C, 1, L)."""
    if line and len(shape) == 3:
        return (shape[0], shape[2])
    return shape


def check_line(shape: tuple[int, ...], line: bool, where: str, wants_line: bool) -> None:
    """Raise ValueError (naming `where`) when a 2-D layer meets 1-D signals (C, L) or a 1-D layer meets images."""
    if len(shape) != 3 or line == wants_line:
        return
    if wants_line:
        raise layer_error(where, f"needs 1-D signals (C, L), i.e. inputs (T, N, C, L); got per-sample shape "
                                 f"{shape} (images (C, H, W))")
    raise layer_error(where, f"needs images (C, H, W), i.e. inputs (T, N, C, H, W); got 1-D signals (C, L) = "
                             f"{seen_shape(shape, line)}")


def conv_padding(m: nn.modules.conv._ConvNd, where: str) -> tuple[int, ...]:
    """Symmetric zero padding of a Conv1d/Conv2d, one entry per spatial axis; 'same' needs dilation*(k-1) even.
    Raises ValueError naming `where` otherwise."""
    if m.padding_mode != "zeros":
        raise layer_error(where, f"padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
    if m.padding == "valid":
        return (0,) * len(m.kernel_size)
    if m.padding == "same":
        span = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(s % 2 for s in span):
            raise layer_error(where, "padding='same' with an even kernel span is asymmetric; not supported")
        return tuple(s // 2 for s in span)
    return tuple(int(p) for p in m.padding)


def conv_out(shape: tuple[int, ...], c_out: int, k: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int], dilation: tuple[int, int], where: str) -> tuple[int, int, int]:
    """(C_out, H_out, W_out) of a conv window over per-sample (C, H, W) `shape`; ValueError naming `where` when the
    input is smaller than the kernel."""
    size = [(shape[1 + i] + 2 * padding[i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
    if min(size) <= 0:
        raise layer_error(where, f"input of shape {shape} is smaller than the kernel")
    return (int(c_out), size[0], size[1])


def fold_pool_into_conv(w: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                        dilation: tuple[int, int], pool: tuple[int, int], where: str):
    """Conv after AvgPool2d(k, k) == conv on the un-pooled map with kernel kron(w, ones(k))/k^2, stride k*s,
    padding k*p (exact when no window of the result reads the rows and columns the pool drops (torch floors an
    input the window does not tile), checked by check_pool_fold; needs dilation 1). Returns (w, stride, padding)."""
    if dilation != (1, 1):
        raise layer_error(where, f"cannot fold a preceding average pooling into a conv with dilation {dilation}")
    kh, kw = pool
    w = w.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
    return w, (stride[0] * kh, stride[1] * kw), (padding[0] * kh, padding[1] * kw)


def pooled_sizes(shape: tuple[int, ...], pools: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """(H, W) of a (C, H, W) map before each of the average `pools` and after the last: torch floors an input the
    window does not tile (its last rows and columns are dropped)."""
    sizes = [tuple(int(x) for x in shape[1:3])]
    for kh, kw in pools:
        sizes.append((sizes[-1][0] // kh, sizes[-1][1] // kw))
    return sizes


def check_pool_fold(shape: tuple[int, ...], pools: tuple[tuple[int, int], ...], out: tuple[int, int, int],
                    k: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], where: str) -> None:
    """ValueError naming `where` when the conv (kernel k, stride, padding) folded over `pools` onto the un-pooled
    (C, H, W) `shape` would read a row or column the pools drop (a padded conv after pooling an untiled map):
    the chip's conv would see those spikes where torch sees zero padding."""
    sizes, span = pooled_sizes(shape, pools), (1, 1)
    for kh, kw in pools:
        span = (span[0] * kh, span[1] * kw)
    for i in range(2):
        kept, n = sizes[-1][i] * span[i], int(shape[1 + i])
        starts = np.arange(out[1 + i]) * stride[i] - padding[i]
        if kept < n and bool(((starts + k[i] - 1 >= kept) & (starts < n)).any()):
            raise layer_error(where, f"the average pooling before it drops the last {n - kept} of {n} "
                                     f"{'rows' if i == 0 else 'columns'} of {shape}, which its padding would read "
                                     "once folded: not exact; pool a map the window tiles")


def spread_pools(w: torch.Tensor, shape: tuple[int, ...], pools: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Dense weight w (out, prod(pooled shape)) read after average pools + Flatten, as a weight on the un-pooled
    (C, H, W) map `shape`: each pooled input spreads evenly over its window; the rows and columns a pool drops
    (torch floors an input the window does not tile) get weight 0."""
    out, sizes = int(w.shape[0]), pooled_sizes(shape, pools)
    w = w.reshape((out, int(shape[0])) + sizes[-1])
    for (kh, kw), (h, wd) in zip(reversed(pools), reversed(sizes[:-1])):
        w = w.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
        w = torch.nn.functional.pad(w, (0, wd - w.shape[3], 0, h - w.shape[2]))
    return w.reshape(out, -1)


def maxpool_geometry(m: nn.Module) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) pairs of a MaxPool2d, or of a MaxPool1d on (C, 1, L): (1, k) windows."""
    stride = m.kernel_size if m.stride is None else m.stride
    if isinstance(m, nn.MaxPool1d):
        return (1, single(m.kernel_size)), (1, single(stride)), (0, single(m.padding)), (1, single(m.dilation))
    return pair(m.kernel_size), pair(stride), pair(m.padding), pair(m.dilation)


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
