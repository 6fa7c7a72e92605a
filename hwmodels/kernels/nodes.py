"""Compiled fills of channel arrays: the channel nodes of hwmodels.timing.des_nodes.Nodes (fill: one pass over the
flows instead of a dozen numpy gathers over every node, with the same values: copies, one integer addition per
parent index, and the float product (m - 1) x link time, as numpy evaluates it) and the channels of unicast XY
paths for hwmodels.events.paths (path_channels: one pass over the pairs, the same values as
hwmodels.events.network.Network._build's link-by-link walk)."""
from __future__ import annotations

import numpy as np
from numba import njit


def fill(off, flow_route, flow_step, msgs, t_off, links, parent, hop_s, before_s, blocking, link_s):
    """Per-node arrays of flows with off int64 (n_flows + 1,) node offsets (node off[f] + c is channel c of flow
    f), flow_route / flow_step / msgs int64 (n_flows,), the trees' channels laid end to end (t_off int64
    (n_trees + 1,) first channel of each tree; links, parent (tree-local, -1 at a root) int64, hop_s, before_s
    float64 s, blocking bool) and link_s (s). Returns (flow, step, tidx, link, hop, before, blocking, parent
    (node index, -1 at a root), first_child (lowest child node, -1: none), m1 = messages - 1, cm = m1 x link_s,
    single_child (no node has two children)); every array (n,), n = off[-1].

    The arrays are allocated by numpy, which asks the kernel for transparent huge pages on large arrays
    (numpy's madvise hugepage setting), and filled by a compiled pass (_fill): arrays allocated inside numba
    come in 4 KiB pages, whose first-touch faults cost several times the fill itself (a 74 MB array: 33 ms
    against 8-10 ms on this project's 2-core machine, measured)."""
    n = int(off[-1])
    out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
           np.empty(n), np.empty(n), np.empty(n, np.bool_), np.empty(n, np.int64), np.full(n, -1, np.int64),
           np.empty(n, np.int64), np.empty(n))
    single = _fill(off, flow_route, flow_step, msgs, t_off, links, parent, hop_s, before_s, blocking, link_s, *out)
    return (*out, single)


@njit(cache=True, nogil=True)
def _fill(off, flow_route, flow_step, msgs, t_off, links, parent, hop_s, before_s, blocking, link_s,
          flow, step, tidx, link, hop, before, block, par, first, m1, cm) -> bool:
    """fill's pass into its arrays (first: all -1); returns single_child. Releases the GIL."""
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
    return single


@njit(cache=True, nogil=True)
def path_channels(src, dst, width, mesh_x, mesh_y, lat_s, energy_j):
    """The channels of the XY path (X first, then Y) of every pair, laid end to end in pair order: src / dst
    int64 (n, 2) tile (x, y); width: tiles per mesh row (link id ((y * width + x) * 4 + direction), directions
    east, west, north, south); mesh_x / mesh_y: tiles per chip (0: one chip), a hop between two chips being of
    kind 2, else 0 east-west, 1 north-south; lat_s / energy_j float64 (3,) s / J per kind. Returns off int64
    (n + 1,) first channel of each pair and the end, then per channel (off[-1],): links, parent (position - 1),
    depth (position + 1), kind int64, hop_s, hop_j, before_s float64 (the hop latencies before it on its path,
    added one by one from 0.0) and blocking bool (all but a path's last channel)."""
    n = len(src)
    off = np.zeros(n + 1, np.int64)
    for p in range(n):
        off[p + 1] = off[p] + abs(dst[p, 0] - src[p, 0]) + abs(dst[p, 1] - src[p, 1])
    total = off[n]
    links, parent, depth, kind = (np.empty(total, np.int64), np.empty(total, np.int64),
                                  np.empty(total, np.int64), np.empty(total, np.int64))
    hop_s, hop_j, before, blocking = np.empty(total), np.empty(total), np.empty(total), np.empty(total, np.bool_)
    for p in range(n):
        x, y, x1 = src[p, 0], src[p, 1], dst[p, 0]
        sx, sy = (1 if x1 > x else -1), (1 if dst[p, 1] > y else -1)
        z, size, acc = off[p], off[p + 1] - off[p], 0.0
        for k in range(size):
            if x != x1:
                d, nx, ny = (0 if sx > 0 else 1), x + sx, y
            else:
                d, nx, ny = (2 if sy > 0 else 3), x, y + sy
            kd = 0 if d < 2 else 1
            if mesh_x > 0 and (x // mesh_x != nx // mesh_x or y // mesh_y != ny // mesh_y):
                kd = 2
            i = z + k
            links[i], parent[i], depth[i], kind[i] = (y * width + x) * 4 + d, k - 1, k + 1, kd
            hop_s[i], hop_j[i], before[i], blocking[i] = lat_s[kd], energy_j[kd], acc, k < size - 1
            acc += lat_s[kd]
            x, y = nx, ny
    return off, links, parent, depth, kind, hop_s, hop_j, before, blocking
