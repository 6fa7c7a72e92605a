"""Issue 10's SANA-FE cross-check: trained, sparse IF networks whose input layer is driven by a per-neuron bias (the
pixel intensity), on our loihi-sanafe preset (DES) and on SANA-FE's own loihi.yaml, with our mapping and with the
mapping SANA-FE's examples use (layers split evenly over consecutive cores). Spikes must be exact (every neuron,
every step), dynamic energy within 3 % (SANA-FE models no static power) and latency within 10 %, per sample. The
neuron energy is the point: most neurons are at rest, so an access for every mapped neuron in all T + L steps and
an update only for the neurons the trace records as active (input, bias, or a non-zero potential, including the
drain steps after the biases are switched off) must reproduce SANA-FE's soma energy.
"""
import numpy as np
import pytest

pytest.importorskip("sanafe")

from hwmodels import load_preset, map_network, simulate  # noqa: E402
from sanafe_trained import BiasSanafeRun, even_mapping, lowered  # noqa: E402

T, SAMPLES = 8, 3


@pytest.fixture(scope="module", params=["mlp", "conv"])
def case(request, sanafe_arch):
    """(name, graph, trace, biases, chip, {mapping name: (mapping, [(ours, theirs) per sample])})."""
    _, graph, trace, biases = lowered(request.param, SAMPLES, T)
    chip = load_preset("loihi-sanafe")
    runs = {}
    for name, mapping in (("ours", map_network(graph, chip)), ("sanafe_even", even_mapping(graph, chip))):
        peer = BiasSanafeRun(graph, mapping, chip, sanafe_arch, log_spikes=True)
        runs[name] = (mapping, [(simulate(graph, trace.sample_view(s), chip, mapping, model="des"),
                                 peer.run_sample(trace, s, biases[s])) for s in range(SAMPLES)])
    return request.param, graph, trace, biases, chip, runs


def test_the_networks_are_sparse_and_bias_driven(case):
    name, graph, trace, biases, _, _ = case
    assert graph.metadata["input_current"] == ["if1"] and not graph.in_projections("if1")
    assert "input" not in graph.populations and set(trace.activity) >= {"if1", "if2"}
    hidden = [p for p in graph.populations if p not in ("if1",)]
    rates = [trace.counts()[:, :, trace.populations.index(p)].mean() / graph.populations[p].size for p in hidden]
    assert max(rates) < 0.3 and min(rates) < 0.1  # most neurons silent in most steps
    assert (biases == 0).mean() > 0.5  # most input neurons have no bias: at rest unless driven


def test_spikes_are_exact_with_both_mappings(case):
    _, graph, trace, _, _, runs = case
    for mapping, pairs in runs.values():
        for s, (ours, theirs) in enumerate(pairs):
            for pop_name, pop in graph.populations.items():
                want = np.zeros((T + graph.n_layers, pop.size), np.int64)
                d = graph.depth(pop_name)
                want[d:d + T] = trace.to_dense(pop_name, pop.shape)[s].reshape(T, -1)
                np.testing.assert_array_equal(theirs.spikes[pop_name], want, err_msg=f"{mapping.placement} {pop_name}")
            assert theirs.neurons_fired == ours.spikes == trace.counts()[s].sum()
            assert theirs.synaptic_events == ours.synops


def test_energy_within_3_percent_and_soma_by_the_activity_rule(case):
    name, graph, trace, _, chip, runs = case
    for mapping, pairs in runs.values():
        for ours, theirs in pairs:
            assert ours.energy_dynamic_j == pytest.approx(theirs.energy_j["total"], rel=0.03)
            assert ours.energy_breakdown_j["synapse_compute"] == pytest.approx(theirs.energy_j["synapse"], rel=1e-9)
            assert ours.energy_breakdown_j["network"] == pytest.approx(theirs.energy_j["network"], rel=1e-9)
            # soma: every mapped neuron accessed in all T + L steps (51.2 pJ), updates counted from the recorded
            # activity (SANA-FE also counts an input that cancels to 0 or reaches only zero weights: tiny)
            accesses = ours.action_counts["neuron_accesses"].sum()
            assert accesses == sum(p.size for p in graph.populations.values()) * (T + graph.n_layers)
            assert ours.energy_breakdown_j["neuron_compute"] == pytest.approx(theirs.energy_j["soma"], rel=0.005)
            updates = ours.action_counts[["neuron_updates_spiking", "neuron_updates_quiet"]].sum().sum()
            assert updates == pytest.approx(theirs.neurons_updated, rel=0.01)
            assert updates < 0.6 * accesses  # sparse: most accessed neurons are not updated


def test_latency_within_10_percent(case):
    _, _, _, _, _, runs = case
    for mapping, pairs in runs.values():
        for ours, theirs in pairs:
            assert ours.latency_s == pytest.approx(theirs.latency_s, rel=0.10), mapping.placement
