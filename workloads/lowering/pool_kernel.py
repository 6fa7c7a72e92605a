"""Compiled 2-D max pooling for the trace recorder (workloads.lowering.fused_pool): the values of torch's CPU
max_pool2d bit for bit, without the int64 argmax indices torch's kernel also computes and writes.

torch (aten/src/ATen/native/cpu/MaxPoolKernel.cpp, cpu_max_pool, contiguous NCHW float) takes, for each output,
the window's rows then columns in order, starting from -inf, and keeps a value when `val > max || isnan(val)`;
padded positions are skipped. The same comparisons in the same order give the same value, bits included: the
first of equal values (so -0.0 before 0.0 keeps -0.0), the last NaN of a window. Floor mode and dilation 1 only
(the caller checks).
"""
from __future__ import annotations

import numpy as np
from numba import njit


def pool_shape(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a floor-mode, dilation-1 pooling of `size` positions (torch's pooling_output_shape)."""
    return (size + 2 * padding - kernel) // stride + 1


def max_pool_planes(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                    parts: int = 1, run=None) -> np.ndarray:
    """float32 (P, OH, OW) max pooling of x float32 (P, H, W) C-contiguous planes, as torch's max_pool2d (floor
    mode, dilation 1); OH, OW from pool_shape, both >= 1 (the caller checks). parts, run: the planes are split into
    `parts` ranges and run(fn, ranges) calls fn on each (workloads.lowering.jobs.Jobs.map; None: in turn here)."""
    n_p = x.shape[0]
    out = np.empty((n_p, pool_shape(x.shape[1], kernel[0], stride[0], padding[0]),
                    pool_shape(x.shape[2], kernel[1], stride[1], padding[1])), np.float32)
    bounds = np.linspace(0, n_p, max(1, min(parts, n_p)) + 1).astype(np.int64)
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    if kernel == stride == (2, 2) and padding == (0, 0):
        call = lambda r: _pool_2x2(x, out, r[0], r[1])
    elif kernel == (3, 3) and stride == (2, 2) and padding == (1, 1):
        call = lambda r: _pool_3x3_s2_p1(x, out, r[0], r[1])
    else:
        call = lambda r: _pool(x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], r[0], r[1])
    list((run or map)(call, ranges))  # Jobs.map runs a single range on the caller's thread
    return out


@njit(cache=True, nogil=True)
def _keep(v, m):
    """torch's max_pool update: v replaces the running max m when greater or NaN."""
    return v if v > m or np.isnan(v) else m


@njit(cache=True, nogil=True)
def _pool_2x2(x, out, p0, p1) -> None:
    """Planes [p0, p1) of a 2x2, stride-2, unpadded pooling: window order (0, 0), (0, 1), (1, 0), (1, 1) as torch's.
    Releases the GIL."""
    n_oh, n_ow = out.shape[1], out.shape[2]
    lowest = np.float32(-np.inf)
    for p in range(p0, p1):
        for oh in range(n_oh):
            r0, r1, o = x[p, 2 * oh], x[p, 2 * oh + 1], out[p, oh]
            for ow in range(n_ow):
                m = _keep(r0[2 * ow], lowest)
                m = _keep(r0[2 * ow + 1], m)
                m = _keep(r1[2 * ow], m)
                o[ow] = _keep(r1[2 * ow + 1], m)


@njit(cache=True, nogil=True)
def _pool_3x3_s2_p1(x, out, p0, p1) -> None:
    """Planes [p0, p1) of a 3x3, stride-2 pooling padded by 1 (Spikformer's patch splitting): each output row
    takes its window's rows in order (_row_3s2). Releases the GIL."""
    n_h, n_w = x.shape[1], x.shape[2]
    lowest = np.float32(-np.inf)
    for p in range(p0, p1):
        for oh in range(out.shape[1]):
            o = out[p, oh]
            o[:] = lowest
            for ih in range(max(2 * oh - 1, 0), min(2 * oh + 2, n_h)):
                _row_3s2(x[p, ih], o, n_w)


@njit(cache=True, nogil=True)
def _row_3s2(row, o, n_w) -> None:
    """Fold input row `row` (n_w values) into output row o: o[ow] takes columns 2 ow - 1, 2 ow, 2 ow + 1 in that
    order, those inside the row (the first output's column -1 and the last ones' past the end are padding)."""
    n_ow = len(o)
    m = _keep(row[0], o[0])
    o[0] = _keep(row[1], m) if n_w > 1 else m
    hi = min(n_ow, (n_w - 2) // 2 + 1)  # outputs whose three columns are all inside the row
    for ow in range(1, hi):
        b = 2 * ow - 1
        o[ow] = _keep(row[b + 2], _keep(row[b + 1], _keep(row[b], o[ow])))
    for ow in range(max(hi, 1), n_ow):
        m = o[ow]
        for iw in range(2 * ow - 1, min(2 * ow + 2, n_w)):
            m = _keep(row[iw], m)
        o[ow] = m


@njit(cache=True, nogil=True)
def _pool(x, out, kh, kw, sh, sw, ph, pw, p0, p1) -> None:
    """Planes [p0, p1) of a kh x kw pooling with strides (sh, sw) and paddings (ph, pw): each window clipped to
    the plane (padding is skipped, as torch's), rows then columns. Releases the GIL."""
    n_h, n_w = x.shape[1], x.shape[2]
    n_oh, n_ow = out.shape[1], out.shape[2]
    lowest = np.float32(-np.inf)
    for p in range(p0, p1):
        for oh in range(n_oh):
            h0 = oh * sh - ph
            h1, h0 = min(h0 + kh, n_h), max(h0, 0)
            for ow in range(n_ow):
                w0 = ow * sw - pw
                w1, w0 = min(w0 + kw, n_w), max(w0, 0)
                m = lowest
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        m = _keep(x[p, ih, iw], m)
                out[p, oh, ow] = m
