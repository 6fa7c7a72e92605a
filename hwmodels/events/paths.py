"""Unicast XY routes of many (source tile, destination tile) pairs at once: the route trees of
hwmodels.events.network built with numpy instead of one Python walk per route (a route to one tile is a path, so
its tree is the path's links in order, each the parent of the next)."""
from __future__ import annotations

import numpy as np

#: direction index (hwmodels.events.network.DIRECTIONS) of a step +x, -x, +y, -y
EAST, WEST, NORTH, SOUTH = 0, 1, 2, 3


def path_links(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Links of the XY path (X first, then Y) of every pair: (ptr, x, y, direction), CSR over pairs.

    src / dst: int64 (n, 2) tile (x, y). Returns ptr int64 (n + 1,) and per link its upstream tile x, y and
    DIRECTIONS index, int64 (ptr[-1],), in path order (the order of hwmodels.events.network.xy_links).
    """
    dx, dy = dst[:, 0] - src[:, 0], dst[:, 1] - src[:, 1]
    nx, ny = np.abs(dx), np.abs(dy)
    ptr = np.concatenate([[0], np.cumsum(nx + ny)]).astype(np.int64)
    pair = np.repeat(np.arange(len(src)), nx + ny)
    k = np.arange(int(ptr[-1])) - ptr[pair]  # position along the path
    on_x = k < nx[pair]
    sx, sy = np.where(dx[pair] > 0, 1, -1), np.where(dy[pair] > 0, 1, -1)
    x = np.where(on_x, src[pair, 0] + sx * k, dst[pair, 0])
    y = np.where(on_x, src[pair, 1], src[pair, 1] + sy * (k - nx[pair]))
    direction = np.where(on_x, np.where(sx > 0, EAST, WEST), np.where(sy > 0, NORTH, SOUTH))
    return ptr, x.astype(np.int64), y.astype(np.int64), direction.astype(np.int64)


def link_kinds(x: np.ndarray, y: np.ndarray, direction: np.ndarray, mesh: tuple[int, int] | None) -> np.ndarray:
    """HOP_KINDS index of every link (hwmodels.events.network.Network.link_kind, vectorised): 2 across a chip
    boundary of `mesh` (tiles per chip, None: one chip), else 0 east-west, 1 north-south."""
    ns = direction >= NORTH
    kind = ns.astype(np.int64)
    if mesh:
        ddx = np.where(direction == EAST, 1, np.where(direction == WEST, -1, 0))
        ddy = np.where(direction == NORTH, 1, np.where(direction == SOUTH, -1, 0))
        cross = (x // mesh[0] != (x + ddx) // mesh[0]) | (y // mesh[1] != (y + ddy) // mesh[1])
        kind[cross] = 2
    return kind


def segment_before(hop_s: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Per link, the sum of the hop latencies of the links before it on its path, added one by one in path
    order (bit-identical to a running Python sum), float (ptr[-1],)."""
    before = np.zeros(len(hop_s))
    lengths = np.diff(ptr)
    starts = ptr[:-1]
    for k in range(1, int(lengths.max(initial=0))):
        at = starts[lengths > k] + k
        before[at] = before[at - 1] + hop_s[at - 1]
    return before
