"""Compiled kernel of hwmodels.mapping.connectivity._conv_rows: the synapses of some source neurons of a conv
projection into the targets of each owner (core), counted row by row from the taps that read each row's input
position, instead of one product of every owner's kernel sums with the cover of all input positions.

A source neuron (input channel c, position p) reaches, through kernel tap t, the output position q = readers[t, p]
(or none) of every output channel of c's group. An owner holding whole output channels of that group receives the
sum of those channels' kernel entries at (c, t) (its "pair" of owner and group, whose kernel sums are made once); a
channel split between owners sends its entry to the owner of position q. The work is rows x in-bounds taps x
(owners of the group + split channels of the group): for grouped convolutions (spiking attention's K^T V stage,
depthwise identities) only the owners of the row's own group are visited, where the product visited every owner at
every input channel. All counts are integer sums (below 2^24 per entry in float32 kernel sums), exact in float64
in any order, so the table equals the product's entry for entry. Also here: the per-neuron fan-out totals summed
over each position's tap list (tap_sums, for hwmodels.mapping.connectivity.fanout) and the CSR of a counted table
in one scan (dense_csr, for connectivity.counts_csr).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def conv_rows(c_r: np.ndarray, p_r: np.ndarray, tap_ptr: np.ndarray, tap_t: np.ndarray, tap_q: np.ndarray,
              pair_ptr: np.ndarray, pair_owner: np.ndarray,
              pair_sums: np.ndarray, split_ptr: np.ndarray, split_chan: np.ndarray, tc: np.ndarray,
              mask: np.ndarray, structural: bool, c_in_g: int, n_owner: int) -> np.ndarray:
    """float64 (len(c_r), n_owner): synapses from source neuron i (input channel c_r[i], flat input position
    p_r[i]) into the targets of every owner.

    tap_ptr: int64 (H*W + 1,); the taps that read input position p are tap_t[tap_ptr[p]:tap_ptr[p + 1]] (int32)
    and the output position each reads there tap_q[...] (int32), in tap order (hwmodels.mapping.connectivity
    _ConvGeom.tap_lists).
    pair_ptr: int64 (groups + 1,); the pairs of group g (owners holding whole output channels of it) are
    pair_ptr[g]:pair_ptr[g + 1] of pair_owner (int64 owners) and pair_sums (float32 (n_pairs, c_in_g, k2): the sum
    of the owner's channels' 0/1 kernel masks; (n_pairs, 1, 1) channel counts when `structural`).
    split_ptr: int64 (groups + 1,); the output channels of group g split between owners are
    split_chan[split_ptr[g]:split_ptr[g + 1]].
    tc: int64 (C_out, Ho*Wo) owner of every target (-1: not counted); mask: uint8 (C_out, c_in_g, k2) 0/1 kernel
    mask, read for split channels unless `structural` (every in-bounds tap counts 1).
    """
    out = np.zeros((len(c_r), n_owner))
    for i in range(len(c_r)):
        c, p = c_r[ux(i)], p_r[ux(i)]
        g = c // c_in_g
        ci = c - g * c_in_g
        for e in range(tap_ptr[ux(p)], tap_ptr[ux(p + 1)]):
            t, q = tap_t[ux(e)], tap_q[ux(e)]
            for j in range(pair_ptr[ux(g)], pair_ptr[ux(g + 1)]):
                out[i, ux(pair_owner[ux(j)])] += pair_sums[j, 0, 0] if structural else pair_sums[j, ux(ci), ux(t)]
            for k in range(split_ptr[ux(g)], split_ptr[ux(g + 1)]):
                o = split_chan[ux(k)]
                own = tc[ux(o), ux(q)]
                if own >= 0 and (structural or mask[ux(o), ux(ci), ux(t)] != 0):
                    out[i, ux(own)] += 1.0
    return out


@njit(cache=True, nogil=True)
def pair_sums(rows: np.ndarray, chans: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """float32 (len(starts), rows.shape[1]): the sums of the mask rows (uint8 0/1 or float32, (C_out, n)) of the
    channels chans[starts[j]:starts[j + 1]] (the last pair's up to len(chans)). Integer sums < 2^24: exact in
    float32 in any order."""
    n_pairs, width = len(starts), rows.shape[1]
    out = np.zeros((n_pairs, width), np.float32)
    for j in range(n_pairs):
        end = starts[ux(j + 1)] if j + 1 < n_pairs else len(chans)
        for k in range(starts[ux(j)], end):
            row = rows[chans[ux(k)]]
            for e in range(width):
                out[j, e] += row[e]
    return out


@njit(cache=True, nogil=True)
def tap_sums(per_tap: np.ndarray, ptr: np.ndarray, tap: np.ndarray, chan: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """int64 (len(chan),): for each source neuron (input channel chan[i], position pos[i]) of a conv projection,
    the sum of per_tap[chan[i], t] (int (C_in, k2)) over the in-bounds taps t that read its position (tap lists
    (ptr, tap) of hwmodels.mapping.connectivity._ConvGeom.tap_lists). Integer sums, exact."""
    out = np.zeros(len(chan), np.int64)
    for i in range(len(chan)):
        c = chan[ux(i)]
        for j in range(ptr[ux(pos[ux(i)])], ptr[ux(pos[ux(i)] + 1)]):
            out[i] += per_tap[ux(c), ux(tap[ux(j)])]
    return out


@njit(cache=True, nogil=True)
def dense_csr(counts: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The CSR of a dense float64 (rows, cols) table of integer counts (conv_rows' output) in one scan: its non-zero
    entries row by row, columns ascending, into indptr (rows + 1,) and indices (room for every entry; either int
    dtype); returns their values rounded to int64 (np.rint of exact integers), the first indptr[-1] of them."""
    rows, cols = counts.shape
    data = np.empty(rows * cols, np.int64)
    k = 0
    indptr[0] = 0
    for i in range(rows):
        for j in range(cols):
            v = counts[i, j]
            if v != 0.0:
                indices[ux(k)] = j
                data[ux(k)] = np.int64(np.rint(v))
                k += 1
        indptr[ux(i + 1)] = k
    return data[:k]
