"""Golden energy/latency tests on hand-built networks, DES vs analytic agreement, SimResult contents."""
import subprocess
import sys

import numpy as np
import pytest

from hwmodels import MappingError, load_preset, map_network, simulate
from hwmodels.timing import analytic, des
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.events.network import Network, route_use
from hwmodels.timing.core_times import action_times
from hwmodels.trace import EventTrace, NetworkGraph, Population, Projection

NS = 1e-9


def _one_spike(nets):
    """input (10) -dense-> IF (2); 2 neurons per core, 1 core per tile on a 3 x 2 mesh: the input neurons sit on
    tiles (0,0)..(1,1), the IF neurons on tile (2,1). Input neuron 0 spikes at t=0, IF neuron 1 at t=0."""
    chip = load_preset("loihi", {"mesh_width": 3, "mesh_height": 2, "cores_per_tile": 1,
                                 "core.neurons_per_core": 2, "core.neuron_access_rule": "window",
                                 "core.neuron_update_rule": "all", "core.static_power_w": 0.0})
    g = NetworkGraph([Population("in", (10,), nets.INPUT), Population("if", (2,))],
                     [Projection("fc", "in", "if", "dense", np.ones((2, 10)))])
    spikes = {"in": np.zeros((1, 1, 10)), "if": np.zeros((1, 1, 2))}
    spikes["in"][0, 0, 0] = spikes["if"][0, 0, 1] = 1
    return g, EventTrace.from_dense(spikes), chip


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_one_spike_over_three_hops_costs_the_hand_sum(nets, model):
    g, tr, chip = _one_spike(nets)
    r = simulate(g, tr, chip, model=model)
    assert map_network(g, chip).tile_xy[-1].tolist() == [2, 1]
    # energy: 1 message out, 2 E-W + 1 N-S hops, 2 synaptic events (dense), 2 accesses (52 pJ), 1 spiking + 1
    # quiet update (29 pJ each: Loihi's active - inactive update)
    e = r.energy_breakdown_j
    assert e["network"] == pytest.approx(1.7e-12 + 2 * 3.0e-12 + 1 * 4.0e-12, rel=1e-12)
    assert e["synapse_compute"] == pytest.approx(2 * 23.6e-12, rel=1e-12)
    assert e["neuron_compute"] == pytest.approx(2 * 52e-12 + 2 * 29e-12, rel=1e-12) and e["static"] == 0.0
    assert e["synapse_memory"] == e["neuron_memory"] == 0.0  # folded into Davies' measured per-op energies
    assert r.energy_j == pytest.approx(1.7e-12 + 10e-12 + 47.2e-12 + 162e-12, rel=1e-12)
    assert (r.synops, r.messages, r.hops, r.spikes, r.hardware_steps) == (2, 1, 3, 2, 2)
    # latency: step 0 = message out + 2 x 4.1 + 6.5 + link time + 2 x 3.5 ns; step 1 = 2 accesses (5.3 ns) + 2
    # updates (3.1 ns)
    barrier = (113 + (465 - 113) * (6 - 1) / 31) * NS
    step0 = 2.1 * NS + 2 * 4.1 * NS + 6.5 * NS + 1 / 3.44e9 + 2 * 3.5 * NS + barrier
    step1 = 2 * 5.3 * NS + 2 * 3.1 * NS + barrier
    assert r.latency_per_step_s == pytest.approx([step0, step1], rel=1e-12)
    assert r.latency_s == pytest.approx(step0 + step1, rel=1e-12)
    pops = r.populations
    assert pops.loc["if", "energy_synapse_compute_j"] == pytest.approx(47.2e-12) and pops.loc["if", "synops"] == 2
    assert pops.loc["in", "energy_network_j"] == pytest.approx(11.7e-12)
    assert pops.loc["in", "energy_neuron_compute_j"] == 0


def _two_senders(nets, chip, w):
    """Input cores 0 and 1 (2 neurons each) and two idle filler cores, then 'out' (4 neurons on cores 4, 5);
    input neurons 0 and 2 (one on each input core) spike at t=0; sparse storage, so only non-zeros send."""
    g = NetworkGraph([Population("in", (4,), nets.INPUT), Population("filler", (4,), nets.INPUT),
                      Population("out", (4,))], [Projection("fc", "in", "out", "dense", w, storage="sparse")])
    spikes = {"in": np.zeros((1, 1, 4)), "filler": np.zeros((1, 1, 4)), "out": np.zeros((1, 1, 4))}
    spikes["in"][0, 0, [0, 2]] = 1
    return g, EventTrace.from_dense(spikes), chip


def test_two_flows_sharing_a_link_wait_exactly_one_train(nets):
    """Cores 0, 1 on tile (0,0) each send 1 message (2 events) to cores 4, 5 on tile (2,0): both flows cross
    links (0,0)->(1,0)->(2,0). Link time overridden to 10 ns (1e8 messages/s)."""
    chip = load_preset("loihi", {"mesh_width": 3, "mesh_height": 1, "cores_per_tile": 2, **nets.WINDOW,
                                 "core.neurons_per_core": 2, "router.link_bandwidth_msgs_per_s": 1e8})
    w = np.zeros((4, 4))
    w[0:2, 0] = w[2:4, 2] = 1.0
    g, tr, chip = _two_senders(nets, chip, w)
    d, a = simulate(g, tr, chip, model="des"), simulate(g, tr, chip, model="analytic")
    barrier = (113 + (465 - 113) * 2 / 31) * NS
    step0 = 2.1 * NS + 2 * 4.1 * NS + 10 * NS + 2 * 3.5 * NS + barrier
    assert a.latency_per_step_s[0] == pytest.approx(step0, rel=1e-12)
    # the second flow waits until the first one's message has crossed the first link (10 ns); it reaches the
    # second link exactly when the first flow releases it, so the extra delay is 10 ns in all
    assert d.latency_per_step_s[0] - a.latency_per_step_s[0] == pytest.approx(10 * NS, rel=1e-9)
    assert d.latency_per_step_s[1] == a.latency_per_step_s[1] == pytest.approx(2 * 5.3 * NS + barrier, rel=1e-12)
    assert d.energy_breakdown_j == a.energy_breakdown_j and d.hops == 4


def test_two_flows_to_one_destination_are_served_one_after_another(nets):
    """Both input cores send 1 message (2 events) to core 4, all cores on tile (0,0): equal arrival, then the
    synapse unit serves 4 events; the same in both models (no link is used)."""
    w = np.zeros((4, 4))
    w[0:2, 0] = w[0:2, 2] = 1.0
    g, tr, chip = _two_senders(nets, load_preset("loihi", {"cores_per_tile": 8, "core.neurons_per_core": 2,
                                                           **nets.WINDOW}), w)
    a, d = simulate(g, tr, chip, model="analytic"), simulate(g, tr, chip, model="des")
    assert a.latency_per_step_s[0] == pytest.approx(2.1 * NS + 1 / 3.44e9 + 4 * 3.5 * NS + 113 * NS, rel=1e-12)
    assert d.latency_per_step_s == pytest.approx(a.latency_per_step_s, rel=1e-12)
    assert a.cores.loc[4, "synops"] == 4 and a.cores.loc[4, "messages_in"] == 2


def _per_step(g, tr, chip):
    m = map_network(g, chip)
    acts = count_actions(g, tr, m, build_fanout(g, m), range(tr.n_samples))
    times = action_times(acts, chip, m)
    net = Network(m, chip)
    use = route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)
    depth = chip.router.buffer_depth
    return des.timing(acts, times, net, use, depth).step_s, analytic.timing(acts, times, net, use, depth).step_s


def test_des_equals_analytic_without_links(nets, rng):
    """All cores on one tile: no link to contend for, only destination queues, which both models serve alike."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=4, n_timesteps=3, rate=0.3)
    d, a = _per_step(g, tr, load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 32}))
    assert d == pytest.approx(a, rel=1e-12) and d.shape == (4, 3 + 4)


def test_des_never_below_analytic_with_contention(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=4, n_timesteps=3, rate=0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 1,
                                 "router.link_bandwidth_msgs_per_s": 2e8})
    d, a = _per_step(g, tr, chip)
    assert np.all(d >= a * (1 - 1e-12)) and np.any(d > a * (1 + 1e-6))


def test_energy_is_identical_in_both_models(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=5, n_timesteps=4, rate=0.25)
    chip = load_preset("loihi", {"core.neurons_per_core": 8, "router.link_bandwidth_msgs_per_s": 2e8})
    d, a = simulate(g, tr, chip, model="des"), simulate(g, tr, chip, model="analytic")
    dynamic = [c for c in d.energy_breakdown_j if c != "static"]
    assert [d.energy_breakdown_j[c] for c in dynamic] == [a.energy_breakdown_j[c] for c in dynamic]
    assert d.energy_dynamic_j == pytest.approx(a.energy_dynamic_j, rel=1e-15)
    assert d.latency_s > a.latency_s
    # static energy = the chip's static power (every core of the one ungated chip) x the model's latency
    for r in (d, a):
        assert r.static_power_w == pytest.approx(128 * chip.core.static_power_w, rel=1e-12)
        assert r.energy_breakdown_j["static"] == pytest.approx(r.static_power_w * r.latency_s, rel=1e-12)


def test_result_tables_add_up_and_batching_does_not_matter(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=5, n_timesteps=4, rate=0.25)
    chip = load_preset("loihi", {"core.neurons_per_core": 8, "core.static_power_w": 1e-3, "power_gating": "cores"})
    r = simulate(g, tr, chip, model="analytic", batch_samples=2)
    one = simulate(g, tr, chip, model="analytic", batch_samples=64)
    assert one.energy_j == pytest.approx(r.energy_j, rel=1e-12)
    assert one.latency_s == pytest.approx(r.latency_s, rel=1e-12) and one.synops == r.synops
    assert r.energy_breakdown_j["static"] == pytest.approx(1e-3 * r.cores_used * r.latency_s, rel=1e-12)
    assert sum(r.energy_breakdown_j.values()) == pytest.approx(r.energy_j, rel=1e-12)
    assert r.populations["energy_j"].sum() == pytest.approx(r.energy_j, rel=1e-12)
    assert r.populations["spikes"].sum() == pytest.approx(r.spikes) == tr.counts().sum() / tr.n_samples
    assert r.latency_per_step_s.sum() == pytest.approx(r.latency_s, rel=1e-12)
    assert list(r.populations.index) == list(g.populations)
    assert r.cores["busy_s"].max() <= r.latency_s and len(r.cores) == r.cores_used
    assert r.synops_structural >= r.synops >= r.synops_nonzero > 0  # conv + dense pay zeros, sparse does not


def test_on_progress_reports_every_group_up_to_all_samples(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=5, n_timesteps=3, rate=0.25)
    calls = []
    simulate(g, tr, load_preset("loihi", {"core.neurons_per_core": 8}), model="analytic", batch_samples=2,
             on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_as_row_keys(nets):
    row = simulate(*_one_spike(nets)).as_row()
    assert list(row) == ["chip", "model", "placement", "semantics", "energy_j", "energy_dynamic_j",
                         "energy_synapse_compute_j", "energy_synapse_memory_j", "energy_neuron_compute_j",
                         "energy_neuron_memory_j", "energy_network_j", "energy_static_j", "latency_s", "synops",
                         "synops_structural", "synops_nonzero", "spikes", "messages", "hops", "cores_used",
                         "tiles_used", "n_samples", "timesteps", "hardware_steps", "static_power_w",
                         "latency_p50_s", "latency_p95_s", "latency_p99_s", "energy_j_ci_low", "energy_j_ci_high",
                         "latency_s_ci_low", "latency_s_ci_high"]
    assert all(np.isscalar(v) for v in row.values()) and row["model"] == "des" and row["chip"] == "loihi"


def test_bad_arguments_raise(nets):
    g, tr, chip = _one_spike(nets)
    with pytest.raises(ValueError, match="model: 'spice' is not one of des, analytic"):
        simulate(g, tr, chip, model="spice")
    with pytest.raises(ValueError, match="semantics: 'serial' is not one of pipelined, layer_serial"):
        simulate(g, tr, chip, semantics="serial")
    other = NetworkGraph([Population("in", (10,), nets.INPUT), Population("if", (3,))],
                         [Projection("fc", "in", "if", "dense", np.ones((3, 10)))])
    with pytest.raises(ValueError, match="mapping: population 'if'"):
        simulate(g, tr, chip, mapping=map_network(other, load_preset("loihi")))
    with pytest.raises(MappingError):
        simulate(g, tr, load_preset("loihi", {"core.synapse_memory_bits": 16}))



@pytest.mark.parametrize("kwargs, message", [
    ({"batch_samples": 2.5}, "batch_samples: 2.5 must be an integer >= 1"),
    ({"batch_samples": None}, "batch_samples: None must be an integer >= 1"),
    ({"batch_samples": "2"}, "batch_samples: '2' must be an integer >= 1"),
    ({"batch_samples": True}, "batch_samples: True must be an integer >= 1"),
    ({"model": ["des"]}, r"model: \['des'\] is not one of des, analytic"),
    ({"semantics": ["pipelined"]}, r"semantics: \['pipelined'\] is not one of pipelined, layer_serial"),
    ({"multicast": "false"}, "multicast: 'false' must be True or False"),
    ({"multicast": 1}, "multicast: 1 must be True or False")])
def test_bad_argument_values_raise_one_line_value_errors(nets, kwargs, message):
    g, tr, chip = _one_spike(nets)
    with pytest.raises(ValueError, match=message):
        simulate(g, tr, chip, **kwargs)


def test_arguments_of_the_wrong_type_raise_type_errors_naming_them(nets):
    g, tr, chip = _one_spike(nets)
    with pytest.raises(TypeError, match=r"chip: got str 'loihi', expected a hwmodels.ChipSpec"):
        simulate(g, tr, "loihi")
    with pytest.raises(TypeError, match="graph: got EventTrace"):
        simulate(tr, g, chip)
    with pytest.raises(TypeError, match="mapping: got str"):
        simulate(g, tr, chip, mapping="in_order")
    with pytest.raises(TypeError, match="cache: got dict"):
        simulate(g, tr, chip, cache={})
    assert simulate(g, tr, chip, batch_samples=np.int64(1)).synops == 2  # a numpy integer is an integer


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_activity_padding_bits_are_not_charged_as_neuron_updates(nets, model):
    """An activity row packed by hand (0xFF: every neuron of a 3-neuron population updated) used to charge 8
    updates per row, the 5 padding bits of the byte included; it costs what np.packbits of all-True costs."""
    from hwmodels.activity import pack
    chip = load_preset("loihi", {"core.neuron_update_rule": "active"})
    g = NetworkGraph([Population("in", (3,), nets.INPUT), Population("out", (3,))],
                     [Projection("fc", "in", "out", "dense", np.ones((3, 3)))])
    spikes = EventTrace.from_dense({"in": np.ones((1, 2, 3)), "out": np.zeros((1, 2, 3))})

    def with_activity(packed):
        return EventTrace(spikes.populations, 1, 2, spikes.offsets, spikes.indices, activity={"out": packed})
    by_hand = simulate(g, with_activity(np.full((1, 3, 1), 0xFF, np.uint8)), chip, model=model)
    packed = simulate(g, with_activity(pack(np.ones((1, 3, 3), bool))), chip, model=model)
    assert by_hand.energy_breakdown_j == packed.energy_breakdown_j and by_hand.latency_s == packed.latency_s

def test_hwmodels_imports_no_forbidden_package():
    code = ("import sys, hwmodels; bad = {'torch', 'spikingjelly', 'brian2', 'workloads', 'codesign', "
            "'torchvision'} & {m.split('.')[0] for m in sys.modules}; print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _chain(nets, input_spike_t=None):
    """in (2, input) -> h (2, IF) -> out (1, IF), all on one tile (one core each), T = 2."""
    g = NetworkGraph([Population("in", (2,), nets.INPUT), Population("h", (2,)), Population("out", (1,))],
                     [Projection("ih", "in", "h", "dense", np.ones((2, 2))),
                      Projection("ho", "h", "out", "dense", np.ones((1, 2)))])
    spikes = {"in": np.zeros((1, 2, 2)), "h": np.zeros((1, 2, 2)), "out": np.zeros((1, 2, 1))}
    if input_spike_t is not None:
        spikes["in"][0, input_spike_t, 0] = 1
    chip = load_preset("loihi", {"cores_per_tile": 8, "core.neurons_per_core": 2, **nets.WINDOW})
    return g, EventTrace.from_dense(spikes), chip


def test_layer_serial_runs_layers_one_step_each_and_shares_output_with_next_input(nets):
    """Inactive updates only (5.3 ns each): h = 2 neurons, out = 1. Pipelined h = t + d: steps
    [in0, h0, h1 + out0, out1]; layer-serial h = 2 t + d: [in0, h0, out0 + in1, h1, out1]; barrier 113 ns."""
    g, tr, chip = _chain(nets)
    pipe, serial = simulate(g, tr, chip, semantics="pipelined"), simulate(g, tr, chip, semantics="layer_serial")
    b = 113 * NS
    assert pipe.latency_per_step_s == pytest.approx([b, 10.6 * NS + b, 10.6 * NS + b, 5.3 * NS + b], rel=1e-12)
    assert serial.latency_per_step_s == pytest.approx(
        [b, 10.6 * NS + b, 5.3 * NS + b, 10.6 * NS + b, 5.3 * NS + b], rel=1e-12)
    assert (pipe.hardware_steps, serial.hardware_steps) == (4, 5)
    assert serial.energy_j == pipe.energy_j  # same updates, only their steps differ (no static power)


def test_layer_serial_sends_the_input_of_t1_in_step_two(nets):
    g, tr, chip = _chain(nets, input_spike_t=1)
    m = map_network(g, chip)
    for semantics, step in (("pipelined", 1), ("layer_serial", 2)):
        acts = count_actions(g, tr, m, build_fanout(g, m), range(1), semantics)
        assert acts.spikes[0, :, 0].tolist() == [int(h == step) for h in range(acts.n_steps)]
        assert acts.flow_step.tolist() == [step] and acts.deliv_events.sum() == 2


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_links_table_of_one_spike_over_three_hops(nets, model):
    """Links (0,0)->(1,0), (1,0)->(2,0) (E-W, 4.1 ns) and (2,0)->(2,1) (N-S, 6.5 ns) carry the one message; a
    one-message flow holds each for max(hop, link time); nothing waits, so both models agree."""
    g, tr, chip = _one_spike(nets)
    r = simulate(g, tr, chip, model=model)
    links = r.links
    assert list(links.index) == ["(0,0)->(1,0)", "(1,0)->(2,0)", "(2,0)->(2,1)"]
    assert links["messages"].tolist() == [1, 1, 1] and links["dst_y"].tolist() == [0, 0, 1]
    assert links["busy_s"].tolist() == pytest.approx([1 / 3.44e9] * 3, rel=1e-12)
    assert links["held_s"].tolist() == pytest.approx([4.1 * NS, 4.1 * NS, 6.5 * NS], rel=1e-12)
    assert links["utilization"].tolist() == pytest.approx((links["busy_s"] / r.latency_s).tolist(), rel=1e-12)
    assert r.multicast is False and r.hops == len(links)


def test_multicast_keeps_synops_and_lowers_network_energy(nets, rng):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=3, n_timesteps=3, rate=0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 1})
    uni, multi = simulate(g, tr, chip), simulate(g, tr, chip, multicast=True)
    assert multi.synops == uni.synops
    assert multi.energy_breakdown_j["synapse_compute"] == uni.energy_breakdown_j["synapse_compute"]
    assert multi.messages < uni.messages and multi.hops < uni.hops
    assert multi.energy_breakdown_j["network"] < uni.energy_breakdown_j["network"]
    assert multi.cores["messages_in"].sum() == uni.cores["messages_in"].sum() == uni.messages


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_hop_across_a_chip_boundary_costs_the_chip_link(nets, model):
    """Two 1 x 1-tile chips: input core on chip 0, target on chip 1; the one hop is a chip-to-chip link (10 pJ,
    20 ns). Step 0 = message out 2.1 + link 20 + eject 1/3.44e9 + 2 synops (dense) x 3.5 ns + barrier(2 tiles)."""
    chip = load_preset("loihi", {"mesh_width": 1, "mesh_height": 1, "cores_per_tile": 1, "n_chips": 2,
                                 "core.neurons_per_core": 2, "router.chip_link_energy_j": 10e-12,
                                 "router.chip_link_latency_s": 20e-9, "core.neuron_access_rule": "window"})
    g = NetworkGraph([Population("in", (2,), nets.INPUT), Population("o", (2,))],
                     [Projection("p", "in", "o", "dense", np.ones((2, 2)))])
    tr = EventTrace.from_dense({"in": np.array([[[1.0, 0.0]]]), "o": np.zeros((1, 1, 2))})
    r = simulate(g, tr, chip, model=model)
    assert r.energy_breakdown_j["network"] == pytest.approx((1.7 + 10.0) * 1e-12, rel=1e-12)
    barrier = (113 + (465 - 113) / 31) * NS
    assert r.latency_per_step_s[0] == pytest.approx(2.1 * NS + 20 * NS + 1 / 3.44e9 + 7 * NS + barrier, rel=1e-12)
    assert list(r.links.index) == ["(0,0)->(1,0)"] and r.links["held_s"].iloc[0] == pytest.approx(20 * NS)
