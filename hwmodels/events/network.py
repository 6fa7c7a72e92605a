"""The network-on-chip of a mapping: XY dimension-ordered routes and multicast trees between tiles, the directed
links (channels) they use, their hop latency and energy, and per-link names for reports.

A route from one source tile to a set of destination tiles is the union of the XY paths (X first, then Y); routes
from one source form a tree, so a multicast message forks where paths part (dimension-order routing and tree
multicast as in Dally & Towles, "Principles and Practices of Interconnection Networks", 2004). A hop that
crosses a chip boundary (Mapping.mesh_shape set: multi-chip) uses the chip-to-chip link cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hwmodels.events import paths
from hwmodels.events.route_table import NO_TERM, RouteTable, Tree, TreeSeq
from hwmodels.kernels.arrivals import head_arrivals
from hwmodels.kernels.sums import segment_sums
from hwmodels.kernels.unique import dense_unique, sorted_unique
from hwmodels.mapping.map import Mapping
from hwmodels.chip.spec import ChipSpec

#: link directions (dx, dy): east, west, north (+y), south (-y)
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))
#: kinds of hop a message makes (Tree.kind, RouteUse.hop_kinds columns)
HOP_KINDS = ("ew", "ns", "chip")
#: the public names (Tree, NO_TERM and RouteTable are hwmodels.events.route_table's, imported from here too)
__all__ = ["DIRECTIONS", "HOP_KINDS", "NO_TERM", "Network", "RouteTable", "RouteUse", "Tree", "route_use",
           "tree_energy_sums", "xy_links"]


def xy_links(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Directed links (x, y, dx, dy) of the XY route from tile `src` to tile `dst` (X first, then Y)."""
    (x, y), (x1, y1) = src, dst
    sx, sy = (1 if x1 > x else -1), (1 if y1 > y else -1)
    return [(xi, y, sx, 0) for xi in range(x, x1, sx)] + [(x1, yi, 0, sy) for yi in range(y, y1, sy)]


class Network:
    """Routes of one mapping on one chip: link ids and costs, per-pair path latency/energy, route tables (unicast,
    built at once) and trees (cached by tiles).

    path_s / path_j: float (n_cores, n_cores) latency (s) from the source core's router to the destination
    core's router along the XY route, and energy (J) of one message over it; path_hops: int64 hops. width /
    height: tile columns / rows the mapping uses (its largest tile x / y + 1).
    """

    def __init__(self, mapping: Mapping, chip: ChipSpec):
        self.chip, self.mapping = chip, mapping
        self.mesh = getattr(mapping, "mesh_shape", None)
        self.tiles = [tuple(int(v) for v in xy) for xy in mapping.tile_xy]
        self.width = int(mapping.tile_xy[:, 0].max(initial=0)) + 1
        self.height = int(mapping.tile_xy[:, 1].max(initial=0)) + 1  # tile rows the mapping uses
        self._trees: dict = {}
        self._xy = np.asarray(mapping.tile_xy, np.int64)

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(path_s, path_j, path_hops) of every core pair, made on first use."""
        n = len(self._xy)
        return self._pair_costs(np.arange(n)[:, None], np.arange(n)[None, :])

    @property
    def path_s(self) -> np.ndarray:
        """float (n_cores, n_cores) XY route latency (s) between the cores' routers (see the class docstring)."""
        return self._tables[0]

    @property
    def path_j(self) -> np.ndarray:
        """float (n_cores, n_cores) energy (J) of one message along the XY route between the cores' routers."""
        return self._tables[1]

    @property
    def path_hops(self) -> np.ndarray:
        """int64 (n_cores, n_cores) hops of the XY route between the cores' routers."""
        return self._tables[2]

    def path_latency_s(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """path_s[src, dst] for core index arrays of one shape (bit-identical): read from the pair table when there
        are at least as many pairs as cores squared (the table is made once per Network and reused), else computed
        for these pairs only (no n_cores^2 table for a large chip)."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        if "_tables" in self.__dict__ or src.size >= len(self._xy) ** 2:
            return self.path_s[src, dst]
        return self._pair_latency(*self._pair_hops(src, dst))  # no energies

    def head_arrival_s(self, ready_s: np.ndarray, flow: np.ndarray, flow_src: np.ndarray, dst: np.ndarray,
                       link_s: float) -> np.ndarray:
        """ready_s[flow] + path_latency_s(flow_src[flow], dst) + link_s, float64 (len(flow),) s, bit for bit, in one
        compiled pass that releases the GIL (hwmodels.kernels.arrivals). ready_s: float (n_flows,) s; flow, dst:
        int (n,); flow_src: int (n_flows,) source core of every flow."""
        r = self.chip.router
        chip_s = float(getattr(r, "chip_link_latency_s", None) or 0.0)
        return head_arrivals(np.asarray(ready_s, np.float64), np.asarray(flow, np.int64),
                             np.asarray(flow_src, np.int64), np.asarray(dst, np.int64), *self._core_coords,
                             float(r.hop_latency_ew_s), float(r.hop_latency_ns_s), chip_s, float(link_s))

    def link_id(self, link: tuple[int, int, int, int]) -> int:
        """Global id of directed link (x, y, dx, dy): ((y * width + x) * 4 + direction)."""
        x, y, dx, dy = link
        return (y * self.width + x) * 4 + DIRECTIONS.index((dx, dy))

    def link_of(self, link_id: int) -> tuple[int, int, int, int]:
        """Inverse of link_id: (x, y, dx, dy)."""
        tile, d = divmod(int(link_id), 4)
        y, x = divmod(tile, self.width)
        return (x, y) + DIRECTIONS[d]

    def link_name(self, link_id: int) -> str:
        """'(x,y)->(x2,y2)' for a link id."""
        x, y, dx, dy = self.link_of(link_id)
        return f"({x},{y})->({x + dx},{y + dy})"

    def link_kind(self, link: tuple[int, int, int, int]) -> int:
        """HOP_KINDS index of `link`: 2 when it joins two chips, else 0 (east-west) or 1 (north-south)."""
        x, y, dx, dy = link
        if self.mesh and (x // self.mesh[0] != (x + dx) // self.mesh[0] or y // self.mesh[1] != (y + dy) // self.mesh[1]):
            return 2
        return 0 if dy == 0 else 1

    def link_cost(self, link: tuple[int, int, int, int]) -> tuple[float, float]:
        """(latency s, energy J) of one message crossing `link`: the tile hop by direction, or the chip-to-chip
        link (router.chip_link_*) when it joins two chips."""
        r, kind = self.chip.router, self.link_kind(link)
        if kind == 2:
            return float(r.chip_link_latency_s), float(r.chip_link_energy_j)
        return (r.hop_latency_ew_s, r.hop_energy_ew_j) if kind == 0 else (r.hop_latency_ns_s, r.hop_energy_ns_j)

    @property
    def kind_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """(latency s, energy J) of one hop of each HOP_KINDS kind, float (3,) each (the chip-to-chip link's are 0
        when the router has none; only multi-chip meshes have chip hops)."""
        r = self.chip.router
        chip_s, chip_j = (float(v) if v is not None else 0.0
                          for v in (getattr(r, "chip_link_latency_s", None), getattr(r, "chip_link_energy_j", None)))
        return (np.array([r.hop_latency_ew_s, r.hop_latency_ns_s, chip_s], float),
                np.array([r.hop_energy_ew_j, r.hop_energy_ns_j, chip_j], float))

    def recost(self, routes):
        """The same routes (of this network's mapping) with this network's hop latencies and energies: hop_s /
        hop_j by channel kind, before_s summed parent by parent from the root as the trees were built
        (bit-identical to routes built on this network), vectorised over all trees (RouteTable.recost). routes:
        a RouteTable (gives a RouteTable) or a sequence of Tree (gives a tuple of Tree)."""
        table = RouteTable.of(routes).recost(*self.kind_costs)
        return table if isinstance(routes, RouteTable) else tuple(table.trees)

    def _pair_costs(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latency (s), energy (J) and hop count of the XY route from core src to core dst, elementwise over
        index arrays that broadcast together."""
        r = self.chip.router
        dx, dy, bx, by = self._pair_hops(src, dst)
        chip_j = float(getattr(r, "chip_link_energy_j", None) or 0.0)
        en = (dx - bx) * r.hop_energy_ew_j + (dy - by) * r.hop_energy_ns_j + (bx + by) * chip_j
        return self._pair_latency(dx, dy, bx, by), en, dx + dy

    def _pair_hops(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, ...]:
        """(dx, dy, bx, by): tile hops east-west and north-south of the XY routes src -> dst, and how many of them
        cross a chip boundary (zeros on one chip); int64, of the broadcast shape of the core index arrays."""
        x, y, cx, cy = self._core_coords
        dx, dy = np.abs(x[src] - x[dst]), np.abs(y[src] - y[dst])
        if not self.mesh:
            return dx, dy, np.zeros_like(dx), np.zeros_like(dy)
        return dx, dy, np.abs(cx[src] - cx[dst]), np.abs(cy[src] - cy[dst])

    @cached_property
    def _core_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, chip x, chip y) int64 (n_cores,) each, contiguous: each core's tile and, on a multi-chip mesh, its
        chip column and row (tile // mesh; zeros on one chip), so that _pair_hops gathers instead of dividing per
        pair."""
        x, y = (np.ascontiguousarray(self._xy[:, k]) for k in (0, 1))
        if not self.mesh:
            return x, y, np.zeros_like(x), np.zeros_like(y)
        return x, y, x // self.mesh[0], y // self.mesh[1]

    def _pair_latency(self, dx: np.ndarray, dy: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
        """Latency (s) of XY routes of those hops (_pair_hops)."""
        r = self.chip.router
        chip_s = float(getattr(r, "chip_link_latency_s", None) or 0.0)
        return (dx - bx) * r.hop_latency_ew_s + (dy - by) * r.hop_latency_ns_s + (bx + by) * chip_s

    def tree(self, src_core: int, dst_cores: tuple[int, ...]) -> Tree:
        """The route tree from `src_core`'s tile to the tiles of `dst_cores` (cached by tiles)."""
        key = (self.tiles[src_core], tuple(sorted({self.tiles[d] for d in dst_cores})))
        if key not in self._trees:
            self._trees[key] = self._build(*key)
        return self._trees[key]

    def unicast_trees(self, src_cores: np.ndarray, dst_cores: np.ndarray) -> list[Tree]:
        """The trees of the routes from src_cores[i] to the single core dst_cores[i] (int64 (n,)), equal to
        tree(src, (dst,)) (views of unicast_table's)."""
        return list(self.unicast_table(src_cores, dst_cores).trees)

    def unicast_table(self, src_cores: np.ndarray, dst_cores: np.ndarray) -> RouteTable:
        """RouteTable of the routes from src_cores[i] to the single core dst_cores[i] (int64 (n,)), built at once
        (hwmodels.events.paths.unicast_table): tree i equals tree(src_cores[i], (dst_cores[i],))."""
        src, dst = (np.asarray(c, np.int64) for c in (src_cores, dst_cores))
        return paths.unicast_table(self._xy[src], self._xy[dst], self.width, self.height, self.mesh,
                                   *self.kind_costs)

    def multicast_table(self, src_cores: np.ndarray, dst_sets: list[np.ndarray]) -> RouteTable:
        """RouteTable of the routes from src_cores[i] to the cores dst_sets[i] (int64 (n,) and n int arrays), built
        at once (hwmodels.events.paths.multicast_table): tree i equals tree(src_cores[i], tuple(dst_sets[i]))
        (destination tiles distinct, in (x, y) order)."""
        src = np.asarray(src_cores, np.int64)
        sizes = np.array([len(d) for d in dst_sets], np.int64)
        cores = np.concatenate([np.asarray(d, np.int64) for d in dst_sets]) if len(dst_sets) else np.zeros(0, np.int64)
        height = self.height
        route = np.repeat(np.arange(len(src), dtype=np.int64), sizes)
        xy = self._xy[cores]
        # each route's tiles sorted by (x, y) without repeats: one sort of (route, x, y) keys
        keys = sorted_unique((route * self.width + xy[:, 0]) * height + xy[:, 1])
        r_of, tile = np.divmod(keys, self.width * height)
        d_off = np.concatenate([[0], np.cumsum(np.bincount(r_of, minlength=len(src)))]).astype(np.int64)
        dst = np.stack([tile // height, tile % height], axis=1)
        return paths.multicast_table(self._xy[src], d_off, dst, self.width, height, self.mesh, *self.kind_costs)

    def _build(self, src: tuple[int, int], dsts: tuple) -> Tree:
        """The Tree of the route from tile `src` to the tiles `dsts`, link by link (xy_links)."""
        index: dict[tuple, int] = {}
        parent, eject = [], {}
        for dst in dsts:
            prev = -1
            for link in xy_links(src, dst):
                if link not in index:
                    index[link] = len(parent)
                    parent.append(prev)
                prev = index[link]
            eject[dst] = prev
        links = list(index)
        n = len(links)
        cost = [self.link_cost(lk) for lk in links]
        depth, before, kids = [0] * n, [0.0] * n, [[] for _ in range(n)]
        for i, p in enumerate(parent):  # parents come first
            if p >= 0:
                depth[i], before[i] = depth[p] + 1, before[p] + cost[p][0]
                kids[p].append(i)
            else:
                depth[i] = 1
        ejecting = set(eject.values())
        blocking = [len(kids[i]) == 1 and i not in ejecting for i in range(n)]
        return Tree(np.array([self.link_id(lk) for lk in links], np.int64), np.array(parent, np.int64),
                    tuple(tuple(k) for k in kids), np.array(depth, np.int64),
                    np.array([c[0] for c in cost], float), np.array([c[1] for c in cost], float),
                    np.array([self.link_kind(lk) for lk in links], np.int64), np.array(before, float), eject,
                    np.array(blocking, bool))


def tree_energy_sums(routes, energy_j: np.ndarray) -> np.ndarray:
    """Tree.hop_j.sum() of every tree of `routes` (anything with a RouteTable's kind and off) whose channels cost
    energy_j[kind] (J, per HOP_KINDS), float (n_trees,), bit for bit (hwmodels.kernels.sums.segment_sums: numpy's
    pairwise summation, one compiled pass)."""
    return segment_sums(np.asarray(energy_j, np.float64)[routes.kind], np.asarray(routes.off, np.int64))


@dataclass(frozen=True, eq=False)
class RouteUse:
    """The distinct (source core, route) pairs of a batch of flows and what crosses the network on them.

    flow_route: int64 (n_flows,) index of each flow's pair (tree) in `table`; table: the route trees of the pairs
    laid end to end (RouteTable; `trees` views them one by one); flows / messages: int64 (n_pairs,) flows and
    messages on each pair; hop_j / hops: float / int64 (n_flows,) energy (J) of one message over its route and the
    channels (tree links) on it; hop_kinds: int64 (n_flows, 3) those channels by HOP_KINDS (east-west,
    north-south, chip-to-chip). base: the RouteUse of the same flows on the same mapping this one was recosted
    from (RouteUse.recosted), None when built by route_use; `topology` is the one whose routes (everything but
    the hop costs) it shares.
    """

    flow_route: np.ndarray
    table: RouteTable
    flows: np.ndarray
    messages: np.ndarray
    hop_j: np.ndarray
    hops: np.ndarray
    hop_kinds: np.ndarray
    base: RouteUse | None = None

    @property
    def trees(self) -> TreeSeq:
        """The route tree of each pair, a read-only sequence of Tree made on access (RouteTable.trees)."""
        return self.table.trees

    @property
    def topology(self) -> RouteUse:
        """The RouteUse built by route_use whose routes this one shares (itself when it was built so)."""
        return self if self.base is None else self.base

    def recosted(self, net: Network) -> RouteUse:
        """The same flows and routes with the hop latencies and energies of `net`, a network of the same mapping
        (Network.recost): equal to route_use on `net`, without building the routes again."""
        table = net.recost(self.topology.table)
        hop_j = tree_energy_sums(table, net.kind_costs[1])[self.flow_route] if len(table) else np.zeros(0)
        return RouteUse(self.flow_route, table, self.flows, self.messages, hop_j, self.hops, self.hop_kinds,
                        self.topology)

    def link_totals(self, link_s: float, out_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted link ids, messages, contention-free hold time s) per directed link, summed over the batch. A
        flow of m messages holds a channel for max(hop latency, link time) + (m - 1) x max(link time, message
        out) when nothing waits (hwmodels.timing.des closed form with every grant at the head's arrival)."""
        uniq, msgs = self.link_messages
        if not len(self.table):
            return uniq, msgs, np.zeros(0)
        _, inv, tree, hop_s = self.channels
        n_f, n_m = self.flows[tree], self.messages[tree]
        held = n_f * np.maximum(hop_s, link_s) + (n_m - n_f) * max(link_s, out_s)
        return uniq, msgs, np.bincount(inv, weights=held)

    @cached_property
    def node_off(self) -> np.ndarray:
        """Channel-node offset of every flow, int64 (n_flows + 1,): the running sum of `hops` from 0 (node
        node_off[f] + c is channel c of flow f, as the DES engines number them); shared with `base`, made once."""
        if self.base is not None:
            return self.base.node_off
        return np.concatenate([[0], np.cumsum(self.hops)]).astype(np.int64)

    @cached_property
    def link_messages(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted link ids, messages summed over the batch, int64) per directed link: link_totals without the
        hold times, which depend on latencies (the messages do not: shared with `base`, made once)."""
        if self.base is not None:
            return self.base.link_messages
        if not len(self.table):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        uniq, inv, tree, _ = self.channels
        return uniq, np.bincount(inv, weights=self.messages[tree]).astype(np.int64)

    @cached_property
    def channels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sorted link ids, index of each tree channel into them, tree of each channel, hop latency s) over
        the channels of every tree in order (computed once per RouteUse; the first three shared with `base`)."""
        if self.base is not None:
            return self.base.channels[:3] + (self.table.hop_s,)
        links = self.table.links
        uniq, inv = dense_unique(links, int(links.max(initial=-1)) + 1)  # link ids < 4 x tiles: a table
        return uniq, inv, self.table.tree_of, self.table.hop_s


def route_use(flow_src: np.ndarray, flow_route: np.ndarray, flow_messages: np.ndarray,
              routes: tuple[np.ndarray, ...] | None, net: Network) -> RouteUse:
    """RouteUse of a batch of flows (unicast when `routes` is None: route = destination core)."""
    width = int(np.max(flow_route, initial=-1)) + 1  # routes (destination cores or route ids) < width
    key = flow_src.astype(np.int64) * width + flow_route  # (source, route) in lexicographic order
    uniq, inv = dense_unique(key, int(np.max(flow_src, initial=-1)) * width + width)
    src, route = np.divmod(uniq, max(width, 1))
    if routes is None:
        table = net.unicast_table(src, route)
    else:
        table = net.multicast_table(src, [routes[r] for r in route.tolist()])
    n = len(table)
    hops = (table.sizes if n else np.zeros(1, np.int64))[inv]
    # Tree.hop_j.sum() of every tree, bit for bit: a channel's energy is its kind's (Network.kind_costs), as
    # tree_energy_sums reads it for RouteUse.recosted
    hop_j = (tree_energy_sums(table, net.kind_costs[1]) if n else np.zeros(1))[inv]
    per_tree = np.bincount(table.tree_of * 3 + table.kind, minlength=3 * n)
    # np.take along axis 0 gathers the rows ~4x faster than indexing with inv (724k flows of Spikformer-4-384)
    kinds = np.take((per_tree.reshape(-1, 3) if n else np.zeros((1, 3), np.int64)).astype(np.int64), inv, axis=0)
    flows = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    msgs = np.bincount(inv, weights=flow_messages, minlength=len(uniq)).astype(np.int64)
    return RouteUse(inv.astype(np.int64), table, flows, msgs, hop_j, hops, kinds)
