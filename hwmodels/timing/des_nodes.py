"""The channel nodes of the DES network play as flat arrays: one node per (flow, tree channel), its link, parent,
children, hop latency, release dependencies and queue (link, step), for hwmodels.timing.des_vector. Everything here
depends only on the routes, message counts, link time and buffer depth, so it is built once per batch group
and reused when only core latencies change (hwmodels.timing.des caches it on the RouteUse)."""
from __future__ import annotations

import copy
from functools import cached_property

import numpy as np

from hwmodels.events.route_table import RouteTable
from hwmodels.kernels.nodes import costs, dependencies, fill, slot_terms


def _csr(rows: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, values) of a CSR with the given (row, value) entries, values of a row in input order."""
    o = np.argsort(rows, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64), vals[o]


class Nodes:
    """Channel nodes of a group of flows: node off[f] + c is channel c of flow f's tree (hwmodels.timing.des layout).

    routes: the route trees laid end to end (a RouteTable, shared by the chunks of a batch; or a sequence of
    Tree); flow_route / hops / msgs / flow_step: int64 (n_flows,) tree index, channels, messages and step id
    (sorted, >= 0; distinct across the samples and batches of the group) of each flow; link_s: link time s;
    depth: router buffer depth (None: unbounded). Arrays per node (n,): flow, parent (-1: root), first_child
    (-1: none) of dtype hwmodels.kernels.nodes.index_dtype (int32 below 2^31 nodes, flows and links), hop (s),
    before (s, from the tree), blocking bool; per flow flow_cm = (m - 1) L (s); per step node_ptr int64
    (n_steps + 1,) (step k holds nodes node_ptr[k]..node_ptr[k+1]-1); slot terms (tm_ptr, term_node, term_const
    s). Made on request from these: step, link, cm = flow_cm[flow] int64 / float64 (n,) and missing = how many
    grants each release needs. Built on first use (the compiled engine needs them only with several children
    per channel or with slot terms): CSR `children` (ch_ptr, child) and `dependents` (dp_ptr, dependent).
    """

    def __init__(self, routes: RouteTable, flow_route: np.ndarray, hops: np.ndarray, msgs: np.ndarray,
                 flow_step: np.ndarray, link_s: float, depth: int | None):
        routes = RouteTable.of(routes)
        self._links, self._t_off, self._flow_route = routes.links, routes.off, np.asarray(flow_route, np.int64)
        self._flow_step = np.asarray(flow_step, np.int64)
        self.off = np.concatenate([[0], np.cumsum(hops)]).astype(np.int64)
        self.n = n = int(self.off[-1])
        (self.flow, self.hop, self.before, self.blocking, self.parent, self.first_child, of, self.single_child,
         self.node_ptr, queue_ptr, start) = fill(
            self.off, self._flow_route, self._flow_step, routes.off, routes.links, routes.parent, routes.hop_s,
            routes.before_s, routes.blocking, int(routes.links.max(initial=-1)) + 1)
        self._queues = (of, queue_ptr, start)
        self._m1 = np.asarray(msgs, np.int64) - 1
        self.flow_cm = self._m1 * float(link_s)
        self._terms(routes, depth, link_s)
        self.plain = len(self.term_node) == 0
        # grants each release needs (plain: its own and its child's when blocking, made on request)
        self._need = None if self.plain else self._dependencies[2]

    def with_costs(self, routes: RouteTable, link_s: float) -> Nodes:
        """These nodes with the hop latencies of `routes` (the same routes in the same order, recosted:
        hwmodels.events.network.Network.recost; a RouteTable or a sequence of Tree) and link time `link_s`;
        everything else (the topology, queues, dependency tables) is shared. Equal to Nodes built on those
        routes and link time."""
        routes = RouteTable.of(routes)
        out = copy.copy(self)
        out.hop, out.before = costs(self.off, self._flow_route, routes.off, routes.hop_s, routes.before_s)
        out.flow_cm, out.term_const = self._m1 * float(link_s), self._term_links * link_s
        return out

    @cached_property
    def step(self) -> np.ndarray:
        """int64 (n,) step of every node (sorted)."""
        return np.repeat(self._flow_step, np.diff(self.off))

    @cached_property
    def link(self) -> np.ndarray:
        """int64 (n,) link id of every node."""
        return self._links[self._tidx()]

    @property
    def cm(self) -> np.ndarray:
        """float64 (n,) (m - 1) L (s) of every node: its flow's flow_cm."""
        return self.flow_cm[self.flow]

    @property
    def missing(self) -> np.ndarray:
        """int64 (n,) grants each release needs: its own, its child's when blocking, and the slot terms'
        (distinct)."""
        return 1 + self.blocking.astype(np.int64) if self._need is None else self._need

    def _tidx(self) -> np.ndarray:
        """int64 (n,) flat route-table channel of every node."""
        own = np.repeat(self._t_off[self._flow_route] - self.off[:-1], np.diff(self.off))
        return own + np.arange(self.n)

    @cached_property
    def children(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (ch_ptr, child) of every node's child channels."""
        kids = np.flatnonzero(self.parent >= 0)
        return _csr(self.parent[kids].astype(np.int64), kids, self.n)

    def _terms(self, routes: RouteTable, depth: int | None, link_s: float) -> None:
        """Slot terms of every node z with finite buffers: (node i, (m - 1 - B up) L) for the descendants i of z
        reached through blocking channels with up = depth difference <= K = min((m - 1) // B, the tree's depth)
        (hwmodels.timing.des closed form; hwmodels.kernels.nodes.slot_terms), ordered by z, then i."""
        n = self.n
        self._max_depth, self._depth = routes.max_depth, None if depth is None else int(depth)
        if depth is None or n == 0:
            self.tm_ptr, self.term_node, self.term_const = np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0)
            self._term_links = np.zeros(0, np.int64)
            return
        self.tm_ptr, self.term_node, self._term_links = slot_terms(
            self.off, self._flow_route, self._m1, self._max_depth, self.blocking, self.first_child, self._depth)
        self.term_const = self._term_links * link_s

    @cached_property
    def dependents(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (dp_ptr, dependent) node j -> nodes x whose release needs j's grant (each x once per j, in increasing
        order): x's own grant, its child's when x is blocking, its slot terms' (hwmodels.kernels.nodes.
        dependencies)."""
        return self._dependencies[:2]

    @cached_property
    def _dependencies(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """hwmodels.kernels.nodes.dependencies of these nodes (finite buffers): (dp_ptr, dependent, grants each
        release needs)."""
        unbounded = np.iinfo(np.int64).max  # no slot terms: a release needs its own and its child's grant
        return dependencies(self.off, self._flow_route, self._m1, self._max_depth, self.blocking,
                            self.first_child, self.parent, unbounded if self._depth is None else self._depth)


class Queues:
    """The queues (step, link) of a Nodes group, numbered in sorted (step, link) order (hwmodels.kernels.nodes.fill):
    queue of each node `of` ((n,), Nodes' index dtype), number of queues `n`, ptr int64 (n_steps + 1,) (step k
    holds queues ptr[k]..ptr[k+1]-1), start int64 (n + 1,) cumulative users of the queues, step int64 (n,) of
    each queue (sorted) and the root nodes int64 (made on request)."""

    def __init__(self, nd: Nodes):
        self.of, self.ptr, self.start = nd._queues
        self.n = len(self.start) - 1
        self.step = np.repeat(np.arange(len(self.ptr) - 1, dtype=np.int64), np.diff(self.ptr))
        self._parent = nd.parent

    @cached_property
    def roots(self) -> np.ndarray:
        """int64 the nodes without a parent, ascending."""
        return np.flatnonzero(self._parent < 0)
