"""Compiled kernels of workloads.lowering.events: the non-zero entries of a recorded tensor's rows in one pass
(nonzero_rows, for row_events), and the merge (copy_rows, for merge_events): a population's events of one batch
are rows (t, b), each a contiguous run in the population's own arrays and again in the merged trace (rows
(sample, t, population)), so the merge copies every row as one block to its place instead of scattering entry by
entry.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def copy_rows(src: np.ndarray, counts: np.ndarray, dst_start: np.ndarray, dst: np.ndarray) -> None:
    """dst[dst_start[r]:dst_start[r] + counts[r]] = row r of src, for every row r in order, where row r of src (1-D,
    dst's dtype: int32 neuron indices or float32 values) is the counts[r] entries after the rows before it.

    counts, dst_start: int64 (rows,), entries per row and the row's first position in dst (1-D).
    Raises ValueError when counts (a negative count, or not summing to len(src)) or dst_start (a row beyond dst)
    do not match the arrays; nothing is written then."""
    src = np.asarray(src, dst.dtype)
    counts, dst_start = np.asarray(counts, np.int64), np.asarray(dst_start, np.int64)
    if len(dst_start) != len(counts) or not _rows_fit(counts, dst_start, len(src), len(dst)):
        raise ValueError(f"events: {len(src)} entries in {len(counts)} rows (counts summing to "
                         f"{int(counts.sum())}) do not fit {len(dst_start)} rows of {len(dst)} entries")
    _copy(src, counts, dst_start, dst)


@njit(cache=True, nogil=True)
def _rows_fit(counts: np.ndarray, dst_start: np.ndarray, n_src: int, n_dst: int) -> bool:
    """Every count >= 0, the counts sum to n_src, and every row r lies in dst (0 <= dst_start[r], dst_start[r] +
    counts[r] <= n_dst): what _copy needs to stay within both arrays."""
    total = 0
    for r in range(len(counts)):
        if counts[r] < 0 or dst_start[r] < 0 or dst_start[r] + counts[r] > n_dst:
            return False
        total += counts[r]
    return total == n_src


@njit(cache=True, nogil=True)
def _copy(src: np.ndarray, counts: np.ndarray, dst_start: np.ndarray, dst: np.ndarray) -> None:
    """The copies of copy_rows, on arrays _rows_fit has checked. Releases the GIL."""
    s = 0
    for r in range(len(counts)):
        c, d = counts[r], dst_start[r]
        dst[d:d + c] = src[s:s + c]
        s += c


def nonzero_rows(a: np.ndarray, values: bool, packed: bool, tokens: bool = False) -> tuple:
    """The non-zero entries of every row of `a` (float32, float64 or bool; IEEE != 0 as numpy's: -0.0 is zero, NaN
    is not): (counts int64 (rows,), indices int32 (entries,) row after row, ascending within a row, values float32
    (entries,) of the entries or None unless `values`, packed uint8 (rows, ceil(n / 8)) of the rows' non-zero flags
    in hwmodels.activity's bit order (little: bit i of byte j is neuron 8 j + i) or None unless `packed`).
    a: (rows, n) with neuron j of row r at a[r, j]; with `tokens`, (rows, L, D) with neuron d * L + l at a[r, l, d]
    (a token population's channel-major neurons over its token-major memory), read in memory order.

    The flags of 64 neurons make one 64-bit word, whose set bits are then written lowest first (x & -x), one step
    per entry. Measured on the 2-core benchmark machine, (64, 150000) float32 of 5% / 20% ones: the kernel 0.33 /
    0.49 ns per neuron, this whole call 0.56-0.64 at 20% (fresh output pages), np.flatnonzero(x != 0) alone 1.09
    / 0.84 (the numpy path also split the rows, made int32 indices and packed the mask). Raises ValueError when a row has 2^31 neurons or more (indices are int32) or when
    `packed` is asked of tokens with L % 8 != 0 (a channel's flags would not end on a byte)."""
    rows, n = a.shape[0], int(np.prod(a.shape[1:]))
    if n >= 2 ** 31:
        raise ValueError(f"events: {n} neurons per row do not fit int32 indices")
    if packed and tokens and a.shape[1] % 8:
        raise ValueError("events: packed flags of tokens need L % 8 == 0")
    counts = np.empty(rows, np.int64)
    indices = np.empty(rows * n, np.int32)  # at most every neuron: pages past the entries stay untouched
    vals = np.empty(len(indices) if values else 0, np.float32)
    flags = np.zeros((rows, (n + 7) // 8) if packed else (1, 0), np.uint8)
    if tokens:
        words = np.empty((a.shape[2], (a.shape[1] + 63) // 64), np.uint64)
        k = _nonzero_tokens(a, counts, indices, vals, flags, words, values, packed)
    else:
        k = _nonzero_rows(a, counts, indices, vals, flags, values, packed)
    for arr in (indices, vals) if values else (indices,):  # shrunk in place (realloc, no copy): no view exists
        arr.resize(k, refcheck=False)
    return counts, indices, vals if values else None, flags if packed else None


@njit(cache=True, nogil=True)
def _nonzero_rows(a, counts, indices, vals, flags, with_vals, with_flags) -> int:
    """nonzero_rows of (rows, n) into counts, indices, vals and flags (row 0, empty, when not with_flags); returns
    the entries. Releases the GIL."""
    rows, n = a.shape
    k = 0
    for r in range(rows):
        k0 = k
        x, fr = a[r], flags[r if with_flags else 0]  # 1-D views: 2-D indexing in the inner loop defeats LLVM
        for w in range(n // 64):  # written out here: through a helper, or as a while loop, 2x slower (measured)
            m = np.uint64(0)
            for i in range(64):
                m |= np.uint64(x[64 * w + i] != 0) << np.uint64(i)
            if with_flags:
                for j in range(8):
                    fr[8 * w + j] = np.uint8((m >> np.uint64(8 * j)) & np.uint64(0xFF))
            while m:
                low = m & (~m + np.uint64(1))
                i = _popcount(low - np.uint64(1))  # the lowest set bit's index
                indices[k] = 64 * w + i
                if with_vals:
                    vals[k] = x[64 * w + i]
                k += 1
                m ^= low
        q = n - n % 64
        if q < n:  # the last < 64 neurons
            m = np.uint64(0)
            for i in range(n - q):
                m |= np.uint64(x[q + i] != 0) << np.uint64(i)
            k = _emit(m, x, q, k, indices, vals, fr, with_vals, with_flags, n - q)
        counts[r] = k - k0
    return k


@njit(cache=True, nogil=True)
def _nonzero_tokens(a, counts, indices, vals, flags, words, with_vals, with_flags) -> int:
    """nonzero_rows of tokens (rows, L, D): each row's flags gathered in memory order into words (D, ceil(L / 64))
    (bit b of words[d, c] is token 64 c + b of channel d), then written channel by channel. Releases the GIL."""
    rows, n_l, n_d = a.shape
    k = 0
    for r in range(rows):
        k0 = k
        words[:, :] = 0
        for l in range(n_l):
            x, c, b = a[r, l], l >> 6, np.uint64(l & 63)
            for d in range(n_d):
                words[d, c] |= np.uint64(x[d] != 0) << b
        fr = flags[r if with_flags else 0]
        for d in range(n_d):
            for c in range(words.shape[1]):
                m, q = words[d, c], d * n_l + 64 * c
                if with_flags:
                    _flag_bytes(m, fr, q, min(64, n_l - 64 * c))
                while m:
                    low = m & (~m + np.uint64(1))
                    i = _popcount(low - np.uint64(1))
                    indices[k] = q + i
                    if with_vals:
                        vals[k] = a[r, 64 * c + i, d]
                    k += 1
                    m ^= low
        counts[r] = k - k0
    return k


@njit(cache=True, nogil=True, inline="always")
def _emit(m, x, q, k, indices, vals, flags, with_vals, with_flags, width) -> int:
    """Write the set bits of the flag word m of neurons q..q + width - 1 of line x (bit i: x[q + i] != 0) from
    position k, lowest first (x & -x), and OR its bytes into the row's flags; returns the next position."""
    if with_flags:
        _flag_bytes(m, flags, q, width)
    while m:
        low = m & (~m + np.uint64(1))
        i = _popcount(low - np.uint64(1))  # the lowest set bit's index
        indices[k] = q + i
        if with_vals:
            vals[k] = x[q + i]
        k += 1
        m ^= low
    return k


@njit(cache=True, nogil=True, inline="always")
def _flag_bytes(m, flags, q, width) -> None:
    """OR the bytes of the flag word m of neurons q..q + width - 1 (q a multiple of 8) into flags."""
    for j in range((width + 7) // 8):
        flags[(q >> 3) + j] |= np.uint8((m >> np.uint64(8 * j)) & np.uint64(0xFF))


@njit(cache=True, nogil=True, inline="always")
def _popcount(x) -> int:
    """Set bits of a uint64 (the SWAR count of Warren, "Hacker's Delight", 2nd ed., section 5-1)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))
