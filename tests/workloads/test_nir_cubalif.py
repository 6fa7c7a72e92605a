"""NIR CubaLIF with synaptic memory (tau_syn > dt) imports as the two-state CubaLIFNode: spikes equal a float64
forward-Euler reading of NIR's equations and snnTorch's Synaptic (exported with export_to_nir, also inside an
RSynaptic loop); the population is of kind "CubaLIF" and costs twice a LIF's neuron-state bits, a LIF's unchanged."""
import contextlib
import io

import nir
import numpy as np
import pytest
import torch
from torch import nn

from hwmodels import load_preset, simulate
from hwmodels.activity import unpack
from hwmodels.mapping.storage import state_bits_per_neuron
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
from workloads.exchange.nir_io import nir_workload
from workloads.neurons import CubaLIFNode
from snntorch_steps import snntorch_spikes

T, N, DT = 20, 3, 1e-4


def _spikes(seed: int, shape) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _dense(graph, trace, name: str) -> np.ndarray:
    return trace.to_dense(name, graph.populations[name].shape).swapaxes(0, 1)  # (T, N, ...)


def _reference(w: np.ndarray, b: np.ndarray, node: nir.CubaLIF, x: np.ndarray, dt: float) -> np.ndarray:
    """Spikes (T, N, n) of Affine(w, b) -> CubaLIF read in float64 by forward Euler (NIR's equations, the membrane
    step on the current of the same step), firing on v >= theta (SpikingJelly's comparison), reset to v_reset."""
    p = {k: np.asarray(getattr(node, k), np.float64) for k in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                                            "v_reset", "w_in")}
    i = np.zeros((x.shape[1], w.shape[0]))
    v = np.broadcast_to(p["v_reset"], i.shape).copy()
    out = []
    for xt in x.astype(np.float64):
        i = i + dt / p["tau_syn"] * (p["w_in"] * (xt @ w.T + b) - i)
        v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
        s = v >= p["v_threshold"]
        v = np.where(s, p["v_reset"], v)
        out.append(s.astype(np.float32))
    return np.stack(out)


def _cuba(n: int, tau_syn: float, tau_mem: float, r: float, w_in: float, theta: float = 1.0) -> nir.CubaLIF:
    full = lambda v: np.full(n, v)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(r), v_leak=np.zeros(n),
                       v_threshold=full(theta), v_reset=np.zeros(n), w_in=full(w_in))


def test_cubalif_with_synaptic_memory_imports_with_the_spikes_of_the_nir_equations():
    rng = np.random.default_rng(5)
    w, b = rng.normal(0.3, 1.0, (5, 6)), rng.normal(0.0, 0.2, 5)
    node = _cuba(5, 3e-4, 4e-4, 2.0, 1.5)
    g = nir.NIRGraph.from_list(nir.Input(np.array([6])), nir.Affine(w, b), node)
    x = _spikes(2, (T, N, 6))
    graph, trace = nir_workload(g, x, dt=DT)
    pop = graph.populations["cubalif1"]
    assert pop.neuron == NeuronModel("CubaLIF", 1.0, 4.0, 0.0, False, 3.0)
    want = _reference(w, b, node, x.numpy(), DT)
    np.testing.assert_array_equal(_dense(graph, trace, "cubalif1"), want)
    assert 10 <= want.sum() < want.size // 2


def test_cubalif_holds_its_current_after_the_input_stops():
    """One input spike at t = 0: the current decays over the following steps and the neuron fires later, with
    no input; the chip updates it (activity) in every step that holds a current or potential."""
    node = _cuba(1, 4e-4, 2e-4, 1.0, 4.0, theta=0.6)
    g = nir.NIRGraph.from_list(nir.Input(np.array([1])), nir.Linear(np.ones((1, 1))), node)
    x = torch.zeros(6, 1, 1)
    x[0] = 1.0
    graph, trace = nir_workload(g, x, dt=DT)
    # I = .75 I + x = 1, .75, .5625, .42, ...; V = .5 V + .5 I = .5, .625 (>= .6: spike, V = 0), .28, .35, .33, .29
    s = _dense(graph, trace, "cubalif1")[:, 0, 0]
    np.testing.assert_array_equal(s, [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(s, _reference(np.ones((1, 1)), np.zeros(1), node, x.numpy(), DT)[:, 0, 0])
    act = unpack(trace.activity["cubalif1"], 1)  # (samples, T + 1, 1)
    assert act[0, :, 0].all()  # at t = 2 only the current is non-zero (V was just reset): still updated


def _snntorch():
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir
    return snn, export_to_nir


def _synaptic(snn, n: int, alpha: float, beta: float, threshold: float = 1.0, output: bool = False):
    """snnTorch Synaptic exportable to NIR with NIR's reset (per-neuron beta/threshold, zero reset in the step)."""
    return snn.Synaptic(alpha=torch.full((n,), alpha), beta=torch.full((n,), beta),
                        threshold=torch.full((n,), threshold), init_hidden=True, output=output,
                        reset_mechanism="zero", reset_delay=False)


def test_snntorch_synaptic_exported_by_snntorch_imports_with_its_spikes():
    snn, export_to_nir = _snntorch()
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(10, 8), _synaptic(snn, 8, 0.5, 0.75), nn.Linear(8, 4),
                        _synaptic(snn, 4, 0.75, 0.5, 1.5, output=True))
    with torch.no_grad():
        net[0].weight.mul_(2.0)
        net[2].weight.mul_(2.5)
    with contextlib.redirect_stdout(io.StringIO()):
        g = export_to_nir(net, torch.zeros(10))
    assert isinstance(g.nodes["1"], nir.CubaLIF) and float(g.nodes["1"].tau_syn[0]) > DT
    x = _spikes(7, (T, N, 10))
    graph, trace = nir_workload(g, x)
    ref = snntorch_spikes(net, x, (1, 3))
    for i, pop in ((1, "cubalif1"), (3, "cubalif2")):
        assert graph.populations[pop].neuron.kind == "CubaLIF"
        np.testing.assert_array_equal(_dense(graph, trace, pop), ref[i], err_msg=pop)
        assert ref[i].sum() >= 10, pop
    assert simulate(graph, trace, load_preset("loihi")).energy_j > 0


def test_snntorch_recurrent_synaptic_with_synaptic_memory_imports_with_the_nir_equations():
    """RSynaptic(alpha > 0) exports lif -> w_rec -> lif with a CubaLIF: a recurrent CubaLIF population (snnTorch
    1.0.0's RSynaptic cannot run NIR's in-step reset, so the reference is the float64 reading with the loop)."""
    snn, export_to_nir = _snntorch()
    torch.manual_seed(21)
    rec = snn.RSynaptic(alpha=0.5, beta=0.75, linear_features=8, init_hidden=True, reset_mechanism="zero")
    net = nn.Sequential(nn.Linear(10, 8), rec)
    with torch.no_grad():
        net[0].weight.mul_(2.5)
        rec.recurrent.weight.mul_(2.0)
    with contextlib.redirect_stdout(io.StringIO()):
        g = export_to_nir(net, torch.zeros(10))
    x = _spikes(24, (T, N, 10))
    graph, trace = nir_workload(g, x)
    assert graph.metadata["recurrent"] == {"rec1": 1} and graph.populations["cubalif1"].neuron.kind == "CubaLIF"
    w0, b0 = (net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy())
    wr, br = (rec.recurrent.weight.detach().double().numpy(), rec.recurrent.bias.detach().double().numpy())
    i, v, s, out = np.zeros((N, 8)), np.zeros((N, 8)), np.zeros((N, 8)), []
    for xt in x.double().numpy():
        i = 0.5 * i + xt @ w0.T + b0 + s @ wr.T + br
        v = 0.75 * v + i
        s = (v >= 1.0).astype(float)
        v = np.where(s > 0, 0.0, v)
        out.append(s)
    np.testing.assert_array_equal(_dense(graph, trace, "cubalif1"), np.stack(out))
    assert np.stack(out).sum() >= 20


def _one_pop_graph(neuron: NeuronModel) -> NetworkGraph:
    pops = [Population("input", (8,), NeuronModel("input")), Population("hidden", (6,), neuron)]
    return NetworkGraph(pops, [Projection("fc", "input", "hidden", "dense", np.ones((6, 8), np.float32))])


def test_cubalif_population_holds_twice_the_state_bits_of_a_lif_of_the_same_size():
    lif = _one_pop_graph(NeuronModel("LIF", 1.0, 2.0, 0.0, False))
    cuba = _one_pop_graph(NeuronModel("CubaLIF", 1.0, 2.0, 0.0, False, 3.0))
    for preset in ("loihi", "generic-45nm", "truenorth"):
        core = load_preset(preset).core
        one, two = (state_bits_per_neuron(g.populations["hidden"], core) for g in (lif, cuba))
        assert two == 2 * one > 0, preset
    with pytest.raises(ValueError, match="tau_syn"):
        NeuronModel("CubaLIF", 1.0, 2.0, 0.0, False)
    with pytest.raises(ValueError, match="tau_syn"):
        NeuronModel("LIF", 1.0, 2.0, 0.0, False, 3.0)


def test_cubalif_charges_twice_the_neuron_memory_energy_and_leaves_a_lif_unchanged(tmp_path):
    """Same spikes on a LIF and a CubaLIF population: neuron memory energy doubles for the hidden population,
    everything else (synapses, network, neuron compute) is the same; a LIF graph saves, reloads and hashes as
    before (no tau_syn key), a CubaLIF graph round-trips with its tau_syn."""
    lif = _one_pop_graph(NeuronModel("LIF", 1.0, 2.0, 0.0, False))
    cuba = _one_pop_graph(NeuronModel("CubaLIF", 1.0, 2.0, 0.0, False, 3.0))
    rng = np.random.default_rng(0)
    spikes = {"input": rng.random((2, 4, 8)) < 0.5, "hidden": rng.random((2, 4, 6)) < 0.3}
    results = []
    for g in (lif, cuba):
        trace = EventTrace.from_dense(spikes, graph_fingerprint=g.fingerprint())
        results.append(simulate(g, trace, load_preset("generic-45nm")))
    a, b = (r.energy_breakdown_j for r in results)
    assert b["neuron_memory"] > a["neuron_memory"] > 0
    for k in a:
        if k not in ("neuron_memory", "static"):
            assert b[k] == a[k], k
    lif.save(tmp_path / "lif.npz")
    cuba.save(tmp_path / "cuba.npz")
    assert NetworkGraph.load(tmp_path / "lif.npz").fingerprint() == lif.fingerprint()
    back = NetworkGraph.load(tmp_path / "cuba.npz")
    assert back.populations["hidden"].neuron.tau_syn == 3.0 and back.fingerprint() == cuba.fingerprint()
    assert lif.fingerprint() != cuba.fingerprint()


def test_cubalif_node_steps_match_multi_step():
    x = torch.rand(8, 2, 3, generator=torch.Generator().manual_seed(1)) * 1.5
    node = CubaLIFNode(2.0, 4.0, 1.0)
    multi = node(x)
    node.reset()
    node.step_mode = "s"
    np.testing.assert_array_equal(torch.stack([node(xt) for xt in x]).numpy(), multi.numpy())
    with pytest.raises(ValueError, match="tau_syn"):
        CubaLIFNode(0.5, 4.0)
