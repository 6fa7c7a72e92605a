"""The vectorised DES engine (hwmodels.timing.des_vector) against the simpy engine it replaces: bit-identical channel
grants, releases, per-core finish times, step latencies and link hold times on random contended traces."""
import dataclasses

import numpy as np
import pytest

from hwmodels import SimCache, load_preset, map_network
from hwmodels.kernels import threads
from hwmodels.timing import analytic, des, des_vector
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.events.network import Network, route_use
from hwmodels.timing.core_times import action_times
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")


def _case(seed: int, depth, rate: float, mesh: int = 5):
    """input (24) -> h1 (16) -> h2 (12) -> out (6) plus a skip input -> h2, 3 neurons per core on random tiles of
    a mesh x mesh Loihi (its own non-dyadic latencies), random link bandwidth and message-out latency: many
    flows share links."""
    rng = np.random.default_rng(seed)
    sizes = {"input": 24, "h1": 16, "h2": 12, "out": 6}
    pops = [Population(n, (s,), INPUT if n == "input" else NeuronModel()) for n, s in sizes.items()]
    pairs = [("input", "h1"), ("h1", "h2"), ("h2", "out"), ("input", "h2")]
    projs = [Projection(f"{a}_{b}", a, b, "dense",
                        rng.normal(size=(sizes[b], sizes[a])) * (rng.random((sizes[b], sizes[a])) < 0.6),
                        storage=("sparse", "dense")[i % 2]) for i, (a, b) in enumerate(pairs)]
    g = NetworkGraph(pops, projs)
    chip = load_preset("loihi", {"mesh_width": mesh, "mesh_height": mesh, "cores_per_tile": 1,
                                 "router.buffer_depth": depth,
                                 "router.link_bandwidth_msgs_per_s": float(rng.choice([3.44e9, 5e8, 2e8])),
                                 "core.message_out_latency_s": float(rng.choice([2.1e-9, 0.3e-9]))})
    m = map_network(g, load_preset("loihi", {"core.neurons_per_core": 3}))
    slots = rng.permutation(mesh * mesh)[:m.cores_used]
    m = dataclasses.replace(m, tile_xy=np.stack([slots % mesh, slots // mesh], axis=1).astype(np.int64),
                            mesh_shape=(mesh, mesh))
    tr = EventTrace.from_dense({n: rng.random((3, 3, s)) < rate for n, s in sizes.items()})
    return g, tr, m, chip


def _inputs(g, tr, m, chip, multicast, semantics):
    tables = build_fanout(g, m, multicast)
    acts = count_actions(g, tr, m, tables, range(tr.n_samples), semantics)
    times = action_times(acts, chip, m)
    net = Network(m, chip)
    return acts, times, net, route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)


def _same_play(simpy_play, vector_play, use, unicast_unbounded: bool) -> bool:
    """The vector engine's (head down, held) of a batch equal the simpy engine's (per channel node) bit for bit:
    every node's, or, for unicast flows with unbounded buffers, where the vector engine gives one head down time
    per flow (des.FlowDown), each flow's last channel's (its eject channel)."""
    (down_s, held_s), (down_v, held_v) = simpy_play, vector_play
    if not np.array_equal(held_s, held_v) or isinstance(down_v, des.FlowDown) != unicast_unbounded:
        return False
    if not unicast_unbounded:
        return np.array_equal(down_s, down_v)
    last = np.cumsum(use.hops) - 1
    routed = use.hops > 0
    return len(down_v.values) == len(use.hops) and np.array_equal(down_s[last[routed]], down_v.values[routed])


@pytest.mark.parametrize("semantics", ["pipelined", "layer_serial"])
@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("depth", [None, 1, 2, 4])
def test_vector_engine_is_bit_identical_to_simpy_on_contended_traces(depth, multicast, semantics):
    """12 random cases per combination, with waits on shared links (checked), finite buffers (slot terms) and
    multicast trees: every channel's head arrival and hold time, and every step latency, are equal exactly."""
    waited = 0
    for seed in range(12):
        g, tr, m, chip = _case(1000 * seed + (depth or 0), depth, rate=0.15 + 0.05 * (seed % 8))
        acts, times, net, use = _inputs(g, tr, m, chip, multicast, semantics)
        played_s, = des._play([(acts, times, use)], depth, "simpy")
        played_v, = des._play([(acts, times, use)], depth, "vector")
        assert _same_play(played_s, played_v, use, depth is None and not multicast)
        ts, tv = (des.timing(acts, times, net, use, depth, engine=e) for e in ("simpy", "vector"))
        assert np.array_equal(ts.step_s, tv.step_s) and np.array_equal(ts.core_done_s, tv.core_done_s)
        assert np.array_equal(ts.link_held_s, tv.link_held_s)
        free = analytic.timing(acts, times, net, use, depth)
        waited += int(np.any(tv.link_held_s > free.link_held_s * (1 + 1e-12)))
    assert waited >= 8  # most cases have flows that waited for a channel


def test_auto_engine_takes_the_simpy_results_for_zero_hop_latency_and_vector_refuses_it():
    """A router with zero hop latency (as the spinnaker2 and truenorth presets) is outside the vector engine's
    proof (a request can arrive at the instant of its parent's grant); auto falls back to the simpy engine's
    results (computed by its compiled port, the event engine: tests/hwmodels/test_event_engine.py)."""
    g, tr, m, chip = _case(7, None, rate=0.4)
    chip = load_preset("loihi", {"mesh_width": 5, "mesh_height": 5, "cores_per_tile": 1,
                                 "router.hop_latency_ew_s": 0.0})
    acts, times, net, use = _inputs(g, tr, m, chip, False, "pipelined")
    auto = des.timing(acts, times, net, use, None)
    assert np.array_equal(auto.step_s, des.timing(acts, times, net, use, None, engine="simpy").step_s)
    with pytest.raises(ValueError, match="engine: 'vector' needs every hop latency > 0"):
        des.timing(acts, times, net, use, None, engine="vector")
    with pytest.raises(ValueError, match="engine: 'fast' is not one of auto, simpy, event, vector"):
        des.timing(acts, times, net, use, None, engine="fast")


def test_vector_engine_hand_case_two_flows_on_one_link():
    """Two input neurons on two cores of tile (0,0) spike once each towards tile (1,0): two 1-message flows on
    one link, generic-45nm (L = O = h = 1 ns; input neurons are not updated). Both are ready at O = 1 ns; flow 0
    (lower index) is granted at 1 ns, its head is down at 2 ns and it holds the link max(L, h) = 1 ns; flow 1
    waits for that release, is granted at 2 ns and is down at 3 ns (unicast, unbounded buffers: one head down
    time per flow, its last channel's, des.FlowDown; here each flow has one channel)."""
    pops = [Population("a", (2,), INPUT), Population("z", (1,))]
    g = NetworkGraph(pops, [Projection("az", "a", "z", "dense", np.ones((1, 2)))])
    chip = load_preset("generic-45nm", {"mesh_width": 2, "mesh_height": 1, "cores_per_tile": 2,
                                        "core.neurons_per_core": 1})
    m = map_network(g, chip)
    m = dataclasses.replace(m, tile_xy=np.array([[0, 0], [0, 0], [1, 0]], np.int64))
    tr = EventTrace.from_dense({"a": np.ones((1, 1, 2)), "z": np.zeros((1, 1, 1))})
    acts, times, net, use = _inputs(g, tr, m, chip, False, "pipelined")
    (down, held), = des._play([(acts, times, use)], None, "vector")
    assert isinstance(down, des.FlowDown) and use.hops.tolist() == [1, 1]
    assert acts.flow_messages.tolist() == [1, 1] and down.values.tolist() == pytest.approx([2e-9, 3e-9], abs=1e-18)
    assert held.tolist() == pytest.approx([1e-9, 1e-9], abs=1e-18)


def test_a_group_of_batches_times_each_batch_as_alone_and_reuses_its_channel_nodes():
    """timing_batches solves the steps of several batches at once: each batch's step latencies and link hold
    times are those of the batch timed alone (simpy). The channel nodes kept in a SimCache serve a second call
    with other core latencies exactly as freshly built ones."""
    g, tr, m, chip = _case(3, 2, rate=0.4)
    tables, net = build_fanout(g, m), Network(m, chip)
    routes = lambda a: route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net)
    acts = [count_actions(g, tr, m, tables, range(s, s + 1)) for s in range(3)]
    batches = [(a, action_times(a, chip, m), routes(a)) for a in acts]
    cache = SimCache()
    together = des.timing_batches(batches, net, 2, engine="vector", keep=cache.keep)
    for (a, t, u), tv in zip(batches, together):
        ts = des.timing(a, t, net, routes(a), 2, engine="simpy")
        assert np.array_equal(ts.step_s, tv.step_s) and np.array_equal(ts.link_held_s, tv.link_held_s)
    assert (cache.misses, cache.hits) == (4, 0)  # the group's channel nodes and each batch's eject channels
    assert sum(k[0] == "des_nodes" for k in cache._store) == 1
    slow = chip.model_copy(update={"core": chip.core.model_copy(update={"message_out_latency_s": 5e-9})})
    kept = des.timing_batches([(a, action_times(a, slow, m), u) for a, _, u in batches], net, 2, engine="vector",
                              keep=cache.keep)
    assert (cache.misses, cache.hits) == (4, 4)
    fresh = des.timing_batches([(a, action_times(a, slow, m), routes(a)) for a in acts], net, 2, engine="vector")
    assert all(np.array_equal(x.step_s, y.step_s) and np.array_equal(x.link_held_s, y.link_held_s)
               for x, y in zip(kept, fresh))
    assert not all(np.array_equal(x.step_s, y.step_s) for x, y in zip(kept, together))


def test_a_hop_latency_below_float_resolution_falls_back_to_simpy():
    """With a 1e-30 s hop a child's request lands at the instant of its parent's grant (fl(G + h) == G), outside
    the vector engine's proof: it refuses, and auto takes the event engine (the simpy engine's results)."""
    g, tr, m, _ = _case(11, None, rate=0.4)
    chip = load_preset("loihi", {"mesh_width": 5, "mesh_height": 5, "cores_per_tile": 1,
                                 "router.hop_latency_ew_s": 1e-30, "router.hop_latency_ns_s": 1e-30})
    acts, times, net, use = _inputs(g, tr, m, chip, False, "pipelined")
    with pytest.raises(des_vector.NotApplicable):
        des.timing(acts, times, net, use, None, engine="vector")
    auto = des.timing(acts, times, net, use, None)
    assert np.array_equal(auto.step_s, des.timing(acts, times, net, use, None, engine="simpy").step_s)


def test_simpy_engine_schedules_at_absolute_times_exactly_through_the_public_api():
    """exact_delay gives now + d == time bit for bit, or None when no float delay lands there: 3.6e-9 + 8.5e-9
    rounds to 1.2099999999999999e-08 (a case from a contended DES step), and so do its float neighbours. AbsoluteTimeEnv.at
    runs every callback with env.now equal to the absolute time asked for, also then (a two-step detour)."""
    from hwmodels.timing.des_simpy import AbsoluteTimeEnv, exact_delay
    assert 3.6e-9 + (1.21e-8 - 3.6e-9) != 1.21e-8 and exact_delay(3.6e-9, 1.21e-8) is None
    rng = np.random.default_rng(3)
    nows = rng.random(2000) * 1e-6
    times = nows + rng.random(2000) * 1e-6
    assert all(n + exact_delay(n, t) == t for n, t in zip(nows.tolist(), times.tolist()))
    with pytest.raises(ValueError, match="before the current time"):
        exact_delay(2e-9, 1e-9)
    for now, time in [(3.6e-9, 1.21e-8), *zip(nows[:20].tolist(), times[:20].tolist())]:
        env, seen = AbsoluteTimeEnv(), []
        env.at(now, lambda _ev, t=time: env.at(t, lambda _e: seen.append((env.now, t))))
        env.run()
        assert len(seen) == 1 and seen[0][0] == seen[0][1]


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("depth", [None, 2])
def test_a_batch_over_the_node_limit_is_played_in_chunks_of_whole_steps_with_the_same_result(monkeypatch, depth,
                                                                                            workers):
    """With CHUNK_NODES below one batch's channel nodes, the vector engine plays the batch in chunks of whole steps
    (some chunks one step over the limit), `workers` chunks at once: step latencies, link hold times and done
    times equal the unchunked play bit for bit, for one batch and for a group of several."""
    monkeypatch.setattr(threads, "count", lambda: workers)
    g, tr, m, chip = _case(5, depth, rate=0.5)
    tables, net = build_fanout(g, m), Network(m, chip)
    half = tr.n_samples // 2
    acts = [count_actions(g, tr, m, tables, r) for r in (range(0, half), range(half, tr.n_samples))]
    batches = [(a, action_times(a, chip, m), route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net))
               for a in acts]
    whole = des.timing_batches(batches, net, depth, engine="vector")
    nodes = [int(u.hops.sum()) for _, _, u in batches]
    steps = [len(np.unique(a.flow_sample * a.n_steps + a.flow_step)) for a in acts]
    assert min(nodes) > 40 and min(steps) > 4
    for limit in (1, 7, 40, max(nodes) - 1):
        monkeypatch.setattr(des, "CHUNK_NODES", limit)
        for group in (batches, batches[:1]):
            chunked = des.timing_batches(group, net, depth, engine="vector")
            for x, y in zip(chunked, whole):
                assert np.array_equal(x.step_s, y.step_s) and np.array_equal(x.link_held_s, y.link_held_s)
                assert np.array_equal(x.core_done_s, y.core_done_s)


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("depth", [None, 2])
def test_the_grant_kernel_gives_the_same_grants_on_any_number_of_threads(monkeypatch, depth, multicast):
    """The grant kernel's steps split over 1, 2, 3 and 5 threads (hwmodels.kernels.threads, every range allowed
    down to one node): every channel's head arrival and hold time equal the one-thread play and the simpy engine
    bit for bit, with children CSRs (multicast) and slot terms (finite buffers)."""
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)
    for seed in range(4):
        g, tr, m, chip = _case(77 + seed, depth, rate=0.4)
        acts, times, net, use = _inputs(g, tr, m, chip, multicast, "pipelined")
        played_s, = des._play([(acts, times, use)], depth, "simpy")
        for workers in (1, 2, 3, 5):
            monkeypatch.setattr(threads, "count", lambda w=workers: w)
            assert threads.split(np.array([0, 1, 2, 3]), workers) != [(0, 3)] or workers == 1
            played_v, = des._play([(acts, times, use)], depth, "vector")
            assert _same_play(played_s, played_v, use, depth is None and not multicast)


@pytest.mark.parametrize("depth", [None, 2])
def test_a_group_is_played_in_chunks_on_threads_with_the_same_result_and_cached_chunks(monkeypatch, depth):
    """A group of batches under CHUNK_NODES is cut into one chunk of whole steps per thread (every chunk allowed
    down to one node): step latencies, link hold times and done times equal the one-thread play bit for bit on
    1-4 threads (from 2 threads with the contention-free floor of the finish computed beside, des._finish), and so
    do the cached chunks recosted for other hop latencies and link time (hwmodels.SimCache.keep,
    Nodes.with_costs) against chunks built on the recosted routes (finite buffers; unbounded ones are played from
    the route table, hwmodels.kernels.route_play, and keep no chunks)."""
    g, tr, m, chip = _case(11, depth, rate=0.5)
    slow = load_preset("loihi", {"mesh_width": 5, "mesh_height": 5, "cores_per_tile": 1, "router.buffer_depth": depth,
                                 "router.hop_latency_ew_s": 3 * chip.router.hop_latency_ew_s,
                                 "router.link_bandwidth_msgs_per_s": chip.router.link_bandwidth_msgs_per_s / 2})
    tables, net, net_slow = build_fanout(g, m), Network(m, chip), Network(m, slow)
    half = tr.n_samples // 2
    acts = [count_actions(g, tr, m, tables, r) for r in (range(0, half), range(half, tr.n_samples))]
    uses = [route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net) for a in acts]
    batches = [(a, action_times(a, chip, m), u) for a, u in zip(acts, uses)]
    moved = [(a, action_times(a, slow, m), u.recosted(net_slow)) for a, u in zip(acts, uses)]
    monkeypatch.setattr(threads, "count", lambda: 1)
    want = des.timing_batches(batches, net, depth, engine="vector")
    want_slow = des.timing_batches(moved, net_slow, depth, engine="vector")
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)
    monkeypatch.setattr(des, "FINISH_THREAD_DELIVERIES", 1)  # the schedule's floor on a second thread too
    for workers in (1, 2, 3, 4):
        monkeypatch.setattr(threads, "count", lambda w=workers: w)
        cache = SimCache()
        for group, net_of, ref in ((batches, net, want), (moved, net_slow, want_slow)):
            for got, exp in zip(des.timing_batches(group, net_of, depth, engine="vector", keep=cache.keep), ref):
                assert np.array_equal(got.step_s, exp.step_s) and np.array_equal(got.link_held_s, exp.link_held_s)
                assert np.array_equal(got.core_done_s, exp.core_done_s)
        # the recosted group reused the chunks; unbounded buffers play from the route table and keep no nodes
        assert sum(k[0] == "des_nodes" for k in cache._store) == (0 if depth is None else 1)
        flows = des._group_flows(batches)
        off = np.concatenate([[0], np.cumsum(flows[2])])
        assert len(des._chunk_ranges(flows[4], off, workers)) == min(workers, len(np.unique(flows[4])))
