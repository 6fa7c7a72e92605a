"""Compiled pass over the channel nodes of flows (hwmodels.timing.des layout: node off[f] + c is channel c of flow
f's tree): per-node values summed into bins of their tree channels, in one pass without the node-sized index
array of its numpy form (np.bincount over gathered bins).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def flow_channel_sums(bins: np.ndarray, tree_off: np.ndarray, flow_route: np.ndarray, hops: np.ndarray,
                      weights: np.ndarray, n_bins: int) -> np.ndarray:
    """out[bins[tree_off[flow_route[f]] + c]] += weights[off[f] + c] for every flow f and c < hops[f], off the
    running sum of hops, node by node in that order: np.bincount(gathered bins, weights, n_bins) bit for bit
    (it adds each bin's weights in node order too).

    bins: int64 (n_tree_channels,) bin of every tree channel laid end to end (tree t's channels start at
    tree_off[t]); flow_route, hops: int64 (n_flows,) tree and channel count of each flow; weights: float64
    (sum of hops,). Returns float64 (n_bins,)."""
    out = np.zeros(n_bins)
    k = 0
    for f in range(len(hops)):
        base = tree_off[ux(flow_route[ux(f)])]
        for c in range(hops[ux(f)]):
            out[ux(bins[ux(base + c)])] += weights[ux(k)]
            k += 1
    return out
