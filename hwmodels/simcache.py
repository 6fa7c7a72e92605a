"""SimCache: reuse, across repeated hwmodels.simulate calls on the same graph and trace, the work that does not
depend on the parameters that changed: the partition's chunks depend only on the partition signature (the
core's mapping-relevant fields, hwmodels.chip.signatures.partition_signature), the mapping on every
mapping-relevant field (MAPPING_EXCLUDED lists the others) and the placement; the fan-out tables and action
counts only on the assignment of neurons to cores (so every placement of one partition shares them), multicast
and semantics; the routes also on the placement, their hop costs on the router's latencies (routes are recosted,
not rebuilt); the step latencies (DES or analytic) only on the latency-relevant fields (TIMING_EXCLUDED lists the
others). A design point that only changes per-event latencies recomputes durations, route hop costs, timing
and costs (the DES's channel nodes and eject channels are kept); one that only changes energies recomputes the energy
table and the energies of the kept action counts (every energy-free sum of a batch is kept too,
hwmodels.simulate).
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from hwmodels.footprint import footprint_bytes
from hwmodels.events.actions import Actions, FanoutTables, build_fanout, count_actions
from hwmodels.mapping.connectivity import FanoutStore
from hwmodels.mapping.map import Mapping, MappingError, map_network, mapping_key
from hwmodels.events.network import Network, RouteUse, route_use
from hwmodels.mapping.placement import USES_TRAFFIC
from hwmodels.chip.signatures import TIMING_EXCLUDED, frozen, mapping_signature, timing_signature
from hwmodels.chip.spec import ChipSpec, CoreSpec
from hwmodels.energy import costs
from hwmodels.trace import is_int
from hwmodels.timing.core_times import ActionTimes, action_times
from hwmodels.trace import EventTrace, NetworkGraph
from hwmodels.trace_check import start_check


#: SimCache's default bound on the bytes its entries hold (2 GiB: a 2-worker sweep keeps 4 GiB of 24)
DEFAULT_MAX_BYTES = 2 * 2**30


class SimCache:
    """Least-recently-used store of simulation inputs keyed by the identity of the graph, trace and mapping
    objects and by the parameters they depend on; pass one to hwmodels.simulate(..., cache=...).

    max_entries: entries kept (a mapping, a fan-out table, and each batch's actions, times, routes, action counts
    and sums: about 6 a batch, so the default 128 holds ~20 batches, ~640 samples at batch_samples 32).
    max_bytes: memory the entries may hold (hwmodels.footprint.footprint_bytes of each value, without the graph,
    trace and chip; default DEFAULT_MAX_BYTES, 2 GiB; None: unbounded): the entries of a DES simulation of
    VGG-11 on 16 samples hold ~25 MB, of Spikformer-4-384 on 8 chips on 4 samples ~270 MB (benchmarks'
    workloads), so entries bound small nets and bytes paper-scale ones; a value larger than max_bytes is made
    and not kept. Entries no simulation has used since the current one began are dropped first, least recently
    used first. Scan resistant: when every entry was used by the current simulation (a trace of more batches than the cache
    holds), a new one is not stored, so the next simulation of the same trace still finds the first max_entries
    (plain LRU would have dropped each just before its next use, and found none). 0 keeps nothing (every value
    is made on each use): hwmodels.simulate runs through such a cache when it is given none, so there is one code
    path with and without reuse. The cache holds references to the objects of its keys, so an id is never reused
    while its entry lives. It assumes graphs, traces, mappings and chips are not modified in place. Results are
    bit-identical with and without a cache (tests/hwmodels/test_simcache.py).
    """

    def __init__(self, max_entries: int = 128, max_bytes: int | None = DEFAULT_MAX_BYTES):
        if not is_int(max_entries) or max_entries < 0:
            raise ValueError(f"max_entries: {max_entries!r} must be >= 0 and an integer")
        if max_bytes is not None and (not is_int(max_bytes) or max_bytes < 0):
            raise ValueError(f"max_bytes: {max_bytes!r} must be >= 0 and an integer (bytes), or None (unbounded)")
        self.max_entries = max_entries
        self.max_bytes = float("inf") if max_bytes is None else max_bytes
        self.held_bytes = 0  # footprint_bytes of the stored values
        self._store: OrderedDict = OrderedDict()  # key -> (value, pins, the simulation that used it last, bytes)
        self._pass = 0  # simulations begun (begin_pass)
        self._signatures: OrderedDict = OrderedDict()  # (kind, id(chip)) -> (signature, chip kept alive)
        self.hits = self.misses = 0

    def keep(self, key: tuple, make: Callable[[], Any], pins: tuple = ()) -> Any:
        """The value stored under `key`, made by make() on first use; `pins` are kept alive with it (objects
        whose id() is part of the key)."""
        if key in self._store:
            self._store.move_to_end(key)
            self.hits += 1
            value, pins, _, size = self._store[key]
            self._store[key] = (value, pins, self._pass, size)
            return value
        self.misses += 1
        value = make()
        if not self.max_entries:
            return value
        size = footprint_bytes(value, pins)
        if size > self.max_bytes:
            return value
        while len(self._store) >= self.max_entries or self.held_bytes + size > self.max_bytes:
            if self._store[next(iter(self._store))][2] == self._pass:  # all in use by this simulation: keep them
                return value
            self.held_bytes -= self._store.popitem(last=False)[1][3]
        self._store[key] = (value, pins, self._pass, size)
        self.held_bytes += size
        return value

    def begin_pass(self) -> None:
        """Mark the start of a simulation (hwmodels.simulate calls it): entries used from now on are protected
        from eviction until the next one begins."""
        self._pass += 1

    def signature(self, kind: str, chip: ChipSpec) -> tuple:
        """mapping_signature(chip) (kind "mapping") or timing_signature(chip) ("timing"), once per chip object (a
        chip is not modified in place while it is used; the analytic model asks once per sample)."""
        key = (kind, id(chip))
        if key not in self._signatures:
            fn = {"mapping": mapping_signature, "timing": timing_signature}[kind]
            if not self.max_entries:
                return fn(chip)
            self._signatures[key] = (fn(chip), chip)
            while len(self._signatures) > 2 * self.max_entries:
                self._signatures.popitem(last=False)
        return self._signatures[key][0]

    def mapping(self, graph: NetworkGraph, chip: ChipSpec, placement: str = "in_order",
                traffic: EventTrace | None = None, seed: int = 0) -> Mapping:
        """hwmodels.map_network(graph, chip, placement, traffic, seed), once per mapping signature (the chunks of
        its partition once per partition signature, hwmodels.mapping.partition); a network that does not fit
        raises the same MappingError every time."""
        uses = placement in USES_TRAFFIC and traffic is not None
        key = ("map", id(graph), self.signature("mapping", chip), placement, id(traffic) if uses else None, seed)

        def make():
            try:
                return map_network(graph, chip, placement, traffic if uses else None, seed, self.keep)
            except MappingError as exc:
                return exc
        out = self.keep(key, make, (graph, traffic))
        if isinstance(out, MappingError):
            raise MappingError(str(out))
        return out

    @contextmanager
    def checking(self, graph: NetworkGraph, trace: EventTrace) -> Iterator[None]:
        """Context of the first work of a simulation: hwmodels.trace_check.check_trace(graph, trace), once per
        (graph, trace) that passed it, with the graph's fingerprint hashed beside the body
        (hwmodels.trace_check.start_check; every other check raises on entry) and compared on exit, where its
        ValueError replaces any exception of the body (check_trace's errors come first)."""
        key = ("checked_trace", id(graph), id(trace))
        if key in self._store:
            self.keep(key, lambda: None)
            yield
            return
        wait = start_check(graph, trace)
        try:
            yield
        finally:
            wait()
            self.keep(key, lambda: None, (graph, trace))  # passed, whatever the body raised

    def tables(self, graph: NetworkGraph, mapping: Mapping, multicast: bool,
               core: CoreSpec | None = None, fanouts: FanoutStore | None = None,
               assignment: tuple | None = None) -> FanoutTables:
        """hwmodels.events.actions.build_fanout, once per (graph, assignment of neurons to cores
        (hwmodels.mapping.map.mapping_key: placements of one partition share it), multicast, the core's stored
        weight bits): the tables read the assignment, never the tiles. fanouts: core fan-outs of this assignment
        already counted (by hwmodels.mapping.check.check_mapping in the same call), reused when they are made.
        assignment: mapping_key(mapping) when the caller has just computed it (not hashed again)."""
        stored = None if core is None else core.stored_weight_bits
        if assignment is None:
            assignment = self.keep(("assignment", id(mapping)), lambda: mapping_key(mapping), (mapping,))
        return self.keep(("tables", id(graph), assignment, multicast, stored),
                         lambda: build_fanout(graph, mapping, multicast, core, fanouts), (graph,))

    def network(self, mapping: Mapping, chip: ChipSpec) -> Network:
        """hwmodels.events.network.Network (routes and their latencies), once per (mapping, the router's
        latency-relevant fields): built from `chip` with every router energy NaN, since no model reads a
        network's energies (hwmodels.energy.costs costs hops from their counts by kind), so a sweep over energies
        reuses the routes and a stray read of them shows as NaN."""
        key = ("net", id(mapping), frozen(chip.router.model_dump(exclude=TIMING_EXCLUDED["router"])))
        return self.keep(key, lambda: Network(mapping, _without_router_energies(chip)), (mapping,))

    def actions(self, graph: NetworkGraph, trace: EventTrace, mapping: Mapping, tables: FanoutTables,
                samples: range, semantics: str) -> Actions:
        """hwmodels.events.actions.count_actions, once per (graph, trace, tables, samples, semantics): the tables
        fix the assignment of neurons to cores, all the counts read of the mapping."""
        key = ("actions", id(graph), id(trace), id(tables), samples.start, samples.stop, semantics)
        return self.keep(key, lambda: count_actions(graph, trace, mapping, tables, samples, semantics),
                         (graph, trace, tables))

    def timings(self, model: str, group: list, chip: ChipSpec, compute: Callable[[], list]) -> list:
        """compute() (the Timing of each (actions, times, routes) batch of `group` under latency model `model`),
        once per (model, the batches' action counts, durations and routes, latency signature of chip)."""
        key = ("timing", model, tuple((id(a), id(t), id(u)) for a, t, u in group), self.signature("timing", chip))
        return self.keep(key, compute, tuple(group))

    def times(self, actions: Actions, chip: ChipSpec, mapping: Mapping) -> ActionTimes:
        """hwmodels.timing.core_times.action_times of a batch, once per (actions, mapping, latency signature of chip)
        (a sweep over energies reuses the durations of every action)."""
        return self.keep(("times", id(actions), id(mapping), self.signature("timing", chip)),
                         lambda: action_times(actions, chip, mapping), (actions, mapping))

    def counts(self, actions: Actions, use: RouteUse, chip: ChipSpec, mapping: Mapping) -> dict:
        """hwmodels.energy.costs.count of a batch, once per (actions, mapping, the core's neuron access and update
        rules: the only chip fields it reads). The routes enter only through their hop kinds, which the mapping
        fixes (another router's latencies give other routes with the same hops)."""
        rules = (chip.core.neuron_access_rule, chip.core.neuron_update_rule)
        return self.keep(("counts", id(actions), id(mapping), rules), lambda: costs.count(actions, use, chip),
                         (actions, mapping))

    def routes(self, actions: Actions, net: Network) -> RouteUse:
        """hwmodels.events.network.route_use of a batch's flows: the routes once per (actions, mapping of the
        network), their hop costs once per network (RouteUse.recosted: a sweep over router latencies reuses the
        routes; the result equals route_use on that network)."""
        base = self.keep(("routes", id(actions), id(net.mapping)),
                         lambda: (route_use(actions.flow_src, actions.flow_route, actions.flow_messages,
                                            actions.routes, net), net), (actions, net.mapping))
        use, built_on = base
        if built_on is net:
            return use
        return self.keep(("routes_at", id(use), id(net)), lambda: use.recosted(net), (use, net))


def _without_router_energies(chip: ChipSpec) -> ChipSpec:
    """`chip` with every energy of its router (fields ending in _j) NaN (None stays None)."""
    r = chip.router
    nan = {f: float("nan") for f in TIMING_EXCLUDED["router"] if getattr(r, f) is not None}
    return chip.model_copy(update={"router": r.model_copy(update=nan)})
