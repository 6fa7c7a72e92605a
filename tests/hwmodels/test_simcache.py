"""SimCache: bit-identical results with and without it, what it reuses for which change, and its signatures."""

import pytest
from same_results import assert_same

import hwmodels.simcache as simcache
from hwmodels import MappingError, SimCache, load_preset, map_network, simulate
from hwmodels.chip.signatures import partition_signature
from hwmodels.simcache import mapping_signature, timing_signature


def _same(a, b) -> None:
    """Every field of two SimResults equal exactly (same_results.assert_same)."""
    assert_same(a, b, tables=False)


def _chips():
    """A hardware-only sweep: energies x 2, latencies x 2, fewer neurons per core, finite buffers, 2 per tile."""
    base = load_preset("loihi")
    return [base,
            load_preset("loihi", {"core.synop_energy_j.dense": 2 * base.core.synop_energy_j.dense,
                                  "router.hop_energy_ew_j": 2 * base.router.hop_energy_ew_j}),
            load_preset("loihi", {"core.message_out_latency_s": 2 * base.core.message_out_latency_s,
                                  "router.hop_latency_ns_s": 2 * base.router.hop_latency_ns_s}),
            load_preset("loihi", {"core.neurons_per_core": 8}),
            load_preset("loihi", {"core.neurons_per_core": 8, "router.buffer_depth": 2}),
            load_preset("loihi", {"core.neurons_per_core": 8, "cores_per_tile": 2}),
            load_preset("loihi", {"router.buffer_depth": 2, "router.hop_latency_ew_s": 3 * base.router.hop_latency_ew_s,
                                  "router.link_bandwidth_msgs_per_s": base.router.link_bandwidth_msgs_per_s / 3})]


@pytest.mark.parametrize("multicast", [False, True])
def test_results_are_bit_identical_with_and_without_the_cache(nets, rng, multicast):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 5, 3, 0.3)
    cache = SimCache()
    for _ in range(2):  # the second pass is served from the cache
        for chip in _chips():
            for model in ("des", "analytic"):
                for semantics in ("pipelined", "layer_serial"):
                    kw = dict(model=model, semantics=semantics, batch_samples=2, multicast=multicast)
                    _same(simulate(g, tr, chip, **kw), simulate(g, tr, chip, cache=cache, **kw))
    assert cache.hits > cache.misses


def _counting(monkeypatch) -> dict:
    """Count the calls of the functions SimCache wraps."""
    calls = {}
    for name in ("map_network", "build_fanout", "count_actions", "route_use"):
        fn = getattr(simcache, name)

        def wrapped(*a, _fn=fn, _name=name, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(*a, **k)
        monkeypatch.setattr(simcache, name, wrapped)
    return calls


def test_an_energy_change_reuses_everything_and_a_latency_change_recomputes_only_timing(nets, rng, monkeypatch):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 4, 3, 0.3)
    calls, cache = _counting(monkeypatch), SimCache()
    base, energy, latency, npc, _, per_tile, _ = _chips()
    simulate(g, tr, base, batch_samples=2, cache=cache)  # 2 batches in one DES group
    assert calls == {"map_network": 1, "build_fanout": 1, "count_actions": 2, "route_use": 2}
    keys = set(cache._store)
    simulate(g, tr, energy, batch_samples=2, cache=cache)  # new core and router energies: costs only
    assert calls == {"map_network": 1, "build_fanout": 1, "count_actions": 2, "route_use": 2}
    assert set(cache._store) == keys
    simulate(g, tr, latency, batch_samples=2, cache=cache)  # new latencies: the routes recosted, new timing
    assert calls == {"map_network": 1, "build_fanout": 1, "count_actions": 2, "route_use": 2}
    assert sum(k[0] == "timing" for k in cache._store) == 2 and sum(k[0] == "routes_at" for k in cache._store) == 2
    # no channel nodes are kept: loihi's buffers are unbounded, so the DES plays from the route table
    assert sum(k[0] == "des_nodes" for k in cache._store) == 0
    simulate(g, tr, npc, batch_samples=2, cache=cache)  # a new partition: everything is rebuilt
    assert calls == {"map_network": 2, "build_fanout": 2, "count_actions": 4, "route_use": 4}
    simulate(g, tr, per_tile, batch_samples=2, cache=cache)  # the same partition placed anew: new routes only
    assert calls == {"map_network": 3, "build_fanout": 2, "count_actions": 4, "route_use": 6}
    assert sum(k[0] == "chunks" for k in cache._store) == 2


def test_placements_of_one_partition_share_counts_and_keep_their_own_routes(nets, rng):
    """in_order and snake mappings of one partition share fan-out tables and action counts in a cache, and each
    still gets its own routes, hop counts and timing (bit-identical to simulating without a cache)."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 3, 0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 8, "mesh_width": 4})
    cache = SimCache()
    for placement in ("in_order", "snake", "in_order"):
        m = map_network(g, chip, placement)
        for model in ("des", "analytic"):
            _same(simulate(g, tr, chip, m, model=model, batch_samples=2),
                  simulate(g, tr, chip, m, model=model, batch_samples=2, cache=cache))
    assert sum(k[0] == "tables" for k in cache._store) == 1


def test_signatures_separate_mapping_timing_and_energy_fields():
    base = load_preset("loihi")
    energy = load_preset("loihi", {"core.synop_energy_j.dense": 1e-12, "core.static_power_w": 1.0,
                                   "router.hop_energy_ns_j": 1e-12})
    latency = load_preset("loihi", {"core.synop_latency_s.dense": 1e-9, "router.link_bandwidth_msgs_per_s": 1e8,
                                    "barrier_sync_s": {1: 1e-6}})
    assert mapping_signature(energy) == mapping_signature(latency) == mapping_signature(base)
    assert timing_signature(energy) == timing_signature(base) != timing_signature(latency)
    for over in ({"core.neurons_per_core": 512}, {"cores_per_tile": 2}, {"mesh_width": 4},
                 {"core.synapse_memory_bits": 65536}, {"core.max_fan_in": 100}, {"core.max_axons": 100},
                 {"core.memory_layout": "pow2"}, {"max_cores_per_population": 3}):
        assert mapping_signature(load_preset("loihi", over)) != mapping_signature(base), over
    for over in ({"cores_per_tile": 2}, {"mesh_width": 4}, {"max_cores_per_population": 3}, {"n_chips": 2,
                 "router.chip_link_energy_j": 1e-11, "router.chip_link_latency_s": 1e-8}, energy, latency):
        chip = over if isinstance(over, type(base)) else load_preset("loihi", over)
        assert partition_signature(chip) == partition_signature(base), over
    for over in ({"core.neurons_per_core": 512}, {"core.max_axons": 100}, {"input_location": "port"}):
        assert partition_signature(load_preset("loihi", over)) != partition_signature(base), over


def test_a_network_that_does_not_fit_raises_the_same_error_from_the_cache(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 2, 2, 0.3)
    tiny = load_preset("loihi", {"mesh_width": 1, "mesh_height": 1, "cores_per_tile": 1,
                                 "core.neurons_per_core": 16})
    cache = SimCache()
    msgs = []
    for _ in range(2):
        with pytest.raises(MappingError) as err:
            simulate(g, tr, tiny, cache=cache)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] and "does not fit" in msgs[0] and cache.hits == 2  # the trace check and the error


def test_least_recently_used_entries_are_dropped(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 4, 2, 0.3)
    cache = SimCache(max_entries=3)
    simulate(g, tr, load_preset("loihi"), batch_samples=1, cache=cache)
    assert len(cache._store) == 3
    cache.begin_pass()  # a new simulation: the last one's entries may go, least recently used first
    assert cache.keep(("k",), lambda: 1) == 1 and cache.keep(("k",), lambda: 2) == 1
    assert len(cache._store) == 3 and ("k",) in cache._store
    with pytest.raises(ValueError, match="max_entries: -1 must be >= 0"):
        SimCache(max_entries=-1)
    for bad in (1.5, "8", True, None):  # 1.5 and True were taken, "8" and None failed comparing with 0
        with pytest.raises(ValueError, match=f"max_entries: {bad!r} must be >= 0 and an integer"):
            SimCache(max_entries=bad)


def test_a_trace_longer_than_the_cache_keeps_its_first_entries_instead_of_thrashing(nets, rng):
    # plain LRU over a trace of more batches than max_entries dropped each entry just before the next simulation
    # needed it: no hit at all from ~640 samples on with the default cache (a sweep ran at full cost per point)
    keys = [("b", i) for i in range(5)]
    cache = SimCache(max_entries=3)
    for _ in range(3):
        cache.begin_pass()
        for k in keys:
            cache.keep(k, object)
    assert cache.hits == 2 * 3 and cache.misses == 5 + 2 * 2  # the first 3 kept, the last 2 made on every pass
    assert list(cache._store) == keys[:3]
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 8, 2, 0.3)
    small = SimCache(max_entries=12)
    chip = load_preset("loihi")
    first = simulate(g, tr, chip, batch_samples=1, cache=small)
    hits = small.hits
    again = simulate(g, tr, chip, batch_samples=1, cache=small)
    assert small.hits - hits >= 6 and again.energy_j == first.energy_j  # the second simulation reuses entries
    assert again.latency_s == first.latency_s


def test_a_cache_of_zero_entries_keeps_nothing(nets, rng):
    """max_entries=0 (what simulate uses when given no cache) makes every value on each use and stores none."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 2, 0.3)
    cache = SimCache(max_entries=0)
    simulate(g, tr, load_preset("loihi"), batch_samples=1, cache=cache)
    assert len(cache._store) == 0 and len(cache._signatures) == 0 and cache.hits == 0 and cache.misses > 0
    calls = []
    assert [cache.keep(("k",), lambda: calls.append(1) or len(calls)) for _ in range(2)] == [1, 2]


def test_footprint_counts_array_buffers_once_and_skips_what_the_caller_holds(nets, rng):
    import numpy as np
    from hwmodels.footprint import footprint_bytes
    a = np.zeros(10_000)  # 80,000 bytes
    assert 80_000 <= footprint_bytes(a) < 80_200
    both = footprint_bytes({"x": a, "view": a[::2], "again": [a]})  # one buffer, however many views
    assert 80_000 <= both < 81_500
    assert footprint_bytes([a, a.copy()]) >= 160_000
    g = nets.mixed_graph(rng)
    assert footprint_bytes((g, a)) < 80_200 and footprint_bytes((a,), skip=(a,)) < 100  # not the caller's
    many = [np.zeros(100) for _ in range(1000)]  # 800 kB in 1,000 arrays: sampled, scaled to the length
    assert 800_000 <= footprint_bytes(many) < 1_000_000


def test_footprint_walks_slots_attributes_and_frames():
    import numpy as np
    import pandas as pd
    from hwmodels.footprint import footprint_bytes

    class Slotted:
        __slots__ = ("a", "unset")

        def __init__(self, a):
            self.a = a

    class Child(Slotted):
        __slots__ = ("b",)

        def __init__(self, a, b):
            super().__init__(a)
            self.b = b
    a, b = np.zeros(10_000), np.zeros(5_000)  # 80,000 and 40,000 bytes
    assert 120_000 <= footprint_bytes(Child(a, b)) < 120_500  # slots of the class and of its base; unset ones skip
    assert 80_000 <= footprint_bytes(Slotted(a)) < 80_500
    frame = pd.DataFrame({"x": np.zeros(1_000), "y": np.zeros(1_000, np.int32)})
    assert footprint_bytes(frame) == int(frame.memory_usage(deep=False).sum())


def test_a_byte_bound_drops_entries_and_keeps_results(nets, rng):
    from hwmodels.footprint import footprint_bytes
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 6, 2, 0.3)
    chip = load_preset("loihi")
    free = SimCache(max_bytes=None)
    want = simulate(g, tr, chip, batch_samples=2, cache=free)
    held = free.held_bytes
    assert held == sum(e[3] for e in free._store.values()) > 0  # each value's footprint_bytes when stored
    assert held <= sum(footprint_bytes(v, pins) for v, pins, _, _ in free._store.values())  # (some grow after)
    bounded = SimCache(max_bytes=held // 3)
    for _ in range(2):
        got = simulate(g, tr, chip, batch_samples=2, cache=bounded)
        assert (got.energy_j, got.latency_s) == (want.energy_j, want.latency_s)
        assert 0 < bounded.held_bytes <= held // 3 and len(bounded._store) < len(free._store)
    big = max(free._store.values(), key=lambda e: e[3])[3]
    tiny = SimCache(max_bytes=big - 1)  # the largest value alone does not fit: made, never kept
    simulate(g, tr, chip, batch_samples=2, cache=tiny)
    assert all(e[3] < big for e in tiny._store.values()) and tiny.held_bytes <= big - 1
    for bad in (-1, 1.5, "8", True):
        with pytest.raises(ValueError, match=f"max_bytes: {bad!r} must be >= 0 and an integer"):
            SimCache(max_bytes=bad)
