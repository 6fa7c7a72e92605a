"""Compiled kernel of workloads.lowering.grid.row_intervals: the distinct values of rows of a weight matrix,
collected in an open-addressing hash set of their bit patterns (linear probing in a table of 8 slots or more per
value kept, 16 kB for float32 with the grid's 512) instead of sorting each whole row. 0.0 and -0.0 are one value
(-0.0 is keyed as 0.0, so the bit pattern of -0.0 marks an empty slot); NaNs are keys like any other. A row stops
being read at its first value beyond the most kept. Inserting is branch-free but for collisions, so no branch is
mispredicted however often a row meets a new value.
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: multiplier of the (Fibonacci) hash: a key's first slot is the top bits of key x _GOLDEN mod 2^64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def distinct_rows(v: np.ndarray, rows: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, count) of the rows `rows` (int64 (r,)) of v (float32 or float64 (c, n), C-contiguous, n >= 1),
    cap >= 1: values (r, cap), v's dtype, holds in values[i, :count[i]] the distinct values of v[rows[i]] (0.0 and
    -0.0 as one, kept as 0.0) in order of first occurrence and that row's largest value in the rest; count (r,)
    int64 is cap + 1 for a row with more than cap distinct values (values[i] is then undefined)."""
    bits = v.view(np.uint32 if v.dtype == np.float32 else np.uint64)
    neg_zero = bits.dtype.type(1) << bits.dtype.type(8 * bits.itemsize - 1)
    values = np.empty((len(rows), cap + 1), v.dtype)
    count = _collect(bits, np.asarray(rows, np.int64), neg_zero, (8 * cap - 1).bit_length(), values,
                     values.view(bits.dtype))
    return values[:, :cap], count


@njit(cache=True, nogil=True)
def _collect(bits: np.ndarray, rows: np.ndarray, neg_zero, table_bits: int, values: np.ndarray,
             values_bits: np.ndarray) -> np.ndarray:
    """count of distinct_rows, given bits: v viewed as uint32/uint64 (c, n); neg_zero: the bits of -0.0 (that
    dtype); table_bits: log2 of the slots of the hash set (> cap); values: the (r, cap + 1) float output, filled
    here, with values_bits the same memory viewed as bits' dtype. Releases the GIL (the lowering fits projections
    on threads, workloads.lowering.jobs)."""
    keys = np.full(1 << table_bits, neg_zero, bits.dtype)
    used = np.empty(values.shape[1], np.uint64)
    count = np.empty(len(rows), np.int64)
    for i in range(len(rows)):
        c = _add_row(bits[rows[i]], keys, used, neg_zero, np.uint64(64 - table_bits))
        for j in range(c):
            values_bits[i, j] = keys[used[j]]
            keys[used[j]] = neg_zero
        count[i] = c
        if c < values.shape[1]:
            values[i, c:] = values[i, :c].max()
    return count


@njit(cache=True)
def _add_row(row: np.ndarray, keys: np.ndarray, used: np.ndarray, neg_zero, shift) -> int:
    """Add the keys of row (n,) (bit patterns) to the empty hash set `keys`, the c-th new one at slot used[c]
    (uint64); returns their number, stopping at len(used). Every key is written to its slot and its slot to
    used[c], but only a new key advances c."""
    mask, one, c, most = np.uint64(len(keys) - 1), np.uint64(1), np.uint64(0), np.uint64(len(used))
    for b in row:
        key = b if b != neg_zero else b ^ b
        h = (np.uint64(key) * _GOLDEN) >> shift
        while keys[h] != key and keys[h] != neg_zero:
            h = (h + one) & mask
        new = np.uint64(keys[h] != key)
        keys[h] = key
        used[c] = h
        c += new
        if c == most:
            break
    return np.int64(c)
