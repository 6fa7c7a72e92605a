"""XY routes of many routes at once: the route trees of hwmodels.events.network (a multicast tree: the union of the
XY paths from its source tile to each destination tile; a unicast route: one such path) built by one compiled walk
(hwmodels.kernels.trees) instead of one Python walk per route, laid end to end in a RouteTable."""
from __future__ import annotations

import numpy as np

from hwmodels.events.route_table import RouteTable
from hwmodels.kernels.trees import tree_channels


def unicast_table(src: np.ndarray, dst: np.ndarray, width: int, height: int, mesh: tuple[int, int] | None,
                  lat_s: np.ndarray, energy_j: np.ndarray) -> RouteTable:
    """RouteTable of the XY paths (X first, then Y) of every pair (src / dst: int64 (n, 2) tile (x, y)), on a mesh
    of width x height tiles (link ids as hwmodels.events.network.Network.link_id) of chips of `mesh` tiles (None:
    one chip; a hop across a chip boundary is of kind 2), with hop latency lat_s[kind] (s) and energy
    energy_j[kind] (J) (float (3,) each, by HOP_KINDS): multicast_table with one destination per route, equal,
    field by field and bit for bit, to the trees Network._build makes of each pair (a path of n channels: parent
    k - 1 and depth k + 1 at position k, all but the last channel blocking, the destination tile entered by the
    last; before_s the running sum of the hop latencies)."""
    dst = np.ascontiguousarray(dst, np.int64).reshape(-1, 2)
    return multicast_table(src, np.arange(len(dst) + 1, dtype=np.int64), dst, width, height, mesh, lat_s, energy_j)


def multicast_table(src: np.ndarray, d_off: np.ndarray, dst: np.ndarray, width: int, height: int,
                    mesh: tuple[int, int] | None, lat_s: np.ndarray, energy_j: np.ndarray) -> RouteTable:
    """RouteTable of the multicast trees of routes r from tile src[r] to the tiles dst[d_off[r]:d_off[r + 1]]
    (src int64 (n, 2), dst int64 (n_dst, 2) tiles (x, y), each route's distinct and in (x, y) order, d_off int64
    (n + 1,)), on a mesh of width x height tiles of chips of `mesh` tiles (None: one chip), hop latency lat_s[kind]
    (s) and energy energy_j[kind] (J) (float (3,) each, by HOP_KINDS): equal, field by field and bit for bit, to
    the trees Network._build makes route by route (the union of the XY paths in destination order; eject: the
    channel entering each destination tile, -1 for the source tile), built by one compiled walk over all routes
    (hwmodels.kernels.trees.tree_channels)."""
    src, dst = (np.ascontiguousarray(a, np.int64).reshape(-1, 2) for a in (src, dst))
    d_off = np.ascontiguousarray(d_off, np.int64)
    mesh_x, mesh_y = mesh if mesh else (0, 0)
    *cols, eject = tree_channels(src, d_off, dst, int(width), int(height), int(mesh_x), int(mesh_y), lat_s, energy_j)
    return RouteTable(*cols, (d_off, dst, eject))
