"""Discrete-event latency model (simpy): every hardware step is played with link and synapse-unit contention.

Per step, one simpy process per core updates its neurons (serial neuron-update time), then sends its flows
one after another in destination order, each taking messages x message_out latency. A flow is all messages
from one source core to one destination core in the step. After its send, a flow crosses its XY path link by
link: it waits for the directed link (a simpy.Resource of capacity 1), reserves it for messages x link time,
and its head moves on after the hop latency; at the destination it needs one more link time for the head
message, then waits for the destination's synapse unit (a simpy.Resource of capacity 1, FIFO) and holds it for
its work (messages x message_in latency + events x synop latency). The step ends when the last core is idle;
the barrier latency (by tiles in use) is added.

Why one process per flow instead of one per message: under this send order the messages of a flow leave the
core back to back, so they form one contiguous train. A per-message simulation gives the same times when
(1) the injection port forwards a burst once it is complete, (2) a link serves the messages of a train back
to back (wormhole-style: the head reserves the link for the whole train), and (3) the destination unit never
starves inside a train, i.e. one message's synaptic work (>= one synop latency) is at least one link time,
which holds for every shipped preset (Loihi: 3.5 ns vs 0.29 ns). The event count is then O(flows x hops),
never O(synaptic events).
"""
from __future__ import annotations

import numpy as np
import simpy

from hwmodels.actions import Actions, ActionTimes
from hwmodels.mapping import Mapping
from hwmodels.spec import ChipSpec


def xy_path(src: tuple[int, int], dst: tuple[int, int], chip: ChipSpec) -> tuple[tuple[tuple, float], ...]:
    """Dimension-ordered (X then Y) route between tiles as ((link, hop latency s), ...).

    A link is the directed tile pair (x, y, dx, dy): from tile (x, y) to (x + dx, y + dy). Empty within a tile.
    """
    (x, y), (x1, y1) = src, dst
    path = []
    step = 1 if x1 > x else -1
    for xi in range(x, x1, step):
        path.append(((xi, y, step, 0), chip.router.hop_latency_ew_s))
    step = 1 if y1 > y else -1
    for yi in range(y, y1, step):
        path.append(((x1, yi, 0, step), chip.router.hop_latency_ns_s))
    return tuple(path)


class _Step:
    """One hardware step: a simpy Environment, its link and synapse-unit resources, and the latest finish."""

    def __init__(self, link_time_s: float):
        self.env = simpy.Environment()
        self.links: dict[tuple, simpy.Resource] = {}
        self.units: dict[int, simpy.Resource] = {}
        self.link_time_s = link_time_s
        self.done = 0.0

    def _resource(self, table: dict, key) -> simpy.Resource:
        if key not in table:
            table[key] = simpy.Resource(self.env, capacity=1)
        return table[key]

    def core(self, update_s: float, flows: list[tuple]):
        """Process of a source core: neuron updates, then one send per flow (flows in destination order)."""
        yield self.env.timeout(update_s)
        for dst, send_s, hold_s, work_s, path in flows:
            yield self.env.timeout(send_s)
            self.env.process(self.flow(dst, hold_s, work_s, path))
        self.done = max(self.done, self.env.now)

    def flow(self, dst: int, hold_s: float, work_s: float, path: tuple):
        """Process of a flow: reserve each link for the train, hop on, then queue at the destination unit."""
        env = self.env
        for link, hop_s in path:
            res = self._resource(self.links, link)
            req = res.request()
            yield req
            env.timeout(hold_s).callbacks.append(lambda _ev, r=res, q=req: r.release(q))
            yield env.timeout(hop_s)
        yield env.timeout(self.link_time_s)
        with self._resource(self.units, dst).request() as req:
            yield req
            yield env.timeout(work_s)
        self.done = max(self.done, env.now)


def step_latencies(actions: Actions, times: ActionTimes, mapping: Mapping, chip: ChipSpec) -> np.ndarray:
    """Latency (s) of every hardware step of every sample, (n_samples, n_steps), barrier included."""
    a = actions
    tiles = [tuple(int(v) for v in xy) for xy in mapping.tile_xy]
    paths: dict[tuple[int, int], tuple] = {}
    for s_, d_ in set(zip(a.flow_src.tolist(), a.flow_dst.tolist())):
        paths[s_, d_] = xy_path(tiles[s_], tiles[d_], chip)
    flows = list(zip(a.flow_dst.tolist(), times.flow_send_s.tolist(), times.flow_hold_s.tolist(),
                     times.flow_work_s.tolist(), [paths[k] for k in zip(a.flow_src.tolist(), a.flow_dst.tolist())]))
    src = a.flow_src.tolist()
    bounds = np.searchsorted(a.flow_sample * a.n_steps + a.flow_step, np.arange(a.n_samples * a.n_steps + 1))
    out = np.zeros(a.n_samples * a.n_steps)
    update = times.update_s.reshape(-1, a.n_cores)
    for g in range(len(out)):
        step = _Step(times.link_time_s)
        step.done = float(update[g].max(initial=0.0))
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        i = lo
        while i < hi:
            j = i
            while j < hi and src[j] == src[i]:
                j += 1
            step.env.process(step.core(float(update[g, src[i]]), flows[i:j]))
            i = j
        step.env.run()
        out[g] = step.done
    return out.reshape(a.n_samples, a.n_steps) + times.barrier_s
