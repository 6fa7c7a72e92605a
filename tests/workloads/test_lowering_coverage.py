"""Lowering coverage (issue 11, item 5): Conv1d models on 1-D signals, SpikingJelly's recurrent containers, tensor
reshapes in fx-traced forwards, the refusal of neurons the chip cannot run, and input-shape errors naming a layer."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

from hwmodels.activity import unpack
from hwmodels.mapping.connectivity import fan_in, synaptic_events
from workloads.exchange.recurrent import RecurrentGraph
from workloads.lowering import lower
from workloads.neurons import charge_sequence
from seeded import Wrap

T, N = 4, 5
M = {"step_mode": "m"}


def _init(model: nn.Module, seed: int, gain: float = 3.0) -> nn.Module:
    """Seeded weights (std gain / sqrt(fan-in)), biases and BatchNorm statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2 + 0.3)
    return model.eval()


def _poisson(shape, p: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _run(model: nn.Module, x: torch.Tensor, types) -> tuple[dict, torch.Tensor]:
    """Independent of the lowering: {module: [(input, output) of every call]} for the modules of `types` (a
    single-step node inside a recurrent container is called once per timestep), and the model output."""
    rec, handles = {}, []
    for m in model.modules():
        if isinstance(m, types):
            handles.append(m.register_forward_hook(
                lambda mod, args, out: rec.setdefault(mod, []).append((args[0].clone(), out.clone()))))
    functional.reset_net(model)
    with torch.no_grad():
        y = model(x)
    functional.reset_net(model)
    for h in handles:
        h.remove()
    return rec, y


def _dense(graph, trace, pop: str) -> torch.Tensor:
    """Spikes of `pop` as (T, N, *shape), read back from the trace."""
    return torch.from_numpy(trace.to_dense(pop, graph.populations[pop].shape)).transpose(0, 1).double()


def _spikingjelly_synops(net: nn.Module, x: torch.Tensor) -> int:
    counter = SynOpCounter()
    functional.reset_net(net)
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(x)
    functional.reset_net(net)
    return counter.get_total()


# ------------------------------------------------------------------------------------------------ Conv1d


def _kws_net() -> nn.Sequential:
    """A keyword-spotting-style 1-D SNN on (T, N, 2, 16): 4C3-BN-IF-MP2-6C3s2-BN-LIF-AP2-FC5, pruned taps."""
    net = nn.Sequential(
        layer.Conv1d(2, 4, 3, padding=1, bias=False, **M), layer.BatchNorm1d(4, **M),
        neuron.IFNode(v_threshold=0.5, **M), layer.MaxPool1d(2, **M),
        layer.Conv1d(4, 6, 3, stride=2, padding=1, groups=2, **M), layer.BatchNorm1d(6, **M),
        neuron.LIFNode(tau=2.0, v_threshold=0.4, **M), layer.AvgPool1d(2, **M),
        layer.Flatten(**M), layer.Linear(6 * 2, 5, **M))
    _init(net, seed=1)
    with torch.no_grad():
        net[0].weight[1, :, 0] = 0.0  # a kernel tap pruned in one filter
        net[5].bias.add_(4.0)  # conv2 filters of this seed are negative on average: let lif2 fire
    return net


def test_conv1d_lowers_to_conv_projections_with_fan_in_and_synapse_counts():
    net, x = _kws_net(), _poisson((T, N, 2, 16), 0.4, seed=2)
    graph, trace = lower(net, x, batch_size=2)
    shapes = {name: pop.shape for name, pop in graph.populations.items()}
    assert shapes == {"input": (2, 1, 16), "if1": (4, 1, 16), "pool1": (4, 1, 8), "lif2": (6, 1, 4),
                      "output": (5,)}
    conv1, maxpool1, conv2, fc1 = graph.projections
    assert [graph.metadata["origin"][p.name] for p in graph.projections] == ["Conv1d", "MaxPool1d", "Conv1d", "Linear"]
    assert (conv1.weight.shape, conv1.stride, conv1.padding) == ((4, 2, 1, 3), (1, 1), (0, 1))
    assert (conv2.weight.shape, conv2.stride, conv2.padding, conv2.groups) == ((6, 2, 1, 3), (1, 2), (0, 1), 2)
    assert (maxpool1.weight.shape, maxpool1.stride, maxpool1.groups) == ((4, 1, 1, 2), (1, 2), 4)
    assert fc1.weight.shape == (5, 6 * 4)  # AvgPool1d(2) folded: each pooled weight over its 2 positions, / 2
    # fan-in: 2 channels x 3 taps inside, 2 x 2 at the padded ends; filter 1 lost one tap per input channel
    fi = fan_in(conv1, shapes["input"], "nonzero").reshape(4, 16)
    assert fi[0].tolist() == [4] + [6] * 14 + [4] and fi[1].tolist() == [4] + [4] * 14 + [2]
    assert conv1.nonzero_synapses == 4 * 2 * 3 - 2 and conv2.nonzero_synapses == 6 * 2 * 3
    assert fan_in(conv2, shapes["pool1"], "structural").reshape(6, 4).tolist() == [[4, 6, 6, 6]] * 6


def test_conv1d_synaptic_events_equal_a_dense_recount_and_spikingjelly():
    net, x = _kws_net(), _poisson((T, N, 2, 16), 0.4, seed=3)
    graph, trace = lower(net, x, batch_size=2)
    nonzero, structural = synaptic_events(graph, trace, "nonzero"), synaptic_events(graph, trace, "structural")
    spikes = {"input": x.double(), "pool1": _dense(graph, trace, "pool1")}
    for proj_name, m, src in (("conv1", net[0], "input"), ("conv2", net[4], "pool1")):
        s = spikes[src].reshape(T * N, m.in_channels, -1)
        assert s.sum() > 0
        for count, kernel in ((nonzero, (m.weight != 0).double()), (structural, torch.ones_like(m.weight).double())):
            want = F.conv1d(s, kernel, None, m.stride, m.padding, m.dilation, m.groups).sum()
            assert count[proj_name] == int(want)
    lif = _dense(graph, trace, "lif2").flatten(2)
    assert lif.sum() > 0 and structural["fc1"] == int(lif.sum()) * 5
    # SpikingJelly counts the fan-out of conv1 and conv2 (binary inputs), nothing for the max-pool OR and nothing
    # for fc1, whose input after the AvgPool1d is not binary
    assert structural["conv1"] + structural["conv2"] == _spikingjelly_synops(net, x)


def test_conv1d_replay_of_recorded_spikes_gives_model_currents_and_maxpool_is_an_or():
    net, x = _kws_net(), _poisson((T, N, 2, 16), 0.4, seed=4)
    graph, trace = lower(net, x, batch_size=3)
    rec, y = _run(net, x, neuron.BaseNode)
    want = {"if1": rec[net[2]][0][0], "lif2": rec[net[6]][0][0], "output": y}
    for proj in (p for p in graph.projections if p.name != "maxpool1"):
        s = x.double() if proj.source == "input" else _dense(graph, trace, proj.source)
        w = torch.from_numpy(proj.weight).double()
        if proj.kind == "conv":
            cur = F.conv2d(s.flatten(0, 1).reshape((T * N,) + graph.populations[proj.source].shape), w, None,
                           proj.stride, proj.padding, proj.dilation, proj.groups)
        else:
            cur = s.flatten(2) @ w.T
        cur = cur.reshape(T, N, -1) + (0.0 if proj.bias is None else torch.from_numpy(proj.bias).double())
        np.testing.assert_allclose(cur.numpy(), want[proj.target].reshape(T, N, -1).double().numpy(), atol=1e-5)
    src, got = _dense(graph, trace, "if1").reshape(T * N, 4, 16), _dense(graph, trace, "pool1").reshape(T * N, 4, 8)
    assert got.sum() > 0 and torch.equal(got, F.max_pool1d(src, 2))


def test_conv1d_in_seq_to_ann_container_and_adaptive_pool_lower_alike():
    plain = nn.Sequential(layer.Conv1d(2, 3, 3, padding=1, **M), neuron.IFNode(v_threshold=0.3, **M),
                          layer.AdaptiveAvgPool1d(4, **M), layer.Flatten(**M), layer.Linear(12, 2, **M))
    wrapped = nn.Sequential(layer.SeqToANNContainer(nn.Conv1d(2, 3, 3, padding=1)), neuron.IFNode(v_threshold=0.3, **M),
                            layer.SeqToANNContainer(nn.AdaptiveAvgPool1d(4), nn.Flatten(), nn.Linear(12, 2)))
    _init(plain, seed=5), _init(wrapped, seed=5)
    x = _poisson((T, N, 2, 8), 0.5, seed=6)
    (g1, t1), (g2, t2) = lower(plain, x), lower(wrapped, x)
    assert [p.weight.shape for p in g1.projections] == [(3, 2, 1, 3), (2, 24)]
    for p1, p2 in zip(g1.projections, g2.projections):
        np.testing.assert_array_equal(p1.weight, p2.weight)
    np.testing.assert_array_equal(t1.indices, t2.indices)



class _Audio(nn.Module):
    """The KWS net with its own forward (fx engine), flattening with x.flatten(2) instead of a Flatten layer."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.features, self.fc = net[:8], net[9]

    def forward(self, x):
        return self.fc(self.features(x).flatten(2))


@pytest.mark.parametrize("wrap", [Wrap, _Audio])
def test_conv1d_in_fx_forwards_lowers_like_the_sequential_walk(wrap):
    net, x = _kws_net(), _poisson((T, N, 2, 16), 0.4, seed=15)
    (g1, t1), (g2, t2) = lower(net, x), lower(wrap(net), x)
    assert {n: p.shape for n, p in g1.populations.items()} == {n: p.shape for n, p in g2.populations.items()}
    for p, q in zip(g1.projections, g2.projections):
        assert (p.name, p.source, p.target, p.kind, p.stride, p.padding, p.groups) == (
            q.name, q.source, q.target, q.kind, q.stride, q.padding, q.groups)
        np.testing.assert_allclose(p.weight, q.weight, rtol=1e-6)
    assert g2.metadata["origin"] == {"conv1": "Conv1d", "maxpool1": "MaxPool1d", "conv2": "Conv1d", "fc1": "Linear"}
    np.testing.assert_array_equal(t1.offsets, t2.offsets)
    np.testing.assert_array_equal(t1.indices, t2.indices)


def test_conv1d_after_an_unflatten_to_channels_and_length():
    """(T, N, F) features unflattened to (C, L) per sample feed a Conv1d: the population is held as (C, 1, L)."""
    net = _init(nn.Sequential(nn.Unflatten(2, (2, 8)), layer.Conv1d(2, 3, 3, **M), neuron.IFNode(v_threshold=0.3, **M),
                              layer.MaxPool1d(2, **M)), seed=19)
    graph, trace = lower(net, _poisson((T, N, 16), 0.5, seed=20))
    assert [p.shape for p in graph.populations.values()] == [(2, 1, 8), (3, 1, 6), (3, 1, 3)]
    assert trace.counts().sum(axis=(0, 1))[1] > 0

# --------------------------------------------------------------------------------------- recurrent containers


def _recurrent_net(sub: str) -> nn.Sequential:
    """Linear(12 -> 8) then LinearRecurrentContainer(8, 8) around an IF node (or Linear(8, 6)-BN1d-LIF), readout."""
    if sub == "node":
        inner, n_out = neuron.IFNode(v_threshold=0.4), 8
    else:
        inner, n_out = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), neuron.LIFNode(tau=2.0, v_threshold=0.4)), 6
    net = nn.Sequential(layer.Linear(12, 8, **M), layer.LinearRecurrentContainer(inner, 8, n_out, **M),
                        layer.Linear(n_out, 3, **M))
    return _init(net, seed=7, gain=3.0)


@pytest.mark.parametrize("sub", ["node", "linear_bn_node"])
def test_linear_recurrent_container_is_a_self_projection_replayed_from_previous_spikes(sub):
    net, x = _recurrent_net(sub), _poisson((T, N, 12), 0.5, seed=8)
    graph, trace = lower(net, x, batch_size=2)
    assert isinstance(graph, RecurrentGraph)
    pop = next(iter(graph.metadata["recurrent"]))
    rec_proj = next(p for p in graph.projections if p.name == pop)
    name = rec_proj.source
    assert rec_proj.target == name and graph.metadata["recurrent"] == {"rec1": 1}
    assert graph.metadata["origin"]["rec1"] == "LinearRecurrentContainer"
    n_out = graph.populations[name].size
    ff = graph.in_projections(name)[0]
    assert (ff.source, ff.weight.shape, rec_proj.weight.shape) == ("input", (n_out, 12), (n_out, n_out))
    # the node's input current at t = feed-forward of x[t] + recurrent weights x spikes of t - 1 (recorded) + bias
    node = net[1].sub_module if sub == "node" else net[1].sub_module[-1]
    rec, y = _run(net, x, neuron.BaseNode)
    want = torch.stack([inp for inp, _ in rec[node]]).double()
    s = _dense(graph, trace, name).flatten(2)
    assert s.sum() > 0
    before = torch.cat([torch.zeros_like(s[:1]), s[:-1]])
    cur = x.double() @ torch.from_numpy(ff.weight).double().T + before @ torch.from_numpy(rec_proj.weight).double().T
    cur = cur + torch.from_numpy(ff.bias).double()
    np.testing.assert_allclose(cur.numpy(), want.numpy(), atol=1e-5)
    np.testing.assert_array_equal(s.numpy(), torch.stack([out for _, out in rec[node]]).numpy())
    events = synaptic_events(graph, trace, "structural")
    assert events["rec1"] == int(s.sum()) * n_out  # every spike reaches the whole population one step later
    nonzero = synaptic_events(graph, trace, "nonzero")["rec1"]
    assert nonzero == int((s @ (torch.from_numpy(rec_proj.weight) != 0).double().T).sum())
    # activity of the single-step node: input current, potential before the step or a spike (replayed potentials)
    _, v = charge_sequence(node, want.float(), s.float())
    before = torch.cat([torch.zeros_like(v[:1]), v[:-1]]) != 0
    rows = torch.cat([(want != 0) | before | (s != 0), v[-1:] != 0]).transpose(0, 1).numpy()
    np.testing.assert_array_equal(unpack(trace.activity[name], n_out), rows)


def test_elementwise_recurrent_container_adds_a_scaled_identity_self_projection():
    net = nn.Sequential(layer.Linear(10, 6, **M),
                        layer.ElementWiseRecurrentContainer(neuron.IFNode(v_threshold=0.5), lambda y, x: x + 0.5 * y,
                                                            **M),
                        layer.Linear(6, 2, **M))
    _init(net, seed=9)
    x = _poisson((T, N, 10), 0.5, seed=10)
    graph, trace = lower(net, x)
    assert list(graph.populations) == ["input", "if1", "output"] and graph.metadata["recurrent"] == {"rec1": 1}
    rec_proj = next(p for p in graph.projections if p.name == "rec1")
    np.testing.assert_array_equal(rec_proj.weight, 0.5 * np.eye(6, dtype=np.float32))
    rec, _ = _run(net, x, neuron.BaseNode)
    want = torch.stack([inp for inp, _ in rec[net[1].sub_module]]).double()
    s = _dense(graph, trace, "if1").flatten(2)
    assert s.sum() > 0
    ff = graph.in_projections("if1")[0]
    before = torch.cat([torch.zeros_like(s[:1]), s[:-1]])
    cur = x.double() @ torch.from_numpy(ff.weight).double().T + torch.from_numpy(ff.bias).double() + 0.5 * before
    np.testing.assert_allclose(cur.numpy(), want.numpy(), atol=1e-5)
    assert synaptic_events(graph, trace, "nonzero")["rec1"] == int(s.sum())


class _ResidualMLP(nn.Module):
    """s1(fc1(y) + y) with y = s0(fc0(x)): a flat identity shortcut."""

    def __init__(self):
        super().__init__()
        self.fc0, self.s0 = layer.Linear(10, 6, **M), neuron.IFNode(v_threshold=0.5, **M)
        self.fc1, self.s1 = layer.Linear(6, 6, **M), neuron.IFNode(v_threshold=0.5, **M)

    def forward(self, x):
        y = self.s0(self.fc0(x))
        return self.s1(self.fc1(y) + y)


def test_flat_identities_are_stored_sparse_with_fan_out_one():
    # they were dense n x n matrices: the chip paid n synaptic events a spike and n^2 stored weights, where the
    # same identity on a (C, H, W) map is a 1x1 depthwise conv of fan-out 1
    from hwmodels import load_preset, simulate
    x = _poisson((T, N, 10), 0.5, seed=10)
    recurrent = nn.Sequential(layer.Linear(10, 6, **M), neuron.IFNode(v_threshold=0.5, **M),
                              layer.ElementWiseRecurrentContainer(neuron.IFNode(v_threshold=0.5), lambda y, x: x + y,
                                                                  **M))
    for net, names in ((_ResidualMLP(), ["identity1"]), (recurrent, ["identity1", "rec1"])):
        _init(net, seed=9)
        graph, trace = lower(net, x)
        spikes = {p: int(_dense(graph, trace, p).sum()) for p in graph.populations if p != "input"}
        sim = simulate(graph, trace, load_preset("loihi"), model="analytic")
        for name in names:
            proj = next(p for p in graph.projections if p.name == name)
            assert proj.storage == "sparse" and proj.nonzero_synapses == 6, name
            assert synaptic_events(graph, trace, "nonzero")[name] == spikes[proj.source], name
        paid = sum(synaptic_events(graph, trace, "nonzero").values())
        assert sim.synops == pytest.approx(paid / N, rel=1e-12)  # every projection pays its non-zero synapses
        dense = lower(net, x, storage="dense")[0]  # asked for: kept
        assert all(p.storage == "dense" for p in dense.projections)


def test_elementwise_recurrent_container_with_a_nonlinear_function_is_refused():
    net = nn.Sequential(layer.Linear(4, 4, **M),
                        layer.ElementWiseRecurrentContainer(neuron.IFNode(), lambda y, x: x * y, **M))
    with pytest.raises(ValueError, match=r"layer 1:ElementWiseRecurrentContainer: element_wise_function must be "
                                         r"linear"):
        lower(net, torch.zeros(2, 1, 4))



def _elementwise_net() -> nn.Sequential:
    net = nn.Sequential(layer.Conv2d(1, 3, 3, padding=1, **M), neuron.IFNode(v_threshold=0.4, **M),
                        layer.ElementWiseRecurrentContainer(neuron.LIFNode(v_threshold=0.3),
                                                            lambda y, x: 2.0 * x - y, **M),
                        layer.Flatten(**M), layer.Linear(3 * 4 * 4, 2, **M))
    return _init(net, seed=16)


def _replayed_current(graph, trace, x: torch.Tensor, pop: str) -> torch.Tensor:
    """(T, N, n) input current of `pop` from the recorded spikes: every in-projection's weights applied to its
    source's spikes at t (at t - 1 for a recurrent projection, graph.metadata["recurrent"]), plus the biases."""
    total = 0.0
    for proj in graph.in_projections(pop):
        src_shape = graph.populations[proj.source].shape
        s = x.double() if proj.source == "input" else _dense(graph, trace, proj.source)
        delay = graph.metadata.get("recurrent", {}).get(proj.name, 0)
        s = torch.cat([torch.zeros_like(s[:delay]), s[:T - delay]])
        w = torch.from_numpy(proj.weight).double()
        if proj.kind == "conv":
            cur = F.conv2d(s.reshape((T * N,) + src_shape), w, None, proj.stride, proj.padding, proj.dilation,
                           proj.groups)
        else:
            cur = s.reshape(T, N, -1) @ w.T
        total = total + cur.reshape(T, N, -1) + (0.0 if proj.bias is None else torch.from_numpy(proj.bias).double())
    return total


def test_elementwise_recurrent_container_on_a_conv_map_replays_exactly():
    net, x = _elementwise_net(), _poisson((T, N, 1, 4, 4), 0.5, seed=18)
    graph, trace = lower(net, x)
    rec_proj = next(p for p in graph.projections if p.name == "rec1")
    assert (rec_proj.kind, rec_proj.weight.shape, rec_proj.groups) == ("conv", (3, 1, 1, 1), 3)
    assert (rec_proj.weight == -1).all() and graph.populations["lif2"].shape == (3, 4, 4)
    rec, _ = _run(net, x, neuron.BaseNode)
    want = torch.stack([inp for inp, _ in rec[net[2].sub_module]]).double().reshape(T, N, -1)
    assert _dense(graph, trace, "lif2").sum() > 0
    np.testing.assert_allclose(_replayed_current(graph, trace, x, "lif2").numpy(), want.numpy(), atol=1e-5)


@pytest.mark.parametrize("make, shape", [(lambda: _recurrent_net("node"), (T, N, 12)),
                                         (lambda: _recurrent_net("linear_bn_node"), (T, N, 12)),
                                         (_elementwise_net, (T, N, 1, 4, 4))])
def test_recurrent_containers_in_fx_forwards_lower_like_the_sequential_walk(make, shape):
    net, x = make(), _poisson(shape, 0.5, seed=17)
    (g1, t1), (g2, t2) = lower(net, x), lower(Wrap(net), x)
    assert isinstance(g2, RecurrentGraph) and g2.metadata["recurrent"] == g1.metadata["recurrent"] == {"rec1": 1}
    assert [(p.name, p.source, p.target, p.kind) for p in g1.projections] == [
        (p.name, p.source, p.target, p.kind) for p in g2.projections]
    for p, q in zip(g1.projections, g2.projections):
        np.testing.assert_allclose(p.weight, q.weight, rtol=1e-6)
    assert t1.counts().sum() > 0
    np.testing.assert_array_equal(t1.indices, t2.indices)
    for name in t1.activity:
        np.testing.assert_array_equal(t1.activity[name], t2.activity[name])

# --------------------------------------------------------------------------------- reshapes in fx forwards


class _Reshaping(nn.Module):
    """Conv-IF, x.flatten(2), Linear, .view to (3, 2, 2) with x.shape[0] / x.size(1), conv-IF, .reshape flat,
    Linear-IF, nn.Unflatten to (6, 1, 1), conv-IF, torch.flatten(s, 2), readout."""

    def __init__(self):
        super().__init__()
        self.conv1, self.sn1 = layer.Conv2d(1, 4, 3, padding=1, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.fc1, self.sn2 = layer.Linear(4 * 6 * 6, 12, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.conv2, self.sn3 = layer.Conv2d(3, 2, 1, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.fc2, self.sn4 = layer.Linear(8, 6, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.unflat = nn.Unflatten(2, (6, 1, 1))
        self.conv3, self.sn5 = layer.Conv2d(6, 4, 1, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.out = layer.Linear(4, 3, **M)

    def forward(self, x):
        s = self.sn1(self.conv1(x)).flatten(2)
        s = self.sn2(self.fc1(s).view(x.shape[0], x.size(1), 3, 2, 2))
        s = self.sn3(self.conv2(s)).reshape(x.shape[0], x.shape[1], -1)
        s = self.unflat(self.sn4(self.fc2(s)))
        s = self.sn5(self.conv3(s))
        return self.out(torch.flatten(s, 2))


def _sequential_twin(m: _Reshaping) -> nn.Sequential:
    """The same layers with nn.Flatten/Unflatten modules (the Sequential walk)."""
    return nn.Sequential(m.conv1, m.sn1, nn.Flatten(2), m.fc1, nn.Unflatten(2, (3, 2, 2)), m.sn2, m.conv2, m.sn3,
                         nn.Flatten(2), m.fc2, m.sn4, nn.Unflatten(2, (6, 1, 1)), m.conv3, m.sn5, nn.Flatten(2), m.out)


def test_tensor_reshapes_in_fx_forwards_are_layout_only():
    model = _init(_Reshaping(), seed=11)
    x = _poisson((T, N, 1, 6, 6), 0.5, seed=12)
    graph, trace = lower(model, x)
    twin_graph, twin_trace = lower(_sequential_twin(model), x)
    assert {n: p.shape for n, p in graph.populations.items()} == {
        "input": (1, 6, 6), "if1": (4, 6, 6), "if2": (3, 2, 2), "if3": (2, 2, 2), "if4": (6, 1, 1), "if5": (4, 1, 1),
        "output": (3,)}
    assert list(graph.populations) == list(twin_graph.populations)
    for p, q in zip(graph.projections, twin_graph.projections):
        assert (p.name, p.source, p.target, p.kind) == (q.name, q.source, q.target, q.kind)
        np.testing.assert_allclose(p.weight, q.weight, rtol=1e-6)
    assert trace.counts().sum(axis=(0, 1))[1:-1].min() > 0
    np.testing.assert_array_equal(trace.offsets, twin_trace.offsets)
    np.testing.assert_array_equal(trace.indices, twin_trace.indices)


class _Unsqueezed(nn.Module):
    """Flat IF spikes unsqueezed to (1, 1, F) per sample, a 1x1 conv, readout: unsqueeze as a layout change."""

    def __init__(self):
        super().__init__()
        self.fc, self.sn1 = layer.Linear(6, 8, **M), neuron.IFNode(v_threshold=0.3, **M)
        self.conv, self.sn2 = layer.Conv2d(1, 2, 1, **M), neuron.IFNode(v_threshold=0.3, **M)

    def forward(self, x):
        s = self.sn1(self.fc(x)).unsqueeze(2).unsqueeze(-2)
        return self.sn2(self.conv(s))


def test_unsqueeze_reshapes_a_flat_population():
    graph, trace = lower(_init(_Unsqueezed(), seed=13), _poisson((T, N, 6), 0.6, seed=14))
    assert graph.populations["if1"].shape == (1, 1, 8) and graph.populations["if2"].shape == (2, 1, 8)
    assert trace.counts().sum() > 0


class _UnsqueezedSignal(nn.Module):
    """(T, N, L) -> x.unsqueeze(2): a (1, L) per-sample signal for a Conv1d inside the model's own forward."""

    def __init__(self):
        super().__init__()
        self.conv, self.sn = layer.Conv1d(1, 3, 3, **M), neuron.IFNode(**M)

    def forward(self, x):
        return self.sn(self.conv(x.unsqueeze(2)))


def test_a_conv1d_on_a_signal_reshaped_inside_the_model_is_refused_saying_why():
    # was "expects input (C=1, L), got per-sample shape (1, 16)": the shape it expects, refused
    with pytest.raises(ValueError, match=r"reads 1-D signals only as the model's own inputs \(T, N, C, L\); here its "
                                         r"\(C, L\) = \(1, 16\) comes from a reshape inside the model"):
        lower(_UnsqueezedSignal(), torch.zeros(2, 1, 16))


class _MergesBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.sn = layer.Linear(6, 4, **M), neuron.IFNode(**M)

    def forward(self, x):
        return self.sn(self.fc(x)).flatten(0, 1)


def test_reshape_that_merges_time_and_batch_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"operation flatten: only flatten\(2\)"):
        lower(_MergesBatch(), torch.zeros(2, 1, 6))


# ---------------------------------------------------------------------------------------------- neurons


@pytest.mark.parametrize("node", [neuron.IFNode(**M), neuron.LIFNode(**M), neuron.ParametricLIFNode(**M),
                                  neuron.TernaryIFNode(**M), neuron.TernaryLIFNode(**M)])
def test_spikingjelly_neurons_the_chip_expresses_are_accepted(node):
    graph, _ = lower(nn.Sequential(layer.Linear(4, 3, **M), node), torch.ones(2, 1, 4))
    assert graph.populations[list(graph.populations)[-1]].neuron.kind in ("IF", "LIF", "PLIF")


@pytest.mark.parametrize("node", [neuron.QIFNode(**M), neuron.IzhikevichNode(**M), neuron.ILIFNode(**M),
                                  neuron.KLIFNode(**M)])
@pytest.mark.parametrize("wrap", [False, True])
def test_other_neurons_get_a_one_line_refusal_naming_them(node, wrap):
    net = nn.Sequential(layer.Linear(4, 3, **M), node)
    name = type(node).__name__
    with pytest.raises(ValueError) as err:
        lower(Wrap(net) if wrap else net, torch.ones(2, 1, 4))
    msg = str(err.value)
    assert "\n" not in msg and f"spiking neuron {name} is not supported" in msg
    assert msg.startswith(f"layer {'net.1' if wrap else '1'} ({name})")
    assert ("supported neurons: CubaLIFNode, IFNode, LIFNode, ParametricLIFNode, QLIFNode, SLIFNode, "
            "TernaryIFNode") in msg


# ------------------------------------------------------------------------------------------- input shape


@pytest.mark.parametrize("model, x, match", [
    (lambda: nn.Sequential(layer.Conv1d(2, 4, 3, **M), neuron.IFNode(**M)), torch.zeros(2, 1, 2, 8, 8),
     r"inputs: shape \(2, 1, 2, 8, 8\) does not fit the model; layer 0 \(Conv1d\) needs inputs \(T, N, C=2, L\)"),
    (lambda: nn.Sequential(layer.Conv2d(3, 4, 3, **M), neuron.IFNode(**M)), torch.zeros(2, 1, 3, 8),
     r"inputs: shape \(2, 1, 3, 8\) does not fit the model; layer 0 \(Conv2d\) needs inputs \(T, N, C=3, H, W\)"),
    (lambda: Wrap(nn.Sequential(layer.Conv1d(2, 4, 3, **M), neuron.IFNode(**M))), torch.zeros(2, 1),
     r"inputs: shape \(2, 1\) must be .*; layer net.0 \(Conv1d\) needs inputs \(T, N, C=2, L\)"),
    (lambda: nn.Sequential(layer.Linear(5, 4, **M), neuron.IFNode(**M)), torch.zeros(2, 1, 2, 2, 2, 2),
     r"layer 0 \(Linear\) needs inputs \(T, N, F=5\)"),
    (lambda: nn.Sequential(layer.Conv1d(2, 4, 3, **M), neuron.IFNode(**M), layer.Conv2d(4, 4, 1, **M)),
     torch.zeros(2, 1, 2, 8), r"layer 2 \(Conv2d\): needs images \(C, H, W\).*got 1-D signals \(C, L\) = \(4, 6\)"),
    (lambda: nn.Sequential(layer.Conv1d(3, 4, 3, **M), neuron.IFNode(**M)), torch.zeros(2, 1, 2, 8),
     r"layer 0 \(Conv1d\): expects input \(C=3, L\), got per-sample shape \(2, 8\)"),
])
def test_input_shape_errors_name_the_layer_that_needs_the_shape(model, x, match):
    with pytest.raises(ValueError, match=match):
        lower(model(), x)


class _SkipAroundRecurrent(nn.Module):
    """fc1 -> n1 -> fc2 -> n2, then n1 + n2 -> fc3 -> n3 (a plain IF or a LinearRecurrentContainer) -> fc4 -> n4."""

    def __init__(self, recurrent: bool):
        super().__init__()
        lin = lambda i, o: layer.Linear(i, o, bias=False, step_mode="m")  # noqa: E731
        self.fc1, self.fc2, self.fc3, self.fc4 = lin(6, 5), lin(5, 5), lin(5, 5), lin(5, 3)
        self.n1, self.n2, self.n4 = (neuron.IFNode(v_threshold=0.5, step_mode="m") for _ in range(3))
        self.n3 = (layer.LinearRecurrentContainer(neuron.IFNode(v_threshold=0.5), 5, 5, bias=False, step_mode="m")
                   if recurrent else neuron.IFNode(v_threshold=0.5, step_mode="m"))

    def forward(self, x):
        a = self.n1(self.fc1(x))
        return self.n4(self.fc4(self.n3(self.fc3(a + self.n2(self.fc2(a))))))


def test_a_skip_around_a_recurrent_population_keeps_the_longest_same_timestep_path():
    """The recurrent projection carries the one-step delay, every other acts in its timestep: depths are the
    feed-forward net's (the shortest path used to put the sum of n1 and n2 at depth 2, before n2's spikes)."""
    x = _poisson((4, 2, 6), 0.5, 3)
    depths = []
    for recurrent in (False, True):
        graph, _ = lower(_init(_SkipAroundRecurrent(recurrent), 1), x, weight_fit="widen")
        assert isinstance(graph, RecurrentGraph) == recurrent
        depths.append({p: graph.depth(p) for p in graph.populations})
    assert depths[0] == depths[1] and max(depths[1].values()) == 5, depths
    loop = [p for p in graph.projections if p.source == p.target]
    assert len(loop) == 1 and graph.metadata["recurrent"] == {loop[0].name: 1}


def test_self_projections_are_delayed_and_undeclared_loops_fall_back_to_shortest_paths():
    """in -> a -> b -> c plus in -> c: a self-projection on c (which can only act a timestep later) keeps c at
    depth 3; a loop c -> a of no declared delay leaves no acyclic same-timestep part: breadth-first depths."""
    from hwmodels.trace import NeuronModel, Population, Projection
    from workloads.exchange.recurrent import make_graph
    pops = [Population("in", (2,), NeuronModel(kind="input"))] + [Population(n, (2,)) for n in "abc"]
    eye = np.eye(2)
    base = [Projection(s + t, s if s != "i" else "in", t, "dense", eye) for s, t in ("ia", "ab", "bc", "ic")]
    loop = make_graph(pops, base + [Projection("cc", "c", "c", "dense", eye)])
    assert isinstance(loop, RecurrentGraph) and [loop.depth(p) for p in "abc"] == [1, 2, 3]
    back = make_graph(pops, base + [Projection("ca", "c", "a", "dense", eye)])
    assert [back.depth(p) for p in "abc"] == [1, 2, 1]
    declared = make_graph(pops, base + [Projection("ca", "c", "a", "dense", eye)], metadata={"recurrent": {"ca": 1}})
    assert [declared.depth(p) for p in "abc"] == [1, 2, 3]


class _FlatPixels(nn.Module):
    """(T, N, 784) flat pixels viewed as images before the conv (declared after nothing it runs after)."""

    def __init__(self):
        super().__init__()
        self.conv = layer.Conv2d(1, 4, 3, padding=1, step_mode="m")
        self.n1 = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.fc = layer.Linear(4 * 28 * 28, 10, step_mode="m")
        self.n2 = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x):
        x = x.view(x.shape[0], x.shape[1], 1, 28, 28)
        return self.n2(self.fc(self.n1(self.conv(x)).flatten(2)))


def test_a_forward_that_views_flat_input_as_images_lowers():
    """The input pre-check took the first declared conv of any model and wanted (T, N, C, H, W): a valid forward
    that reshapes flat pixels first was refused. Input of the wrong size still fails in one line naming the view."""
    x = _poisson((3, 2, 784), 0.3, 5)
    graph, trace = lower(_init(_FlatPixels(), 2), x, weight_fit="widen")
    assert graph.populations["input"].shape == (1, 28, 28) and trace.n_samples == 2
    with pytest.raises(ValueError, match=r"^layer view:reshape: unflattened_size \(1, 28, 28\) does not hold 100"):
        lower(_init(_FlatPixels(), 2), _poisson((3, 2, 100), 0.3, 5), weight_fit="widen")


class _ConvPlusViewedLinear(nn.Module):
    """n2(conv(a) + fc2(x).view(T, N, 2, 4, 4)), conv and fc2 with biases: a per-channel bias beside a per-feature
    one."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = layer.Linear(20, 32, step_mode="m"), layer.Linear(20, 32, step_mode="m")
        self.conv = layer.Conv2d(2, 2, 3, padding=1, step_mode="m")
        self.n1, self.n2 = neuron.IFNode(v_threshold=0.5, step_mode="m"), neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x):
        t, n = x.shape[0], x.shape[1]
        a = self.n1(self.fc1(x)).view(t, n, 2, 4, 4)
        return self.n2(self.conv(a) + self.fc2(x).view(t, n, 2, 4, 4))


def test_a_per_channel_bias_adds_to_a_per_feature_bias():
    """Summing the two biases crashed with a torch size mismatch (2 vs 32); the replayed current of n2 from the
    graph equals the model's."""
    net, x = _init(_ConvPlusViewedLinear(), 4), _poisson((T, N, 20), 0.4, 9)
    graph, trace = lower(net, x, weight_fit="widen")
    rec, _ = _run(net, x, neuron.BaseNode)
    want = rec[net.n2][0][0].double().reshape(T, N, -1)
    assert _dense(graph, trace, "if2").sum() > 0 and graph.projections[1].bias.shape == (32,)  # conv1's, per feature
    np.testing.assert_allclose(_replayed_current(graph, trace, x, "if2").numpy(), want.numpy(), atol=1e-5)
