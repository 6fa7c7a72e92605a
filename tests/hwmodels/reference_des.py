"""Test-only reference simulator: the message-level model of hwmodels.timing.des played one message at a time.

Independent of hwmodels.events.actions / pipeline / des: it unrolls every projection into a weight matrix, turns every
spike into messages itself, runs one simpy process per message and per channel hop (wormhole channels, per-flow
FIFO on a link, credit slots in the far buffer of a blocking channel, multicast copies at forks), and serves every message at its
destination through a message-in FIFO and a synapse unit FIFO with that message's own synaptic work. It uses
hwmodels only for the timestep semantics (a definition) and the XY route (hwmodels.events.network.xy_links).
"""
from __future__ import annotations

import heapq
from collections import defaultdict

import numpy as np
import simpy

from hwmodels.events.actions import SEMANTICS
from hwmodels.events.network import xy_links

PAID_NONZERO = ("sparse", "bitmap")


def _unroll_paid(proj, src_shape, dst_shape) -> np.ndarray:
    """Bool (n_target, n_source): a synapse the storage format pays (non-zeros, or every in-bounds entry)."""
    if proj.kind == "dense":
        return proj.weight != 0 if proj.storage in PAID_NONZERO else np.ones(proj.weight.shape, bool)
    c_out, c_in_g, kh, kw = proj.weight.shape
    (_, h, w), (_, ho, wo) = src_shape, dst_shape
    out = np.zeros((int(np.prod(dst_shape)), int(np.prod(src_shape))), bool)
    per_g = c_out // proj.groups
    for o, ci, ky, kx, oy, ox in np.ndindex(c_out, c_in_g, kh, kw, ho, wo):
        y = oy * proj.stride[0] - proj.padding[0] + ky * proj.dilation[0]
        x = ox * proj.stride[1] - proj.padding[1] + kx * proj.dilation[1]
        if 0 <= y < h and 0 <= x < w and (proj.storage not in PAID_NONZERO or proj.weight[o, ci, ky, kx] != 0):
            out[(o * ho + oy) * wo + ox, (((o // per_g) * c_in_g + ci) * h + y) * w + x] = True
    return out


class _Chan:
    def __init__(self):
        self.owner, self.pending, self.armed = None, [], False


class _Run:
    """One hardware step, message by message."""

    def __init__(self, chip, tiles, depth, mesh=None):
        self.env, self.chip, self.tiles, self.depth, self.mesh = simpy.Environment(), chip, tiles, depth, mesh
        self.link_s = chip.router.link_time_s
        self.chans = defaultdict(_Chan)
        self.arrivals = defaultdict(list)  # dst core -> [(time, work)]

    def hop_s(self, link):
        """A link from tile (x, y) by (dx, dy): the chip-to-chip link's latency when it leaves the mesh of one chip
        (mesh: (width, height) of a chip, None on one chip), else the E-W or N-S hop's."""
        x, y, dx, dy = link
        w, h = self.mesh or (0, 0)
        if self.mesh and (x // w != (x + dx) // w or y // h != (y + dy) // h):
            return self.chip.router.chip_link_latency_s
        return self.chip.router.hop_latency_ew_s if dy == 0 else self.chip.router.hop_latency_ns_s

    def request(self, link, key, ev):
        ch = self.chans[link]
        heapq.heappush(ch.pending, (self.env.now, key, ev))
        self.arm(ch)

    def arm(self, ch):
        if ch.owner is None and ch.pending and not ch.armed:
            ch.armed = True
            self.env.timeout(0).callbacks.append(lambda _e: self.grant(ch))

    def grant(self, ch):
        ch.armed = False
        if ch.owner is None and ch.pending:
            _, key, ev = heapq.heappop(ch.pending)
            ch.owner = key
            ev.succeed()

    def release(self, link):
        self.chans[link].owner = None
        self.arm(self.chans[link])


class _FlowState:
    """Per flow: its tree (children by link, destination cores by tile), per-channel grant/start/slot state."""

    def __init__(self, run, key, src_tile, dst_cores, works):
        self.run, self.key, self.works = run, key, works  # works: list over messages of {dst core: work s}
        self.children, self.eject = defaultdict(list), defaultdict(list)
        for d in dst_cores:
            prev = None
            for link in xy_links(src_tile, run.tiles[d]):
                if link not in self.children[prev]:
                    self.children[prev].append(link)
                prev = link
            self.eject[prev].append(d)
        m = len(works)
        env = run.env
        self.granted = {lk: env.event() for kids in self.children.values() for lk in kids}
        self.started = {lk: [env.event() for _ in range(m)] for lk in self.granted}
        self.start_t = {lk: [0.0] * m for lk in self.granted}
        self.occ = dict.fromkeys(self.granted, 0)
        self.freed = {lk: env.event() for lk in self.granted}

    def at_router(self, k, here):
        """Message k has reached the far router of `here` (None: the source router)."""
        env, run = self.run.env, self.run
        for d in self.eject[here]:
            run.arrivals[d].append((env.now + run.link_s, self.works[k][d]))
        for lk in self.children[here]:
            env.process(self.cross(k, lk))
        if here is not None and len(self.children[here]) == 1 and not self.eject[here]:  # blocking: wait
            yield self.started[self.children[here][0]][k]

    def cross(self, k, link):
        env, run = self.run.env, self.run
        if k == 0:
            run.request(link, self.key, self.granted[link])
        yield self.granted[link]
        if k > 0:
            yield self.started[link][k - 1]
            if self.start_t[link][k - 1] + run.link_s > env.now:
                yield env.timeout(self.start_t[link][k - 1] + run.link_s - env.now)
        while run.depth is not None and self.occ[link] >= run.depth:
            yield self.freed[link]
        self.occ[link] += 1
        self.start_t[link][k] = env.now
        self.started[link][k].succeed()
        yield env.timeout(run.hop_s(link))
        yield from self.at_router(k, link)  # returns when the message has left the far buffer
        self.occ[link] -= 1
        self.freed[link].succeed()
        self.freed[link] = env.event()
        if k == len(self.works) - 1:
            end = self.start_t[link][k] + run.link_s
            if end > env.now:
                yield env.timeout(end - env.now)
            run.release(link)


def _core(run, update_s, flows):
    """Source core: soma, then every message of every flow in order, one message-out latency each."""
    env, out_s = run.env, run.chip.core.message_out_latency_s
    yield env.timeout(update_s)
    for fl in flows:
        for k in range(len(fl.works)):
            yield env.timeout(out_s)
            env.process(fl.at_router(k, None))
    return env.now


def _receive(arrivals, in_s, serial):
    """Finish of a message-in FIFO (in_s each) feeding a synapse-unit FIFO (each message's own work), or of one
    FIFO doing both per message when `serial`."""
    t_in = t_syn = 0.0
    for a, w in sorted(arrivals):
        if serial:
            t_syn = max(a, t_syn) + in_s + w
            continue
        t_in = max(a, t_in) + in_s
        t_syn = max(t_in, t_syn) + w
    return t_syn


def reference_step_latencies(graph, trace, mapping, chip, semantics="pipelined", multicast=False) -> np.ndarray:
    """Step latencies (n_samples, n_steps), barrier included, simulated message by message."""
    done = reference_core_done(graph, trace, mapping, chip, semantics, multicast)
    return done.max(axis=2, initial=0.0) + chip.barrier_latency_s(mapping.tiles_used)


def _soma(update, core, trace, mapping, name, size, s, h, steps) -> None:
    """Add, neuron by neuron, the soma time of population `name` at hardware step h of sample s to `update` (per
    core): an access (neuron_access_rule: in its window, or every step) and an update (neuron_update_rule: every
    neuron in its window, or the neurons the trace records as active, in the window and, when left with a
    potential, after it), active latency for a spiking neuron, inactive otherwise."""
    in_window = np.flatnonzero(steps == h)
    after = h > steps[-1]
    fired = set(trace.spikes(s, int(in_window[0]), name).indices.tolist()) if len(in_window) else set()
    bits = None
    if core.neuron_update_rule == "active" and name in trace.activity:
        row = int(in_window[0]) if len(in_window) else (trace.n_timesteps if after else None)
        if row is not None:
            bits = np.unpackbits(trace.activity[name][s, row], count=size, bitorder="little").astype(bool)
    for i, c in enumerate(mapping.core_of_neuron[name]):
        if core.neuron_access_rule == "every_step" or len(in_window):
            update[c] += core.neuron_access_latency_s
        if core.neuron_update_rule == "active" and name in trace.activity:
            updated = bits is not None and (bool(bits[i]) or i in fired)
        else:
            updated = bool(len(in_window))
        if updated:
            update[c] += core.neuron_active_latency_s if i in fired else core.neuron_inactive_latency_s


def reference_core_done(graph, trace, mapping, chip, semantics="pipelined", multicast=False) -> np.ndarray:
    """(n_samples, n_steps, n_cores): when each core's send side and synapse unit are idle, from the step start."""
    core = chip.core
    dendrite_s = float(getattr(core, "dendrite_latency_s", 0.0) or 0.0)
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    paid = {p.name: _unroll_paid(p, graph.populations[p.source].shape, graph.populations[p.target].shape)
            for p in graph.projections}
    tiles = [tuple(int(v) for v in xy) for xy in mapping.tile_xy]
    out = np.zeros((trace.n_samples, n_steps, mapping.cores_used))
    for s in range(trace.n_samples):
        for h in range(n_steps):
            run = _Run(chip, tiles, chip.router.buffer_depth, mapping.mesh_shape)
            update = np.zeros(mapping.cores_used)
            msgs = defaultdict(list)  # src core -> [(route, neuron, {dst: work})]
            for name, pop in graph.populations.items():
                if not pop.is_input:
                    _soma(update, core, trace, mapping, name, pop.size, s, h, step_of[name])
                for t in np.flatnonzero(step_of[name] == h):
                    fired = set(trace.spikes(s, int(t), name).indices.tolist())
                    for i in sorted(fired):
                        work = defaultdict(float)
                        for p in graph.out_projections(name):
                            for j in np.flatnonzero(paid[p.name][:, i]):
                                work[int(mapping.core_of_neuron[p.target][j])] += (core.synop_latency_s.of(p.storage)
                                                                                 + dendrite_s)
                        src = int(mapping.core_of_neuron[name][i])
                        if multicast and work:
                            msgs[src].append((tuple(sorted(work)), i, dict(work)))
                        for d in ([] if multicast else sorted(work)):
                            msgs[src].append(((d,), i, {d: work[d]}))
            procs = []
            for src in range(mapping.cores_used):
                by_route = defaultdict(list)
                for route, _, work in sorted(msgs[src], key=lambda m: (m[0], m[1])):
                    by_route[route].append(work)
                flows = [_FlowState(run, (src, route), tiles[src], route, works)
                         for route, works in sorted(by_route.items())]
                procs.append(run.env.process(_core(run, update[src], flows)))
            run.env.run()
            out[s, h] = [p.value for p in procs]
            for d, arrivals in run.arrivals.items():
                serial = getattr(core, "receive_mode", None) == "serial"
                out[s, h, d] = max(out[s, h, d], _receive(arrivals, core.message_in_latency_s, serial))
    return out
