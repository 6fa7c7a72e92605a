"""The channel nodes of the DES network play as flat arrays: one node per (flow, tree channel), its link, parent,
children, hop latency, release dependencies and queue (link, step), for hwmodels.timing.des_vector. Everything here
depends only on the routes, message counts, link time and buffer depth, so it is built once per batch group
and reused when only core latencies change (hwmodels.timing.des caches it on the RouteUse)."""
from __future__ import annotations

import copy
from functools import cached_property

import numpy as np

from hwmodels.events.route_table import RouteTable
from hwmodels.kernels.nodes import fill
from hwmodels.kernels.unique import dense_unique


def seg(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the CSR segments ptr[i]..ptr[i+1] for i in idx, and the index into idx owning each."""
    cnt = ptr[idx + 1] - ptr[idx]
    own = np.repeat(np.arange(len(idx)), cnt)
    return np.arange(len(own)) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(ptr[idx], cnt), own


def _csr(rows: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, values) of a CSR with the given (row, value) entries, values of a row in input order."""
    o = np.argsort(rows, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64), vals[o]


class Nodes:
    """Channel nodes of a group of flows: node off[f] + c is channel c of flow f's tree (hwmodels.timing.des layout).

    routes: the route trees laid end to end (a RouteTable, shared by the chunks of a batch; or a sequence of
    Tree); flow_route / hops / msgs / flow_step: int64 (n_flows,) tree index, channels, messages and step id
    (distinct across the samples and batches of the group) of each flow; link_s: link time s; depth:
    router buffer depth (None: unbounded). Arrays per node: flow, step, link, parent (-1: root), hop (s),
    before (s, from the tree), blocking, cm = (m - 1) L (s), first_child (-1: none); slot terms (tm_ptr,
    term_node, term_const s); missing = how many grants each release needs. Built on first use (the compiled
    engine needs them only with several children per channel or with slot terms): CSR `children`
    (ch_ptr, child) and `dependents` (dp_ptr, dependent).
    """

    def __init__(self, routes: RouteTable, flow_route: np.ndarray, hops: np.ndarray, msgs: np.ndarray,
                 flow_step: np.ndarray, link_s: float, depth: int | None):
        routes = RouteTable.of(routes)
        self.off = np.concatenate([[0], np.cumsum(hops)]).astype(np.int64)
        self.n = n = int(self.off[-1])
        (self.flow, self.step, self._tidx, self.link, self.hop, self.before, self.blocking, self.parent,
         self.first_child, self._m1, self.cm, self.single_child) = fill(
            self.off, np.asarray(flow_route, np.int64), np.asarray(flow_step, np.int64),
            np.asarray(msgs, np.int64), routes.off, routes.links, routes.parent, routes.hop_s, routes.before_s,
            routes.blocking, float(link_s))
        self._terms(routes, np.asarray(flow_route, np.int64), depth, link_s)
        self.plain = len(self.term_node) == 0
        # grants each release needs: its own, its child's when blocking, and the slot terms' (distinct)
        self.missing = 1 + self.blocking if self.plain else np.bincount(self._dependents[1], minlength=n)

    def with_costs(self, routes: RouteTable, link_s: float) -> Nodes:
        """These nodes with the hop latencies of `routes` (the same routes in the same order, recosted:
        hwmodels.events.network.Network.recost; a RouteTable or a sequence of Tree) and link time `link_s`;
        everything else (the topology, queues' inputs, dependency tables) is shared. Equal to Nodes built on
        those routes and link time."""
        routes = RouteTable.of(routes)
        out = copy.copy(self)
        out.hop, out.before = routes.hop_s[self._tidx], routes.before_s[self._tidx]
        out.cm, out.term_const = self._m1 * link_s, self._term_links * link_s
        return out

    @cached_property
    def children(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (ch_ptr, child) of every node's child channels."""
        kids = np.flatnonzero(self.parent >= 0)
        return _csr(self.parent[kids], kids, self.n)

    def _terms(self, routes: RouteTable, flow_route: np.ndarray, depth: int | None, link_s: float) -> None:
        """Slot terms of every node z with finite buffers: (node i, (m - 1 - B up) L) for the descendants i of z
        reached through blocking channels with up = depth difference <= K = min((m - 1) // B, the tree's depth)
        (hwmodels.timing.des closed form; RouteTable.climbs), ordered by z, then i."""
        n = self.n
        if depth is None or n == 0:
            self.tm_ptr, self.term_node, self.term_const = np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0)
            self._term_links = np.zeros(0, np.int64)
            return
        cap = np.minimum(self._m1 // depth, routes.max_depth[flow_route[self.flow]])  # K of every node
        ti, tz, tu = routes.climbs(int(cap.max(initial=0)))
        ti = ti - routes.off[routes.tree_of[ti]]  # tree-local
        pos, own = seg(np.concatenate([[0], np.cumsum(np.bincount(tz, minlength=len(routes.links)))]), self._tidx)
        keep = tu[pos] <= cap[own]
        pos, own = pos[keep], own[keep]
        self.tm_ptr = np.concatenate([[0], np.cumsum(np.bincount(own, minlength=n))]).astype(np.int64)
        self.term_node = ti[pos] + self.off[self.flow[own]]
        self._term_links = self._m1[own] - depth * tu[pos]  # link times in each slot term
        self.term_const = self._term_links * link_s

    @cached_property
    def dependents(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (dp_ptr, dependent) node j -> nodes x whose release needs j's grant (each x once per j)."""
        rows, cols = self._dependents
        return _csr(rows, cols, self.n)

    @cached_property
    def _dependents(self) -> tuple[np.ndarray, np.ndarray]:
        """(row j, dependent x) pairs: x's own grant, its child's when x is blocking, its slot terms'."""
        n, x = self.n, np.arange(self.n)
        b = np.flatnonzero(self.blocking)
        rows, cols = [x, self.first_child[b]], [x, b]
        pos, own = seg(self.tm_ptr, x)
        rows.append(self.term_node[pos]), cols.append(own)
        pos, own = seg(self.tm_ptr, self.first_child[b])
        rows.append(self.term_node[pos]), cols.append(b[own])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        if not self.plain:  # a slot term may repeat the child or another term: count each grant once
            pair = np.unique(rows * max(n, 1) + cols)
            rows, cols = pair // max(n, 1), pair % max(n, 1)
        return rows, cols


class Queues:
    """The queues (step, link) of a Nodes group: queue of each node (`of`), number of queues `n`, step of each
    queue (sorted) and the root nodes."""

    def __init__(self, nd: Nodes):
        nl = int(nd.link.max(initial=0)) + 1
        uniq, self.of = dense_unique(nd.step * nl + nd.link, (int(nd.step.max(initial=0)) + 1) * nl)
        self.n, self.step = len(uniq), uniq // nl
        self.roots = np.flatnonzero(nd.parent < 0)
