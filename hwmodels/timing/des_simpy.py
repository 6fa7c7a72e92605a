"""The simpy engine of the DES network play (hwmodels.timing.des): one event chain per flow on a simpy Environment per
hardware step; a channel is requested when the flow's head reaches it and released by the closed form of the
hwmodels.timing.des docstring."""
from __future__ import annotations

import math
from heapq import heappop, heappush

import numpy as np
import simpy

from hwmodels.events.actions import Actions
from hwmodels.events.network import RouteUse, Tree
from hwmodels.timing.core_times import ActionTimes


def exact_delay(now: float, time: float) -> float | None:
    """A delay d >= 0 with now + d == time exactly in float arithmetic (s), for simpy's relative scheduling
    (Environment.timeout schedules at now + delay; time - now alone can be off by one ulp), or None when no
    float delay lands there (the exact sums of the delays near time - now can all fall half-way between time and
    a neighbour that round-to-even prefers). Raises ValueError when time < now (an event in the past)."""
    if time < now:
        raise ValueError(f"DES: event at {time!r} s scheduled before the current time {now!r} s")
    d = time - now
    while now + d < time:
        d = math.nextafter(d, math.inf)
    while now + d > time:
        d = math.nextafter(d, 0.0)
    return d if now + d == time else None


class AbsoluteTimeEnv(simpy.Environment):
    """simpy Environment that runs a callback at an absolute time, through simpy's public API only: a Timeout
    whose delay lands exactly on that time (exact_delay), or, when none does, a Timeout to the closest earlier
    instant that is reachable exactly and from there a second Timeout (m + (time - m) == time exactly for
    time / 2 <= m <= time, Sterbenz). The detour changes only the order in which events already scheduled for
    the same instant run, which the step's requests, releases and grants do not depend on (requests wait in a
    heap ordered by (time, flow, channel); grants run after every event of their instant)."""

    def at(self, time: float, fn) -> None:
        d = exact_delay(self.now, time)
        if d is not None:
            self.timeout(d).callbacks.append(fn)
            return
        mid = math.nextafter(time, 0.0)
        while exact_delay(self.now, mid) is None:
            mid = math.nextafter(mid, 0.0)
        self.timeout(exact_delay(self.now, mid)).callbacks.append(lambda _ev: self.at(time, fn))


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

    def __init__(self, link_s: float, depth: int | None, down: np.ndarray, held: np.ndarray):
        self.env, self.channels = AbsoluteTimeEnv(), {}
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
                step.held[self.off + x] = rel - self.grant[x]
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


def play(actions: Actions, times: ActionTimes, use: RouteUse, buffer_depth: int | None,
         off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run every step that has a flow leaving its tile on simpy; returns, per channel node (flat over flows by
    `off`), the time its head reached the far router and the time the flow held the channel (s)."""
    a = actions
    down, held, plans = np.zeros(int(off[-1])), np.zeros(int(off[-1])), {}
    step_key = a.flow_sample * a.n_steps + a.flow_step
    bounds = np.searchsorted(step_key, np.arange(a.n_samples * a.n_steps + 1))
    ready, tail, msgs = times.flow_ready_s.tolist(), times.flow_tail_s.tolist(), a.flow_messages.tolist()
    route, n_ch = use.flow_route.tolist(), use.hops.tolist()
    depth_max = use.table.max_depth.tolist()
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
