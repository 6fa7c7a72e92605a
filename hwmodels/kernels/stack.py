"""Compiled assembly of a population's fan-out class stack (hwmodels.events.actions._population_tables): the
messages block, the paid synaptic events per storage format and the bits block, from the per-projection core
fan-outs, in one pass over their rows, instead of scipy's sums, indicator, element-wise product and hstack (each a
new sparse matrix with its checks). All values are int64 sums of integers, exact in any order, and the entries of
each row come out in increasing column order without zeros, as scipy's canonical result has them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def stack_rows(n_rows: int, n: int, ptr: np.ndarray, idx: np.ndarray, val: np.ndarray, off: np.ndarray,
               fmt: np.ndarray, coef: np.ndarray, n_formats: int, with_bits: bool, out_ptr: np.ndarray,
               out_idx: np.ndarray, out_val: np.ndarray) -> int:
    """Stack rows into (out_ptr (n_rows + 1,), out_idx, out_val int64), returning the entries written.

    Part c (a projection's core fan-out for one count, CSR (n_rows, n): indptr ptr[c], indices and values
    idx / val[off[c]:]) adds its values to format block 1 + fmt[c] when fmt[c] >= 0 (the count its storage
    format pays) and coef[c] x its values to the bits block (the last, when with_bits). Block 0 holds 1 where
    the paid blocks sum to > 0; the bits block keeps only those destinations (a core a neuron sends no message
    to reads none of its bits). Column of destination d in block b: b * n + d."""
    width = 1 + n_formats + (1 if with_bits else 0)
    acc = np.zeros((n, width), np.int64)
    paid = np.zeros(n, np.int64)
    touched = np.zeros(n, np.bool_)
    dlist = np.empty(n, np.int64)
    m = 0
    out_ptr[0] = 0
    for i in range(n_rows):
        nd, ordered = 0, True
        for c in range(len(fmt)):
            for q in range(off[ux(c)] + ptr[c, i], off[ux(c)] + ptr[c, i + 1]):
                d, v = idx[ux(q)], val[ux(q)]
                if fmt[ux(c)] >= 0:
                    acc[ux(d), 1 + fmt[ux(c)]] += v
                    paid[ux(d)] += v
                if with_bits and coef[ux(c)] != 0:
                    acc[ux(d), width - 1] += coef[ux(c)] * v
                if not touched[ux(d)]:
                    touched[ux(d)] = True
                    ordered &= nd == 0 or d > dlist[ux(nd - 1)]  # one part's row is already in order
                    dlist[ux(nd)] = d
                    nd += 1
        if not ordered:
            dlist[:nd].sort()
        for b in range(width):
            for e in range(nd):
                d = dlist[ux(e)]
                x = 1 if b == 0 else acc[ux(d), b]
                keep = paid[ux(d)] > 0 if b == 0 else x != 0 and (b <= n_formats or paid[ux(d)] > 0)
                if keep:
                    out_idx[ux(m)] = b * n + d
                    out_val[ux(m)] = x
                    m += 1
        for e in range(nd):
            d = dlist[ux(e)]
            touched[ux(d)] = False
            paid[ux(d)] = 0
            for b in range(width):
                acc[ux(d), b] = 0
        out_ptr[ux(i + 1)] = m
    return m
