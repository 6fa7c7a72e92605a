"""SANA-FE side by side: the same network, input spikes and placement on our `loihi-sanafe` preset (DES) and on
SANA-FE's own loihi.yaml. Spikes, synaptic events and hops agree exactly; synapse and network energy agree exactly;
SANA-FE's soma energy is rebuilt exactly from its counts, ours exactly from the trace (access every step, recorded
updates, spike out); dynamic energy within 0.1 %; latency (the density congestion model, hwmodels.timing.des_density)
within 10 % per sample. The larger comparison is benchmarks/test_bench_sanafe.py
(reports/benchmarks/sanafe_agreement.md).
"""
import numpy as np
import pytest

pytest.importorskip("sanafe")

from hwmodels import activity, load_preset, map_network, simulate  # noqa: E402
from hwmodels.mapping.connectivity import PAID_COUNT, fan_in, synaptic_events  # noqa: E402
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection  # noqa: E402
from peer_nets import lowered  # noqa: E402
from sanafe_bridge import SanafeRun, conv_edges, loihi_arch_file, snap_to_grid  # noqa: E402

T = 8
SAMPLES = {"mlp": 3, "conv": 2, "mlp_wide_sparse": 1}
#: name -> lowered(...) arguments: a peer_nets network, and for the wide MLP 80 % of the weights pruned and sparse
#: storage (10 cores on 3 tiles: multi-hop traffic from many cores, where SANA-FE's congestion model matters most)
NETS = {"mlp": {"name": "mlp"}, "conv": {"name": "conv"},
        "mlp_wide_sparse": {"name": "mlp_wide", "gain": 2.5, "pruned": 0.8, "storage": "sparse"}}


def _units() -> dict:
    """{unit name: attributes} of the pipeline units of SANA-FE's loihi.yaml, plus "core", "tile" and "chip"."""
    arch = loihi_arch_file()["architecture"]
    core = arch["tile"][0]["core"][0]
    units = {u["name"]: u["attributes"] for kind in ("axon_in", "soma", "dendrite", "synapse", "axon_out")
             for u in core[kind]}
    units["core"], units["tile"], units["chip"] = core["attributes"], arch["tile"][0]["attributes"], arch["attributes"]
    return units


@pytest.fixture(scope="module")
def side_by_side(sanafe_arch):
    """fn(name) -> (graph, trace, [our SimResult per sample], [SanafeSample per sample]), computed once per name."""
    done = {}

    def run(name: str):
        if name not in done:
            _, _, graph, trace = lowered(n_samples=SAMPLES[name], n_timesteps=T, seed=3, **NETS[name])
            chip = load_preset("loihi-sanafe")
            mapping = map_network(graph, chip)
            peer = SanafeRun(graph, mapping, chip, sanafe_arch, log_spikes=True)
            ours = [simulate(graph, trace.sample_view(s), chip, mapping, model="des") for s in range(trace.n_samples)]
            done[name] = (graph, trace, mapping, ours, [peer.run_sample(trace, s) for s in range(trace.n_samples)])
        return done[name]
    return run


def test_preset_is_sanafe_arch_file_mapped_onto_chipspec():
    u, chip = _units(), load_preset("loihi-sanafe")
    c, r, lif = chip.core, chip.router, u["loihi_lif"]
    for fmt in ("dense", "sparse", "conv"):
        assert c.synop_energy_j.of(fmt) == u[f"loihi_{fmt}_synapse"]["energy_process_spike"]
        assert c.synop_latency_s.of(fmt) == u[f"loihi_{fmt}_synapse"]["latency_process_spike"]
    # soma: access for every mapped neuron every step, update when active, spike out per spike
    assert (c.neuron_access_rule, c.neuron_update_rule) == ("every_step", "active")
    assert (c.neuron_access_energy_j, c.neuron_access_latency_s) == (lif["energy_access_neuron"],
                                                                     lif["latency_access_neuron"])
    assert (c.neuron_inactive_energy_j, c.neuron_inactive_latency_s) == (lif["energy_update_neuron"],
                                                                         lif["latency_update_neuron"])
    assert c.neuron_active_energy_j == pytest.approx(lif["energy_update_neuron"] + lif["energy_spike_out"], rel=1e-12)
    assert c.neuron_active_latency_s == pytest.approx(lif["latency_update_neuron"] + lif["latency_spike_out"],
                                                      rel=1e-12)
    assert (c.message_out_energy_j, c.message_out_latency_s) == (u["loihi_out"]["energy_message_out"],
                                                                 u["loihi_out"]["latency_message_out"])
    assert (c.message_in_energy_j, c.message_in_latency_s) == (u["loihi_in"]["energy_message_in"],
                                                               u["loihi_in"]["latency_message_in"])
    assert (r.hop_energy_ew_j, r.hop_energy_ns_j) == (u["tile"]["energy_east_hop"], u["tile"]["energy_north_hop"])
    assert (r.hop_latency_ew_s, r.hop_latency_ns_s) == (u["tile"]["latency_east_hop"], u["tile"]["latency_north_hop"])
    assert c.neurons_per_core == u["core"]["max_neurons_supported"]
    assert r.buffer_depth == u["chip"]["link_buffer_size"]
    assert r.congestion_model == "density"  # SANA-FE's detailed timing model (hwmodels.timing.des_density)
    assert (chip.mesh_width, chip.mesh_height) == (u["chip"]["width"], u["chip"]["height"])
    assert c.receive_mode == "serial"  # SANA-FE: axon-in latency, then every synapse of the message, in series
    assert (c.dendrite_energy_j, c.dendrite_latency_s) == (u["loihi_dendrites"]["energy_update"],
                                                           u["loihi_dendrites"]["latency_update"])
    # SANA-FE's sync table is a step function: the entry of the largest key <= tiles in use
    table = u["chip"]["latency_sync"]
    for tiles in range(1, chip.n_tiles + 1):
        want = table[max(k for k in table if k <= tiles)]
        assert chip.barrier_latency_s(tiles) == pytest.approx(want, rel=1e-12), tiles


def test_conv_edges_are_the_structural_synapses():
    rng = np.random.default_rng(0)
    w = snap_to_grid(rng.normal(size=(6, 2, 3, 3)))
    w[0, 0, 0, 0] = 0.0
    proj = Projection("c", "a", "b", "conv", w, stride=(2, 2), padding=(1, 1), groups=2)
    src, dst, wt = conv_edges(proj, (4, 7, 7))
    assert len(src) == int(fan_in(proj, (4, 7, 7), "structural").sum())
    assert len(set(zip(src.tolist(), dst.tolist()))) == len(src)  # no duplicate synapse
    assert np.count_nonzero(wt) == int(fan_in(proj, (4, 7, 7), "nonzero").sum())


def test_bridge_rejects_what_sanafe_cannot_reproduce(sanafe_arch):
    chip = load_preset("loihi-sanafe")

    def graph(neuron=NeuronModel("IF"), w=np.full((3, 4), 0.25), bias=None):
        pops = [Population("in", (4,), NeuronModel("input")), Population("out", (3,), neuron)]
        return NetworkGraph(pops, [Projection("fc", "in", "out", "dense", w, bias=bias)])

    for bad, match in ((graph(neuron=NeuronModel("LIF", tau=2.0)), "only IF"),
                       (graph(w=np.full((3, 4), 0.3)), "1/64 grid"),
                       (graph(bias=np.full(3, 0.25)), "bias")):
        with pytest.raises(ValueError, match=match):
            SanafeRun(bad, map_network(bad, chip), chip, sanafe_arch)


@pytest.mark.parametrize("name", SAMPLES)
def test_spikes_synaptic_events_and_hops_are_exact(name, side_by_side):
    graph, trace, _, ours, theirs = side_by_side(name)
    for s, (o, t) in enumerate(zip(ours, theirs)):
        # every neuron spikes at the same step in both (one step of delay per layer in both)
        for pop_name, pop in graph.populations.items():
            want = np.zeros((T + graph.n_layers, pop.size), np.int64)
            d = graph.depth(pop_name)
            want[d:d + T] = trace.to_dense(pop_name, pop.shape)[s].reshape(T, -1)
            np.testing.assert_array_equal(t.spikes[pop_name], want, err_msg=pop_name)
        assert t.neurons_fired == int(trace.counts()[s].sum()) == o.spikes
        # synaptic events (as stored: dense and conv structural, sparse non-zero) and message-hops (same placement)
        assert t.synaptic_events == sum(synaptic_events(graph, trace.sample_view(s), PAID_COUNT[p.storage])[p.name]
                                        for p in graph.projections)
        assert t.synaptic_events == o.synops
        assert t.hops == o.hops


def _recorded_updates(graph, trace, sample: int) -> int:
    """Neuron updates under the "active" rule, from the trace alone: in each timestep of its window a neuron is
    updated when the trace's activity records it or it spiked; after the window (pipeline drain, L - depth
    steps) when the activity's last row records a potential left."""
    total = 0
    for name, pop in graph.populations.items():
        if pop.is_input:
            continue
        bits = activity.unpack(trace.activity[name][sample], pop.size)
        spiked = trace.to_dense(name, pop.shape)[sample].reshape(T, -1) > 0
        total += int((bits[:T] | spiked).sum()) + (graph.n_layers - graph.depth(name)) * int(bits[T].sum())
    return total


@pytest.mark.parametrize("name", SAMPLES)
def test_energy_by_component(name, side_by_side):
    graph, trace, _, ours, theirs = side_by_side(name)
    lif = _units()["loihi_lif"]
    non_input = sum(p.size for p in graph.populations.values() if not p.is_input)
    inputs = [trace.populations.index(p.name) for p in graph.populations.values() if p.is_input]
    assert set(trace.activity) == {p for p in graph.populations if not graph.populations[p].is_input}
    for s, (o, t) in enumerate(zip(ours, theirs)):
        e = o.energy_breakdown_j
        # synapse = events x per-format cost, network = messages x 111 pJ + hops x hop energy: the same in both
        # (SANA-FE's synapse cost includes the weight read: our synapse memory is folded, 0 J)
        assert e["synapse_memory"] == e["neuron_memory"] == 0.0
        assert e["synapse_compute"] == pytest.approx(t.energy_j["synapse"], rel=1e-9)
        assert e["network"] == pytest.approx(t.energy_j["network"], rel=1e-9)
        assert t.energy_j["dendrite"] == 0.0
        # SANA-FE's soma: access for every non-input neuron in all T + L steps, update when input arrived or the
        # potential is non-zero, spike out per spike (its counters include one update and one fire per input spike)
        in_spikes = int(trace.counts()[s][:, inputs].sum())
        spikes = t.neurons_fired - in_spikes
        access = lif["energy_access_neuron"] * non_input * (T + graph.n_layers)
        soma = access + lif["energy_update_neuron"] * (t.neurons_updated - in_spikes) + lif["energy_spike_out"] * spikes
        assert soma == pytest.approx(t.energy_j["soma"], rel=1e-9)
        # ours, the same rule with the trace's recorded activity for the updates
        updates = _recorded_updates(graph, trace, s)
        neuron = access + lif["energy_update_neuron"] * updates + lif["energy_spike_out"] * spikes
        assert e["neuron_compute"] == pytest.approx(neuron, rel=1e-9)
        # the recorded activity misses few of SANA-FE's updates (a synapse addressed the neuron, current sums to 0)
        assert updates == pytest.approx(t.neurons_updated - in_spikes, rel=0.01)
    # dynamic energy (SANA-FE models no static power)
    assert np.mean([o.energy_dynamic_j for o in ours]) == pytest.approx(
        np.mean([t.energy_j["total"] for t in theirs]), rel=1e-3)


@pytest.mark.parametrize("name", SAMPLES)
def test_latency_within_10_percent_per_sample(name, side_by_side):
    _, _, _, ours, theirs = side_by_side(name)
    for o, t in zip(ours, theirs):
        assert o.latency_s == pytest.approx(t.latency_s, rel=0.10)
        # per step too (the density model follows SANA-FE's detailed timing model message by message)
        np.testing.assert_allclose(o.latency_per_step_s, t.step_latency_s, rtol=0.10)
