"""Message-level DES with a density congestion model (router.congestion_model "density"): the detailed timing model
of SANA-FE (Boyle et al., "SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast Exploration", IEEE
TCAD 44(8), 2025; behaviour measured with sanafe 2.2.9). It replaces hwmodels.timing.des's flow-level network when a
chip selects it; action counts, stage latencies (hwmodels.timing.core_times) and energy stay the same.

Each hardware step starts every core's clock at 0 (after the previous barrier):
1. Send side, interleaved. A core walks its neurons in order (C-order index within its contiguous chunk); neuron
   j costs soma_j = access + update (+ spike out) under the chip's neuron rules (neuron_counts: summed over a
   core's neurons, hwmodels.timing.core_times's update_s). A spiking neuron writes its messages right after its own soma,
   one per destination core in core order (multicast: one per spike), O = message_out_latency_s each. Message k
   of core c (the n(k)-th neuron) is ready at
       r_k = sum_{j <= n(k)} soma_j + k O + b_c(k),
   b_c(k) the blocking delays (step 3) of the core's messages up to and including k. The send side ends at
   update_s + messages x O + b_c.
2. Order: messages are handled in order of r (one heap over the cores; ties by core, then send order); each
   receiver serves its messages FIFO in that order.
3. Network. A message is in flight from its handling until its receiver starts it; while in flight it adds
   w = 1 / (h + 2) to each key of its route (h hops): the source core's injection key and every directed link
   of its XY route (hwmodels.events.network.xy_links; h = 0: the injection key only). For message m:
       D = sum of the density over m's route keys,   rbar = mean receive work of the messages in flight,
       blocking: if D > (h + 1) B then r_m += (D - (h + 1) B) rbar   (B = router.buffer_depth; None: never),
       net = max(lat0, D rbar / (h + 1)),
       start = max(free[dst], r_m + net + i0),   free[dst] = start + work_m,
   lat0: path latency + one link time (hwmodels.timing.analytic's contention-free head latency; SANA-FE's has no link
   time, 0.29 ns on loihi-sanafe); work_m, i0: hwmodels.timing.core_times's receive work and head delay of one message
   (receive_mode serial: message in + synaptic events x (synop + dendrite latency), i0 = 0).
4. Core done = max(send side end, its last receive finish); step latency = the latest core + barrier.

Under hwmodels.timing.core_times.exactness, with no two flows of a step on one link, congestion never above lat0, each
core's messages going to one destination (or its spiking neurons last in its chunk) and receivers seeing messages
in send order, this equals the flow-level DES (tests/hwmodels/test_des_density.py). Against sanafe 2.2.9 it
gives every step latency of the tests/crosscheck SANA-FE nets within 0.4 %. Not reproduced: SANA-FE's heap
breaks ties of equal send times arbitrarily, it orders a neuron's destination cores by pointer (here: core
index), and it retires in-flight messages in another order (float rounding only). Link hold times are the
contention-free ones (hwmodels.events.network.RouteUse.link_totals).

Cost: the message loop is compiled (hwmodels.kernels.density.play_steps: a heap of the cores' next messages and one
of the receivers' first messages in flight, O(route keys + log cores) per message, ~0.06 us per message; until
2026-12 it was a Python loop of ~2 us per message, whose results it gives bit for bit), fed by the message list
built one sample at a time (memory: one sample's messages): the spikes sorted, then each spike's messages expanded
from its class's fan-out in order by one compiled pass (hwmodels.kernels.density.expand_messages; until 2026-12-06 a
sparse row gather, a sort and a lexsort of the messages, twice as slow), the soma work before each spike by one
compiled pass per step (hwmodels.kernels.density.soma_prefix), and each sample played on a worker thread while the
next one's list is built (the expansion also writes each message's step, source core, soma prefix and send count;
each population's core order is found once per simulate call): the default MNIST conv net on loihi-sanafe, 100
samples, 2.47 M messages, 5.6 -> 1.25 -> 0.30 -> 0.23 s (its play on the worker thread 0.18 -> 0.14 s with the
per-receiver FIFOs), against ~0.035 s for the flow-level DES (hwmodels.timing.des, vector engine) on loihi.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from hwmodels import activity
from hwmodels.kernels import density as kernel
from hwmodels.kernels import threads
from hwmodels.timing import core_times
from hwmodels.events.actions import SEMANTICS, Actions, FanoutTables, gather_spikes
from hwmodels.timing.analytic import Timing
from hwmodels.mapping.map import Mapping
from hwmodels.events.network import Network, RouteUse, xy_links
from hwmodels.timing.core_times import RECEIVE_MODES, ActionTimes, dendrite_costs, receive_mode
from hwmodels.chip.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph


@dataclass(frozen=True, eq=False)
class Messages:
    """Every message of a batch, sorted by (sample, step, source core, source neuron, destination core).

    step: int64 (n,) sample * n_steps + hardware step; src / dst: int64 (n,) cores; soma: int64 (n, 3) accesses,
    updates of spiking neurons and updates of quiet neurons on the source core up to and including the sender
    (neuron_counts); out: int64 (n,) messages the source core has written up to and including this one
    (multicast: one per spike, shared by its deliveries); events: int64 (n, n_formats) synaptic events paid at the
    destination per storage format (FanoutTables.formats).
    """

    n_steps: int
    step: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    soma: np.ndarray
    out: np.ndarray
    events: np.ndarray


def neuron_counts(graph: NetworkGraph, trace: EventTrace, sample: int, semantics: str, chip: ChipSpec,
                  name: str) -> np.ndarray:
    """Soma work of each neuron of population `name` in sample `sample`: bool (3, n_steps, size) = accessed,
    updated and spiking, updated and quiet, under the chip's neuron rules (hwmodels.events.neuron_rules); their sums
    over a core's neurons are neuron_work's counts, so soma time summed over a core is core_times's update_s."""
    pop = graph.populations[name]
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    out = np.zeros((3, n_steps, pop.size), bool)
    if pop.is_input:  # input neurons hold no state: no soma work
        return out
    accessed, updated = _soma_rows(graph, trace, sample, semantics, chip, name)
    out[0] = accessed[:, None]
    idx, _, t = gather_spikes(trace, range(sample, sample + 1), trace.populations.index(name))
    out[1][step_of[name][t], idx] = True
    out[2] = (updated | out[1]) & ~out[1]
    return out


def _soma_rows(graph, trace, sample, semantics, chip, name) -> tuple[np.ndarray, np.ndarray]:
    """(accessed bool (n_steps,), updated bool (n_steps, size) before its spikes are added) of population `name`
    (not the input) in sample `sample` under the chip's neuron rules (neuron_counts)."""
    pop, rules = graph.populations[name], chip.core
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    steps = step_of[name]
    window = np.zeros(n_steps, bool)
    window[steps] = True
    updated = np.zeros((n_steps, pop.size), bool)
    if rules.neuron_update_rule == "active" and name in trace.activity:
        bits = activity.unpack(np.asarray(trace.activity[name][sample]), pop.size)
        updated[steps] = bits[:-1]
        updated[steps[-1] + 1:] = bits[-1]
    else:
        updated[steps] = True
    return window | (rules.neuron_access_rule == "every_step"), updated


def _soma_prefix(graph, trace, samples, semantics, chip, name, core, spikes, orders: dict) -> np.ndarray:
    """int64 (n_spikes, 3) neuron_counts summed over the spiking neuron's core up to and including it, for
    spikes = (neuron, sample offset, hardware step) arrays (hwmodels.kernels.density.soma_prefix, one sample at a
    time). orders: {population: its core order (_core_order)}, filled on first use and kept by the caller."""
    idx, s, h = spikes
    out = np.zeros((len(idx), 3), np.int64)
    if graph.populations[name].is_input or not len(idx):
        return out
    if name not in orders:
        orders[name] = _core_order(core)
    where, first, order = orders[name]
    for k in np.unique(s):
        sel = np.flatnonzero(s == k)
        accessed, updated = _soma_rows(graph, trace, samples.start + int(k), semantics, chip, name)
        out[sel] = kernel.soma_prefix(where, first, order, accessed, updated, np.asarray(idx[sel], np.int64),
                                      np.asarray(h[sel], np.int64))
    return out


def _core_order(core: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(where, first, order), int64 (size,) each, of a population's neuron -> core array `core`: order lists its
    neurons core after core, each core's in index order; where[j] is neuron j's position in it and first[j] the
    position of its core's first neuron."""
    order = np.argsort(core, kind="stable")
    where = np.empty(len(core), np.int64)
    where[order] = np.arange(len(core))
    first = np.searchsorted(core[order], core).astype(np.int64)
    return where, first, order.astype(np.int64)


def messages(graph: NetworkGraph, trace: EventTrace, mapping: Mapping, tables: FanoutTables, samples: range,
             semantics: str, chip: ChipSpec, orders: dict | None = None) -> Messages:
    """The Messages of `samples` of `trace` (the same messages as hwmodels.events.actions.count_actions counts).
    The spikes are sorted by (step, source core, neuron) first, a core holding one population, and each spike's
    messages then follow in increasing destination (hwmodels.kernels.density.expand_messages over the joint
    class fan-outs, FanoutTables.joint): the messages come out in Messages' order without sorting them. orders: a
    dict kept across the calls of one mapping (each population's core order is then found once, not per sample),
    or None."""
    orders = {} if orders is None else orders
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    n, nf, joint = tables.n_cores, len(tables.formats), tables.joint
    cols = {k: [] for k in ("step", "src", "pos", "cls", "soma")}
    for name in tables.stack:
        core = np.asarray(mapping.core_of_neuron[name], np.int64)
        idx, s, t = gather_spikes(trace, samples, trace.populations.index(name))
        idx, h = np.asarray(idx, np.int64), step_of[name][t]
        for key, v in (("step", s * n_steps + h), ("src", core[idx]), ("pos", idx),
                       ("cls", joint.offsets[name] + tables.factors(name)[0][idx]),
                       ("soma", _soma_prefix(graph, trace, samples, semantics, chip, name, core, (idx, s, h), orders))):
            cols[key].append(np.asarray(v, np.int64))
    c = {k: np.concatenate(v) if v else np.zeros((0, 3) if k == "soma" else 0, np.int64) for k, v in cols.items()}
    size = max([graph.populations[name].size for name in tables.stack], default=1)
    order = np.argsort((c["step"] * n + c["src"]) * size + c["pos"])  # distinct keys: one order
    step, src, dst, soma, out, events = kernel.expand_messages(
        c["cls"][order], c["step"][order], c["src"][order], np.take(c["soma"], order, axis=0), joint.stack, nf,
        tables.routes is not None)
    return Messages(n_steps, step, src, dst, soma, out, events)


def _route(net: Network, chip: ChipSpec, src: int, dst: int, link_s: float, key_id: dict) -> tuple:
    """(density key indices, w, lat0, h + 1, blocking threshold, dst) of the route src -> dst. Keys: the source
    core's injection key and the directed link ids of its XY route, numbered in `key_id` on first use."""
    h1 = int(net.path_hops[src, dst]) + 1
    names = (("in", src),) + tuple(net.link_id(lk) for lk in xy_links(net.tiles[src], net.tiles[dst]))
    keys = tuple(key_id.setdefault(k, len(key_id)) for k in names)
    depth = chip.router.buffer_depth
    return (keys, 1.0 / (h1 + 1), float(net.path_s[src, dst]) + link_s, h1,
            np.inf if depth is None else float(h1 * depth), dst)


#: most source -> destination core pairs _RouteTable numbers through a dense table (32 MiB of int64)
DENSE_PAIRS = 1 << 22


class _RouteTable:
    """The routes of the source -> destination core pairs met so far (_route each, numbered on first use) as the
    arrays of hwmodels.kernels.density.play_steps."""

    def __init__(self, net: Network, chip: ChipSpec, n_cores: int, link_s: float):
        self.net, self.chip, self.n_cores, self.link_s = net, chip, n_cores, link_s
        self.rows, self.key_id, self._arrays = [], {}, None
        # route index of each pair (-1: not met yet): a dense table up to DENSE_PAIRS pairs, else a dict
        self.index = np.full(n_cores * n_cores, -1, np.int64) if n_cores * n_cores <= DENSE_PAIRS else {}

    def of(self, pair: np.ndarray) -> np.ndarray:
        """int64 route index of each pair src * n_cores + dst (adding the pairs not met before, in increasing pair
        order)."""
        pair = np.asarray(pair, np.int64)
        if isinstance(self.index, dict):
            uniq, inv = np.unique(pair, return_inverse=True)
            for p in uniq.tolist():
                if p not in self.index:
                    self._add(p)
            return np.array([self.index[p] for p in uniq.tolist()], np.int64)[inv.reshape(-1)]
        for p in np.unique(pair[self.index[pair] < 0]).tolist():
            self._add(p)
        return self.index[pair]

    def _add(self, p: int) -> None:
        """Number the route of pair p next."""
        self.index[p] = len(self.rows)
        self.rows.append(_route(self.net, self.chip, *divmod(p, self.n_cores), self.link_s, self.key_id))
        self._arrays = None

    def arrays(self) -> tuple:
        """(key_ptr, keys, w, lat0, h1, cap, dst, n_keys) of the routes so far (play_steps's route arguments)."""
        if self._arrays is None:
            keys, w, lat0, h1, cap, dst = zip(*self.rows)
            ptr = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
            flat = np.fromiter((i for k in keys for i in k), np.int64, int(ptr[-1]))
            self._arrays = (ptr, flat, np.array(w, np.float64), np.array(lat0, np.float64),
                            np.array(h1, np.float64), np.array(cap, np.float64), np.array(dst, np.int64),
                            len(self.key_id))
        return self._arrays


def timing(actions: Actions, times: ActionTimes, net: Network, use: RouteUse, chip: ChipSpec,
           messages: Callable[[int], Messages]) -> Timing:
    """Step latencies of a batch under the density model (module docstring). messages(k): the Messages of the
    batch's k-th sample (messages() of that one sample: at most two samples' messages in memory at a time). Each
    sample's steps are played (hwmodels.kernels.density.play_steps, which releases the GIL) on a worker thread
    while the next sample's messages are built on this one (hwmodels.kernels.threads.count() > 1): samples are
    independent and write disjoint rows, so the result is the serial loop's. Link hold times: contention-free
    (RouteUse.link_totals)."""
    a = actions
    send = times.send_done_s.reshape(-1, a.n_cores).copy()
    recv = np.zeros_like(send)
    routes = _RouteTable(net, chip, a.n_cores, times.link_s)
    per_event = np.array([chip.core.synop_latency_s.of(f) for f in a.formats]) + dendrite_costs(chip)[0]
    pool = ThreadPoolExecutor(1, thread_name_prefix="hwmodels-density") if threads.count() > 1 else None
    pending = None
    try:
        for k in range(a.n_samples):
            args = _sample_play(k, messages(k), a, times, chip, routes, per_event)
            if args is None:
                continue
            play = pool.submit(_play, *args) if pool is not None else _Done(_play(*args))
            if pending is not None:
                _add_play(send, recv, *pending.result())
            pending = play
        if pending is not None:
            _add_play(send, recv, *pending.result())
    finally:
        if pool is not None:
            pool.shutdown()
    done = np.maximum(send, recv).reshape(times.send_done_s.shape)
    ids, _, held = use.link_totals(times.link_s, times.out_s)
    return Timing(core_times.step_latencies(done, times.barrier_s), ids, held, done)


class _Done:
    """A computed value with a future's result()."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _sample_play(k: int, m: Messages, a: Actions, times: ActionTimes, chip: ChipSpec, routes: _RouteTable,
                 per_event: np.ndarray):
    """play_steps' arguments for sample k's Messages m, with the batch rows of its steps (routes met here are
    added to `routes` on this thread; the worker reads a snapshot of its arrays), or None without messages.
    per_event: float64 (n_formats,) receive work (s) of one synaptic event per storage format of a.formats."""
    core = chip.core
    if not len(m.step):
        return None
    c = m.soma
    ready = (c[:, 0] * core.neuron_access_latency_s + c[:, 1] * core.neuron_active_latency_s
             + c[:, 2] * core.neuron_inactive_latency_s) + m.out * times.out_s
    work, head_in = RECEIVE_MODES[receive_mode(chip)](core_times.event_work(m.events, per_event), np.ones(len(c)),
                                                      core.message_in_latency_s)
    route = routes.of(m.src * a.n_cores + m.dst)
    bounds = np.append(np.flatnonzero(core_times._group_starts(m.step)), len(m.step)).astype(np.int64)
    rows = k * a.n_steps + m.step[bounds[:-1]]
    return (rows, a.n_cores, bounds, np.ascontiguousarray(ready, np.float64), np.ascontiguousarray(m.src, np.int64),
            np.ascontiguousarray(work, np.float64), route, routes.arrays(), float(head_in))


def _play(rows, n_cores, bounds, ready, src, work, route, route_arrays, head_in) -> tuple:
    """(rows, shift, free) of one sample's play_steps."""
    shift, free = np.empty((2, len(bounds) - 1, n_cores))
    kernel.play_steps(bounds, ready, src, work, route, *route_arrays, head_in, shift, free)
    return rows, shift, free


def _add_play(send: np.ndarray, recv: np.ndarray, rows: np.ndarray, shift: np.ndarray, free: np.ndarray) -> None:
    """Add a sample's blocking shifts to its rows of `send` and set its receive finishes in `recv`."""
    send[rows] += shift
    recv[rows] = free


def timing_batches(batches: list, net: Network, chip: ChipSpec, messages: Callable[[int], Messages]) -> list[Timing]:
    """`timing` of every (actions, times, route use) batch; messages(k): the Messages of the k-th sample of the
    group (batches are consecutive samples)."""
    out, first = [], 0
    for a, t, u in batches:
        out.append(timing(a, t, net, u, chip, lambda k, o=first: messages(o + k)))
        first += a.n_samples
    return out
