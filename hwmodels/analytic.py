"""Analytic latency model: the DES's schedule computed in closed form, without link contention.

Per hardware step and core: the core updates its neurons, then sends its flows one after another (in
destination order, as the DES does); a flow's head reaches its destination `flow_head_s` after its send
finishes (XY hop latencies + one link time, never waiting for a link); the destination's synapse unit serves
its incoming flows one at a time in arrival order (work-conserving, as simpy's FIFO Resource in the DES). The
step ends when the last core is idle, then the barrier is added.

Because only link waits are left out, the analytic latency equals the DES latency whenever no flow waits for a
link (in particular when no two flows of a step share a link), and is never larger: delaying arrivals cannot
make a work-conserving single server finish earlier.
"""
from __future__ import annotations

import numpy as np

from hwmodels.actions import Actions, ActionTimes


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask marking the first element of every run of equal values in sorted `keys`."""
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def send_finish(actions: Actions, times: ActionTimes) -> np.ndarray:
    """Time (s, from the step start) at which each flow's last message has left its source core, (n_flows,).

    A source core first updates its neurons (update_s), then injects its flows in (src, dst) order.
    """
    a = actions
    src_key = (a.flow_sample * a.n_steps + a.flow_step) * a.n_cores + a.flow_src
    csum = np.cumsum(times.flow_send_s)
    start = np.maximum.accumulate(np.where(_group_starts(src_key), np.arange(len(csum)), 0))
    sent_in_group = csum - (csum[start] - times.flow_send_s[start])
    return times.update_s[a.flow_sample, a.flow_step, a.flow_src] + sent_in_group


def destination_finish(actions: Actions, arrival: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finish time of every destination's synapse unit, serving its flows in arrival order.

    Returns (group keys (sample * n_steps + step) * n_cores + dst, finish time s) for each destination that
    receives at least one flow. Makespan of a work-conserving single server: max_j (a_j + sum_{i >= j} w_i)
    over flows sorted by arrival a.
    """
    a = actions
    key = (a.flow_sample * a.n_steps + a.flow_step) * a.n_cores + a.flow_dst
    order = np.lexsort((arrival, key))
    key, arr, w = key[order], arrival[order], work[order]
    first = _group_starts(key)
    starts = np.flatnonzero(first)
    gid = np.cumsum(first) - 1
    csum = np.cumsum(w)
    last = np.append(starts[1:], len(w)) - 1
    suffix = csum[last][gid] - (csum - w)  # work of this flow and of every later flow at the same unit
    finish = np.maximum.reduceat(arr + suffix, starts) if len(w) else arr
    return key[starts], finish


def step_latencies(actions: Actions, times: ActionTimes) -> np.ndarray:
    """Latency (s) of every hardware step of every sample, (n_samples, n_steps), barrier included."""
    a = actions
    sent = send_finish(a, times)
    own = times.update_s.copy().reshape(-1)
    np.add.at(own, (a.flow_sample * a.n_steps + a.flow_step) * a.n_cores + a.flow_src, times.flow_send_s)
    busy = own.reshape(a.n_samples, a.n_steps, a.n_cores).max(axis=2, initial=0.0)
    keys, finish = destination_finish(a, sent + times.flow_head_s, times.flow_work_s)
    step_max = busy.reshape(-1)
    np.maximum.at(step_max, keys // a.n_cores, finish)
    return step_max.reshape(a.n_samples, a.n_steps) + times.barrier_s
