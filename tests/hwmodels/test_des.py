"""DES fidelity: hand-computed back-pressure and multicast costs, exact agreement of the flow-level DES with the
message-by-message reference simulator, and DES >= analytic on random traces."""
import dataclasses

import numpy as np
import pytest
from reference_des import reference_core_done, reference_step_latencies

from hwmodels import load_preset, map_network, simulate
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.mapping.map import Mapping
from hwmodels.events.network import Network, route_use
from hwmodels.timing.core_times import action_times, exactness
from hwmodels.timing import analytic, des
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

NS = 1e-9
U = 2.0 ** -30  # dyadic time unit (~0.93 ns): sums of its multiples are exact in float64
INPUT = NeuronModel(kind="input")


def _chip(width, height, **over):
    """Loihi with dyadic latencies in U, no barrier; `over` replaces entries (values in U unless stated)."""
    base = {"mesh_width": width, "mesh_height": height, "cores_per_tile": 1, "barrier_sync_s": {1: 0.0},
            "core.message_out_latency_s": 1, "core.message_in_latency_s": 0, "router.hop_latency_ew_s": 4,
            "router.hop_latency_ns_s": 4, "core.synop_latency_s.dense": 4, "core.synop_latency_s.sparse": 5,
            "core.synop_latency_s.conv": 4, "core.neuron_active_latency_s": 3, "core.neuron_inactive_latency_s": 2,
            "core.neuron_access_latency_s": 0, "core.neuron_access_rule": "window", "core.neuron_update_rule": "all",
            "link_time": 4}
    base.update(over)
    link = base.pop("link_time")
    ov = {k: (v * U if k.startswith(("core.", "router.")) and k.split(".")[1].endswith("_s") else v)
          for k, v in base.items()}
    ov["router.link_bandwidth_msgs_per_s"] = 1.0 / (link * U)
    return load_preset("loihi", ov)


def _manual_mapping(graph, tiles: dict[str, list[tuple[int, int]]], chip) -> Mapping:
    """One core per entry of tiles[population] (neurons split evenly in order), at the given tiles."""
    core_of, pops, neurons, xy = {}, [], [], []
    for name, pop in graph.populations.items():
        spots = tiles[name]
        split = np.array_split(np.arange(pop.size), len(spots))
        core_of[name] = np.concatenate([np.full(len(s), len(pops) + i) for i, s in enumerate(split)]).astype(np.int64)
        pops += [name] * len(spots)
        neurons += [len(s) for s in split]
        xy += spots
    n = len(pops)
    return Mapping(core_of, tuple(pops), np.array(neurons, np.int64), np.zeros(n, np.int64),
                   np.array(xy, np.int64), "manual", chip.name)


def _timings(graph, trace, mapping, chip, multicast=False, semantics="pipelined"):
    tables = build_fanout(graph, mapping, multicast)
    acts = count_actions(graph, trace, mapping, tables, range(trace.n_samples), semantics)
    times = action_times(acts, chip, mapping)
    net = Network(mapping, chip)
    use = route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)
    depth = chip.router.buffer_depth
    return des.timing(acts, times, net, use, depth), analytic.timing(acts, times, net, use, depth), acts


def _backpressure_case(depth):
    """4 x 1 mesh. a (2 spikes, core 0, tile 0) -> z (tile 3): links l0, l1, l2. c (3 spikes, tile 2) -> z holds
    l2 first. d (1 spike, core 1, tile 0) -> y (5 synapses, tile 1) needs l0 right after a."""
    pops = [Population("a", (2,), INPUT), Population("d", (1,), INPUT), Population("c", (3,), INPUT),
            Population("z", (1,)), Population("y", (5,))]
    projs = [Projection("az", "a", "z", "dense", np.ones((1, 2))), Projection("cz", "c", "z", "dense", np.ones((1, 3))),
             Projection("dy", "d", "y", "dense", np.ones((5, 1)))]
    g = NetworkGraph(pops, projs)
    chip = _chip(4, 1, **({"router.buffer_depth": depth} if depth else {}))
    m = _manual_mapping(g, {"a": [(0, 0)], "d": [(0, 0)], "c": [(2, 0)], "z": [(3, 0)], "y": [(1, 0)]}, chip)
    spikes = {n: np.ones((1, 1) + p.shape) for n, p in g.populations.items() if p.is_input}
    spikes.update({n: np.zeros((1, 1) + p.shape) for n, p in g.populations.items() if not p.is_input})
    return g, EventTrace.from_dense(spikes), m, chip


@pytest.mark.parametrize("depth, d_grant", [(None, 9), (1, 13)])
def test_buffer_of_depth_one_holds_the_upstream_link_exactly_four_units_longer(depth, d_grant):
    """L = h = 4, O = 1 (units U). c: l2 granted at 1, held to 1 + 2 x 4 + 4 = 13. a: head at 1 on l0, 5 on l1,
    waits at router 2 until 13. Unbuffered, a's tail crosses l1 into router 2 (s = 9), so l0 frees at
    max(5 + 4, 9) = 9; with one slot its tail may start l1 only when the head starts l2 (13), so l0 frees at 13.
    d waits for l0 until then, reaches core y at grant + 4 + 4 and works 5 synops x 4: step = grant + 28."""
    g, tr, m, chip = _backpressure_case(depth)
    d, a, _ = _timings(g, tr, m, chip)
    assert d.step_s[0, 0] == (d_grant + 28) * U
    assert a.step_s[0, 0] == (1 + 8 + 20) * U  # analytic: d's head never waits
    assert np.array_equal(d.step_s, reference_step_latencies(g, tr, m, chip))
    held = dict(zip(d.link_ids.tolist(), d.link_held_s.tolist()))
    l0 = Network(m, chip).link_id((0, 0, 1, 0))
    assert held[l0] == ((d_grant - 1) + 4) * U  # a holds l0 from 1 to d_grant, d for its one hop (4)


def _tree_case(multicast):
    """Source core at (0,0) sends 2 spikes to one neuron on each of cores at (2,0), (1,1), (2,2) of a 3 x 3 mesh."""
    pops = [Population("src", (2,), INPUT), Population("dst", (3,))]
    g = NetworkGraph(pops, [Projection("fc", "src", "dst", "dense", np.ones((3, 2)))])
    chip = load_preset("loihi", {"mesh_width": 3, "mesh_height": 3, "cores_per_tile": 1})
    m = _manual_mapping(g, {"src": [(0, 0)], "dst": [(2, 0), (1, 1), (2, 2)]}, chip)
    tr = EventTrace.from_dense({"src": np.ones((1, 1, 2)), "dst": np.zeros((1, 1, 3))})
    return simulate(g, tr, chip, m, multicast=multicast)


def test_multicast_tree_to_three_destinations_hand_counted():
    """XY tree: (0,0)->(1,0)->(2,0), (1,0)->(1,1), (2,0)->(2,1)->(2,2): 2 E-W + 3 N-S links per message, one
    message out; unicast: 3 messages out and 5 E-W + 3 N-S hops. Loihi: out 1.7, E-W 3.0, N-S 4.0 pJ."""
    uni, multi = _tree_case(False), _tree_case(True)
    assert (multi.messages, multi.hops, uni.messages, uni.hops) == (2, 10, 6, 16)
    assert multi.energy_breakdown_j["network"] == pytest.approx(2 * (1.7 + 2 * 3.0 + 3 * 4.0) * 1e-12, rel=1e-12)
    assert uni.energy_breakdown_j["network"] == pytest.approx(2 * (3 * 1.7 + 5 * 3.0 + 3 * 4.0) * 1e-12, rel=1e-12)
    assert multi.synops == uni.synops == 6 and multi.cores["messages_in"].tolist() == [0, 2, 2, 2]
    assert multi.links["messages"].to_dict() == {"(0,0)->(1,0)": 2, "(1,0)->(1,1)": 2, "(1,0)->(2,0)": 2,
                                                 "(2,0)->(2,1)": 2, "(2,1)->(2,2)": 2}
    assert uni.links.loc["(0,0)->(1,0)", "messages"] == 6
    assert multi.links["busy_s"].tolist() == pytest.approx([2 / 3.44e9] * 5, rel=1e-12)


def _case_chip(depth):
    return _chip(4, 4, **{"router.hop_latency_ew_s": 3, "core.message_out_latency_s": 2,
                          "core.message_in_latency_s": 1, "core.neuron_active_latency_s": 1,
                          "core.neuron_inactive_latency_s": 1}, **({"router.buffer_depth": depth} if depth else {}))


def _random_case(seed, depth, multicast, rate=0.45):
    """input (16) -> h1 (12) -> h2 (8) -> out (4), plus a skip input -> h2; 4 neurons per core, cores on random
    tiles of a 4 x 4 mesh; L = 4, h = 3 (E-W) / 4 (N-S), O = 2, message in 1, synop 4/5 (dense/sparse)."""
    rng = np.random.default_rng(seed)
    sizes = {"input": 16, "h1": 12, "h2": 8, "out": 4}
    pops = [Population(n, (s,), INPUT if n == "input" else NeuronModel()) for n, s in sizes.items()]
    pairs = [("input", "h1"), ("h1", "h2"), ("h2", "out"), ("input", "h2")]
    projs = [Projection(f"{a}_{b}", a, b, "dense", rng.normal(size=(sizes[b], sizes[a])) * (rng.random((sizes[b], sizes[a])) < 0.6),
                        storage=("sparse", "dense")[i % 2]) for i, (a, b) in enumerate(pairs)]
    g = NetworkGraph(pops, projs)
    chip = _case_chip(depth)
    m = map_network(g, load_preset("loihi", {"core.neurons_per_core": 4}))
    slots = rng.permutation(16)[:m.cores_used]
    m = dataclasses.replace(m, tile_xy=np.stack([slots % 4, slots // 4], axis=1).astype(np.int64))
    tr = EventTrace.from_dense({n: rng.random((2, 3, s)) < rate for n, s in sizes.items()})
    return g, tr, m, chip


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("depth", [None, 1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flow_level_des_equals_message_level_reference(seed, depth, multicast):
    """Exact (bit-identical) per-core finish times, hence step latencies, under hwmodels.timing.core_times.exactness,
    with link contention."""
    g, tr, m, chip = _random_case(seed, depth, multicast)
    d, a, acts = _timings(g, tr, m, chip, multicast)
    assert exactness(chip, acts.formats) == {"receive": True, "buffers": True}
    ref = reference_core_done(g, tr, m, chip, "pipelined", multicast)
    assert np.array_equal(d.core_done_s, ref)  # every core of every step, not only the slowest
    assert np.any(d.link_held_s > a.link_held_s)  # some flow waited: the case has contention


@pytest.mark.parametrize("semantics", ["pipelined", "layer_serial"])
@pytest.mark.parametrize("access, update", [("every_step", "active"), ("window", "active"), ("every_step", "all")])
def test_soma_rules_equal_the_neuron_by_neuron_reference(access, update, semantics):
    """The soma time under every neuron rule (accesses in fill/drain steps, updates of recorded-active neurons
    only, residual potentials after the window) equals the reference, which walks neuron by neuron; one
    population ("h2") has no activity record and falls back to the window rule."""
    g, tr, m, _ = _random_case(3, None, False)
    rng = np.random.default_rng(7)
    act = {n: rng.random((2, 4) + g.populations[n].shape) < 0.4 for n in ("h1", "out")}
    spikes = {n: tr.to_dense(n, p.shape) for n, p in g.populations.items()}
    tr = EventTrace.from_dense(spikes, activity=act)
    chip = _case_chip(None).model_copy(update={"core": _case_chip(None).core.model_copy(update={
        "neuron_access_rule": access, "neuron_update_rule": update, "neuron_access_latency_s": 1 * U})})
    d, _, _ = _timings(g, tr, m, chip, semantics=semantics)
    assert np.array_equal(d.core_done_s, reference_core_done(g, tr, m, chip, semantics))
    if access == "every_step":  # the fill steps (before h2's first timestep) still cost every h2 core its accesses
        assert np.all(d.core_done_s[:, 0, np.array(m.core_population) == "h2"] > 0)


def test_reference_agrees_under_layer_serial_and_buffers_change_latency():
    g, tr, m, chip = _random_case(5, 1, False, rate=0.8)
    d, _, _ = _timings(g, tr, m, chip, semantics="layer_serial")
    assert np.array_equal(d.step_s, reference_step_latencies(g, tr, m, chip, "layer_serial"))
    unbuffered, _, _ = _timings(g, tr, m, _case_chip(None), semantics="layer_serial")
    # back-pressure slows some steps (not a monotone property in general: another grant order can win time)
    assert np.any(d.step_s > unbuffered.step_s)


@pytest.mark.parametrize("semantics", ["pipelined", "layer_serial"])
def test_des_never_below_analytic_on_many_random_traces(semantics):
    """Property: 40 random cases (buffers 1, 2, 4, None; unicast and multicast; outside the exactness
    conditions too: Loihi link time and hop latencies with small buffers)."""
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        depth = [None, 1, 2, 4][seed % 4]
        g, tr, m, _ = _random_case(seed, depth, seed % 2 == 1, rate=rng.uniform(0.1, 0.7))
        chip = load_preset("loihi", {"mesh_width": 4, "mesh_height": 4, "cores_per_tile": 1,
                                     "router.buffer_depth": depth,
                                     "router.link_bandwidth_msgs_per_s": float(rng.choice([3.44e9, 2e8]))})
        d, a, _ = _timings(g, tr, m, chip, seed % 2 == 1, semantics)
        assert np.all(d.step_s >= a.step_s)


def test_des_equals_analytic_when_no_two_flows_share_a_link():
    """Two sources on tiles (0,0) and (0,1) each send 3 spikes east to their own destination tile: disjoint XY
    paths, so nothing waits; the head of each reaches its core after O + 2 hops + L."""
    pops = [Population("s0", (3,), INPUT), Population("s1", (3,), INPUT), Population("t", (2,))]
    projs = [Projection("p0", "s0", "t", "dense", np.array([[1.0] * 3, [0.0] * 3]), storage="sparse"),
             Projection("p1", "s1", "t", "dense", np.array([[0.0] * 3, [1.0] * 3]), storage="sparse")]
    g = NetworkGraph(pops, projs)
    chip = _chip(3, 2)
    m = _manual_mapping(g, {"s0": [(0, 0)], "s1": [(0, 1)], "t": [(2, 0), (2, 1)]}, chip)
    tr = EventTrace.from_dense({"s0": np.ones((1, 1, 3)), "s1": np.ones((1, 1, 3)), "t": np.zeros((1, 1, 2))})
    d, a, _ = _timings(g, tr, m, chip)
    assert np.array_equal(d.step_s, a.step_s)
    assert d.step_s[0, 0] == (1 + 8 + 4 + 3 * 5) * U  # head ready 1, 2 hops, eject, 3 sparse synops of 5


def test_exactness_conditions():
    assert exactness(load_preset("loihi"), ("dense", "conv")) == {"receive": True, "buffers": True}
    small = load_preset("loihi", {"router.buffer_depth": 4})  # 4 x 0.29 ns < 6.5 ns N-S hop
    assert exactness(small, ("dense",))["buffers"] is False
    slow_in = load_preset("loihi", {"core.message_in_latency_s": 5e-9})
    assert exactness(slow_in, ("dense",))["receive"] is False


def _with_receive_mode(chip, mode):
    """The chip with core.receive_mode set (a field hwmodels.timing.core_times reads when the spec has it)."""
    return chip.model_copy(update={"core": chip.core.model_copy(update={"receive_mode": mode})})


def test_serial_receive_mode_adds_message_in_to_every_message():
    """No link shared (test above): 3 messages of 1 sparse synop (5 U) each, message in 3 U. Overlap: head + 3
    then max(3 x 5, 3 x 3) = 15; serial: 3 x (3 + 5) = 24 after the head's arrival at 13."""
    pops = [Population("s", (3,), INPUT), Population("t", (1,))]
    g = NetworkGraph(pops, [Projection("p", "s", "t", "dense", np.ones((1, 3)), storage="sparse")])
    chip = _chip(3, 1, **{"core.message_in_latency_s": 3})
    m = _manual_mapping(g, {"s": [(0, 0)], "t": [(2, 0)]}, chip)
    tr = EventTrace.from_dense({"s": np.ones((1, 1, 3)), "t": np.zeros((1, 1, 1))})
    over, _, _ = _timings(g, tr, m, chip)
    serial_chip = _with_receive_mode(chip, "serial")
    serial, _, _ = _timings(g, tr, m, serial_chip)
    assert over.step_s[0, 0] == (13 + 3 + 15) * U and serial.step_s[0, 0] == (13 + 24) * U
    for c in (chip, serial_chip):
        assert np.array_equal(_timings(g, tr, m, c)[0].step_s, reference_step_latencies(g, tr, m, c))
    with pytest.raises(ValueError, match="core.receive_mode: 'fifo' is not one of overlap, serial"):
        _timings(g, tr, m, _with_receive_mode(chip, "fifo"))


@pytest.mark.parametrize("seed", [0, 1])
def test_serial_receive_mode_equals_reference_with_contention(seed):
    g, tr, m, chip = _random_case(seed, 2, seed == 1)
    chip = _with_receive_mode(chip, "serial")
    d, _, acts = _timings(g, tr, m, chip, seed == 1)
    assert exactness(chip, acts.formats) == {"receive": True, "buffers": True}
    assert np.array_equal(d.core_done_s, reference_core_done(g, tr, m, chip, "pipelined", seed == 1))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("multicast", [False, True])
def test_flow_level_des_equals_the_reference_across_chip_links(seed, multicast):
    """The random case on two 2 x 4 chips side by side (chip-to-chip links between tile columns 1 and 2, 7 U):
    per-core finish times equal the message-level reference, which prices a link leaving a chip's mesh itself."""
    g, tr, m, _ = _random_case(seed, None, multicast)
    chip = _chip(2, 4, **{"n_chips": 2, "router.hop_latency_ew_s": 3, "core.message_out_latency_s": 2,
                          "core.message_in_latency_s": 1, "core.neuron_active_latency_s": 1,
                          "core.neuron_inactive_latency_s": 1, "router.chip_link_latency_s": 7,
                          "router.chip_link_energy_j": 1e-11})
    m = dataclasses.replace(m, mesh_shape=(2, 4))
    d, _, _ = _timings(g, tr, m, chip, multicast)
    ref = reference_core_done(g, tr, m, chip, "pipelined", multicast)
    assert np.array_equal(d.core_done_s, ref)
    crossing = [(x, y) for x, y in m.tile_xy.tolist() if x >= 2]
    assert 0 < len(crossing) < m.cores_used  # cores on both chips: messages cross the chip link


@pytest.mark.parametrize("link_time", [4, 16, 64])
def test_a_slow_link_spaces_a_train_and_its_last_message_sets_the_finish(link_time):
    """3 messages east over 2 hops, 1 sparse synop (5 U) each. They leave the source L apart (L = link time >=
    message out 1 U): message k starts on the 2nd link at 5 + (k - 1) L and reaches the core 4 + L later; the
    unit finishes the last one 5 U after it. L = 4: the unit paces the train (head 13 + 3 x 5 = 28); L = 16:
    25 + 2 x 16 + 5 = 62; L = 64: 73 + 2 x 64 + 5 = 206. The analytic model has no contention here, so it
    gives the same; both equal the message-level reference."""
    pops = [Population("s", (3,), INPUT), Population("t", (1,))]
    g = NetworkGraph(pops, [Projection("p", "s", "t", "dense", np.ones((1, 3)), storage="sparse")])
    chip = _chip(3, 1, link_time=link_time)
    m = _manual_mapping(g, {"s": [(0, 0)], "t": [(2, 0)]}, chip)
    tr = EventTrace.from_dense({"s": np.ones((1, 1, 3)), "t": np.zeros((1, 1, 1))})
    d, a, acts = _timings(g, tr, m, chip)
    want = {4: 28, 16: 62, 64: 206}[link_time]
    assert d.step_s[0, 0] == a.step_s[0, 0] == want * U
    assert np.array_equal(d.step_s, reference_step_latencies(g, tr, m, chip))
    assert exactness(chip, acts.formats)["receive"] is (link_time <= 5)
