"""Density congestion model (hwmodels.timing.des_density, router.congestion_model "density"): hand-computed step
latencies on tiny nets (one core fanning out to two receivers, the interleaved send order, the blocking rule,
multicast), per-neuron soma counts that add up to the pipeline's, messages that match the action counts, and
equality with the flow-level DES where congestion never beats the route latency and send order does not matter."""
import numpy as np
import pytest

from hwmodels import SimCache, load_preset, map_network, simulate
from hwmodels.timing import des, des_density
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.mapping.map import Mapping
from hwmodels.events.network import Network, route_use
from hwmodels.events.neuron_rules import neuron_work
from hwmodels.timing.core_times import action_times, exactness
from hwmodels.chip.signatures import timing_signature
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

U = 2.0 ** -30  # dyadic time unit: sums of its multiples are exact in float64
INPUT = NeuronModel(kind="input")


def _chip(width, height, per_tile, link=1, **over):
    """loihi-sanafe (serial receive, density model) with latencies in U: message out 1, message in 2, synop 2,
    hop 1, link time `link`, no soma time, no barrier, buffers of 16; `over` replaces entries (latencies, the
    keys with a part ending in _s, in U)."""
    lat = {"core.message_out_latency_s": 1, "core.message_in_latency_s": 2, "core.synop_latency_s.dense": 2,
           "core.synop_latency_s.sparse": 2, "core.neuron_access_latency_s": 0,
           "core.neuron_active_latency_s": 0, "core.neuron_inactive_latency_s": 0,
           "router.hop_latency_ew_s": 1, "router.hop_latency_ns_s": 1}
    other = {k: over.pop(k) for k in list(over) if not any(p.endswith("_s") for p in k.split("."))}
    lat.update(over)
    ov = {k: v * U for k, v in lat.items()}
    ov.update({"mesh_width": width, "mesh_height": height, "cores_per_tile": per_tile, "barrier_sync_s": {1: 0.0},
               "router.link_bandwidth_msgs_per_s": 1.0 / (link * U), "router.buffer_depth": 16, **other})
    return load_preset("loihi-sanafe", ov)


def _mapping(graph, cores: dict[str, list[tuple[tuple[int, int], int]]], chip) -> Mapping:
    """cores[population] = [(tile, neurons), ...]: one core per entry, neurons in C order."""
    core_of, pops, neurons, xy = {}, [], [], []
    for name, entries in cores.items():
        core_of[name] = np.repeat(np.arange(len(pops), len(pops) + len(entries)), [n for _, n in entries])
        pops += [name] * len(entries)
        neurons += [n for _, n in entries]
        xy += [t for t, _ in entries]
    n = len(pops)
    return Mapping(core_of, tuple(pops), np.array(neurons, np.int64), np.zeros(n, np.int64), np.array(xy, np.int64),
                   "manual", chip.name)


def _timings(graph, trace, mapping, chip, multicast=False, semantics="pipelined"):
    """(density Timing, flow-level DES Timing, Messages, Actions) of all samples."""
    tables = build_fanout(graph, mapping, multicast, chip.core)
    samples = range(trace.n_samples)
    acts = count_actions(graph, trace, mapping, tables, samples, semantics)
    times = action_times(acts, chip, mapping)
    net = Network(mapping, chip)
    use = route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)
    msgs = des_density.messages(graph, trace, mapping, tables, samples, semantics, chip)
    one = lambda k: des_density.messages(graph, trace, mapping, tables, range(k, k + 1), semantics, chip)
    dens = des_density.timing(acts, times, net, use, chip, one)
    return dens, des.timing(acts, times, net, use, chip.router.buffer_depth), msgs, acts


def _fan_out_case(depth=16, multicast=False):
    """Input a (6 neurons, core 0, tile (0,0)) -> b0 (core 1, same tile) <- a0..a4 and b1 (core 2, tile (1,0))
    <- a5, sparse storage; every a neuron spikes once."""
    w = np.zeros((2, 6))
    w[0, :5], w[1, 5] = 1.0, 1.0
    g = NetworkGraph([Population("a", (6,), INPUT), Population("b", (2,))],
                     [Projection("ab", "a", "b", "dense", w, storage="sparse")])
    chip = _chip(2, 1, 2, **{"router.buffer_depth": depth})
    m = _mapping(g, {"a": [((0, 0), 6)], "b": [((0, 0), 1), ((1, 0), 1)]}, chip)
    return g, EventTrace.from_dense({"a": np.ones((1, 1, 6)), "b": np.zeros((1, 1, 2))}), m, chip


def test_one_core_fanning_out_to_two_receivers_hand_computed():
    """Units U. Messages ready at 1..6 (out 1 each, no soma); work 2 + 2 = 4 each. To core 1 (0 hops): key
    {inj}, w 1/2, lat0 = link 1; to core 2 (1 hop): keys {inj, link}, w 1/3, lat0 = hop 1 + link 1 = 2.
    Core 1 starts m1..m5 at 2, 6, 10, 14, 18 (its queue grows; each start retires one message): done 22.
    m6 at 6 (m1, m2 retired): m3..m5 in flight, D = 3 x 1/2 = 1.5 on inj, mean 4: net = max(2, 1.5 x 4 / 2) = 3,
    start 9, done 13 (the flow-level DES, without the density term: 6 + 2 + 4 = 12)."""
    g, tr, m, chip = _fan_out_case()
    dens, flow, _, _ = _timings(g, tr, m, chip)
    assert dens.core_done_s[0, 0].tolist() == [6 * U, 22 * U, 13 * U]
    assert flow.core_done_s[0, 0].tolist() == [6 * U, 22 * U, 12 * U]
    assert dens.step_s[0, 0] == 22 * U


def test_blocking_above_hops_plus_one_times_buffer_depth_delays_the_sender():
    """Buffer depth 1: caps 1 (0 hops) and 2 (1 hop). m1..m4 as before (D <= 1). m5 at 5: m2..m4 in flight,
    D = 1.5 > 1: blocked (1.5 - 1) x 4 = 2, sent at 7, still started at 18 (core 1 done 22). m6 is ready at
    6 + 2 = 8: m2 (started 6) retired, D = 1.5 <= 2, net = max(2, 3) = 3, start 11, done 15. The send side ends
    at 6 + 2 = 8."""
    g, tr, m, chip = _fan_out_case(depth=1)
    dens, _, _, _ = _timings(g, tr, m, chip)
    assert dens.core_done_s[0, 0].tolist() == [8 * U, 22 * U, 15 * U]


def test_multicast_writes_one_message_per_spike():
    """With multicast each spike is one message out: the six spikes are ready at 1..6 as before (each has one
    destination), and the send side is the same; a spike with two destinations would send both copies at once."""
    g, tr, m, chip = _fan_out_case()
    dens, _, msgs, _ = _timings(g, tr, m, chip, multicast=True)
    assert msgs.out.tolist() == [1, 2, 3, 4, 5, 6]
    assert dens.core_done_s[0, 0].tolist() == [6 * U, 22 * U, 13 * U]
    w = np.ones((2, 1))
    g2 = NetworkGraph([Population("a", (1,), INPUT), Population("b", (2,))], [Projection("ab", "a", "b", "dense", w)])
    m2 = _mapping(g2, {"a": [((0, 0), 1)], "b": [((0, 0), 1), ((1, 0), 1)]}, chip)
    tr2 = EventTrace.from_dense({"a": np.ones((1, 1, 1)), "b": np.zeros((1, 1, 2))})
    assert _timings(g2, tr2, m2, chip, multicast=True)[2].out.tolist() == [1, 1]
    assert _timings(g2, tr2, m2, chip, multicast=False)[2].out.tolist() == [1, 2]


def _interleave_case(spiker: int):
    """x (input, silent) -> h (3 neurons, core 1) -> o (1 neuron, core 2), one tile; h neuron `spiker` spikes
    at t = 0 (hardware step 1). Soma: access 1, update 2 (quiet) / 3 (spiking), every neuron of h updated in
    its window (update rule "all")."""
    g = NetworkGraph([Population("x", (1,), INPUT), Population("h", (3,)), Population("o", (1,))],
                     [Projection("xh", "x", "h", "dense", np.ones((3, 1))),
                      Projection("ho", "h", "o", "dense", np.ones((1, 3)))])
    chip = _chip(1, 1, 4, **{"core.neuron_access_latency_s": 1, "core.neuron_inactive_latency_s": 2,
                             "core.neuron_active_latency_s": 3, "core.neuron_update_rule": "all"})
    m = _mapping(g, {"x": [((0, 0), 1)], "h": [((0, 0), 3)], "o": [((0, 0), 1)]}, chip)
    h = np.zeros((1, 1, 3))
    h[0, 0, spiker] = 1
    return g, EventTrace.from_dense({"x": np.zeros((1, 1, 1)), "h": h, "o": np.zeros((1, 1, 1))}), m, chip


@pytest.mark.parametrize("spiker, done", [(0, 10), (1, 13), (2, 16)])
def test_a_neuron_sends_right_after_its_own_soma(spiker, done):
    """Step 1: h's soma is 3 + 3 + 3 with the spiking neuron 1 + 3 = 4 (10 in all). Its message leaves after the
    soma of the neurons up to it + out 1 (5, 8 or 11), reaches o after link 1 and takes 2 + 2 = 4: done at
    sent + 5. The step ends with the later of that and h's loop (11). The flow-level DES sends after the whole
    loop (11): done 16, equal only for the last neuron."""
    g, tr, m, chip = _interleave_case(spiker)
    dens, flow, msgs, _ = _timings(g, tr, m, chip)
    assert msgs.soma.tolist() == [[spiker + 1, 1, spiker]]  # accesses, spiking, quiet updates up to the sender
    assert dens.core_done_s[0, 1].tolist() == [0.0, 11 * U, done * U]
    assert dens.step_s[0, 1] == max(done, 11) * U
    assert flow.step_s[0, 1] == 16 * U


def _chain_case(seed):
    """x (6, input, tile (0,0)) -> h (5, tile (1,0)) -> o (2, tile (2,0)), dense; every core sends to one core,
    over its own link. Units U: out 4 <= message in 4 + synop 1 (exactness), hop 32, link 2, buffers 16 (16 x 2
    >= 32). Congestion stays below the route latency 34: at most 6 messages in flight on a route (D <= 6 x 2/3),
    mean work <= 4 + 5 x 1, so D x mean / 2 <= 18. No soma time, so the send order is the same in both."""
    rng = np.random.default_rng(seed)
    g = NetworkGraph([Population("x", (6,), INPUT), Population("h", (5,)), Population("o", (2,))],
                     [Projection("xh", "x", "h", "dense", rng.normal(size=(5, 6))),
                      Projection("ho", "h", "o", "dense", rng.normal(size=(2, 5)))])
    chip = _chip(3, 1, 1, link=2, **{"core.message_out_latency_s": 4, "core.message_in_latency_s": 4,
                                     "core.synop_latency_s.dense": 1, "router.hop_latency_ew_s": 32})
    m = _mapping(g, {"x": [((0, 0), 6)], "h": [((1, 0), 5)], "o": [((2, 0), 2)]}, chip)
    tr = EventTrace.from_dense({n: rng.random((3, 4) + p.shape) < 0.5 for n, p in g.populations.items()})
    return g, tr, m, chip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_flow_level_des_without_congestion_or_interleaving(seed):
    g, tr, m, chip = _chain_case(seed)
    dens, flow, msgs, acts = _timings(g, tr, m, chip)
    assert exactness(chip, acts.formats) == {"receive": True, "buffers": True}
    assert len(msgs.src) > 20
    assert np.array_equal(dens.core_done_s, flow.core_done_s) and np.array_equal(dens.step_s, flow.step_s)


def _mixed(nets, rng, n_samples=2, n_timesteps=3):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples, n_timesteps, 0.3)
    act = {n: rng.random((n_samples, n_timesteps + 1) + p.shape) < 0.4 for n, p in g.populations.items()
           if not p.is_input and n != "p1"}  # p1 has no activity record: the window rule
    spikes = {n: tr.to_dense(n, p.shape) for n, p in g.populations.items()}
    return g, EventTrace.from_dense(spikes, activity=act)


@pytest.mark.parametrize("semantics", ["pipelined", "layer_serial"])
@pytest.mark.parametrize("access, update", [("every_step", "active"), ("window", "all"), ("window", "active")])
def test_neuron_counts_add_up_to_the_pipeline_soma_counts(nets, rng, access, update, semantics):
    """Summed over each core's neurons, the per-neuron (accessed, spiking, quiet) counts are neuron_work's, so
    the per-neuron soma times add up to core_times.action_times's update_s."""
    g, tr = _mixed(nets, rng)
    chip = load_preset("loihi-sanafe", {"core.neurons_per_core": 40, "core.neuron_access_rule": access,
                                        "core.neuron_update_rule": update})
    m = map_network(g, chip)
    acts = count_actions(g, tr, m, build_fanout(g, m, False, chip.core), range(tr.n_samples), semantics)
    want = np.stack(neuron_work(acts, chip))  # (3, n_samples, n_steps, n_cores)
    got = np.zeros_like(want)
    for s in range(tr.n_samples):
        for name in g.populations:
            cnt = des_density.neuron_counts(g, tr, s, semantics, chip, name)
            np.add.at(got[:, s], (slice(None), slice(None), m.core_of_neuron[name]), cnt.astype(np.int64))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("multicast", [False, True])
def test_messages_are_the_counted_messages(nets, rng, multicast):
    """Per (sample, step, source core): the messages out (last `out`) equal the flows' messages; per (sample,
    step, destination core): the synaptic events equal the deliveries'; the soma prefix of a core's last sender
    never exceeds its soma total."""
    g, tr = _mixed(nets, rng)
    chip = load_preset("loihi-sanafe", {"core.neurons_per_core": 40})
    m = map_network(g, chip)
    tables = build_fanout(g, m, multicast, chip.core)
    acts = count_actions(g, tr, m, tables, range(tr.n_samples))
    msgs = des_density.messages(g, tr, m, tables, range(tr.n_samples), "pipelined", chip)
    n, size = acts.n_cores, acts.n_samples * acts.n_steps * acts.n_cores
    sent = np.zeros(size, np.int64)
    np.maximum.at(sent, msgs.step * n + msgs.src, msgs.out)
    flows = np.bincount((acts.flow_sample * acts.n_steps + acts.flow_step) * n + acts.flow_src,
                        weights=acts.flow_messages, minlength=size)
    assert np.array_equal(sent, flows)
    f = acts.deliv_flow
    dkey = (acts.flow_sample[f] * acts.n_steps + acts.flow_step[f]) * n + acts.deliv_dst
    for j in range(len(acts.formats)):
        got = np.bincount(msgs.step * n + msgs.dst, weights=msgs.events[:, j], minlength=size)
        assert np.array_equal(got, np.bincount(dkey, weights=acts.deliv_events[:, j], minlength=size))
    total = np.stack(neuron_work(acts, chip)).reshape(3, -1)
    assert np.all(msgs.soma.T <= total[:, msgs.step * n + msgs.src])


def test_simulate_dispatches_on_the_congestion_model(nets, rng):
    """simulate(model="des") uses the density model when the chip selects it (and a SimCache keeps the two
    apart: congestion_model is in the timing signature); the analytic model ignores the field."""
    g, tr, m, chip = _fan_out_case()
    links = chip.model_copy(update={"router": chip.router.model_copy(update={"congestion_model": "links"})})
    assert timing_signature(links) != timing_signature(chip)
    cache = SimCache()
    for c in (None, cache):
        assert simulate(g, tr, chip, m, cache=c).latency_s == 22 * U
        assert simulate(g, tr, links, m, cache=c).latency_s == 22 * U  # core 1 dominates in both
    r_dens, r_links = simulate(g, tr, chip, m), simulate(g, tr, links, m)
    assert r_dens.energy_j == r_links.energy_j
    assert simulate(g, tr, chip, m, model="analytic").latency_s == simulate(g, tr, links, m, model="analytic").latency_s
    g2, tr2, m2, chip2 = _interleave_case(1)
    assert simulate(g2, tr2, chip2, m2).latency_per_step_s[1] == 13 * U
    flow = chip2.model_copy(update={"router": chip2.router.model_copy(update={"congestion_model": "links"})})
    assert simulate(g2, tr2, flow, m2).latency_per_step_s[1] == 16 * U


def test_unknown_congestion_model_is_rejected():
    with pytest.raises(ValueError, match="congestion_model"):
        load_preset("loihi-sanafe", {"router.congestion_model": "booksim"})
    assert load_preset("loihi").router.congestion_model == "links"
    assert load_preset("loihi-sanafe").router.congestion_model == "density"


def test_samples_played_beside_the_next_ones_messages_equal_the_serial_loop(nets, rng, monkeypatch):
    """A batch of random samples: step latencies and core finish times with each sample's play on a worker thread
    (beside the next sample's messages) equal the one-thread loop's bit for bit, with blocking buffers too."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=5, n_timesteps=3, rate=0.3)
    for depth in (None, 1):
        chip = load_preset("loihi-sanafe", {"core.neurons_per_core": 16, "cores_per_tile": 2,
                                            "router.buffer_depth": depth})
        m = map_network(g, chip)
        both = simulate(g, tr, chip, m)
        with monkeypatch.context() as mp:
            mp.setattr(des_density.threads, "count", lambda: 1)
            one = simulate(g, tr, chip, m)
        assert both.latency_s > 0 and np.array_equal(both.latency_per_step_s, one.latency_per_step_s)
        assert both.samples.equals(one.samples) and both.cores.equals(one.cores)


def test_route_numbering_by_dict_beyond_the_dense_table_equals_the_table(monkeypatch):
    """_RouteTable numbers pairs in order of first appearance (increasing within a call) the same way with its dense
    table and with the dict it uses for chips of more than DENSE_PAIRS core pairs."""
    g, tr, m, chip = _fan_out_case()
    net, pairs = Network(m, chip), [np.array([5, 1, 5, 3]), np.array([3, 0, 2, 5, 1])]
    dense = des_density._RouteTable(net, chip, m.cores_used, 1e-9)
    monkeypatch.setattr(des_density, "DENSE_PAIRS", 0)
    sparse = des_density._RouteTable(net, chip, m.cores_used, 1e-9)
    assert isinstance(sparse.index, dict) and not isinstance(dense.index, dict)
    for p in pairs:
        p = p % (m.cores_used ** 2)
        assert np.array_equal(dense.of(p), sparse.of(p))
    assert [r[5] for r in dense.rows] == [r[5] for r in sparse.rows] and len(dense.rows) == len(sparse.rows) > 2
    for a, b in zip(dense.arrays(), sparse.arrays()):
        assert np.array_equal(a, b)
