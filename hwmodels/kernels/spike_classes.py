"""Compiled kernel of hwmodels.events.actions.count_actions: the spikes of one population counted per (row, class)
of neurons as a CSR matrix, without the sort a COO -> CSR conversion does (a counting sort by row, then one pass
per row that merges the spikes of one class). Integer counts: the same matrix as scipy's conversion of the
(row, class) pairs with their duplicates summed, but with each row's classes in order of first appearance.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True)
def row_class_counts(row: np.ndarray, cls: np.ndarray, n_rows: int,
                     n_cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64 (n_rows + 1,), indices int64, data int64, entry row int64) of the CSR (n_rows, n_cls) matrix
    whose entry [r, c] is the number of i with row[i] == r and cls[i] == c (no zero entries; each row's classes
    in order of first appearance). row, cls: int64 arrays of one length, 0 <= row < n_rows, 0 <= cls < n_cls."""
    n = len(row)
    start = np.zeros(n_rows + 1, np.int64)
    for i in range(n):
        start[ux(row[ux(i)] + 1)] += 1
    for r in range(n_rows):
        start[ux(r + 1)] += start[ux(r)]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[ux(fill[ux(row[ux(i)])])] = i
        fill[ux(row[ux(i)])] += 1
    seen = np.full(n_cls, -1, np.int64)  # the row a class was last seen in
    at = np.zeros(n_cls, np.int64)  # its entry there
    indptr = np.zeros(n_rows + 1, np.int64)
    indices = np.empty(n, np.int64)
    data = np.empty(n, np.int64)
    rows = np.empty(n, np.int64)
    nnz = 0
    for r in range(n_rows):
        for k in range(start[ux(r)], start[ux(r + 1)]):
            c = cls[ux(order[ux(k)])]
            if seen[ux(c)] != r:
                seen[ux(c)] = r
                at[ux(c)] = nnz
                indices[ux(nnz)] = c
                data[ux(nnz)] = 1
                rows[ux(nnz)] = r
                nnz += 1
            else:
                data[ux(at[ux(c)])] += 1
        indptr[ux(r + 1)] = nnz
    return indptr, indices[:nnz], data[:nnz], rows[:nnz]
