"""Discrete-event latency model: the network of every hardware step is played flow by flow, with channel
contention, finite router buffers that back-pressure upstream links, and optional multicast trees. The core
pipeline stages around it (soma, messages out, message in, synapse + dendrite) are hwmodels.timing.core_times's. This is
router.congestion_model "links"; a chip with "density" is timed by hwmodels.timing.des_density instead (SANA-FE's
message-level model; hwmodels.simulate dispatches).

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
   receive side it is evaluated in closed form by hwmodels.timing.core_times, the same code as the analytic model (the
   reference runs both as simpy processes message by message).
Hence, under hwmodels.timing.core_times.exactness (max(i, O, L) <= min synop + dendrite latency, and B = None or
B L >= every hop latency), the DES step latencies equal the message-by-message ones; the tests check this
exactly on random traces with contention, finite buffers and multicast. Outside these conditions the DES is an
approximation, and still never below the analytic latency; when a train's messages come further apart than a
message's least work (a slow link or message out), its last message's earliest service is a floor on its unit's
finish (core_times.train_tails_s), so a single train per unit is exact again and contended ones approach the
message-level finish from below.

Engines (ENGINES): "simpy" (hwmodels.timing.des_simpy) plays each step's event chains as above on a simpy
Environment; "event" (hwmodels.timing.des_events, hwmodels.kernels.event_queue) runs the same events in simpy's own
order in a compiled event queue, so its results are the simpy engine's bit for bit for any hop latency
(tests/hwmodels/test_event_engine.py; the MNIST conv net's whole DES on spinnaker2, 1.69 M channel nodes: 17.6 s
with simpy, 0.19 s); "vector" (hwmodels.timing.des_vector) solves the same grant/release equations for every step
of a group of batches at once and gives bit-identical grants, releases and step latencies when every hop latency
is > 0 (its module docstring proves it; tests/hwmodels/test_des_engines.py checks it). "auto" (the default) uses
"vector" when every hop latency is > 0 and "event" otherwise (zero-latency routers, e.g. the spinnaker2 and
truenorth presets, or a hop below the float resolution of the step times). Link hold times are summed per link
in channel order (flow, then tree channel), the same for every engine.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from hwmodels.kernels import route_play, threads
from hwmodels.kernels.gather import flow_channel_sums
from hwmodels.timing import analytic, des_events, des_simpy, des_vector, core_times
from hwmodels.events.actions import Actions
from hwmodels.timing.analytic import Timing
from hwmodels.timing.des_nodes import Nodes, Queues
from hwmodels.events.network import DIRECTIONS, Network, RouteUse
from hwmodels.events.route_table import RouteTable
from hwmodels.mapping.partition import Keep, make_now
from hwmodels.timing.core_times import ActionTimes

#: one batch: its action counts, their durations and its routes
Batch = tuple[Actions, ActionTimes, RouteUse]
#: channel nodes the vector engine solves at once: a larger group or batch is played in chunks of whole steps
#: (about 200 bytes of peak memory per node: 2^23 nodes ~ 1.7 GiB; hwmodels.simulate closes its groups at it too)
CHUNK_NODES = 1 << 23

def _eject_channels(actions: Actions, use: RouteUse, net: Network) -> np.ndarray:
    """Channel index (in its flow's tree) into each delivery's destination tile, -1 on the source tile, int64
    (n_deliv,): the tree channel whose link ends at that tile (Tree.eject; in a tree one channel at most ends at a
    tile), found over the flat channels of all trees (RouteUse.channels, RouteTable) by sorted (tree, downstream
    tile) keys; for unicast flows, whose tree is a path that reaches its one destination tile on its last channel
    (an XY path enters each tile once), that last channel."""
    a = actions
    if a.routes is None:  # unicast: a flow's tree is the XY path to its one destination, entered by its last channel
        hops = use.hops[a.deliv_flow]
        return np.where(hops > 0, hops - 1, -1).astype(np.int64)
    if not len(a.deliv_flow) or not len(use.table) or not len(use.channels[1]):
        return np.full(len(a.deliv_flow), -1, np.int64)
    uniq, inv, tree, _ = use.channels
    links = uniq[inv]
    tile, d = np.divmod(links, 4)
    step = np.array([dy * net.width + dx for dx, dy in DIRECTIONS], np.int64)
    n_tiles = (int(max(t[1] for t in net.tiles)) + 2) * net.width
    chan_key = tree * n_tiles + tile + step[d]
    order = np.argsort(chan_key, kind="stable")
    xy = np.array(net.tiles, np.int64).reshape(-1, 2)
    key = use.flow_route[a.deliv_flow] * n_tiles + (xy[a.deliv_dst, 1] * net.width + xy[a.deliv_dst, 0])
    pos = np.minimum(np.searchsorted(chan_key, key, sorter=order), len(order) - 1)
    hit = chan_key[order[pos]] == key
    return np.where(hit, order[pos] - use.table.off[use.flow_route[a.deliv_flow]], -1).astype(np.int64)


class FlowDown(NamedTuple):
    """Head down times (s) of a unicast batch played from the route table, one per flow: its last channel's (the
    channel into its destination tile, _eject_channels), where the engines give one per channel node; entries
    of flows of no channel are undefined (a delivery on the source tile reads its ready time instead)."""

    values: np.ndarray


def _offsets(hops: np.ndarray) -> np.ndarray:
    """Channel-node offset of every flow of `hops` channels each (node off[f] + c is channel c of flow f), int64
    (n_flows + 1,)."""
    return np.concatenate([[0], np.cumsum(hops)]).astype(np.int64)


def _play_simpy(batches: list[Batch], buffer_depth: int | None,
                keep: Keep = make_now) -> list[tuple[np.ndarray, np.ndarray]]:
    """(head down s, held s) per channel node of each batch, one simpy run per step (hwmodels.timing.des_simpy)."""
    return [des_simpy.play(a, t, u, buffer_depth, u.node_off) for a, t, u in batches]


def _play_event(batches: list[Batch], buffer_depth: int | None,
                keep: Keep = make_now) -> list[tuple[np.ndarray, np.ndarray]]:
    """_play_simpy's result bit for bit, from des_simpy's events run in simpy's order by a compiled event queue
    (hwmodels.timing.des_events)."""
    return [des_events.play(a, t, u, buffer_depth, u.node_off) for a, t, u in batches]


class _Chunk(NamedTuple):
    """Channel nodes of the flows f0..f1-1 of a group (whole steps; steps renumbered from 0) and their queues."""

    f0: int
    f1: int
    nodes: Nodes
    queues: Queues


def _group_flows(batches: list[Batch]) -> tuple[RouteTable, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(routes, flow_route, hops, messages, step) of all batches' flows laid end to end: the route tables of all
    batches in one (RouteTable.concat), then int64 (n_flows,) each: tree indices into it, steps numbered across
    batches (sorted)."""
    uses = [u for _, _, u in batches]
    if len(batches) == 1:  # the batch's own arrays (read only here), no copies
        a, _, u = batches[0]
        return u.table, u.flow_route, u.hops, a.flow_messages, a.flow_sample * a.n_steps + a.flow_step
    tree_off = np.cumsum([0] + [len(u.table) for u in uses])
    step_off = np.cumsum([0] + [a.n_samples * a.n_steps for a, _, _ in batches])
    return (RouteTable.concat([u.table for u in uses]),
            np.concatenate([u.flow_route + o for u, o in zip(uses, tree_off)]),
            np.concatenate([u.hops for u in uses]), np.concatenate([a.flow_messages for a, _, _ in batches]),
            np.concatenate([a.flow_sample * a.n_steps + a.flow_step + o for (a, _, _), o in zip(batches, step_off)]))


def build_nodes(batches: list[Batch], buffer_depth: int | None) -> tuple[Nodes, Queues]:
    """Channel nodes and queues of all batches at once (steps numbered across batches)."""
    nodes = Nodes(*_group_flows(batches), batches[0][1].link_s, buffer_depth)
    return nodes, Queues(nodes)


def _chunk_ranges(step: np.ndarray, off: np.ndarray, workers: int) -> list[tuple[int, int]]:
    """Flow ranges [f0, f1) of whole steps (`step` sorted, one per flow; off: node offset of every flow and the
    total), in order and covering every flow, for `workers` threads: workers x ceil(nodes / CHUNK_NODES) ranges
    cut where the nodes pass equal shares (hwmodels.kernels.threads.split: at most about CHUNK_NODES alive at
    once when each thread holds one), fewer when a share would be under hwmodels.kernels.threads.MIN_ITEMS
    nodes or there are fewer steps."""
    total = int(off[-1])
    parts = max(1, min(workers, total // threads.MIN_ITEMS)) * -(-total // CHUNK_NODES)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(step)) + 1, [len(step)]]).astype(np.int64)
    return [(int(bounds[a]), int(bounds[b])) for a, b in threads.split(off[bounds], parts, min_items=1)]


def _make_chunk(flows: tuple, f0: int, f1: int, link_s: float, buffer_depth: int | None) -> _Chunk:
    """The _Chunk of flows f0..f1-1 of `flows` (_group_flows; the chunks share its RouteTable)."""
    routes, route, hops, msgs, step = flows
    nodes = Nodes(routes, route[f0:f1], hops[f0:f1], msgs[f0:f1], step[f0:f1] - (step[f0] if f1 > f0 else 0),
                  link_s, buffer_depth)
    return _Chunk(f0, f1, nodes, Queues(nodes))


def _build_chunks(batches: list[Batch], buffer_depth: int | None) -> list[_Chunk]:
    """The group's channel nodes in chunks of whole steps (_chunk_ranges), built on threads."""
    flows, workers, link_s = _group_flows(batches), threads.count(), batches[0][1].link_s
    off = _offsets(flows[2])
    return threads.map_items(lambda f0, f1: _make_chunk(flows, f0, f1, link_s, buffer_depth),
                             _chunk_ranges(flows[4], off, workers), workers)


def _group_chunks(batches: list[Batch], buffer_depth: int | None, keep: Keep) -> list[_Chunk]:
    """The group's chunks (_build_chunks) through `keep` keyed by the batches' action counts and route
    topologies (they fix the flows, message counts and channels), so that a later call on the same batches
    (e.g. from a hwmodels.SimCache with other core or router latencies) skips building them; the hop latencies
    and link time of these batches are then put on them (Nodes.with_costs)."""
    key = ("des_nodes", tuple((id(a), id(u.topology)) for a, _, u in batches), buffer_depth)
    chunks, built = keep(key, lambda: (_build_chunks(batches, buffer_depth), batches),
                         tuple((a, u.topology) for a, _, u in batches))
    link_s = batches[0][1].link_s
    if built[0][1].link_s == link_s and all(u is v for (_, _, u), (_, _, v) in zip(batches, built)):
        return chunks
    routes = RouteTable.concat([u.table for _, _, u in batches])
    return [c._replace(nodes=c.nodes.with_costs(routes, link_s)) for c in chunks]


def _solve(chunk: _Chunk, ready: np.ndarray, tail: np.ndarray, link_s: float, off: np.ndarray,
           down: np.ndarray, held: np.ndarray) -> None:
    """Grants of one chunk (on one thread) into its slices of down (head down s) and held (s), node off[f]
    being flow f's first; ready / tail: of all flows (hwmodels.timing.des_vector.grants)."""
    f0, f1, nodes, queues = chunk
    grant, rel = down[off[f0]:off[f1]], held[off[f0]:off[f1]]  # filled in place: no fresh node-sized arrays
    des_vector.grants(nodes, queues, ready[f0:f1], tail[f0:f1], link_s, workers=1, out=(grant, rel))
    np.subtract(rel, grant, out=rel)  # held = release - grant
    np.add(grant, nodes.hop, out=grant)  # head down = grant + hop


def _play_vector(batches: list[Batch], buffer_depth: int | None,
                 keep: Keep = make_now) -> list[tuple[np.ndarray | FlowDown, np.ndarray]]:
    """The same as _play_simpy with hwmodels.timing.des_vector, every batch of the group in one solve (every hop
    latency must be > 0): its steps in chunks (_chunk_ranges) played on hwmodels.kernels.threads.count() threads,
    the chunks' nodes through `keep`; with unbounded buffers and unforked trees, straight from the route table
    (_play_routes: nothing to keep; unicast: head down times per flow, FlowDown). A group of more than CHUNK_NODES
    channel nodes is played batch by batch, and a batch of more than CHUNK_NODES in chunks built, solved and dropped
    in turn (_play_chunked), so memory stays bounded; steps are independent, so the result is the same."""
    total = sum(int(u.hops.sum()) for _, _, u in batches)
    if total > CHUNK_NODES and len(batches) > 1:
        return [r for b in batches for r in _play_vector([b], buffer_depth, keep)]
    if total > CHUNK_NODES:
        return [_play_chunked(batches[0], buffer_depth)]
    ready = np.concatenate([t.flow_ready_s for _, t, _ in batches])
    tail = np.concatenate([t.flow_tail_s for _, t, _ in batches])
    off = batches[0][2].node_off if len(batches) == 1 else _offsets(np.concatenate([u.hops for _, _, u in batches]))
    held = np.empty(total)
    link_s = batches[0][1].link_s
    ends = np.cumsum([0] + [int(u.hops.sum()) for _, _, u in batches])
    down = _routes_down(_group_flows(batches), off, ready, tail, link_s, buffer_depth, held, threads.count(),
                        all(a.routes is None for a, _, _ in batches))
    if isinstance(down, FlowDown):
        flow_ends = np.cumsum([0] + [len(a.flow_messages) for a, _, _ in batches])
        return [(FlowDown(down.values[f0:f1]), held[a:b])
                for f0, f1, a, b in zip(flow_ends[:-1], flow_ends[1:], ends[:-1], ends[1:])]
    if down is None:  # finite buffers or forked trees: the chunks' Nodes, kept through `keep`
        down = np.empty(total)
        chunks = _group_chunks(batches, buffer_depth, keep)
        threads.map_items(lambda c: _solve(c, ready, tail, link_s, off, down, held), [(c,) for c in chunks],
                          threads.count())
    return [(down[a:b], held[a:b]) for a, b in zip(ends[:-1], ends[1:])]


def _routes_down(flows: tuple, off: np.ndarray, ready: np.ndarray, tail: np.ndarray, link_s: float,
                 buffer_depth: int | None, held: np.ndarray, workers: int,
                 unicast: bool) -> np.ndarray | FlowDown | None:
    """Head down times (s) of the route-table play (_play_routes), with the hold times written into `held`: one
    per flow (FlowDown) for unicast flows (XY paths, each delivering on its last channel), else one per channel
    node; None when the route play is not the case (finite buffers, forked trees) and nothing was played."""
    if buffer_depth is not None:
        return None
    down = np.empty(len(ready) if unicast else int(off[-1]))
    if not _play_routes(flows, off, ready, tail, link_s, buffer_depth, down, held, workers, per_flow=unicast):
        return None
    return FlowDown(down) if unicast else down


def _play_chunked(batch: Batch, buffer_depth: int | None) -> tuple[np.ndarray | FlowDown, np.ndarray]:
    """(head down s, held s) per channel node (unicast with unbounded buffers: head down per flow, FlowDown) of one
    batch of more than CHUNK_NODES channel nodes, its steps played in chunks (_chunk_ranges: with w threads, each
    about an equal share of at most CHUNK_NODES / w nodes), each chunk's nodes built, solved and dropped on one of
    hwmodels.kernels.threads.count() threads, so that at most about CHUNK_NODES nodes are alive at once. With
    unbounded buffers and unforked trees the steps are played straight from the route table instead (_play_routes:
    no node arrays at all)."""
    a, t, u = batch
    flows = _group_flows([batch])
    off = u.node_off
    held = np.empty(int(off[-1]))
    workers = threads.count()
    down = _routes_down(flows, off, t.flow_ready_s, t.flow_tail_s, t.link_s, buffer_depth, held, workers,
                        a.routes is None)
    if down is not None:
        return down, held
    down = np.empty(int(off[-1]))
    threads.map_items(lambda f0, f1: _solve(_make_chunk(flows, f0, f1, t.link_s, buffer_depth),
                                            t.flow_ready_s, t.flow_tail_s, t.link_s, off, down, held),
                      _chunk_ranges(flows[4], off, workers), workers)
    return down, held


def _play_routes(flows: tuple, off: np.ndarray, ready: np.ndarray, tail: np.ndarray, link_s: float,
                 buffer_depth: int | None, down: np.ndarray, held: np.ndarray, workers: int,
                 per_flow: bool = False) -> bool:
    """Play the flows of `flows` (_group_flows; node offsets `off`; ready / tail (n_flows,) s, link time s) with
    hwmodels.kernels.route_play, each step's channel nodes made from the route table inside the kernel (no Nodes
    arrays), head down and held times into `down` (per_flow: one per flow, its last channel's) and `held`, on
    `workers` threads. Returns False, leaving the play to the caller, with finite buffers or when a route tree forks
    (route_play covers unbounded buffers and one child per channel). Raises hwmodels.timing.des_vector.NotApplicable
    as des_vector.grants does."""
    if buffer_depth is not None:
        return False
    routes, route, _, msgs, step = flows
    cm = (np.asarray(msgs, np.int64) - 1) * float(link_s)  # Nodes.flow_cm, the same operation
    played = route_play.play(off, route, step, routes.off, routes.links, routes.parent, routes.hop_s,
                             routes.before_s, routes.blocking, int(routes.links.max(initial=-1)) + 1,
                             np.asarray(ready, np.float64), np.asarray(tail, np.float64), cm, link_s, down, held,
                             workers, per_flow)
    if played is None:
        return False
    des_vector.check(int(off[-1]), *played)
    return True


#: DES engine name -> fn(batches, buffer depth, keep) -> [(head down s, held s) per channel node of each batch;
#: the vector engine's unicast plays with unbounded buffers give head down times per flow instead (FlowDown)]
ENGINES = {"simpy": _play_simpy, "event": _play_event, "vector": _play_vector}


def _engine(name: str, batches: list[Batch]) -> str:
    """Resolve "auto"; raise ValueError for an unknown name or "vector" with a zero hop latency."""
    if name not in (*ENGINES, "auto"):
        raise ValueError(f"engine: {name!r} is not one of auto, {', '.join(ENGINES)}")
    positive = all(float(u.table.hop_s.min(initial=1.0)) > 0 for _, _, u in batches)
    if name == "vector" and not positive:
        raise ValueError("engine: 'vector' needs every hop latency > 0; use 'event', 'simpy' or 'auto'")
    return name if name != "auto" else ("vector" if positive else "event")


def _play(batches: list[Batch], buffer_depth: int | None, engine: str,
          keep: Keep = make_now) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network play of the batches with the chosen engine; "auto" falls back to the event engine (the simpy
    engine's results, compiled) when the input is outside the vector engine's proof
    (hwmodels.timing.des_vector.NotApplicable)."""
    name = _engine(engine, batches)
    try:
        return ENGINES[name](batches, buffer_depth, keep)
    except des_vector.NotApplicable:
        if engine != "auto":
            raise
        return _play_event(batches, buffer_depth)


def _link_held(use: RouteUse, held: np.ndarray) -> np.ndarray:
    """Hold time (s) of every link of use.link_totals's sorted link ids, float64: the channel nodes' `held` (flat
    over flows, _offsets) summed per link in node order."""
    if not len(use.table):
        return np.zeros(0)
    uniq, inv, _, _ = use.channels
    return flow_channel_sums(inv.astype(np.int64), use.table.off, use.flow_route.astype(np.int64),
                             use.hops.astype(np.int64), np.asarray(held, np.float64), len(uniq))


#: deliveries of a batch from which _finish computes its contention-free schedule on a second thread (below, a
#: thread costs more than it saves: ~0.3 ms per batch of the MNIST conv net, 32 samples and ~8k deliveries)
FINISH_THREAD_DELIVERIES = 1 << 16


def _floor_s(a: Actions, times: ActionTimes, net: Network) -> np.ndarray:
    """core_done_s of the contention-free (analytic) head arrivals: the DES schedule's floor."""
    return core_times.core_done_s(a, times, analytic.head_arrival(a, times, net))


def _finish(batch: Batch, net: Network, down: np.ndarray | FlowDown, held: np.ndarray,
            keep: Keep = make_now) -> Timing:
    """A batch's Timing from its channels' head down times (per channel node, or per flow: FlowDown) and hold
    times; the eject channels (routes only) come through `keep`."""
    a, times, use = batch
    a.deliv_groups  # made once here (with deliv_keys), read by both schedules
    # the contention-free schedule on a second thread when the batch pays for one (its path latencies and
    # makespans release the GIL; Spikformer-4-384, 4 samples: 90 -> 57 ms)
    beside = threads.count() > 1 and len(a.deliv_flow) >= FINISH_THREAD_DELIVERIES
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwmodels-finish") if beside else nullcontext() as pool:
        floor = pool.submit(_floor_s, a, times, net) if beside else None
        ej = keep(("des_eject", id(a), id(use.topology)), lambda: _eject_channels(a, use, net), (a, use.topology))
        f = a.deliv_flow
        if isinstance(down, FlowDown):  # unicast: the eject channel is the flow's last (where ej >= 0)
            via = down.values[f]
        else:
            at = use.node_off[f] + np.maximum(ej, 0)
            via = down[np.minimum(at, max(len(down) - 1, 0))] if len(down) else 0.0
        reach = np.where(ej < 0, times.flow_ready_s[f], via)
        done = core_times.core_done_s(a, times, reach + times.link_s)
        ids = use.link_messages[0]  # the sorted link ids of link_totals, as _link_held sums them
        held_s = _link_held(use, held)
        # never below the contention-free schedule: a no-op in exact arithmetic, it keeps float rounding of the
        # two evaluation orders from putting the DES a few ulp under the analytic model
        done = np.maximum(done, floor.result() if beside else _floor_s(a, times, net))
    return Timing(core_times.step_latencies(done, times.barrier_s), ids, held_s, done)


def timing_batches(batches: list[Batch], net: Network, buffer_depth: int | None = None,
                   engine: str = "auto", keep: Keep = make_now) -> list[Timing]:
    """Timing of every batch (the steps of all batches are independent; the vector engine solves them in one
    go). engine: "auto", "simpy", "event" or "vector" (ENGINES). keep: where the vector engine's channel nodes are kept
    (hwmodels.SimCache.keep reuses them across calls on the same batches; the default builds them each call).
    Raises ValueError for an unknown engine."""
    if not batches:
        return []
    return [_finish(b, net, d, h, keep) for b, (d, h) in zip(batches, _play(batches, buffer_depth, engine, keep))]


def timing(actions: Actions, times: ActionTimes, net: Network, use: RouteUse,
           buffer_depth: int | None = None, engine: str = "auto") -> Timing:
    """Step latencies (with channel contention) and link hold times of a batch; see the module docstring.
    engine: "auto", "simpy", "event" or "vector" (ENGINES). Raises ValueError for an unknown engine."""
    return timing_batches([(actions, times, use)], net, buffer_depth, engine)[0]
