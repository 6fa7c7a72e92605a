"""np.unique of bounded non-negative integer keys by a lookup table instead of a sort (channel links, queues,
(source, route) pairs, classes), the table's passes compiled; sorted_unique, np.unique of any integer array by
a sort; distinct_rows, the distinct rows of a sparse pattern by a hash table, and distinct_valued_rows, those of
a sparse integer matrix with a key row each."""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


def sorted_unique(a) -> np.ndarray:
    """np.unique(a) (the sorted distinct values, flattened, same dtype) of an integer array, by a sort and a
    comparison of neighbours. numpy 2.3's np.unique collects integer values in a hash set first, which is 40-60x
    slower when most values are distinct (this machine: 3 M random int64, 2.8 s against 0.05 s; 1 M, 0.67 against
    0.016 s), as channel-node, route and neuron keys are."""
    s = np.sort(np.asarray(a).reshape(-1))
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def dense_unique(keys: np.ndarray, size: int, first: bool = False):
    """np.unique(keys, return_inverse=True), or (unique, an index of each) when `first`, for non-negative keys
    below `size`: a lookup table instead of a sort when the table is small (_ranks: mark, rank in one scan, look
    up; the table is a numpy allocation, whose large pages fault faster than numba's)."""
    if size > 8 * len(keys) + (1 << 20):
        return np.unique(keys, return_index=first, return_inverse=not first)
    table = np.zeros(size, np.int64)
    if first:
        table[keys] = 1
        uniq = np.flatnonzero(table)
        table[keys] = np.arange(len(keys))
        return uniq, table[uniq]
    keys = np.asarray(keys)
    inv = np.empty(keys.size, np.int64)
    uniq = np.empty(min(size, keys.size), np.int64)
    n = _ranks(keys.reshape(-1), table, uniq, inv)
    return uniq[:n].copy(), inv.reshape(keys.shape)


@njit(cache=True, nogil=True)
def _ranks(keys: np.ndarray, table: np.ndarray, uniq: np.ndarray, inv: np.ndarray) -> int:
    """Mark every key in `table` (zeros, int64 (size,)), number the marked entries 0, 1, ... in increasing order
    into uniq, and write each key's number into inv; returns the number of distinct keys."""
    for k in keys:
        table[ux(k)] = 1
    n = 0
    for v in range(len(table)):
        if table[ux(v)]:
            table[ux(v)] = n
            uniq[ux(n)] = v
            n += 1
    for j in range(len(keys)):
        inv[ux(j)] = table[ux(keys[ux(j)])]
    return n


@njit(cache=True, nogil=True)
def first_of_classes(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 (n_classes,): the first position of every class 0..n_classes-1 in `classes` (int, values in that
    range), len(classes) for a class that does not occur (np.minimum.at of the positions, in one scan)."""
    first = np.full(n_classes, len(classes), np.int64)
    for j in range(len(classes) - 1, -1, -1):
        first[ux(classes[ux(j)])] = j
    return first


def distinct_rows(indptr: np.ndarray, indices: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a CSR pattern, counting only the columns below `width`: (id int64 (n_rows,): the
    row's id, -1 for a row with no such column, ids 0, 1, ... in order of first appearance; first int64 (n_ids,):
    the row where each id first appears). Each row's columns must be in one canonical order (sorted CSR
    indices). Exact (_distinct: a hash table, rows equal in hash compared column by column)."""
    n = len(indptr) - 1
    return _distinct(indptr, indices, indices, np.zeros((n, 0), np.int64), width, True)


def distinct_valued_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                         keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a CSR matrix with integer values and a key row each: rows r and s are equal when they
    hold the same columns in the same stored order with the same values (int64 `data`) and keys[r] == keys[s]
    (int64 (n_rows, k)). Returns (id int64 (n_rows,): ids 0, 1, ... in order of first appearance; first int64
    (n_ids,): the row where each id first appears); an empty row is a row like any other. Exact (_distinct)."""
    return _distinct(indptr, indices, data, keys, np.iinfo(np.int64).max, False)


@njit(cache=True, nogil=True)
def _distinct(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, keys: np.ndarray, width: int,
              skip_empty: bool) -> tuple[np.ndarray, np.ndarray]:
    """distinct_rows (skip_empty: rows with no column below `width` get id -1) and distinct_valued_rows: each row's
    entries below `width` (its columns sorted when width cuts them) with their values `data` and keys[r] hashed
    into an open-addressing table, and a row equal in hash compared entry by entry with the table's row before it
    takes that row's id. The hash is FNV-1a over (column, value) words in two interleaved lanes, each word made
    off the lanes' dependency chains (half the time of one chain over the words: Spikformer-4-384's 125,749
    class rows, 3 M entries, 29 -> 13 ms); the slot is its high bits (its low ones depend only on the columns'
    low bits)."""
    n = len(indptr) - 1
    bits = 1
    while (1 << bits) < 2 * n + 2:
        bits += 1
    size, shift, mask = 1 << bits, np.uint64(64 - bits), np.uint64((1 << bits) - 1)
    table = np.full(size, -1, np.int64)  # the first row of each id, at its hash slot
    ids = np.full(n, -1, np.int64)
    first = np.empty(n, np.int64)
    k = 0
    prime, odd = np.uint64(1099511628211), np.uint64(0x9E3779B97F4A7C15)
    for r in range(n):
        a, b = indptr[ux(r)], _row_end(indptr, indices, r, width)
        if skip_empty and b == a:
            continue
        h1, h2 = np.uint64(14695981039346656037) ^ np.uint64(b - a), np.uint64(0x84222325CBF29CE4)
        q = a
        while q + 1 < b:
            h1 = (h1 ^ (np.uint64(indices[ux(q)]) * odd + np.uint64(data[ux(q)]))) * prime
            h2 = (h2 ^ (np.uint64(indices[ux(q + 1)]) * odd + np.uint64(data[ux(q + 1)]))) * prime
            q += 2
        if q < b:
            h1 = (h1 ^ (np.uint64(indices[ux(q)]) * odd + np.uint64(data[ux(q)]))) * prime
        for j in range(keys.shape[1]):
            h2 = (h2 ^ np.uint64(keys[r, j])) * prime
        slot = (((h1 ^ (h2 >> np.uint64(29))) * odd) ^ h2) >> shift
        while True:
            rep = table[ux(slot)]
            if rep < 0:
                table[ux(slot)], ids[ux(r)], first[ux(k)] = r, k, r
                k += 1
                break
            if _same_row(indptr, indices, data, keys, rep, r, b, width):
                ids[ux(r)] = ids[ux(rep)]
                break
            slot = (slot + np.uint64(1)) & mask
    return ids, first[:k]


@njit(cache=True, inline="always")
def _row_end(indptr: np.ndarray, indices: np.ndarray, r: int, width: int) -> int:
    """End of row r's columns below `width` (its columns sorted, or all below width): a binary search."""
    lo, hi = indptr[ux(r)], indptr[ux(r + 1)]
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[ux(mid)] < width:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def _same_row(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, keys: np.ndarray, rep: int, r: int,
              b: int, width: int) -> bool:
    """Whether row rep's entries below `width` (columns and values) and keys equal row r's (which end at b)."""
    a0, a1 = indptr[ux(rep)], indptr[ux(r)]
    if _row_end(indptr, indices, rep, width) - a0 != b - a1:
        return False
    for q in range(b - a1):
        if indices[ux(a0 + q)] != indices[ux(a1 + q)] or data[ux(a0 + q)] != data[ux(a1 + q)]:
            return False
    for j in range(keys.shape[1]):
        if keys[rep, j] != keys[r, j]:
            return False
    return True


@njit(cache=True, nogil=True)
def first_repeat(offsets: np.ndarray, indices: np.ndarray) -> tuple[int, int]:
    """(row, value) of the first CSR row (rows r: indices[offsets[r]:offsets[r + 1]]) that holds a value twice, or
    (-1, -1) when none does. A strictly increasing row costs one comparison per entry; only an unsorted row is
    copied and sorted. offsets: int (n_rows + 1,), non-decreasing; indices: int (offsets[-1],); no other
    allocation, so a memory-mapped trace is read in place."""
    for r in range(len(offsets) - 1):
        lo, hi = offsets[ux(r)], offsets[ux(r + 1)]
        ordered = True
        for j in range(lo + 1, hi):
            if indices[ux(j)] <= indices[ux(j - 1)]:
                ordered = False
                break
        if ordered:
            continue
        row = np.sort(indices[lo:hi])
        for j in range(1, len(row)):
            if row[ux(j)] == row[ux(j - 1)]:
                return r, int(row[ux(j)])
    return -1, -1
