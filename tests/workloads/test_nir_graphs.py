"""NIR graphs that are not chains: residual adds and branches import, lower and simulate with the spikes of an
independent float64 forward-Euler reading of the NIR equations; a loop through one weight imports as a recurrent
self-projection; Delay is refused in one line, CubaLIF with a synaptic time constant imports as a two-state neuron,
batch dimensions in the Input recognised."""
import nir
import numpy as np
import pytest
import torch

from hwmodels import load_preset, simulate
from workloads.exchange.nir_dag import topo_order
from workloads.exchange.nir_io import from_nir, nir_workload


def _spikes(seed: int, shape) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _lif(n: int, tau_s: float, threshold: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau_s), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, threshold),
                   v_reset=np.zeros(n))


def _reference(g: nir.NIRGraph, x: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """float64 run of an acyclic NIR graph of Affine/Linear/LIF/IF nodes (inputs of a node summed); LIF:
    v += dt/tau (v_leak - v + r I), spike when v > theta, then v = v_reset. Spikes (T, N, n) per neuron node."""
    order = topo_order(g)
    preds = {k: [a for a, b in g.edges if b == k] for k in g.nodes}
    state, out = {}, {k: [] for k in order if isinstance(g.nodes[k], (nir.LIF, nir.IF))}
    for t in range(x.shape[0]):
        val = {}
        for key in order:
            n = g.nodes[key]
            h = x[t].astype(np.float64) if isinstance(n, nir.Input) else sum(val[p] for p in preds[key])
            if isinstance(n, (nir.Affine, nir.Linear)):
                h = h @ np.asarray(n.weight, np.float64).T + (np.asarray(n.bias) if isinstance(n, nir.Affine) else 0)
            elif isinstance(n, (nir.LIF, nir.IF)):
                p = {f: float(np.asarray(getattr(n, f)).ravel()[0]) for f in ("r", "v_threshold", "v_reset")}
                v = state.get(key, np.full_like(h, p["v_reset"]))
                if isinstance(n, nir.LIF):
                    v = v + dt / float(np.asarray(n.tau).ravel()[0]) * (float(np.asarray(n.v_leak).ravel()[0]) - v
                                                                         + p["r"] * h)
                else:
                    v = v + p["r"] * h
                z = (v > p["v_threshold"]).astype(np.float64)
                state[key] = np.where(z > 0, p["v_reset"], v)
                out[key].append(z)
                h = z
            val[key] = h
    return {k: np.stack(v) for k, v in out.items()}


def _residual_graph() -> nir.NIRGraph:
    """in -> fc1 -> lif1 -> fc2 -> lif2 (+ skip fc3 from lif1 into lif2) -> lif2 + lif1 (spikes) -> fc4 -> lif3."""
    rng = np.random.default_rng(11)
    w = lambda o, i, s=1.2: rng.normal(0.3, s, (o, i))  # noqa: E731
    nodes = {"in": nir.Input(np.array([6])), "fc1": nir.Affine(w(8, 6), rng.normal(0, 0.1, 8)),
             "lif1": _lif(8, 4e-4), "fc2": nir.Linear(w(8, 8)), "fc3": nir.Linear(w(8, 8)), "lif2": _lif(8, 3e-4),
             "fc4": nir.Affine(w(5, 8), np.zeros(5)), "lif3": _lif(5, 2e-4, 0.8), "out": nir.Output(np.array([5]))}
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("lif1", "fc3"), ("fc2", "lif2"), ("fc3", "lif2"),
             ("lif2", "fc4"), ("lif1", "fc4"), ("fc4", "lif3"), ("lif3", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _imported_as_reference(g: nir.NIRGraph, x: torch.Tensor):
    """(graph, trace, reference spikes, population -> NIR node) of nir_workload(g, x) at dt 1e-4, every neuron
    node's recorded spikes asserted equal to _reference's."""
    graph, trace = nir_workload(g, x, dt=1e-4)
    ref = _reference(g, x.numpy(), 1e-4)
    nodes = graph.metadata["nir"]["nodes"]
    for pop in graph.populations.values():
        if nodes.get(pop.name) in ref:
            got = trace.to_dense(pop.name, pop.shape).swapaxes(0, 1)
            np.testing.assert_array_equal(got, ref[nodes[pop.name]], err_msg=nodes[pop.name])
    return graph, trace, ref, nodes


def test_residual_and_branching_graph_imports_with_reference_spikes():
    g = _residual_graph()
    graph, trace, ref, nodes = _imported_as_reference(g, _spikes(12, (20, 3, 6)))
    assert sorted(nodes[p.name] for p in graph.populations.values() if p.name in nodes) == ["lif1", "lif2", "lif3"]
    assert all(ref[k].sum() >= 5 for k in ref), {k: ref[k].sum() for k in ref}
    assert len(graph.in_projections(next(n for n, k in nodes.items() if k == "lif2"))) == 2  # residual add
    result = simulate(graph, trace, load_preset("loihi"))
    assert result.energy_j > 0 and result.synops > 0


def test_a_loop_through_one_weight_imports_and_delay_is_refused_in_one_line():
    """A neuron -> Linear -> same neuron loop imports as a recurrent self-projection (spikes checked against
    snnTorch in test_nir_recurrent.py); an axonal Delay has no chip equivalent and is refused."""
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([4])), "fc": nir.Linear(np.ones((4, 4))), "lif": _lif(4, 2e-4),
                            "rec": nir.Linear(np.eye(4)), "out": nir.Output(np.array([4]))},
                     edges=[("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out")],
                     type_check=False)
    model = from_nir(g)
    container = model.model[1]
    assert type(container).__name__ == "LinearRecurrentContainer" and list(model.loops) == ["lif"]
    np.testing.assert_array_equal(container.rc.weight.detach().numpy()[:, 4:], np.eye(4))  # [input | recurrent]
    d = nir.NIRGraph.from_list(nir.Input(np.array([3])), nir.Linear(np.ones((3, 3))),
                               nir.Delay(np.full(3, 2e-4)), _lif(3, 2e-4), type_check=False)
    with pytest.raises(ValueError, match="Delay.*axonal delay"):
        from_nir(d)


def test_cubalif_without_synaptic_memory_imports_as_lif_and_with_it_as_a_two_state_cubalif():
    """snnTorch's Synaptic(alpha=0) exports CubaLIF with tau_syn = dt: the synaptic current holds no memory and the
    node is exactly a LIF with input gain w_in * r. With tau_syn > dt it is a CubaLIF population (its spikes:
    tests/workloads/test_nir_cubalif.py)."""
    rng = np.random.default_rng(3)
    n, dt = 5, 1e-4
    cuba = nir.CubaLIF(tau_syn=np.full(n, dt), tau_mem=np.full(n, 4e-4), r=np.full(n, 4.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), w_in=np.ones(n))
    g = nir.NIRGraph.from_list(nir.Input(np.array([6])), nir.Linear(rng.normal(0.4, 1.0, (n, 6))), cuba)
    lif = nir.NIRGraph.from_list(nir.Input(np.array([6])), nir.Linear(np.asarray(g.nodes["linear"].weight)),
                                 nir.LIF(tau=np.full(n, 4e-4), r=np.full(n, 4.0), v_leak=np.zeros(n),
                                         v_threshold=np.ones(n), v_reset=np.zeros(n)))
    x = _spikes(2, (15, 2, 6))
    _, t1 = nir_workload(g, x, dt=dt)
    _, t2 = nir_workload(lif, x, dt=dt)
    np.testing.assert_array_equal(t1.indices, t2.indices)
    assert t1.counts().sum() > 10
    slow = nir.CubaLIF(tau_syn=np.full(n, 3e-4), tau_mem=np.full(n, 4e-4), r=np.full(n, 4.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), w_in=np.ones(n))
    graph, _ = nir_workload(nir.NIRGraph.from_list(nir.Input(np.array([6])), nir.Linear(np.ones((n, 6))), slow), x,
                            dt=dt)
    assert graph.populations["cubalif1"].neuron.kind == "CubaLIF" and graph.populations["cubalif1"].neuron.tau_syn == 3


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _chain_nodes(lif: nir.LIF | None = None, out: int = 3) -> dict:
    return {"in": nir.Input(np.array([4])), "fc": nir.Linear(np.ones((3, 4))), "lif": lif or _lif(3, 1e-3),
            "out": nir.Output(np.array([out]))}


CHAIN = [("in", "fc"), ("fc", "lif"), ("lif", "out")]


@pytest.mark.parametrize("nodes, edges, match", [
    (_chain_nodes(_lif(5, 1e-3)), CHAIN, r"LIF node 'lif': tau holds 5 values for the 3 neurons"),
    (_chain_nodes(out=9), CHAIN, r"Output node 'out': shape \[9\] does not hold the 3 values"),
    ({**_chain_nodes(), "iso": _lif(3, 1e-3)}, CHAIN, r"node 'iso' is not connected \(no path from the Input"),
    ({**_chain_nodes(), "dead": nir.Linear(np.ones((2, 3)))}, CHAIN + [("lif", "dead")],
     r"node 'dead' is not connected \(it has no path to the Output"),
    (_chain_nodes(), [("in", "fc")] + CHAIN, r"edge \('in', 'fc'\) is listed more than once"),
    ({**_chain_nodes(), "fc": nir.Affine(np.ones((3, 4)), np.ones(7))}, CHAIN,
     r"Affine node 'fc': bias of 7 values does not fit weight \(3, 4\)"),
    (_chain_nodes(_lif(3, 1e-3, threshold=0.0)), CHAIN, r"LIF node 'lif': v_threshold 0 equals the reset potential"),
    ({**_chain_nodes(nir.LIF(tau=np.full(3, 1e-3), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                             v_reset=np.zeros(3))), "fc2": nir.Linear(np.ones((3, 4)))},
     CHAIN + [("in", "fc2"), ("fc2", "lif")], r"node 'lif': input gain 2 / offset 0 cannot be folded: it is fed by 2"),
])
def test_graphs_that_do_not_fit_are_refused_naming_the_node(nodes, edges, match):
    with pytest.raises(ValueError, match=match):
        nir_workload(_graph(nodes, edges), torch.ones(3, 2, 4))


def test_a_weight_node_read_by_neurons_of_different_gains_gives_each_its_own_gain():
    """fc feeds LIF a (r = 2, v_leak 0.3) and LIF b (r = 1): each neuron scales only its own input (the fold of a's
    gain into the shared fc used to reach b too, and a second gain to multiply the first)."""
    rng = np.random.default_rng(3)
    a = nir.LIF(tau=np.full(4, 4e-4), r=np.full(4, 2.0), v_leak=np.full(4, 0.3), v_threshold=np.ones(4),
                v_reset=np.zeros(4))
    for b in (_lif(4, 3e-4), nir.LIF(tau=np.full(4, 3e-4), r=np.full(4, 0.7), v_leak=np.zeros(4),
                                      v_threshold=np.ones(4), v_reset=np.zeros(4))):
        fc = nir.Affine(rng.normal(0.9, 1.0, (4, 5)), rng.normal(0, .1, 4))
        nodes = {"in": nir.Input(np.array([5])), "fc": fc, "a": a, "b": b,
                 "fa": nir.Linear(rng.normal(0.5, 1.0, (3, 4))), "fb": nir.Linear(rng.normal(0.5, 1.0, (3, 4))),
                 "c": _lif(3, 2e-4, 0.8), "out": nir.Output(np.array([3]))}
        edges = [("in", "fc"), ("fc", "a"), ("fc", "b"), ("a", "fa"), ("b", "fb"), ("fa", "c"), ("fb", "c"),
                 ("c", "out")]
        graph, _, ref, _ = _imported_as_reference(nir.NIRGraph(nodes=nodes, edges=edges), _spikes(5, (25, 3, 5)))
        counts = {k: r.sum() for k, r in ref.items()}
        assert counts["a"] != counts["b"] and min(counts.values()) >= 5, counts
        assert len(graph.projections) == 4  # fc -> a, fc -> b (one projection each, as before), fa, fb


@pytest.mark.parametrize("readout, exact", [
    (nir.LI(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2)), False),
    (nir.I(r=np.full(2, 3.0)), True), (nir.I(r=np.array([1.0, -1.0])), False)])
def test_a_trailing_li_or_i_readout_says_how_predictions_read_it(readout, exact):
    """Class 0 gets 6 early spikes, class 1 two late ones: predictions are the argmax of the readout's mean input
    current (class 0), which is an I node's last potential under one positive r, not an LI's (0.06 vs 0.75 at the
    last step: class 1), and metadata["nir"]["readout"] says which."""
    nodes = {"in": nir.Input(np.array([2])), "ro": nir.Linear(np.eye(2)), "li": readout,
             "out": nir.Output(np.array([2]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "ro"), ("ro", "li"), ("li", "out")], type_check=False)
    x = torch.zeros(10, 1, 2)
    x[:6, 0, 0], x[8:, 0, 1] = 1.0, 1.0
    graph, trace = nir_workload(g, x, labels=np.array([1]))
    assert trace.predictions.tolist() == [0]
    info = graph.metadata["nir"]["readout"]
    assert (info["node"], info["type"]) == ("li", type(readout).__name__)
    assert info["predictions"].startswith("argmax of its potential at the last" if exact else "argmax of its input "
                                          "current averaged over the timesteps, not of its potential")
