"""Compiled build of multicast route trees (hwmodels.events.paths.multicast_table): the union of the XY paths from
one source tile to each of its destination tiles, for every route at once, with the channel order, parents,
depths, hop costs, blocking flags and eject channels that hwmodels.events.network.Network._build gives route by
route (its Python walk: destinations in order, each path's links in order, a link seen before in the route reused,
a new one appended with the previous link of its path as parent).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


def tree_channels(src: np.ndarray, d_off: np.ndarray, dst: np.ndarray, width: int, height: int, mesh_x: int,
                  mesh_y: int, lat_s: np.ndarray, energy_j: np.ndarray) -> tuple:
    """Channels of the multicast trees of routes r = 0..n-1 from tile src[r] to the tiles dst[d_off[r]:d_off[r + 1]]
    (src int64 (n, 2), dst int64 (n_dst, 2) tiles (x, y) in the order the route visits them, d_off int64 (n + 1,)),
    on a mesh of width x height tiles (link id ((y * width + x) * 4 + direction), directions east, west, north,
    south) of chips of mesh_x x mesh_y tiles (0: one chip; a hop between chips is of kind 2, else 0 east-west,
    1 north-south), hop latency lat_s[kind] (s) and energy energy_j[kind] (J), float64 (3,).

    Returns (off int64 (n + 1,), links, parent (tree-local, -1 at a root), depth, kind int64, hop_s, hop_j,
    before_s float64, blocking bool, each (off[-1],), eject channel int64 (n_dst,): the channel entering each
    destination tile, -1 for the source tile). Arrays are allocated by numpy (huge pages on large arrays) and
    filled by two compiled passes (_count, _fill)."""
    src, d_off, dst = (np.ascontiguousarray(a, np.int64) for a in (src, d_off, dst))
    stamp = np.full(max(width * height * 4, 1), -1, np.int64)
    index = np.empty(len(stamp), np.int64)
    sizes = _count(src, d_off, dst, width, stamp)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(off[-1])
    out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
           np.empty(n), np.empty(n), np.empty(n), np.zeros(n, np.int64), np.empty(len(dst), np.int64))
    stamp[:] = -1
    _fill(src, d_off, dst, width, mesh_x, mesh_y, np.ascontiguousarray(lat_s, np.float64),
          np.ascontiguousarray(energy_j, np.float64), off, stamp, index, *out)
    links, parent, depth, kind, hop_s, hop_j, before, kids, eject = out
    ejecting = np.zeros(n, np.bool_)
    hit = eject >= 0
    ejecting[(off[:-1][np.repeat(np.arange(len(src)), np.diff(d_off))] + eject)[hit]] = True
    return off, links, parent, depth, kind, hop_s, hop_j, before, (kids == 1) & ~ejecting, eject


@njit(cache=True, inline="always")
def _step(x: int, y: int, x1: int, y1: int) -> tuple[int, int, int]:
    """(direction, next x, next y) of one XY step from (x, y) towards (x1, y1), X first (east 0, west 1, north 2,
    south 3)."""
    if x != x1:
        return (0 if x1 > x else 1), x + (1 if x1 > x else -1), y
    return (2 if y1 > y else 3), x, y + (1 if y1 > y else -1)


@njit(cache=True)
def _count(src, d_off, dst, width, stamp) -> np.ndarray:
    """Distinct links of each route's paths, int64 (n,) (stamp: int64 (n_links,) all -1, marked with the route)."""
    sizes = np.zeros(len(src), np.int64)
    for r in range(len(src)):
        for j in range(d_off[ux(r)], d_off[ux(r + 1)]):
            x, y = src[r, 0], src[r, 1]
            while x != dst[j, 0] or y != dst[j, 1]:
                d, nx, ny = _step(x, y, dst[j, 0], dst[j, 1])
                link = (y * width + x) * 4 + d
                if stamp[ux(link)] != r:
                    stamp[ux(link)] = r
                    sizes[ux(r)] += 1
                x, y = nx, ny
    return sizes


@njit(cache=True)
def _fill(src, d_off, dst, width, mesh_x, mesh_y, lat_s, energy_j, off, stamp, index,
          links, parent, depth, kind, hop_s, hop_j, before, kids, eject) -> None:
    """tree_channels' arrays, kids (zeros) counting each channel's children and eject, route by route as
    Network._build: a new link gets the next channel index of its route, the previous channel of its path as
    parent, before_s = parent's before_s + parent's hop latency (0.0 at a root)."""
    for r in range(len(src)):
        base, c = off[ux(r)], 0
        for j in range(d_off[ux(r)], d_off[ux(r + 1)]):
            x, y, prev = src[r, 0], src[r, 1], -1
            while x != dst[j, 0] or y != dst[j, 1]:
                d, nx, ny = _step(x, y, dst[j, 0], dst[j, 1])
                link = (y * width + x) * 4 + d
                if stamp[ux(link)] != r:
                    stamp[ux(link)], index[ux(link)] = r, c
                    i = base + c
                    kd = 0 if d < 2 else 1
                    if mesh_x > 0 and (x // mesh_x != nx // mesh_x or y // mesh_y != ny // mesh_y):
                        kd = 2
                    links[ux(i)], parent[ux(i)], kind[ux(i)] = link, prev, kd
                    hop_s[ux(i)], hop_j[ux(i)] = lat_s[ux(kd)], energy_j[ux(kd)]
                    if prev >= 0:
                        up = ux(base + prev)
                        depth[ux(i)], before[ux(i)] = depth[up] + 1, before[up] + hop_s[up]
                        kids[up] += 1
                    else:
                        depth[ux(i)], before[ux(i)] = 1, 0.0
                    c += 1
                prev = index[ux(link)]
                x, y = nx, ny
            eject[ux(j)] = prev
