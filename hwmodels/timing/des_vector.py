"""Vector engine of the DES network play (hwmodels.timing.des): the same channel grants and releases as the simpy
engine, bit for bit, for every hardware step of a group of batches in one call of a compiled kernel.

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
here, so the check after the kernel catches every case the proof does not cover.

Order of decisions (hwmodels.kernels.grants, compiled with numba): a queue is a candidate when its holder's
release F is known and it has a waiting user with a known Q; its candidate u is the least (Q, flow) among those,
at time t = max(F, Q_u). Candidates are popped from a heap in time order, step by step. The least candidate t is
the earliest undecided grant (the earliest undecided grant in event order is a candidate: its inputs come from
earlier grants, and every release is >= the grants it needs), so every unknown request of its step comes from an
undecided grant at >= t plus a hop latency, strictly after t >= Q_u (rounding is monotone: x <= y implies
fl(x + h) <= fl(y + h), and fl(G + h) > G is checked): u is certainly next. Every decision is therefore the simpy
engine's, with the same floating-point operations; tests/hwmodels/test_des_engines.py checks the two engines
bit for bit (grants, releases, step latencies, link hold times) on random contended traces. (Until issue 14 the
same decisions were taken in numpy rounds, each deciding every certain grant of every step at once; chains of
tens of thousands of rounds made that slow on multi-chip nets.)
"""
from __future__ import annotations

import numpy as np

from hwmodels.kernels import grants as kernel, threads
from hwmodels.timing.des_nodes import Nodes, Queues


class NotApplicable(RuntimeError):
    """The input is outside the proof: a request at the instant of its parent's grant (a hop latency below the
    float resolution of the step times), or, for the same reason, channels left without a grant."""


def grants(nd: Nodes, qs: Queues, ready: np.ndarray, tail: np.ndarray, link_s: float,
           workers: int | None = None, out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grant and release time (s) of every node of `nd` (see the module docstring), decided in time order by the
    compiled kernel hwmodels.kernels.grants.play (its steps split over `workers` threads, None:
    hwmodels.kernels.threads.count(); the result does not depend on it). ready / tail: (n_flows,) time the first /
    last message of each flow is ready at its source router, s. out: (grant, release) float64 (nd.n,) arrays to
    write into (returned), or None for new ones. Raises NotApplicable when a request falls at the instant of its
    parent's grant (fl(G + h) == G), where the proof does not hold."""
    none = np.zeros(0, np.int64)
    ch_ptr, child = (none, none) if nd.single_child else nd.children
    dp_ptr, dependent = (none, none) if nd.plain else nd.dependents
    ready, tail = np.asarray(ready, np.float64), np.asarray(tail, np.float64)
    g, rel, done, early = kernel.play(ready, tail, nd.flow, qs.of, nd.node_ptr, qs.ptr, qs.start, nd.hop, nd.before,
                                      nd.flow_cm, nd.blocking, nd.parent, nd.first_child, ch_ptr, child, nd.tm_ptr,
                                      nd.term_node, nd.term_const, dp_ptr, dependent, none if nd.plain else nd.missing,
                                      float(link_s), threads.count() if workers is None else workers, out)
    check(nd.n, done, early)
    return g, rel


def check(n: int, done: int, early: int) -> None:
    """Raise NotApplicable unless all n channel nodes were granted (`done`) and no child was requested at the
    instant of its parent's grant (`early` such children)."""
    if done != n:
        raise NotApplicable(f"DES vector engine: {n - done} channels never granted")
    if early:  # some child's request fl(G + h) did not come after its parent's grant G
        raise NotApplicable("DES vector engine: a hop latency vanishes against the step times")
