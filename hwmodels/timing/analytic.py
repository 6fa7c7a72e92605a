"""Analytic latency model: the per-core pipeline of hwmodels.timing.core_times with a network that never waits.

Every flow's head reaches a destination router after the hop latencies of its XY route (no channel is ever
busy), then one link time to eject. Everything else (soma, messages out, message in, the FIFO synapse unit per
core, the barrier) is the code the DES uses too, so the analytic latency equals the DES latency whenever no flow
waits for a channel (in particular when no two flows of a step share a link), and is never larger: waits only
delay head arrivals, and the makespan of a work-conserving FIFO server never decreases when arrivals move later.
That bound is against the flow-level DES (router.congestion_model "links"). The message-level DES of "density"
(hwmodels.timing.des_density, SANA-FE's model) interleaves each core's sends with its neurons' updates, so a
message can leave before the whole send side ends and its latency can be below the analytic one (the benchmarks'
MNIST conv net, 100 samples on loihi-sanafe: 377.2 against 383.0 us per inference).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.timing import core_times
from hwmodels.events.actions import Actions
from hwmodels.events.network import Network, RouteUse
from hwmodels.timing.core_times import ActionTimes


@dataclass(frozen=True, eq=False)
class Timing:
    """What a latency model returns for a batch: step_s (n_samples, n_steps) step latencies with the barrier,
    s; link_ids int64 (n_links,) and link_held_s (n_links,): time each directed link was held by flows
    (grant of a flow's head to release after its tail), summed over the batch, s; core_done_s (n_samples,
    n_steps, n_cores): when each core's units are all idle, from the step start, s."""

    step_s: np.ndarray
    link_ids: np.ndarray
    link_held_s: np.ndarray
    core_done_s: np.ndarray


def head_arrival(actions: Actions, times: ActionTimes, net: Network) -> np.ndarray:
    """Contention-free time each delivery's first message enters its destination core, (n_deliv,): head ready
    at the source router + XY route latency to the destination router + one link time to eject."""
    return net.head_arrival_s(times.flow_ready_s, actions.deliv_flow, actions.flow_src, actions.deliv_dst, times.link_s)


def timing(actions: Actions, times: ActionTimes, net: Network, use: RouteUse,
           buffer_depth: int | None = None) -> Timing:
    """Step latencies and uncontended link hold times of a batch (buffer_depth has no effect without waits)."""
    done = core_times.core_done_s(actions, times, head_arrival(actions, times, net))
    ids, _, held = use.link_totals(times.link_s, times.out_s)
    return Timing(core_times.step_latencies(done, times.barrier_s), ids, held, done)


def timing_batches(batches: list, net: Network, buffer_depth: int | None = None) -> list[Timing]:
    """`timing` of every (actions, times, route use) batch."""
    return [timing(a, t, net, u, buffer_depth) for a, t, u in batches]
