"""Compiled kernel of workloads.lowering.fit.quantize_rows for b >= 2 bits: per output channel, symmetric uniform
quantization in float64 and the largest error, in one pass over each row (after one to find its peak) instead of
numpy's passes over blocks of rows. Every value goes through the IEEE operations of the plain numpy formula in
its order (no fastmath, no fused multiply-add): step = float64(max |w|) / levels, w / step (w / 1.0 where step is
0 or NaN), rounded half to even (np.rint), times step, rounded to w's dtype, then |float64(w_q) - float64(w)|, so
the result is the formula's bit for bit.

Maxima are taken on bit patterns, as unsigned integers (vectorised, unlike float maxima that must propagate NaN):
a float with its sign bit cleared orders as its integer pattern, and a NaN's pattern is above +inf's, so the
integer maximum of |w| or |w_q - w| is the float maximum, NaN whenever one of them is NaN, as numpy's.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def uniform_rows(a: np.ndarray, levels: int, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """(w_q, max |w_q - w|) of a float32/float64 array a (C, n) of C channels: each channel not in `keep` (bool
    (C,)) becomes np.rint(w / step) * step (step = max |w| of the channel / levels, float64; w / 1.0 where step is
    0), cast to a's dtype, the channels in `keep` stay as they are. w_q: a's dtype and shape (C-contiguous); the
    error is taken in float64 over every value (0.0 for an empty a; NaN when a holds a NaN)."""
    a = np.ascontiguousarray(a)
    q = np.empty_like(a)
    if a.size == 0:
        return q, 0.0
    bits = a.view(np.uint32 if a.dtype == np.float32 else np.uint64)
    magnitude = bits.dtype.type(np.iinfo(bits.dtype).max >> 1)  # every bit but the sign
    error = _quantize(a, bits, magnitude, float(levels), np.ascontiguousarray(keep, bool), q)
    return q, float(error)


@njit(cache=True, nogil=True)
def _quantize(a: np.ndarray, bits: np.ndarray, magnitude, levels: float, keep: np.ndarray,
              q: np.ndarray) -> float:
    """Fill q (a's dtype and shape) with uniform_rows' w_q of a (C, n), n >= 1, given bits: a viewed as
    uint32/uint64; magnitude: the mask of every bit but the sign (that dtype); levels: float64. Returns the
    error. Releases the GIL (quantize_model quantizes layers on threads, workloads.lowering.jobs)."""
    peak = np.empty(1, a.dtype)
    peak_bits = peak.view(bits.dtype)
    worst = np.uint64(0)
    for i in range(len(a)):
        peak_bits[0] = _max_magnitude(bits[i], magnitude)
        step = np.float64(peak[0]) / levels
        worst = max(worst, _quantize_row(a[i], q[i], step, keep[i]))
    return np.uint64(worst).view(np.float64)


@njit(cache=True)
def _max_magnitude(row_bits: np.ndarray, magnitude):
    """The bit pattern of max |w| over a row (n,) >= 1 of float bit patterns (NaN's when it holds a NaN)."""
    m = row_bits[0] & magnitude
    for j in range(1, len(row_bits)):
        m = max(m, row_bits[j] & magnitude)
    return m


@njit(cache=True)
def _quantize_row(row: np.ndarray, out: np.ndarray, step: float, keep: bool):
    """out = one row's w_q (row itself when keep); returns the uint64 bit pattern of its max |w_q - w| (float64)."""
    div = step if step > 0.0 else 1.0
    worst = np.uint64(0)
    for j in range(len(row)):
        w = np.float64(row[j])
        out[j] = w if keep else np.rint(w / div) * step
        gap = abs(np.float64(out[j]) - w)
        worst = max(worst, np.float64(gap).view(np.uint64))
    return worst
