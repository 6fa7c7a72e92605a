"""Vectorised engine of the DES network play (hwmodels.timing.des): the same channel grants and releases as the simpy
engine, bit for bit, decided in rounds over every hardware step of a group of batches at once with numpy.

Equations (the simpy engine's, when every request comes strictly after its parent's grant: hop latencies > 0
and not below the float resolution of the step times, which grants() checks). A node is one channel c of one
flow f; Q its request time (the flow's ready time on a root channel, else the parent channel's grant + the
parent's hop latency: the head reaching the router), G its grant, rel its release (hwmodels.timing.des closed form, a
function of the grants of the node, of its child when blocking, and of the slot terms with finite buffers). A
queue is one directed link in one step. Claim: each queue grants its users in (Q, flow index) order and
G_k = max(Q_k, rel_{k-1}). Proof: the simpy engine grants when an arm event runs, and an arm at time t is
pushed at time t; every request event at time t was pushed earlier (a root's at set-up, a child's at its
parent's grant G < t = fl(G + h)), so it has a smaller event id and has already run: the heap of waiting
requests holds every request with Q <= t and pops the least (Q, flow). Requests never arrive in the past, so a
channel idle at Q_k grants at Q_k, else at the release of its holder, which is the previous user in that order.
If some request did fall at its parent's grant, the earliest one would already be in the solution computed
here, so the check after the rounds catches every case the proof does not cover.

Rounds. Each round decides, in every step, every queue whose next grant is already certain, then derives the
children's request times and every release whose grants are all known. A queue is a candidate when its
holder's release F is known and it has a waiting user with a known Q; its candidate u is the least (Q, flow)
among those, at time t = max(F, Q_u). u is certainly next when no user whose Q is still unknown can come before
it, i.e. Q_u < a lower bound of every unknown request time at the queue. Two bounds are used, both exact
floating-point lower bounds (rounding is monotone: x <= y implies fl(x + h) <= fl(y + h)):
1. horizon: T_s, the least candidate time of step s, is the time of the earliest undecided grant of the step
   (the earliest undecided grant in event order is a candidate: its inputs come from earlier grants; a
   candidate earlier than it would be an earlier undecided grant). An unknown request's parent is undecided,
   so it comes at >= fl(T_s + h_min). The least candidate of every step passes: at least one grant per step
   per round, so the loop ends.
2. arrival bound A_q (a min-plus relaxation over the queues that feed q, one sweep per round, kept across
   rounds since every bound stays true): NG_p = max(FB_p, min(least waiting Q at p, A_p)) bounds any future
   grant at queue p, where FB_p is p's known release, or while a holder owns p, fl(tail start + L) <= its
   release; an unknown request at q comes from a feeder p at >= fl(NG_p + hop), A_q = min over feeders.
Every decision is the simpy engine's, by induction over rounds; tests/hwmodels/test_des_engines.py checks the
two engines bit for bit (grants, releases, step latencies, link hold times) on random contended traces.
"""
from __future__ import annotations

import numpy as np

from hwmodels.timing.des_nodes import Nodes, Queues, seg


class NotApplicable(RuntimeError):
    """The input is outside the proof: a request at the instant of its parent's grant (a hop latency below the
    float resolution of the step times), or, for the same reason, a round that decides nothing."""


def _lexmin(nodes: np.ndarray, q: np.ndarray, key: np.ndarray, queue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per queue, the (Q, flow)-least of `nodes`: (queues, nodes)."""
    o = np.lexsort((key[nodes], q[nodes], queue[nodes]))
    nodes = nodes[o]
    qs = queue[nodes]
    first = np.ones(len(nodes), bool)
    first[1:] = qs[1:] != qs[:-1]
    return qs[first], nodes[first]


def _less(qa, ka, qb, kb) -> np.ndarray:
    """(qa, ka) < (qb, kb) lexicographically, elementwise."""
    return (qa < qb) | ((qa == qb) & (ka < kb))


def _offer(best: np.ndarray, qs: np.ndarray, cand: np.ndarray, q: np.ndarray, key: np.ndarray) -> None:
    """best[qs] = cand where cand is (Q, flow)-less than the current best (or there is none)."""
    cur = np.maximum(best[qs], 0)
    take = (best[qs] < 0) | _less(q[cand], key[cand], q[cur], key[cur])
    best[qs[take]] = cand[take]


class _Rounds:
    """State of the rounds: per node request q, grant g, release rel; per queue its holder's release `free`
    (NaN while unknown), a bound fb <= it, the arrival bound `arr`, the least waiting user `best` (-1: none)."""

    COMPACT = 16  # rounds between drops of finished queues and feeder pairs

    def __init__(self, nd: Nodes, qs: Queues, ready: np.ndarray, tail: np.ndarray, link_s: float):
        self.nd, self.qs, self.link_s, n = nd, qs, link_s, nd.n
        self.tb = tail[nd.flow] + nd.before
        self.q = np.full(n, np.nan)
        self.q[qs.roots] = ready[nd.flow[qs.roots]]
        self.roots = qs.roots[np.lexsort((nd.flow[qs.roots], self.q[qs.roots], qs.of[qs.roots]))]
        self.rstart = np.concatenate([[0], np.cumsum(np.bincount(qs.of[qs.roots], minlength=qs.n))])
        self.g, self.rel, self.granted = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
        self.free, self.fb = np.full(qs.n, -np.inf), np.full(qs.n, -np.inf)
        self.arr = np.where(qs.unknown > 0, -np.inf, np.inf)
        self.rptr, self.unknown, self.left_q = self.rstart[:-1].copy(), qs.unknown.copy(), qs.users.copy()
        self.missing = nd.missing.copy()
        self.best = self._root_at(self.rptr, np.arange(qs.n))
        self.waiting, self.dyn = np.zeros(qs.n, np.int64), np.zeros(0, np.int64)
        self.hmin, self.left, self.rounds = float(nd.hop.min(initial=np.inf)), n, 0
        self.live, self.pairs = np.arange(qs.n), np.arange(len(qs.f_q))
        self._compact()

    def _root_at(self, ptr: np.ndarray, queues: np.ndarray) -> np.ndarray:
        """The root user at position ptr of each queue, -1 past its last root."""
        ok = ptr < self.rstart[1:][queues]
        return np.where(ok, self.roots[np.minimum(ptr, max(len(self.roots) - 1, 0))], -1)

    def _compact(self) -> None:
        """Keep the queues with users left and the feeder pairs of queues still expecting unknown requests."""
        qs = self.qs
        self.live = self.live[self.left_q[self.live] > 0]
        self.pairs = self.pairs[self.unknown[qs.f_q[self.pairs]] > 0]
        fq = qs.f_q[self.pairs]
        self.p_start = np.flatnonzero(np.concatenate([[True], fq[1:] != fq[:-1]])) if len(fq) else fq
        self.p_fed, self.p_src, self.p_h = fq[self.p_start], qs.f_src[self.pairs], qs.f_h[self.pairs]

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """Rounds until every node is granted; returns (grants, releases) s."""
        while self.left:
            self.rounds += 1
            if self.rounds % self.COMPACT == 0:
                self._compact()
            self._step()
        return self.g, self.rel

    def _bound_arrivals(self) -> None:
        """One min-plus sweep of the arrival bounds over the live feeder pairs."""
        if not len(self.pairs):
            return
        src, best = self.p_src, self.best[self.p_src]
        least = np.where(best >= 0, self.q[np.maximum(best, 0)], np.inf)
        nxt = np.maximum(self.fb[src], np.minimum(least, self.arr[src]))
        self.arr[self.p_fed] = np.maximum(self.arr[self.p_fed], np.minimum.reduceat(nxt + self.p_h, self.p_start))

    def _step(self) -> None:
        """Decide every certain grant of this round and propagate it."""
        live = self.live
        cand = live[(self.best[live] >= 0) & ~np.isnan(self.free[live])]
        u = self.best[cand]
        t = np.maximum(self.free[cand], self.q[u])
        steps = self.qs.step[cand]
        start = np.flatnonzero(np.concatenate([[True], steps[1:] != steps[:-1]]))
        horizon = np.repeat(np.minimum.reduceat(t, start), np.diff(np.append(start, len(cand)))) + self.hmin
        self._bound_arrivals()
        dec = (self.q[u] < horizon) | (self.q[u] < self.arr[cand])
        if not dec.any():
            raise NotApplicable(f"DES vector engine: no certain grant with {self.left} left")
        self._grant(cand[dec], u[dec], t[dec])

    def _grant(self, gq: np.ndarray, gu: np.ndarray, gt: np.ndarray) -> None:
        """Grant gu on queues gq at times gt, then derive requests and releases."""
        nd, qs, key = self.nd, self.qs, self.nd.flow
        self.g[gu], self.granted[gu], self.free[gq] = gt, True, np.nan
        self.fb[gq] = np.maximum(gt + nd.cm[gu], self.tb[gu]) + self.link_s  # <= the holder's release
        self.left -= len(gu)
        self.left_q[gq] -= 1
        root = nd.parent[gu] < 0
        self.rptr[gq[root]] += 1
        self.waiting[gq[~root]] -= 1
        self.best[gq] = self._root_at(self.rptr[gq], gq)
        self.dyn = self.dyn[~self.granted[self.dyn]]
        rescan = gq[self.waiting[gq] > 0]
        if len(rescan):
            mark = np.zeros(qs.n, bool)
            mark[rescan] = True
            _offer(self.best, *_lexmin(self.dyn[mark[qs.of[self.dyn]]], self.q, key, qs.of), self.q, key)
        if nd.single_child:  # unicast: at most one child per channel
            own = np.flatnonzero(nd.first_child[gu] >= 0)
            kids = nd.first_child[gu[own]]
        else:
            pos, own = seg(nd.ch_ptr, gu)
            kids = nd.child[pos]
        if len(kids):
            self.q[kids] = gt[own] + nd.hop[gu[own]]
            kq = qs.of[kids]
            np.add.at(self.waiting, kq, 1)
            np.subtract.at(self.unknown, kq, 1)
            self.arr[kq[self.unknown[kq] == 0]] = np.inf
            self.dyn = np.concatenate([self.dyn, kids])
            _offer(self.best, *_lexmin(kids, self.q, key, qs.of), self.q, key)
        self._release(gu)

    def _release(self, gu: np.ndarray) -> None:
        """Releases whose grants are now all known free their queues."""
        nd = self.nd
        if nd.plain:  # no slot terms: x needs its own grant and, when blocking, its child's (distinct nodes)
            p = nd.parent[gu]
            xs = np.concatenate([gu, p[(p >= 0) & nd.blocking[np.maximum(p, 0)]]])
            self.missing[xs] -= 1
            xs = xs[self.missing[xs] == 0]
        else:
            pos, _ = seg(nd.dp_ptr, gu)
            xs = nd.dependent[pos]
            np.subtract.at(self.missing, xs, 1)
            xs = np.unique(xs[self.missing[xs] == 0])
        if len(xs):
            self.rel[xs] = nd.release(xs, self.g, self.tb, self.link_s)
            self.free[self.qs.of[xs]] = self.fb[self.qs.of[xs]] = self.rel[xs]


def grants(nd: Nodes, qs: Queues, ready: np.ndarray, tail: np.ndarray, link_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Grant and release time (s) of every node of `nd` (see the module docstring). ready / tail: (n_flows,)
    time the first / last message of each flow is ready at its source router, s. Raises NotApplicable when a
    request falls at the instant of its parent's grant (fl(G + h) == G), where the proof does not hold."""
    rounds = _Rounds(nd, qs, ready, tail, link_s)
    g, rel = rounds.run()
    kids = np.flatnonzero(nd.parent >= 0)
    if np.any(rounds.q[kids] <= g[nd.parent[kids]]):
        raise NotApplicable("DES vector engine: a hop latency vanishes against the step times")
    return g, rel
