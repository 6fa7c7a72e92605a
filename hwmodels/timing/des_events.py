"""The compiled event engine of the DES network play (hwmodels.timing.des, engine "event"): des_simpy's event
chains run by hwmodels.kernels.event_queue.play_steps in simpy's own event order, so its head-down and held times
are the simpy engine's bit for bit, for any hop latency (zero included, where the vector engine does not apply:
the spinnaker2 and truenorth presets). This module numbers the (route, K) plans the flows need, has them built
(hwmodels.kernels.event_plans) and runs the steps on threads.
"""
from __future__ import annotations

import numpy as np

from hwmodels.events.actions import Actions
from hwmodels.events.network import RouteUse
from hwmodels.kernels import event_plans, event_queue, threads
from hwmodels.timing.core_times import ActionTimes


def _plans(use: RouteUse, route: np.ndarray, k: np.ndarray) -> tuple:
    """play_steps's plan arguments (p_off, p_root_ptr, p_roots, ch_link, ch_hop, ch_before, ch_blocking, ch_count,
    child_ptr, child, term_ptr, term_i, term_up, dep_ptr, dep) of des_simpy's Plan of each (route[p], k[p]),
    built by hwmodels.kernels.event_plans.plan_arrays from the route table."""
    tb = use.table
    p_off, root_ptr, roots, flat, count, child_ptr, child, term_ptr, term_i, term_up, dep_ptr, dep = \
        event_plans.plan_arrays(tb.off, np.asarray(tb.parent, np.int64), np.asarray(tb.depth, np.int64),
                                np.asarray(tb.blocking, np.bool_), np.asarray(route, np.int64), np.asarray(k, np.int64))
    return (p_off, root_ptr, roots, np.asarray(tb.links, np.int64)[flat], np.asarray(tb.hop_s, np.float64)[flat],
            np.asarray(tb.before_s, np.float64)[flat], np.asarray(tb.blocking, np.bool_)[flat], count, child_ptr,
            child, term_ptr, term_i, term_up, dep_ptr, dep)


def play(actions: Actions, times: ActionTimes, use: RouteUse, buffer_depth: int | None, off: np.ndarray,
         workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """des_simpy.play's result (per channel node, flat over flows by `off`: the time its head reached the far
    router and the time the flow held the channel, s), computed by the compiled event queue. Raises ValueError
    when an event would fall before the current time and RuntimeError when a channel is still held at the end of
    a step (a deadlock; the model has none), as des_simpy does. The steps are independent: they run on `workers`
    threads (None: hwmodels.kernels.threads.count()) in guided ranges (hwmodels.kernels.threads.guided); the
    result does not depend on it."""
    a = actions
    down, held = np.zeros(int(off[-1])), np.zeros(int(off[-1]))
    step_key = a.flow_sample * a.n_steps + a.flow_step
    msgs, route, hops = np.asarray(a.flow_messages, np.int64), np.asarray(use.flow_route, np.int64), use.hops
    live = np.flatnonzero(hops > 0)
    k = np.zeros(len(msgs), np.int64)
    if buffer_depth is not None:
        k = np.minimum((msgs - 1) // buffer_depth, use.table.max_depth[route])
    flow_plan = np.full(len(msgs), -1, np.int64)
    span = int(k.max(initial=0)) + 1
    uniq, inv = np.unique(route[live] * span + k[live], return_inverse=True)  # one plan per (route, K)
    flow_plan[live] = inv.reshape(-1)
    plans = _plans(use, uniq // span, uniq % span)
    n_links = int(plans[3].max(initial=-1)) + 1
    args = (flow_plan, np.arange(len(msgs), dtype=np.int64), msgs, np.asarray(times.flow_tail_s, np.float64),
            np.asarray(off, np.int64), np.asarray(times.flow_ready_s, np.float64)) + plans
    depth = 0 if buffer_depth is None else int(buffer_depth)
    flows = live  # flows come sorted by (sample, step), as des_simpy.play reads them
    steps, first = np.unique(step_key[flows], return_index=True)
    step_ptr = np.append(first, len(flows)).astype(np.int64)
    node_ptr = np.concatenate([[0], np.cumsum(hops[flows])])[step_ptr].astype(np.int64)
    play = lambda _st, k0, k1: event_queue.play_steps(k0, k1, step_ptr, flows, *args, float(times.link_s), depth,
                                                      n_links, down, held)
    for rc, s in threads.guided(play, node_ptr, threads.count() if workers is None else workers, lambda: None):
        if rc == 1:
            raise ValueError(f"DES: an event of step {int(steps[s])} scheduled before the current time")
        if rc == 2:
            raise RuntimeError(f"DES: channels still held at the end of step {int(steps[s])} (deadlock)")
    return down, held
