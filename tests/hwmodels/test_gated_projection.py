"""Gated ("dynamic") projections of the contract (trace.Projection.gate): validation, depth, save/load, and the
hand-computed event counts of hwmodels.mapping.connectivity.gated_events / synaptic_events."""
import numpy as np
import pytest

import hwmodels
from hwmodels.mapping.connectivity import fanout, gated_events, spike_counts, synaptic_events
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

W = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 4.0]], np.float32)  # (target 2, source 3)
GATE_INDEX = np.array([[0, 0, 1], [1, 1, 0]])


def _graph(**gate) -> NetworkGraph:
    """a (3 inputs) -> g (2 IF neurons, dense ones); a -> out (2 IF neurons) gated by g."""
    pops = [Population("a", (3,), NeuronModel("input")), Population("g", (2,)), Population("out", (2,))]
    projs = [Projection("ag", "a", "g", "dense", np.ones((2, 3), np.float32)),
             Projection("ao", "a", "out", "dense", W, **({"gate": "g", "gate_index": GATE_INDEX} | gate))]
    return NetworkGraph(pops, projs)


def _trace() -> EventTrace:
    """One sample, T = 2: t0 a {0, 2}, g {0}; t1 a {1}, g {0, 1}."""
    a = np.array([[[1, 0, 1], [0, 1, 0]]])
    g = np.array([[[1, 0], [1, 1]]])
    return EventTrace.from_dense({"a": a, "g": g, "out": np.zeros((1, 2, 2))})


def test_gated_events_count_only_synapses_whose_gate_fired():
    graph, trace = _graph(), _trace()
    # t0: a0 -> (out0: w 1, gate g0 fired) live, (out1: w 3, gate g1 silent) dead: 1; a2 -> (out0: w 0) none,
    # (out1: w 4, gate g0 fired): 1. t1: a1 -> (out0: w 2, gate g0) live, (out1: w 0): 1. Total 3.
    assert gated_events(graph, trace, graph.projections[1]) == 3
    assert synaptic_events(graph, trace, "nonzero") == {"ag": 3 * 2, "ao": 3}
    # structural: every stored entry of the row is walked, 2 per spike; the static non-zero count would be 4
    assert synaptic_events(graph, trace, "structural") == {"ag": 6, "ao": 6}
    assert int(spike_counts(trace, "a", 3) @ fanout(graph.projections[1], (3,), "nonzero")) == 4
    with pytest.raises(ValueError, match="not gated"):
        gated_events(graph, trace, graph.projections[0])


def test_gate_delays_the_target_and_round_trips(tmp_path):
    graph = _graph()
    assert (graph.depth("a"), graph.depth("g"), graph.depth("out")) == (0, 1, 2)  # out waits for g's timestep
    graph.save(tmp_path / "g.npz")
    back = NetworkGraph.load(tmp_path / "g.npz")
    proj = back.projections[1]
    assert proj.gate == "g" and back.projections[0].gate is None and back.depth("out") == 2
    np.testing.assert_array_equal(proj.gate_index, GATE_INDEX)
    assert synaptic_events(back, _trace(), "nonzero")["ao"] == 3


def test_hardware_model_pays_the_structural_walk_of_a_gated_projection():
    graph, trace = _graph(), _trace()
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("generic-45nm"), model="analytic")
    assert sim.synops == 12 and sim.populations.loc["out", "synops"] == 6


@pytest.mark.parametrize("gate, match", [
    ({"gate_index": None}, r"gate/gate_index: 'ao' needs both"),
    ({"gate_index": GATE_INDEX[:, :2]}, r"gate_index: 'ao' needs non-negative ints of the weight's shape"),
    ({"gate_index": GATE_INDEX - 1}, r"gate_index: 'ao' needs non-negative"),
    ({"gate_index": GATE_INDEX * 1.0}, r"gate_index: 'ao' needs non-negative ints"),
    ({"storage": "sparse"}, r"storage: gated projection 'ao' must be 'dense' or 'conv'"),
    ({"gate": "nope"}, r"gate: 'nope' \(in 'ao'\) is not one of a, g, out"),
    ({"gate_index": GATE_INDEX * 2}, r"gate_index: 'ao' indexes neuron 2 of 'g', which has 2"),
])
def test_bad_gates_are_named(gate, match):
    with pytest.raises(ValueError, match=match):
        _graph(**gate)
