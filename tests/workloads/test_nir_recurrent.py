"""Recurrent and Conv1d NIR graphs: snnTorch's RLeaky / RSynaptic (alpha 0) exported with export_to_nir import as a
RecurrentGraph whose spikes equal snnTorch's own forward (recurrent input = previous step's spikes), and so does a
conv RLeaky converted by snnTorch's converter (its export_to_nir refuses it); our export of a lowered recurrent model
reads back with the same graph and spikes; hand-built Conv1d and branching conv-loop graphs import with the spikes of
a float64 reading of the NIR equations; other cycles are refused in one line."""
import contextlib
import io

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer, neuron
from torch import nn

from hwmodels import load_preset, simulate
from hwmodels.mapping.connectivity import synaptic_events
from workloads.exchange.nir_io import from_nir, graph_from_nir, load_nir, nir_workload, save_nir
from workloads.exchange.recurrent import RecurrentGraph
from workloads.lowering import lower

snn = pytest.importorskip("snntorch")
import nirtorch  # noqa: E402,F401  (a pinned peer: scripts/setup.sh installs it with snntorch)
from snntorch.export_nir import export_to_nir  # noqa: E402  (needs nirtorch)
from snntorch_steps import snntorch_spikes

T, N = 20, 3
ZERO_RESET = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}  # NIR's reset (see interop)


def _spikes(seed: int, shape) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _recurrent_net() -> nn.Sequential:
    """Linear(10 -> 8) -> RLeaky(8, all_to_all) -> Linear(8 -> 4) -> Leaky; a quarter of the recurrent weights zero."""
    torch.manual_seed(21)
    rec = snn.RLeaky(beta=0.75, linear_features=8, **ZERO_RESET)
    out = snn.Leaky(beta=torch.full((4,), 0.5), threshold=torch.full((4,), 0.6), output=True, **ZERO_RESET)
    net = nn.Sequential(nn.Linear(10, 8), rec, nn.Linear(8, 4), out)
    with torch.no_grad():
        net[0].weight.mul_(2.5)
        rec.recurrent.weight.mul_(3.0).mul_(torch.rand(8, 8) > 0.25)
        net[2].weight.mul_(3.0)
    return net


def _dense(graph, trace, name: str) -> np.ndarray:
    return trace.to_dense(name, graph.populations[name].shape).swapaxes(0, 1)  # (T, N, ...)


def _export(net: nn.Module) -> nir.NIRGraph:
    with contextlib.redirect_stdout(io.StringIO()):
        return export_to_nir(net, torch.zeros(10))


def test_snntorch_recurrent_leaky_exported_by_snntorch_matches_its_spikes():
    net = _recurrent_net()
    g = _export(net)
    x = _spikes(22, (T, N, 10))
    graph, trace = nir_workload(g, x)
    ref = snntorch_spikes(net, x)
    assert isinstance(graph, RecurrentGraph) and graph.metadata["recurrent"] == {"rec1": 1}
    assert list(graph.populations) == ["input", "lif1", "lif2"]
    assert graph.metadata["nir"]["nodes"]["rec1"] == "1.w_rec"
    for i, pop in ((1, "lif1"), (3, "lif2")):
        np.testing.assert_array_equal(_dense(graph, trace, pop), ref[i], err_msg=pop)
        assert ref[i].sum() >= 10, pop
    rec = next(p for p in graph.projections if p.name == "rec1")
    w = net[1].recurrent.weight.detach().numpy()
    np.testing.assert_array_equal(rec.weight, w)
    assert (rec.source, rec.target) == ("lif1", "lif1")
    s = _dense(graph, trace, "lif1")  # every spike of t reaches its non-zero synapses (at t + 1)
    assert synaptic_events(graph, trace, "nonzero")["rec1"] == int((s @ (w != 0).T).sum())
    assert synaptic_events(graph, trace, "structural")["rec1"] == int(s.sum()) * 8
    result = simulate(graph, trace, load_preset("loihi"))
    assert result.energy_j > 0 and result.synops > 0


def test_our_export_of_a_lowered_recurrent_container_reads_back_with_its_graph_and_spikes(tmp_path):
    torch.manual_seed(25)
    m = {"step_mode": "m"}
    net = nn.Sequential(layer.Linear(12, 8, **m), layer.LinearRecurrentContainer(
        neuron.LIFNode(tau=2.0, v_threshold=0.4), 8, 8, **m), layer.Linear(8, 3, **m), neuron.IFNode(**m))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    x = _spikes(26, (T, N, 12))
    graph, trace = lower(net, x)
    save_nir(graph, tmp_path / "rec.nir")
    back, again = nir_workload(load_nir(tmp_path / "rec.nir"), x)
    assert isinstance(graph_from_nir(tmp_path / "rec.nir"), RecurrentGraph)
    assert back.metadata["recurrent"] == graph.metadata["recurrent"] == {"rec1": 1}
    assert back.metadata["nir"]["nodes"]["rec1"] == "rec1"
    for a, b in zip(graph.projections, back.projections, strict=True):
        assert (a.name, a.source, a.target, a.weight_bits) == (b.name, b.source, b.target, b.weight_bits)
        np.testing.assert_array_equal(a.weight, b.weight, err_msg=a.name)
    np.testing.assert_array_equal(trace.offsets, again.offsets)
    np.testing.assert_array_equal(trace.indices, again.indices)
    assert trace.counts()[..., 1].sum() >= 10


def _conv1d_graph() -> nir.NIRGraph:
    """(2, 12) -> Conv1d(2 -> 4, k 3, stride 2, padding 1) -> LIF (4, 6) -> Flatten -> Affine(24 -> 5) -> LIF."""
    rng = np.random.default_rng(5)

    def lif(shape, thr):
        return nir.LIF(tau=np.full(shape, 2e-4), r=np.full(shape, 2.0), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))
    nodes = {"in": nir.Input(np.array([2, 12])),
             "conv": nir.Conv1d(12, rng.normal(0.3, 1.0, (4, 2, 3)), 2, 1, 1, 1, rng.normal(0, 0.1, 4)),
             "lif1": lif((4, 6), 0.8), "flat": nir.Flatten({"input": np.array([4, 6])}, 0, -1),
             "fc": nir.Affine(rng.normal(0.2, 1.0, (5, 24)), np.zeros(5)), "lif2": lif((5,), 1.0),
             "out": nir.Output(np.array([5]))}
    edges = [("in", "conv"), ("conv", "lif1"), ("lif1", "flat"), ("flat", "fc"), ("fc", "lif2"), ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif_steps(current: torch.Tensor) -> torch.Tensor:
    """Spikes (T, ...) of the NIR LIF v += (dt/tau)(0 - v + r I) with tau = 2 dt, r = 2 (v = v/2 + I), threshold
    0.8 for 3-D currents else 1.0, reset to 0."""
    thr = 0.8 if current.dim() == 4 else 1.0
    v, out = torch.zeros_like(current[0]), []
    for i in current:
        v = v + 0.5 * (-v + 2.0 * i)
        z = (v > thr).double()
        v = torch.where(z > 0, 0.0, v)
        out.append(z)
    return torch.stack(out)


def test_conv1d_node_imports_as_a_line_population_with_reference_spikes():
    g = _conv1d_graph()
    x = _spikes(23, (T, N, 2, 12))
    graph, trace = nir_workload(g, x, dt=1e-4)
    assert [p.shape for p in graph.populations.values()] == [(2, 1, 12), (4, 1, 6), (5,)]
    conv = graph.projections[0]
    assert conv.kind == "conv" and conv.weight.shape == (4, 2, 1, 3)
    c = g.nodes["conv"]
    cur = F.conv1d(x.double().flatten(0, 1), torch.as_tensor(c.weight), torch.as_tensor(c.bias), stride=2, padding=1)
    s1 = _lif_steps(cur.unflatten(0, (T, N)))
    fc = g.nodes["fc"]
    s2 = _lif_steps(s1.flatten(2) @ torch.as_tensor(fc.weight).T + torch.as_tensor(fc.bias))
    pops = list(graph.populations)
    np.testing.assert_array_equal(_dense(graph, trace, pops[1]).reshape(T, N, 4, 6), s1.numpy())
    np.testing.assert_array_equal(_dense(graph, trace, pops[2]), s2.numpy())
    assert s1.sum() >= 20 and s2.sum() >= 5, (s1.sum(), s2.sum())
    assert simulate(graph, trace, load_preset("loihi")).synops > 0


def test_cycles_other_than_a_neuron_weight_loop_are_refused_in_one_line_and_synaptic_memory_in_a_loop_imports():
    """A cycle through two neurons (lif1 -> fc2 -> lif2 -> back -> lif1) has no one-step loop to cut."""
    lif = nir.LIF(tau=np.full(4, 2e-4), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4), v_reset=np.zeros(4))
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([4])), "fc1": nir.Linear(np.ones((4, 4))), "lif1": lif,
                            "fc2": nir.Linear(np.eye(4)), "lif2": lif, "back": nir.Linear(np.eye(4)),
                            "out": nir.Output(np.array([4]))},
                     edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "back"),
                            ("back", "lif1"), ("lif2", "out")], type_check=False)
    with pytest.raises(ValueError, match="cycle; only a loop from a neuron") as err:
        from_nir(g)
    assert "\n" not in str(err.value)
    leaky = _recurrent_net()  # RSynaptic with synaptic memory (alpha > 0): the loop and its CubaLIF import
    slow = nn.Sequential(leaky[0], snn.RSynaptic(alpha=0.5, beta=0.75, linear_features=8, init_hidden=True), leaky[2],
                         leaky[3])
    assert type(from_nir(_export(slow)).model[1].sub_module).__name__ == "CubaLIFNode"


def test_snntorch_recurrent_synaptic_without_synaptic_memory_imports_as_the_recurrent_leaky():
    """RSynaptic(alpha=0) exports a CubaLIF with tau_syn = dt inside the loop: the same network as RLeaky. (snnTorch
    1.0.0's RSynaptic cannot run with reset_delay=False, NIR's reset, so its own forward is no reference.)"""
    leaky = _recurrent_net()
    syn = nn.Sequential(leaky[0], snn.RSynaptic(alpha=0.0, beta=0.75, linear_features=8, init_hidden=True,
                                                reset_mechanism="zero"), leaky[2], leaky[3])
    syn[1].recurrent.load_state_dict(leaky[1].recurrent.state_dict())
    g = _export(syn)
    assert isinstance(g.nodes["1.lif"], nir.CubaLIF)
    x = _spikes(24, (T, N, 10))
    graph, trace = nir_workload(g, x)
    want_graph, want = nir_workload(_export(leaky), x)
    assert graph.metadata["recurrent"] == {"rec1": 1}
    np.testing.assert_array_equal(trace.indices, want.indices)
    np.testing.assert_array_equal(trace.offsets, want.offsets)
    assert trace.counts().sum() >= 20


def _conv_recurrent_net() -> nn.Sequential:
    """Conv2d(1 -> 3, 3x3) -> RLeaky(conv2d_channels 3, kernel 3: a 3x3 conv recurrent) -> Flatten, Linear -> Leaky."""
    torch.manual_seed(27)
    rec = snn.RLeaky(beta=0.75, conv2d_channels=3, kernel_size=3, **ZERO_RESET)
    out = snn.Leaky(beta=0.5, threshold=0.7, output=True, **ZERO_RESET)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), rec, nn.Flatten(), nn.Linear(3 * 6 * 6, 5), out)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        rec.recurrent.weight.mul_(2.0)
        rec.recurrent.bias.add_(0.1)
        net[3].weight.mul_(4.0)
    return net


def test_snntorch_conv_recurrent_leaky_converted_by_snntorch_matches_its_spikes():
    """snnTorch 1.0.0's export_to_nir refuses a conv RLeaky: its converter sizes the RLeaky subgraph by the channel
    count (LIF parameters (C,), Input [C]), so the final nir infer_types finds (C, H, W) -> (C,). The graph its own
    converter builds before that step (nirtorch.extract_nir_graph with _extract_snntorch_module) imports with a conv
    self-projection and snnTorch's spikes; the recurrent bias acts from t = 0 (folded into conv1's bias)."""
    from snntorch.export_nir import _extract_snntorch_module
    net = _conv_recurrent_net()
    with pytest.raises(ValueError, match="type mismatch"), contextlib.redirect_stdout(io.StringIO()):
        export_to_nir(net, torch.zeros(1, 1, 6, 6), ignore_dims=[0])
    g = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, 1, 6, 6),
                                   ignore_submodules_of=[snn.RLeaky, snn.RSynaptic], ignore_dims=[0])
    assert isinstance(g.nodes["1.w_rec"], nir.Conv2d) and np.shape(g.nodes["1.lif"].tau) == (3,)
    x = _spikes(28, (T, N, 1, 6, 6))
    graph, trace = nir_workload(g, x)
    assert isinstance(graph, RecurrentGraph) and graph.metadata["recurrent"] == {"rec1": 1}
    assert graph.metadata["nir"]["nodes"]["rec1"] == "1.w_rec"
    ref = snntorch_spikes(nn.Sequential(net[0], net[1], nn.Sequential(net[2], net[3]), net[4]), x)
    for i, pop in ((1, "lif1"), (3, "lif2")):
        np.testing.assert_array_equal(_dense(graph, trace, pop), ref[i], err_msg=pop)
        assert ref[i].sum() >= 10, pop
    rec = next(p for p in graph.projections if p.name == "rec1")
    w = net[1].recurrent.weight.detach()
    assert (rec.kind, rec.source, rec.target, rec.padding, rec.stride) == ("conv", "lif1", "lif1", (1, 1), (1, 1))
    np.testing.assert_array_equal(rec.weight, w.numpy())
    assert rec.bias is None
    bias = (net[0].bias + net[1].recurrent.bias).detach().numpy()
    np.testing.assert_allclose(graph.projections[0].bias, np.repeat(bias, 36), rtol=1e-6)
    s = torch.as_tensor(_dense(graph, trace, "lif1"), dtype=torch.float32).flatten(0, 1)  # (T N, 3, 6, 6)
    fan_out = F.conv_transpose2d(torch.ones(1, 3, 6, 6), (w != 0).float(), padding=1)  # synapses out of each neuron
    assert synaptic_events(graph, trace, "nonzero")["rec1"] == int((s * fan_out).sum())
    assert simulate(graph, trace, load_preset("loihi")).synops > 0


def test_conv_loop_in_a_branching_graph_imports_with_the_spikes_of_the_nir_equations():
    """in -> c1 -> lif1 (loop through the 3x3 conv "rec") -> c2 and c3 -> lif2 (their sum): the fx import path; LIF
    tau 2 dt, r 2 is v = v/2 + I; the loop adds rec(s[t-1]) with s[-1] = 0 (its bias from t = 0)."""
    rng = np.random.default_rng(9)

    def conv(c_in: int = 2, mean: float = 0.0) -> nir.Conv2d:  # 3x3, padding 1: (c_in, 5, 5) -> (2, 5, 5)
        return nir.Conv2d((5, 5), rng.normal(mean, 0.6 + 0.4 * (c_in == 1), (2, c_in, 3, 3)), 1, 1, 1, 1,
                          rng.normal(0, 0.2, 2))
    lif = nir.LIF(tau=np.full((2, 5, 5), 2e-4), r=np.full((2, 5, 5), 2.0), v_leak=np.zeros((2, 5, 5)),
                  v_threshold=np.ones((2, 5, 5)), v_reset=np.zeros((2, 5, 5)))
    nodes = {"in": nir.Input(np.array([1, 5, 5])), "c1": conv(1, 0.3), "lif1": lif, "rec": conv(), "c2": conv(),
             "c3": conv(), "lif2": lif, "out": nir.Output(np.array([2, 5, 5]))}
    edges = [("in", "c1"), ("c1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "c2"), ("lif1", "c3"),
             ("c2", "lif2"), ("c3", "lif2"), ("lif2", "out")]
    x = _spikes(29, (T, N, 1, 5, 5))
    graph, trace = nir_workload(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), x)
    assert graph.metadata["recurrent"] == {"rec1": 1} and [p.kind for p in graph.projections] == ["conv"] * 4

    def c(h, key):
        return F.conv2d(h, torch.as_tensor(nodes[key].weight), torch.as_tensor(nodes[key].bias), padding=1)
    v1, v2, s1, want = 0.0, 0.0, torch.zeros(N, 2, 5, 5, dtype=torch.float64), {"lif1": [], "lif2": []}
    for xt in x.double():
        v1 = v1 / 2 + c(xt, "c1") + c(s1, "rec")
        s1 = (v1 > 1).double()
        v1 = v1 * (1 - s1)
        v2 = v2 / 2 + c(s1, "c2") + c(s1, "c3")
        s2 = (v2 > 1).double()
        v2 = v2 * (1 - s2)
        want["lif1"].append(s1.numpy())
        want["lif2"].append(s2.numpy())
    for pop, spikes in want.items():
        np.testing.assert_array_equal(_dense(graph, trace, pop), np.stack(spikes), err_msg=pop)
        assert 20 <= np.sum(spikes) < np.size(spikes) // 2, pop
    nodes["rec"].stride = (2, 2)  # a loop must keep the population's (C, H, W)
    with pytest.raises(ValueError, match=r"recurrent node 'rec': Conv2d \(stride \(2, 2\).*does not keep") as err:
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert "\n" not in str(err.value)
