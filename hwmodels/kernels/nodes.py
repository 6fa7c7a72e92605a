"""Compiled fill of the channel-node arrays of hwmodels.timing.des_nodes.Nodes: one pass over the flows instead of a
dozen numpy gathers over every node (the same values: copies, one integer addition per parent index, and the
float product (m - 1) x link time, as numpy evaluates it)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fill(off, flow_route, flow_step, msgs, t_off, links, parent, hop_s, before_s, blocking, link_s):
    """Per-node arrays of flows with off int64 (n_flows + 1,) node offsets (node off[f] + c is channel c of flow
    f), flow_route / flow_step / msgs int64 (n_flows,), the trees' channels laid end to end (t_off int64
    (n_trees + 1,) first channel of each tree; links, parent (tree-local, -1 at a root) int64, hop_s, before_s
    float64 s, blocking bool) and link_s (s). Returns (flow, step, tidx, link, hop, before, blocking, parent
    (node index, -1 at a root), first_child (lowest child node, -1: none), m1 = messages - 1, cm = m1 x link_s,
    single_child (no node has two children)); every array (n,), n = off[-1]."""
    n = off[-1]
    flow, step, tidx = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    link, hop, before = np.empty(n, np.int64), np.empty(n), np.empty(n)
    block, par, first = np.empty(n, np.bool_), np.empty(n, np.int64), np.full(n, -1, np.int64)
    m1, cm = np.empty(n, np.int64), np.empty(n)
    single = True
    for f in range(len(off) - 1):
        base, t0 = off[f], t_off[flow_route[f]]
        m = msgs[f] - 1
        c_m = m * link_s
        for c in range(off[f + 1] - base):
            z, t = base + c, t0 + c
            flow[z], step[z], tidx[z] = f, flow_step[f], t
            link[z], hop[z], before[z], block[z] = links[t], hop_s[t], before_s[t], blocking[t]
            m1[z], cm[z] = m, c_m
            p = parent[t]
            if p >= 0:
                p += base
                if first[p] < 0:
                    first[p] = z
                else:
                    single = False
            par[z] = p
    return flow, step, tidx, link, hop, before, block, par, first, m1, cm, single
