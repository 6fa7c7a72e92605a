"""Discrete-event latency model (simpy): the network of every hardware step is played flow by flow, with channel
contention, finite router buffers that back-pressure upstream links, and optional multicast trees. The core
pipeline stages around it (soma, messages out, message in, synapse + dendrite) are hwmodels.pipeline's.

Message-level model (the semantics; tests/hwmodels/reference_des.py plays it one message at a time):
- A flow is the m messages one source core sends along one route in a step (unicast: to one core; multicast: one
  message per spike to a set of cores, copied where its XY tree forks). Message k is ready at the source router
  at r_k = R + (k - 1) O (O = message_out latency, R from the pipeline).
- A channel is a directed link plus the input buffer of B messages at its far router (router.buffer_depth;
  None = unbounded). Wormhole switching with the flow as the packet and credit-based buffers (Dally & Towles,
  "Principles and Practices of Interconnection Networks", 2004, buffered flow control): a channel belongs to one flow from the grant of the flow's head
  until its tail has crossed the link and left that buffer; waiting heads are granted by (request time, flow
  order), decided after every request of an instant (the same tie-breaking in both simulators).
- Message k starts on channel c at s[k,c] = max(its arrival at c's upstream router, s[k-1,c] + L, a slot),
  L = 1 / link bandwidth, arrival = r_k at the source router and s[k,p] + h_p after parent channel p (h: hop
  latency). Slot: if c's far router only forwards to one child channel (c is "blocking"), a message stays in
  c's far buffer until it starts on that child, and message k needs message k - B to have left (credits return
  at once): a full buffer holds the message, and with it the whole train, on the upstream link. Where the route
  forks or delivers to a core, a message is copied out on arrival (into the core's unbounded input FIFO, one
  more L, and into unbounded per-branch queues), so forks and the last buffer never block; this keeps
  multicast deadlock-free (only X->X, X->Y and Y->Y channel dependencies remain, as in XY unicast).
- The head reaches a destination core at G_c + h_c + L (c: the channel into its tile, G_c its grant), or R + L
  on the source tile.

Aggregation, one event chain per flow (O(channels) simpy events, never one per message or synaptic event):
1. The start times are a longest-path (max-plus) solution over nodes (k, c): edges (k-1,c)->(k,c) of weight L,
   (k,p)->(k,c) of weight h_p for a child c of p, (k-B,c)->(k,p) of weight 0 for a blocking p (slots),
   sources G_c at k = 1 and r_k on the root channels. A cycle (down an edge and back up a buffer) gains
   h_p - B L. When B L >= h for every hop, or B is None, no cycle helps and the tail's start on channel x is
     s[m,x] = max(G_x + (m-1) L,  r_m + before_x,
                  max over descendants i of x reached through blocking channels, u = depth_i - depth_x,
                  1 <= u <= (m-1)/B:  G_i + (m-1-B u) L),
   before_x: hop latencies from the source router to x's upstream router. Channel x is released when the tail
   has crossed it and left its far buffer: max(s[m,x] + L, s[m,c]) for a blocking x with child c, else
   s[m,x] + max(L, h_x). Every term is >= the grant it uses, so a release is scheduled as soon as the grants it
   needs are known and never lies in the past.
2. Receive side: a destination core's synapse unit is a work-conserving FIFO server whose only output is its
   finish time, max over messages (a + i + work of the messages arriving at or after a). If every message's
   work (>= one synop + dendrite latency) is >= the message-in latency i (then message in only delays a train's
   head) and >= the spacing of its train's messages (then the unit never idles inside a train), the maximum is
   reached at flow heads and whole-flow sums give the same value, whatever the interleaving of flows.
   Train spacing where a flow delivers (never behind a slot): <= max(O, L) when B L >= h, by induction over k
   along the path: s[k+1,j] + (latency from j to the delivering channel) <= s[k,n] + max(O, L) holds for each
   term (the L term, the upstream term, and a slot term s[k+1-B, j+1] + h_j <= s[k,n] - (B-1) L + h_j).
3. The send side (soma, then messages out in flow order) waits for nothing, so its times are sums; with the
   receive side it is evaluated in closed form by hwmodels.pipeline, the same code as the analytic model (the
   reference runs both as simpy processes message by message).
Hence, under hwmodels.pipeline.exactness (max(i, O, L) <= min synop + dendrite latency, and B = None or
B L >= every hop latency), the DES step latencies equal the message-by-message ones; the tests check this
exactly on random traces with contention, finite buffers and multicast. Outside these conditions the DES is an
approximation, and still never below the analytic latency.
"""
from __future__ import annotations

from heapq import heappop, heappush

import numpy as np
import simpy
from simpy.events import NORMAL

from hwmodels import analytic, pipeline
from hwmodels.actions import Actions
from hwmodels.analytic import Timing
from hwmodels.network import Network, RouteUse, Tree
from hwmodels.pipeline import ActionTimes


class _Call:
    """A pre-triggered event that runs one callback when the environment reaches its time (cheaper than
    simpy.Event; simpy.Environment.step only needs `callbacks` and `_ok`)."""

    __slots__ = ("callbacks", "_ok", "_value")

    def __init__(self, fn):
        self.callbacks, self._ok, self._value = [fn], True, None


class _Env(simpy.Environment):
    """simpy Environment that can schedule a callback at an absolute time (no now + delay rounding)."""

    def at(self, time: float, fn) -> None:
        heappush(self._queue, (time, NORMAL, next(self._eid), _Call(fn)))


class _Channel:
    """A directed link and its far buffer: the owning flow (or None) and a heap of waiting requests."""

    __slots__ = ("owner", "pending", "armed")

    def __init__(self):
        self.owner, self.pending, self.armed = None, [], False


class _Plan:
    """A tree as Python lists, and per K = (m-1)//B (capped at the tree depth) which grants each channel's
    release needs (`count`, `dependents`) and the descendant terms of the closed form (`terms`)."""

    def __init__(self, tree: Tree, k: int):
        n = len(tree.links)
        self.links, self.hop, self.before = tree.links.tolist(), tree.hop_s.tolist(), tree.before_s.tolist()
        self.children, self.blocking, self.roots = tree.children, tree.blocking.tolist(), tree.roots
        self.terms = [[(int(i), int(tree.up[i, z])) for i in np.flatnonzero(tree.up[:, z] <= k)] for z in range(n)]
        ends = [(x,) + (tree.children[x] if tree.blocking[x] else ()) for x in range(n)]
        deps = [{z for z in ends[x]} | {i for z in ends[x] for i, _ in self.terms[z]} for x in range(n)]
        self.count = [len(d) for d in deps]
        self.dependents = [[x for x in range(n) if i in deps[x]] for i in range(n)]


class _Step:
    """One hardware step: the environment, its channels, and the batch-wide arrays flows write into."""

    def __init__(self, link_s: float, depth: int | None, down: np.ndarray, held: list):
        self.env, self.channels = _Env(), {}
        self.link_s, self.depth, self.down, self.held = link_s, depth, down, held

    def request(self, flow: "_Flow", c: int) -> None:
        link = flow.plan.links[c]
        ch = self.channels.get(link)
        if ch is None:
            ch = self.channels[link] = _Channel()
        heappush(ch.pending, (self.env.now, flow.key, c, flow))
        self._arm(ch)

    def _arm(self, ch: _Channel) -> None:
        if ch.owner is None and ch.pending and not ch.armed:
            ch.armed = True
            self.env.at(self.env.now, lambda _ev: self._grant(ch))

    def _grant(self, ch: _Channel) -> None:
        ch.armed = False
        if ch.owner is None and ch.pending:
            _, _, c, flow = heappop(ch.pending)
            ch.owner = flow
            flow.granted(c)

    def release(self, link: int) -> None:
        ch = self.channels[link]
        ch.owner = None
        self._arm(ch)

    def check_idle(self) -> None:
        """Raise RuntimeError if a channel is still owned or requested (a deadlock; the model has none)."""
        stuck = [link for link, ch in self.channels.items() if ch.owner is not None or ch.pending]
        if stuck:
            raise RuntimeError(f"DES: channels {stuck} still held at the end of a step (deadlock)")


class _Flow:
    """The event chain of one flow: request channels as its head reaches them, release them by the closed form."""

    __slots__ = ("step", "plan", "key", "m", "tail", "grant", "missing", "off")

    def __init__(self, step: _Step, plan: _Plan, key: int, m: int, tail: float, off: int):
        self.step, self.plan, self.key, self.m, self.tail, self.off = step, plan, key, m, tail, off
        self.grant = [0.0] * len(plan.links)
        self.missing = list(plan.count)

    def start(self, _ev) -> None:
        for c in self.plan.roots:
            self.step.request(self, c)

    def granted(self, c: int) -> None:
        step, plan, now = self.step, self.plan, self.step.env.now
        self.grant[c] = now
        reach = now + plan.hop[c]
        step.down[self.off + c] = reach
        for child in plan.children[c]:
            step.env.at(reach, lambda _ev, ch=child: step.request(self, ch))
        for x in plan.dependents[c]:
            self.missing[x] -= 1
            if self.missing[x] == 0:
                rel, link = self._release_time(x), plan.links[x]
                step.held.append((link, rel - self.grant[x]))
                step.env.at(rel, lambda _ev, lk=link: step.release(lk))

    def _tail_start(self, z: int) -> float:
        """s[m, z] of the module docstring's closed form."""
        link_s, g, m, b = self.step.link_s, self.grant, self.m, self.step.depth
        v = max(g[z] + (m - 1) * link_s, self.tail + self.plan.before[z])
        for i, up in self.plan.terms[z]:
            v = max(v, g[i] + (m - 1 - b * up) * link_s)
        return v

    def _release_time(self, x: int) -> float:
        """The tail has crossed link x and left its far buffer (started its only child, or was copied out)."""
        tail_x = self._tail_start(x)
        if self.plan.blocking[x]:
            return max(tail_x + self.step.link_s, self._tail_start(self.plan.children[x][0]))
        return tail_x + max(self.step.link_s, self.plan.hop[x])


def _eject_channels(actions: Actions, use: RouteUse, net: Network) -> np.ndarray:
    """Channel index (in its flow's tree) into each delivery's destination tile, -1 on the source tile."""
    a = actions
    key = use.flow_route[a.deliv_flow] * a.n_cores + a.deliv_dst
    uniq, inv = np.unique(key, return_inverse=True)
    ej = [use.trees[int(k // a.n_cores)].eject[net.tiles[int(k % a.n_cores)]] for k in uniq]
    return np.array(ej, np.int64)[inv] if len(uniq) else np.zeros(0, np.int64)


def _play(actions: Actions, times: ActionTimes, use: RouteUse, buffer_depth: int | None,
          off: np.ndarray) -> tuple[np.ndarray, list]:
    """Run every step that has a flow leaving its tile; returns (time each channel's head reached its far
    router, flat over flows by `off`) and [(link id, hold time s)]."""
    a = actions
    down, held, plans = np.zeros(int(off[-1])), [], {}
    step_key = a.flow_sample * a.n_steps + a.flow_step
    bounds = np.searchsorted(step_key, np.arange(a.n_samples * a.n_steps + 1))
    ready, tail, msgs = times.flow_ready_s.tolist(), times.flow_tail_s.tolist(), a.flow_messages.tolist()
    route, n_ch = use.flow_route.tolist(), use.hops.tolist()
    depth_max = [int(t.depth.max(initial=0)) for t in use.trees]
    for g in np.unique(step_key[use.hops > 0]).tolist():
        step = _Step(times.link_s, buffer_depth, down, held)
        for f in range(int(bounds[g]), int(bounds[g + 1])):
            if n_ch[f] == 0:
                continue
            r = route[f]
            k = 0 if buffer_depth is None else min((msgs[f] - 1) // buffer_depth, depth_max[r])
            plan = plans.get((r, k))
            if plan is None:
                plan = plans[r, k] = _Plan(use.trees[r], k)
            step.env.at(ready[f], _Flow(step, plan, f, msgs[f], tail[f], int(off[f])).start)
        step.env.run()
        step.check_idle()
    return down, held


def timing(actions: Actions, times: ActionTimes, net: Network, use: RouteUse,
           buffer_depth: int | None = None) -> Timing:
    """Step latencies (with channel contention) and link hold times of a batch; see the module docstring."""
    a = actions
    off = np.concatenate([[0], np.cumsum(use.hops)]).astype(np.int64)
    down, held = _play(a, times, use, buffer_depth, off)
    ej = _eject_channels(a, use, net)
    f = a.deliv_flow
    via = down[np.minimum(off[f] + np.maximum(ej, 0), max(len(down) - 1, 0))] if len(down) else 0.0
    reach = np.where(ej < 0, times.flow_ready_s[f], via)
    done = pipeline.core_done_s(a, times, reach + times.link_s)
    # never below the contention-free schedule: a no-op in exact arithmetic, it keeps float rounding of the two
    # evaluation orders from putting the DES a few ulp under the analytic model
    done = np.maximum(done, pipeline.core_done_s(a, times, analytic.head_arrival(a, times, net)))
    ids, _, _ = use.link_totals(times.link_s, times.out_s)
    held_s = np.zeros(len(ids))
    if held:
        lk, hs = np.array([h[0] for h in held], np.int64), np.array([h[1] for h in held])
        held_s = np.bincount(np.searchsorted(ids, lk), weights=hs, minlength=len(ids))
    return Timing(pipeline.step_latencies(done, times.barrier_s), ids, held_s, done)
