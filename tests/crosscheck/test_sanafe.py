"""SANA-FE side by side: the same network, input spikes and placement on our `loihi-sanafe` preset (DES) and on
SANA-FE's own loihi.yaml. Spikes, synaptic events and hops agree exactly; synapse and network energy agree exactly;
SANA-FE's soma energy is rebuilt exactly from its counts (the terms our neuron energy leaves out); total energy
within 10 %, latency within 25 %. The larger comparison is benchmarks/test_bench_sanafe.py
(reports/benchmarks/sanafe_agreement.md).
"""
import numpy as np
import pytest

pytest.importorskip("sanafe")

from hwmodels import load_preset, map_network, simulate  # noqa: E402
from hwmodels.connectivity import fan_in, synaptic_events  # noqa: E402
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection  # noqa: E402
from peer_nets import lowered  # noqa: E402
from sanafe_bridge import SanafeRun, conv_edges, loihi_arch_file, snap_to_grid  # noqa: E402

T = 8
SAMPLES = {"mlp": 3, "conv": 2}


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
            _, _, graph, trace = lowered(name, SAMPLES[name], T, seed=3)
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
    access_update = lif["energy_access_neuron"] + lif["energy_update_neuron"]
    assert c.neuron_inactive_energy_j == pytest.approx(access_update, rel=1e-12)
    assert c.neuron_active_energy_j == pytest.approx(access_update + lif["energy_spike_out"], rel=1e-12)
    t_access_update = lif["latency_access_neuron"] + lif["latency_update_neuron"]
    assert c.neuron_inactive_latency_s == pytest.approx(t_access_update, rel=1e-12)
    assert c.neuron_active_latency_s == pytest.approx(t_access_update + lif["latency_spike_out"], rel=1e-12)
    assert (c.message_out_energy_j, c.message_out_latency_s) == (u["loihi_out"]["energy_message_out"],
                                                                 u["loihi_out"]["latency_message_out"])
    assert (c.message_in_energy_j, c.message_in_latency_s) == (u["loihi_in"]["energy_message_in"],
                                                               u["loihi_in"]["latency_message_in"])
    assert (r.hop_energy_ew_j, r.hop_energy_ns_j) == (u["tile"]["energy_east_hop"], u["tile"]["energy_north_hop"])
    assert (r.hop_latency_ew_s, r.hop_latency_ns_s) == (u["tile"]["latency_east_hop"], u["tile"]["latency_north_hop"])
    assert c.neurons_per_core == u["core"]["max_neurons_supported"]
    assert r.buffer_depth == u["chip"]["link_buffer_size"]
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
        # synaptic events (structural: dense and conv storage) and message-hops (same placement)
        assert t.synaptic_events == sum(synaptic_events(graph, trace.sample_view(s), "structural").values())
        assert t.synaptic_events == o.synops
        assert t.hops == o.hops


@pytest.mark.parametrize("name", SAMPLES)
def test_energy_by_component(name, side_by_side):
    graph, trace, _, ours, theirs = side_by_side(name)
    lif = _units()["loihi_lif"]
    non_input = sum(p.size for p in graph.populations.values() if not p.is_input)
    inputs = [trace.populations.index(p.name) for p in graph.populations.values() if p.is_input]
    for s, (o, t) in enumerate(zip(ours, theirs)):
        # synapse = events x per-format cost, network = messages x 111 pJ + hops x hop energy: the same in both
        assert o.energy_breakdown_j["synapse"] == pytest.approx(t.energy_j["synapse"], rel=1e-9)
        assert o.energy_breakdown_j["network"] == pytest.approx(t.energy_j["network"], rel=1e-9)
        assert t.energy_j["dendrite"] == 0.0
        # SANA-FE's soma: access for every non-input neuron in all T + L steps, update when input arrived or the
        # potential is non-zero, spike out per spike (its counters include one update and one fire per input spike)
        in_spikes = int(trace.counts()[s][:, inputs].sum())
        soma = (lif["energy_access_neuron"] * non_input * (T + graph.n_layers)
                + lif["energy_update_neuron"] * (t.neurons_updated - in_spikes)
                + lif["energy_spike_out"] * (t.neurons_fired - in_spikes))
        assert soma == pytest.approx(t.energy_j["soma"], rel=1e-9)
        # ours: access + update for every non-input neuron in its T active steps, + spike out per spike
        spikes = t.neurons_fired - in_spikes
        access_update = lif["energy_access_neuron"] + lif["energy_update_neuron"]
        neuron = access_update * non_input * T + lif["energy_spike_out"] * spikes
        assert o.energy_breakdown_j["neuron"] == pytest.approx(neuron, rel=1e-9)
    # issue-3 target: total energy within 10 %
    assert np.mean([o.energy_j for o in ours]) == pytest.approx(np.mean([t.energy_j["total"] for t in theirs]),
                                                                rel=0.10)


@pytest.mark.parametrize("name", SAMPLES)
def test_latency_within_25_percent(name, side_by_side):
    _, _, _, ours, theirs = side_by_side(name)
    assert np.mean([o.latency_s for o in ours]) == pytest.approx(np.mean([t.latency_s for t in theirs]), rel=0.25)
