"""Compiled gather of per-channel tree values onto the channel nodes of flows (hwmodels.timing.des layout: node
off[f] + c is channel c of flow f's tree), in one pass without the node-sized index temporaries of its numpy form.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def flow_channels(table: np.ndarray, tree_off: np.ndarray, flow_route: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """out[off[f] + c] = table[tree_off[flow_route[f]] + c] for c < hops[f], off the running sum of hops.

    table: (n_tree_channels,) values of every tree channel laid end to end (tree t's channels start at
    tree_off[t]); flow_route, hops: int64 (n_flows,) tree and channel count of each flow. Returns an array of
    table's dtype, (sum of hops,)."""
    n = 0
    for f in range(len(hops)):
        n += hops[f]
    out = np.empty(n, table.dtype)
    k = 0
    for f in range(len(hops)):
        base = tree_off[flow_route[f]]
        for c in range(hops[f]):
            out[k] = table[base + c]
            k += 1
    return out
