"""Compiled kernel of workloads.lowering.events.merge_events: a population's events of one batch are rows (t, b),
each a contiguous run in the population's own arrays and again in the merged trace (rows (sample, t, population)),
so the merge copies every row as one block to its place instead of scattering entry by entry.
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
