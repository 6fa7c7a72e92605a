"""Our NIR export read by the peers: a lowered IF MLP and IF conv net (with a max-pool), a CubaLIF MLP and a conv net
with a conv recurrent loop, written by save_nir, pass nir.read's type check, read back into the same graph and
spikes, and run in snnTorch's import_from_nir and SpikingJelly's nir_exchange with our spikes on the same input. An IF
is written as a LIF that never leaks (nir.IF has no reading both peers share); what no peer can run is refused with
portable=True. SpikingJelly's own IF export (r = 1/dt) imports with its spikes."""
import contextlib
import io

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from workloads.exchange.conv_recurrent import ConvRecurrentContainer
from workloads.exchange.nir_io import graph_from_nir, nir_workload, save_nir, to_nir
from workloads.lowering import lower
from workloads.neurons import CubaLIFNode

snn = pytest.importorskip("snntorch")
from snntorch.import_nir import import_from_nir  # noqa: E402  (needs nirtorch)
from spikingjelly.activation_based.nir_exchange import export_to_nir as sj_export  # noqa: E402
from spikingjelly.activation_based.nir_exchange import import_from_nir as sj_import  # noqa: E402

M = {"step_mode": "m"}


def _spikes(seed: int, shape) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _scaled(net: nn.Sequential, seed: int, factor: float) -> nn.Sequential:
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, 0.15, 1.0)
                m.weight.mul_(factor)
                nn.init.normal_(m.bias, 0.0, 0.1)
    return net


def _if_mlp() -> nn.Sequential:
    return _scaled(nn.Sequential(layer.Linear(10, 8, **M), neuron.IFNode(**M), layer.Linear(8, 6, **M),
                                 neuron.IFNode(v_threshold=0.8, **M), layer.Linear(6, 3, **M)), 11, 0.8)


def _if_conv() -> nn.Sequential:
    return _scaled(nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, **M), neuron.IFNode(**M), layer.MaxPool2d(2, **M),
                                 layer.Flatten(**M), layer.Linear(64, 6, **M), neuron.IFNode(**M)), 12, 0.7)


def _cuba_mlp() -> nn.Sequential:
    return _scaled(nn.Sequential(layer.Linear(10, 8, **M), CubaLIFNode(2.0, 4.0, 1.0, 0.0),
                                 layer.Linear(8, 5, **M), CubaLIFNode(4.0, 2.0, 0.75, 0.0)), 13, 0.6)


def _conv_recurrent() -> nn.Sequential:
    """Conv2d -> LIF (tau 2, no input decay) in a 3x3 conv recurrent loop with bias -> Flatten -> Linear -> LIF."""
    lif = {"tau": 2.0, "decay_input": False}
    loop = ConvRecurrentContainer(neuron.LIFNode(**lif), nn.Conv2d(3, 3, 3, padding=1))
    return _scaled(nn.Sequential(layer.Conv2d(1, 3, 3, padding=1, **M), loop, layer.Flatten(**M),
                                 layer.Linear(3 * 6 * 6, 5, **M), neuron.LIFNode(v_threshold=0.6, **lif, **M)), 17, 0.9)


def _ours(graph, trace, name: str) -> np.ndarray:
    return trace.to_dense(name, graph.populations[name].shape).swapaxes(0, 1)  # (T, N, ...)


def _snntorch(g: nir.NIRGraph, x: torch.Tensor, names) -> dict[str, np.ndarray]:
    """Spikes (T, N, ...) of nodes `names` in snnTorch's import, one sample at a time (its Flatten keeps torch's
    dims, batch included), state threaded through its GraphModule."""
    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(g)
    rec = {n: [] for n in names}
    hooks = [net.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: rec[n].append((o[0] if isinstance(o, tuple) else o).detach().clone())) for n in names]
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        for s in range(x.shape[1]):
            for m in net.modules():  # the neurons, also inside a recurrent node's subgraph
                if hasattr(m, "reset_hidden"):
                    m.reset_hidden()
            state = None
            for t in range(x.shape[0]):
                _, state = net(x[t, s], state)
    for h in hooks:
        h.remove()
    return {n: torch.stack(v).numpy().reshape(x.shape[1], x.shape[0], -1).swapaxes(0, 1) for n, v in rec.items()}


def _spikingjelly(g: nir.NIRGraph, x: torch.Tensor, names) -> dict[str, np.ndarray]:
    """Spikes (T, N, ...) of nodes `names` in SpikingJelly's nir_exchange import (dt 1e-4 s, step mode "s")."""
    gm = sj_import(g, dt=1e-4, step_mode="s")
    rec = {n: [] for n in names}
    hooks = [gm.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: rec[n].append(o[0].clone()))
             for n in names]
    with torch.no_grad():
        state = None
        for t in range(x.shape[0]):
            _, state = gm(x[t], state)
    for h in hooks:
        h.remove()
    return {n: torch.stack(v).numpy().reshape(x.shape[0], x.shape[1], -1) for n, v in rec.items()}


def _round_trip(net: nn.Sequential, x: torch.Tensor, path, names) -> tuple:
    """Lower `net` on x, save_nir (portable), nir.read type-checked; assert the file reads back into the same graph
    and spikes; (graph, trace, NIR graph)."""
    graph, trace = lower(net, x)
    save_nir(graph, path, portable=True)
    g = nir.read(path)  # type_check=True
    back = graph_from_nir(g)
    assert list(back.populations) == list(graph.populations)
    for name, pop in graph.populations.items():
        assert back.populations[name] == pop, name
    keys = ("name", "source", "target", "kind", "stride", "padding", "dilation", "groups", "weight_bits", "storage")
    for p, q in zip(graph.projections, back.projections, strict=True):
        assert [getattr(p, k) for k in keys] == [getattr(q, k) for k in keys] and (p.bias is None) == (q.bias is None)
        np.testing.assert_array_equal(p.weight, q.weight, err_msg=p.name)
        if p.bias is not None:
            np.testing.assert_array_equal(p.bias, q.bias, err_msg=p.name)
    again_graph, again = nir_workload(g, x)
    for name in names:
        np.testing.assert_array_equal(_ours(again_graph, again, name), _ours(graph, trace, name), err_msg=name)
        assert _ours(graph, trace, name).sum() >= 10, name  # every checked layer spikes
    return graph, trace, g


@pytest.mark.parametrize("build, shape, names", [
    (_if_mlp, (6, 3, 10), ("if1", "if2")),
    (_if_conv, (6, 3, 2, 8, 8), ("if1", "pool1", "if2")),
], ids=["mlp", "conv"])
def test_if_export_runs_in_both_peers_with_our_spikes(tmp_path, build, shape, names):
    x = _spikes(14, shape)
    graph, trace, g = _round_trip(build(), x, tmp_path / "if.nir", names)
    assert all(isinstance(g.nodes[n], nir.LIF) and g.nodes[n].metadata["kind"] == "IF" for n in ("if1", "if2"))
    assert all(graph.populations[n].neuron.kind == "IF" for n in ("if1", "if2"))
    peers = {"snntorch": _snntorch(g, x, names), "spikingjelly": _spikingjelly(g, x, names)}
    for peer, spikes in peers.items():
        for name in names:
            want = _ours(graph, trace, name).reshape(x.shape[0], x.shape[1], -1)
            np.testing.assert_array_equal(spikes[name], want, err_msg=f"{peer} {name}")


def test_cubalif_export_reads_back_and_runs_in_both_peers_with_our_spikes(tmp_path):
    x = _spikes(15, (8, 3, 10))
    graph, trace, g = _round_trip(_cuba_mlp(), x, tmp_path / "cuba.nir", ("cubalif1", "cubalif2"))
    node = g.nodes["cubalif1"]
    assert isinstance(node, nir.CubaLIF) and graph.populations["cubalif1"].neuron.tau_syn == 2.0
    np.testing.assert_array_equal(node.w_in, 2.0)  # w_in = tau_syn/dt, r = tau_mem/dt: snnTorch's Synaptic form
    np.testing.assert_array_equal(node.r, 4.0)
    peers = {"snntorch": _snntorch(g, x, ("cubalif1", "cubalif2")),
             "spikingjelly": _spikingjelly(g, x, ("cubalif1", "cubalif2"))}
    for peer, spikes in peers.items():
        for name in ("cubalif1", "cubalif2"):
            np.testing.assert_array_equal(spikes[name], _ours(graph, trace, name), err_msg=f"{peer} {name}")


def test_resets_no_peer_runs_are_refused_in_one_line_when_portable():
    x = _spikes(16, (3, 2, 10))
    soft, _ = lower(nn.Sequential(layer.Linear(10, 4, **M), neuron.IFNode(v_reset=None, **M)), x)
    low, _ = lower(nn.Sequential(layer.Linear(10, 4, **M), CubaLIFNode(2.0, 4.0, 1.0, -0.5)), x)
    for graph, match in ((soft, "population 'if1': a soft reset"), (low, r"population 'cubalif1': v_reset -0.5")):
        with pytest.raises(ValueError, match=match) as err:
            to_nir(graph, portable=True)
        assert "\n" not in str(err.value)
        assert graph_from_nir(to_nir(graph)).populations == graph.populations  # our own metadata keeps it exact


def test_conv_recurrent_loop_exports_and_runs_in_both_peers_with_our_spikes(tmp_path):
    """The self-projection "rec1" (kind conv) is written as a Conv2d loop lif1 -> rec1 -> lif1 and its bias into
    conv1's (a constant current from t = 0); nirtorch feeds a loop the previous step's output (zero at t = 0), as
    our delay of one timestep does."""
    x = _spikes(18, (10, 3, 1, 6, 6))
    graph, trace, g = _round_trip(_conv_recurrent(), x, tmp_path / "crec.nir", ("lif1", "lif2"))
    assert graph.metadata["recurrent"] == {"rec1": 1} and isinstance(g.nodes["rec1"], nir.Conv2d)
    assert {("lif1", "rec1"), ("rec1", "lif1")} <= {tuple(e) for e in g.edges}
    peers = {"snntorch": _snntorch(g, x, ("lif1", "lif2")), "spikingjelly": _spikingjelly(g, x, ("lif1", "lif2"))}
    for peer, spikes in peers.items():
        for name in ("lif1", "lif2"):
            want = _ours(graph, trace, name).reshape(x.shape[0], x.shape[1], -1)
            np.testing.assert_array_equal(spikes[name], want, err_msg=f"{peer} {name}")


def test_linear_recurrent_loop_exports_and_runs_in_spikingjelly_with_our_spikes(tmp_path):
    """A LinearRecurrentContainer is written as a flat loop lif1 -> rec1 (Linear) -> lif1; SpikingJelly runs it
    with our spikes. (snnTorch 1.0's import_from_nir wires a flat Linear loop as input -> rec1 -> lif1 and fails
    on nir.read's name order: the README says so.)"""
    loop = layer.LinearRecurrentContainer(neuron.LIFNode(tau=2.0, decay_input=False), 5, 5, **M)
    net = _scaled(nn.Sequential(layer.Linear(6, 5, **M), loop, layer.Linear(5, 4, **M),
                                neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.5, **M)), 19, 1.2)
    x = _spikes(20, (12, 3, 6))
    graph, trace, g = _round_trip(net, x, tmp_path / "rec.nir", ("lif1", "lif2"))
    assert graph.metadata["recurrent"] == {"rec1": 1} and isinstance(g.nodes["rec1"], nir.Linear)
    spikes = _spikingjelly(g, x, ("lif1", "lif2"))
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(spikes[name], _ours(graph, trace, name).reshape(x.shape[0], x.shape[1], -1))


def test_spikingjelly_if_export_with_r_one_over_dt_imports_with_its_spikes():
    """SpikingJelly's export_to_nir writes IFNode as nir.IF with r = 1/dt (forward Euler of dv/dt = R I): read as
    v' = v + I, not as a per-step gain of 1e4."""
    net = _if_mlp()[:4]
    functional.set_step_mode(net, "s")
    g = sj_export(net, torch.zeros(1, 10))
    assert [float(np.unique(n.r)[0]) for n in g.nodes.values() if isinstance(n, nir.IF)] == [1e4, 1e4]
    functional.set_step_mode(net, "m")
    x = _spikes(19, (8, 3, 10))
    want_graph, want = lower(net, x)
    graph, trace = nir_workload(g, x)
    for name in ("if1", "if2"):
        np.testing.assert_array_equal(_ours(graph, trace, name), _ours(want_graph, want, name), err_msg=name)
        assert _ours(want_graph, want, name).sum() >= 10, name
