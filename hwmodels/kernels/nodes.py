"""Compiled kernel of hwmodels.timing.des_nodes.Nodes: the per-node arrays of a group of flows written in one pass over
the flows and their tree channels, instead of one numpy gather per array over every node (each a pass over
millions of nodes on multi-chip nets). Integer copies and the product (m - 1) * link_s, so every value equals the
numpy construction's bit for bit.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def flat_nodes(flow_route: np.ndarray, hops: np.ndarray, msgs: np.ndarray, flow_step: np.ndarray, t_off: np.ndarray,
               t_links: np.ndarray, t_parent: np.ndarray, t_hop: np.ndarray, t_before: np.ndarray,
               t_blocking: np.ndarray, link_s: float):
    """Per-node arrays of the flows: node off[f] + c is channel c of flow f's tree (tree flow_route[f], channels
    t_off[r]..t_off[r + 1] - 1 of the concatenated tree arrays t_links int64, t_parent int64 (tree-local, -1 at a
    root), t_hop / t_before float64 s, t_blocking bool). hops / msgs / flow_step: int64 (n_flows,) channels,
    messages and step of each flow. Returns (off (n_flows + 1,), flow, step, base, tidx, link, parent (-1: root),
    first_child (-1: none; the least child), m1 = m - 1 int64 (n,), hop, before, cm = (m - 1) * link_s float64 (n,),
    blocking bool (n,), the most children of one node)."""
    n_flows = len(hops)
    off = np.zeros(n_flows + 1, np.int64)
    for f in range(n_flows):
        off[f + 1] = off[f] + hops[f]
    n = off[n_flows]
    flow, step, base = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    tidx, link, parent = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    first_child, m1 = np.full(n, -1, np.int64), np.empty(n, np.int64)
    hop, before, cm = np.empty(n), np.empty(n), np.empty(n)
    blocking = np.empty(n, np.bool_)
    kids = np.zeros(n, np.int64)
    most = 0
    for f in range(n_flows):
        b, t0, m = off[f], t_off[flow_route[f]], msgs[f] - 1
        for c in range(hops[f]):
            i, ti = b + c, t0 + c
            flow[i], step[i], base[i], tidx[i], link[i] = f, flow_step[f], b, ti, t_links[ti]
            hop[i], before[i], blocking[i] = t_hop[ti], t_before[ti], t_blocking[ti]
            m1[i], cm[i] = m, m * link_s
            p = t_parent[ti]
            parent[i] = -1 if p < 0 else p + b
            if p >= 0:
                q = p + b
                if first_child[q] < 0:
                    first_child[q] = i
                kids[q] += 1
                most = max(most, kids[q])
    return off, flow, step, base, tidx, link, parent, first_child, m1, hop, before, cm, blocking, most
