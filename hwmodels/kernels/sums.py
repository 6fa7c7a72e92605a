"""Sums of many short float64 segments, each bit for bit equal to numpy's `segment.sum()`: numpy adds the
elements of a contiguous float array by pairwise summation (numpy/_core/src/umath/loops_utils.h.src,
pairwise_sum: one by one under 8 elements, 8 running sums up to 128, halves at multiples of 8 above) onto its
identity 0.0. Also the per-(sample, core) sums of the action counts (hwmodels.energy.costs.count: delivery_sums,
flow_sums), each equal to np.bincount's, which adds its weights one by one in index order, in one pass over the
deliveries and one over the flows instead of one bincount (and one float copy) per column: Spikformer-4-384's
count 38 -> 12 ms. Compiled with numba without fastmath, so every addition is the same IEEE operation in the same
order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux

SUMS_BLOCK = 128  # numpy's PW_BLOCKSIZE: rows up to this long are summed without halving


@njit(cache=True, inline="always")
def _block(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise_sum of a[lo:lo + n] for n <= 128 (no halving): one by one under 8 elements, else 8
    running sums, combined pairwise, then the rest one by one."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise_sum of a[lo:lo + n]."""
    if n <= SUMS_BLOCK:
        return _block(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(a, lo, n2) + _pairwise(a, lo + n2, n - n2)


@njit(cache=True)
def segment_sums(flat: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """float64 (len(ptr) - 1,): out[k] = flat[ptr[k]:ptr[k + 1]].sum() exactly as numpy computes it (flat float64,
    ptr int64 non-decreasing)."""
    out = np.empty(len(ptr) - 1)
    for k in range(len(ptr) - 1):
        out[k] = 0.0 + _pairwise(flat, ptr[k], ptr[k + 1] - ptr[k])
    return out


@njit(cache=True)
def resampled_means(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """float64 (n_resamples,): out[r] = v[idx[r]].mean() exactly as numpy computes np.mean(v[idx], axis=-1)
    (each gathered row summed alone by pairwise summation onto 0.0, then divided by its length), without
    the (n_resamples, n) gathered array. v float64 (m,); idx int64 (n_resamples, n) indices into v, n <= 128
    (rows that numpy sums without halving; the caller takes numpy's path for longer rows)."""
    n_r, n = idx.shape
    buf, out = np.empty(n), np.empty(n_r)
    for r in range(n_r):
        for j in range(n):
            buf[j] = v[idx[r, j]]
        out[r] = (0.0 + _block(buf, 0, n)) / n
    return out


@njit(cache=True, nogil=True)
def delivery_sums(deliv_flow: np.ndarray, deliv_dst: np.ndarray, flow_sample: np.ndarray, n: int, size: int,
                  events: np.ndarray, bits: np.ndarray, messages: np.ndarray) -> np.ndarray:
    """float64 (F + 3, size): per key flow_sample[deliv_flow[i]] * n + deliv_dst[i], the sums of float(events[i, j])
    (one row per column j < F of the int64 (m, F) events), of float(events[i].sum()), float(bits[i]) and
    float(messages[i]), each added in delivery order: np.bincount(key, weights=column.astype(float),
    minlength=size) of each, bit for bit (bincount adds its weights one by one in index order), in one pass."""
    n_f = events.shape[1]
    out = np.zeros((n_f + 3, size))
    for i in range(len(deliv_flow)):
        k = ux(flow_sample[ux(deliv_flow[i])] * n + deliv_dst[i])
        total = 0
        for j in range(n_f):
            out[j, k] += np.float64(events[i, j])
            total += events[i, j]
        out[n_f, k] += np.float64(total)
        out[n_f + 1, k] += np.float64(bits[i])
        out[n_f + 2, k] += np.float64(messages[i])
    return out


@njit(cache=True, nogil=True)
def flow_sums(flow_sample: np.ndarray, flow_src: np.ndarray, n: int, size: int, messages: np.ndarray,
              kinds: np.ndarray) -> np.ndarray:
    """float64 (1 + K, size): per key flow_sample[f] * n + flow_src[f], the sums of m = float(messages[f]) and of
    m * float(kinds[f, k]) for each of the K columns of the int64 (n_flows, K) kinds, added in flow order:
    np.bincount(key, weights=..., minlength=size) of each, bit for bit, in one pass."""
    out = np.zeros((1 + kinds.shape[1], size))
    for f in range(len(flow_sample)):
        key = ux(flow_sample[f] * n + flow_src[f])
        m = np.float64(messages[f])
        out[0, key] += m
        for k in range(kinds.shape[1]):
            out[1 + k, key] += m * np.float64(kinds[f, k])
    return out
