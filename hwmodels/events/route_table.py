"""Route trees laid end to end in flat arrays (RouteTable), the form the route users read (hwmodels.events.network
RouteUse, hwmodels.timing.des), and the per-route Tree view made from it on demand (RouteTable.trees).

Tables of unicast and multicast routes are built for all routes at once by one compiled walk
(hwmodels.events.paths); RouteTable.of_trees lays trees made one by one (Network._build) end to end.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

NO_TERM = np.iinfo(np.int64).max
#: per-channel arrays of a route tree (Tree) and of a RouteTable, with their dtypes
FIELDS = {"links": np.int64, "parent": np.int64, "depth": np.int64, "kind": np.int64, "hop_s": np.float64,
          "hop_j": np.float64, "before_s": np.float64, "blocking": np.bool_}
#: the per-channel arrays that depend on the router's hop costs (the rest is the routes' topology)
COSTS = ("hop_s", "hop_j", "before_s")


@dataclass(frozen=True, eq=False)
class Tree:
    """The channels (directed links) of one route, parents before children.

    links: int64 (n,) global link ids (Network.link_id); parent: int64 (n,), -1 for a channel leaving the source
    tile; children: child channel indices of each channel; depth: int64 (n,), 1 for root channels.
    hop_s / hop_j: float (n,) latency (s) and energy (J) of one message crossing the channel; kind: int64 (n,)
        HOP_KINDS index of the channel (0 east-west tile hop, 1 north-south tile hop, 2 chip-to-chip link).
    before_s: float (n,) latency from the source router to the upstream router of each channel (sum of the
        hop latencies of its strict ancestors).
    eject: {tile (x, y): channel whose downstream router is that tile, or -1 for the source tile}.
    blocking: bool (n,): the channel's far router forwards to exactly one child channel and delivers to no core
        there, so a message leaves its far buffer only when it starts on that child (finite buffers can fill);
        at a fork or a delivery, messages are copied out on arrival (hwmodels.timing.des).
    up: int64 (n, n): up[i, x] = depth[i] - depth[x] when i is a strict descendant of x reached through
        blocking channels only (x, ..., parent(i) all blocking), NO_TERM elsewhere (the closed form of
        hwmodels.timing.des: buffers climbed from i back to x).
    """

    links: np.ndarray
    parent: np.ndarray
    children: tuple[tuple[int, ...], ...]
    depth: np.ndarray
    hop_s: np.ndarray
    hop_j: np.ndarray
    kind: np.ndarray
    before_s: np.ndarray
    eject: dict
    blocking: np.ndarray

    @cached_property
    def up(self) -> np.ndarray:
        """int64 (n, n), see the class docstring (computed on first use: only finite buffers need it)."""
        return climbs(self.parent, self.depth, self.blocking)

    @property
    def roots(self) -> tuple[int, ...]:
        """Channels that leave the source tile."""
        return tuple(int(c) for c in np.flatnonzero(self.parent < 0))

    @property
    def n_channels(self) -> int:
        """Channels (directed links) of the tree."""
        return len(self.links)


def climbs(parent: np.ndarray, depth: np.ndarray, blocking: np.ndarray) -> np.ndarray:
    """Tree.up of one tree's parent / depth / blocking ((n,) each): for every channel i, walk up through blocking
    parents and record the depth difference; int64 (n, n), NO_TERM where there is none."""
    n = len(parent)
    up = np.full((n, n), NO_TERM, np.int64)
    par, dep, blk = parent.tolist(), depth.tolist(), blocking.tolist()
    for i in range(n):
        x = par[i]
        while x >= 0 and blk[x]:
            up[i, x] = dep[i] - dep[x]
            x = par[x]
    return up


class RouteTable:
    """The channels of a sequence of route trees laid end to end: tree t's are off[t] .. off[t + 1] - 1, in the
    tree's own order (parents before children).

    off: int64 (n_trees + 1,). Per channel, (n_channels,) each, the Tree fields: links int64 global link ids,
    parent int64 tree-local (-1 at a root), depth int64 (1 at a root), kind int64 HOP_KINDS index, hop_s / hop_j
    float64 latency (s) / energy (J) of one message crossing it, before_s float64 latency (s) from the source
    router to its upstream router, blocking bool. eject: (eject_off int64 (n_trees + 1,), tile int64 (n_ej, 2)
    (x, y), channel int64 (n_ej,) tree-local, -1 for the source tile): Tree.eject of every tree, as CSR.
    The arrays are shared (by recosted tables, Tree views): never write into them.
    """

    def __init__(self, off: np.ndarray, links: np.ndarray, parent: np.ndarray, depth: np.ndarray,
                 kind: np.ndarray, hop_s: np.ndarray, hop_j: np.ndarray, before_s: np.ndarray,
                 blocking: np.ndarray, eject: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self.off = np.asarray(off, np.int64)
        self.links, self.parent, self.depth, self.kind = links, parent, depth, kind
        self.hop_s, self.hop_j, self.before_s, self.blocking = hop_s, hop_j, before_s, blocking
        self.eject = eject

    def __len__(self) -> int:
        return len(self.off) - 1

    @property
    def sizes(self) -> np.ndarray:
        """int64 (n_trees,) channels of each tree."""
        return np.diff(self.off)

    @cached_property
    def tree_of(self) -> np.ndarray:
        """int64 (n_channels,) tree of each channel."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.sizes)

    @cached_property
    def flat_parent(self) -> np.ndarray:
        """int64 (n_channels,) flat index of each channel's parent, -1 at a root."""
        return np.where(self.parent >= 0, self.parent + self.off[:-1][self.tree_of], -1)

    @cached_property
    def levels(self) -> list[np.ndarray]:
        """Flat indices (ascending) of the channels at depth 2, 3, ... (parents before children)."""
        order = np.argsort(self.depth, kind="stable")
        ends = np.cumsum(np.bincount(self.depth, minlength=2))
        return [order[a:b] for a, b in zip(ends[1:-1], ends[2:])]

    @cached_property
    def max_depth(self) -> np.ndarray:
        """int64 (n_trees,) the deepest channel's depth of each tree (0 for a tree of no channel)."""
        out, full = np.zeros(len(self), np.int64), self.sizes > 0
        if full.any():
            out[full] = np.maximum.reduceat(self.depth, self.off[:-1][full])
        return out

    @cached_property
    def trees(self) -> TreeSeq:
        """The trees as a read-only sequence of Tree, each made on first access (tree)."""
        return TreeSeq(self)

    def tree(self, t: int) -> Tree:
        """Tree t as a Tree (its arrays are views into this table's)."""
        lo, hi = int(self.off[t]), int(self.off[t + 1])
        kids: list[list[int]] = [[] for _ in range(hi - lo)]
        for c, p in enumerate(self.parent[lo:hi].tolist()):
            if p >= 0:
                kids[p].append(c)
        e_off, tile, chan = self.eject
        e0, e1 = int(e_off[t]), int(e_off[t + 1])
        eject = {tuple(xy): c for xy, c in zip(tile[e0:e1].tolist(), chan[e0:e1].tolist())}
        return Tree(self.links[lo:hi], self.parent[lo:hi], tuple(tuple(k) for k in kids), self.depth[lo:hi],
                    self.hop_s[lo:hi], self.hop_j[lo:hi], self.kind[lo:hi], self.before_s[lo:hi], eject,
                    self.blocking[lo:hi])

    def with_costs(self, hop_s: np.ndarray, hop_j: np.ndarray, before_s: np.ndarray) -> RouteTable:
        """The same routes with other channel costs, float64 (n_channels,) s / J / s; the topology arrays (and
        what is derived from them: tree_of, flat_parent, levels, max_depth) are shared."""
        out = object.__new__(RouteTable)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k != "trees"},
                            hop_s=hop_s, hop_j=hop_j, before_s=before_s)
        return out

    def recost(self, lat_s: np.ndarray, energy_j: np.ndarray) -> RouteTable:
        """The same routes with hop latency lat_s[kind] (s) and energy energy_j[kind] (J) (float (3,) each, by
        HOP_KINDS), before_s summed parent by parent from the root as the trees are built (bit-identical)."""
        hop_s, hop_j = np.asarray(lat_s, np.float64)[self.kind], np.asarray(energy_j, np.float64)[self.kind]
        before, par = np.zeros(len(self.kind)), self.flat_parent
        for at in self.levels:  # parents first: one depth level at a time
            before[at] = before[par[at]] + hop_s[par[at]]
        return self.with_costs(hop_s, hop_j, before)

    @staticmethod
    def of(routes) -> RouteTable:
        """`routes` as a RouteTable: itself, the table behind a TreeSeq, or a sequence of Tree laid end to end."""
        if isinstance(routes, RouteTable):
            return routes
        return routes.table if isinstance(routes, TreeSeq) else RouteTable.of_trees(tuple(routes))

    @staticmethod
    def of_trees(trees: Sequence[Tree]) -> RouteTable:
        """The trees laid end to end (their arrays concatenated, as FIELDS dtypes)."""
        sizes = [len(t.links) for t in trees]
        cols = [np.concatenate([getattr(t, k) for t in trees]).astype(d, copy=False) if trees else np.zeros(0, d)
                for k, d in FIELDS.items()]
        ej = [t.eject for t in trees]
        tiles = np.array([v for e in ej for xy in e for v in xy], np.int64).reshape(-1, 2)
        eject = (_offsets([len(e) for e in ej]), tiles, np.array([c for e in ej for c in e.values()], np.int64))
        return RouteTable(_offsets(sizes), *cols, eject)

    @staticmethod
    def concat(tables: Sequence[RouteTable]) -> RouteTable:
        """The tables' trees laid end to end, in order (the one table itself when there is one)."""
        if len(tables) == 1:
            return tables[0]
        ends = np.cumsum([0] + [int(t.off[-1]) for t in tables])
        e_ends = np.cumsum([0] + [int(t.eject[0][-1]) for t in tables])
        off = np.concatenate([[0]] + [t.off[1:] + e for t, e in zip(tables, ends)])
        e_off = np.concatenate([[0]] + [t.eject[0][1:] + e for t, e in zip(tables, e_ends)])
        cols = [np.concatenate([getattr(t, k) for t in tables]).astype(d, copy=False) for k, d in FIELDS.items()]
        eject = (e_off, np.concatenate([t.eject[1] for t in tables]).reshape(-1, 2),
                 np.concatenate([t.eject[2] for t in tables]))
        return RouteTable(off, *cols, eject)


class TreeSeq(Sequence):
    """The trees of a RouteTable (`table`) as a read-only sequence of Tree: len, indexing (a slice gives a tuple),
    iteration; tree t is made on first access (RouteTable.tree) and kept."""

    def __init__(self, table: RouteTable):
        self.table, self._made = table, {}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, t):
        if isinstance(t, slice):
            return tuple(self[j] for j in range(*t.indices(len(self))))
        j = operator.index(t)
        j += len(self) if j < 0 else 0
        if not 0 <= j < len(self):
            raise IndexError(f"tree {t} of {len(self)}")
        tree = self._made.get(j)
        if tree is None:
            tree = self._made[j] = self.table.tree(j)
        return tree


def _offsets(sizes) -> np.ndarray:
    """int64 (n + 1,): 0 and the running sums of `sizes`."""
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))]).astype(np.int64)
