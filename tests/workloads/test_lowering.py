"""Tests of workloads.lowering: graph structure, exact folding, trace contents and synaptic-event counts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn
from torch.nn.utils import parametrize, prune

from hwmodels.mapping.connectivity import conv_output_shape, synaptic_events
from hwmodels.trace import EventTrace, NetworkGraph
from workloads.compression.dsp import LowRankLinear
from workloads.lowering import lower
from seeded import Wrap, seeded_init

T, N = 4, 6
X8 = torch.zeros(2, 1, 2, 8, 8)
X5 = torch.zeros(2, 1, 2, 5, 5)


def _init(model: nn.Sequential, seed: int, gain: float = 2.0) -> nn.Sequential:
    """Seeded weights large enough to make neurons fire; non-trivial BatchNorm statistics to fold."""
    return seeded_init(model, seed, gain, bn_shift=0.0)


def _weight_layer_events(graph: NetworkGraph, events: dict) -> int:
    """Sum of `events` over the Conv2d and Linear projections (SpikingJelly counts no max-pool)."""
    return sum(v for k, v in events.items() if graph.metadata["origin"][k] in ("Conv2d", "Linear"))


def _spikingjelly_synops(net: nn.Module, x: torch.Tensor) -> int:
    """SpikingJelly's SynOpCounter total of one no-grad forward pass of `net` on `x` (neuron state reset around)."""
    counter = SynOpCounter()
    functional.reset_net(net)
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(x)
    functional.reset_net(net)
    return counter.get_total()


def _poisson(shape, p: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _reference_run(model: nn.Sequential, x: torch.Tensor):
    """Independent of the lowering: neuron input currents and outputs, max-pool outputs, by module index."""
    rec, handles = {}, []
    for i, m in enumerate(model):
        if isinstance(m, (neuron.BaseNode, nn.MaxPool2d)):
            def hook(mod, args, out, i=i):
                rec[("in", i)], rec[("out", i)] = args[0].clone(), out.clone()
            handles.append(m.register_forward_hook(hook))
    model.eval()
    functional.reset_net(model)
    with torch.no_grad():
        y = model(x)
    functional.reset_net(model)
    for h in handles:
        h.remove()
    return rec, y


def _module_index(graph: NetworkGraph, pop: str) -> int:
    return int(graph.metadata["layers"]["populations"][pop][0].split(":")[0])


def _assert_shapes_consistent(graph: NetworkGraph) -> None:
    """Every projection's weight geometry maps its source population onto its target population."""
    for proj in graph.projections:
        src, tgt = graph.populations[proj.source], graph.populations[proj.target]
        if proj.kind == "conv":
            assert conv_output_shape(proj, src.shape) == tgt.shape, proj.name
        else:
            assert proj.weight.shape == (tgt.size, src.size), proj.name
        assert proj.bias is None or proj.bias.shape == (tgt.size,), proj.name


def _source_spikes(graph, trace, x, pop: str) -> torch.Tensor:
    """Spikes (or input values) of `pop` as (T, N, *shape), read back from the trace."""
    if pop == "input":
        return x
    dense = trace.to_dense(pop, graph.populations[pop].shape)
    return torch.from_numpy(dense).transpose(0, 1)


def _conv_net() -> nn.Sequential:
    """Stride 2 + padding, grouped conv, pruned weights, Linear readout."""
    net = nn.Sequential(
        layer.Conv2d(2, 6, 3, stride=2, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(6, step_mode="m"),
        neuron.IFNode(v_threshold=0.5, step_mode="m"),
        layer.Conv2d(6, 8, 3, padding=1, groups=2, step_mode="m"), layer.BatchNorm2d(8, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(8 * 4 * 4, 5, step_mode="m"))
    _init(net, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net[0].weight[1] = 0.0  # a whole filter pruned
        net[0].weight[0, :, 0, :] = 0.0  # a kernel row pruned
        net[3].weight.mul_((torch.rand(net[3].weight.shape, generator=g) > 0.5).float())  # ~half pruned
        net[7].weight.mul_((torch.rand(net[7].weight.shape, generator=g) > 0.3).float())
    return net


def _default_net() -> nn.Sequential:
    """The project's default architecture, scaled down: 4C3-BN-LIF-MP2-8C3-BN-LIF-MP2-FC10."""
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m"), layer.MaxPool2d(2, 2, step_mode="m"),
        layer.Conv2d(4, 8, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(8, step_mode="m"),
        neuron.LIFNode(step_mode="m"), layer.MaxPool2d(2, 2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(8 * 2 * 2, 10, step_mode="m"))
    return _init(net, seed=3, gain=4.0)


def _fold_net() -> nn.Sequential:
    """PLIF (learned tau, soft reset, no input decay), AvgPool folded into a conv and into a Linear, BN1d."""
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.ParametricLIFNode(init_tau=3.0, decay_input=False, v_reset=None, v_threshold=0.7, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Conv2d(4, 6, 3, stride=1, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(6, step_mode="m"),
        neuron.LIFNode(tau=1.5, v_threshold=0.3, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(6 * 2 * 2, 12, step_mode="m"), layer.BatchNorm1d(12, step_mode="m"),
        neuron.IFNode(v_threshold=0.5, step_mode="m"), layer.Dropout(0.5, step_mode="m"),
        layer.Linear(12, 3, step_mode="m"))
    _init(net, seed=4, gain=3.0)
    with torch.no_grad():
        net[2].w.fill_(0.3)
    return net


# ------------------------------------------------------------------------------------------------ (1) fan-out


def test_conv_and_dense_synaptic_events_equal_convolving_spikes_with_weight_pattern():
    net, x = _conv_net(), _poisson((T, N, 2, 8, 8), 0.4, seed=5)
    graph, trace = lower(net, x, batch_size=4)
    rec, _ = _reference_run(net, x)
    spikes = {"input": x, "if1": rec["out", 2], "lif2": rec["out", 5]}
    nonzero, structural = synaptic_events(graph, trace, "nonzero"), synaptic_events(graph, trace, "structural")
    for proj_name, module, src in (("conv1", net[0], "input"), ("conv2", net[3], "if1")):
        s = spikes[src].flatten(0, 1)
        assert s.sum() > 0
        pattern, ones = (module.weight != 0).float(), torch.ones_like(module.weight)
        for count, kernel in ((nonzero, pattern), (structural, ones)):
            want = F.conv2d(s, kernel, None, module.stride, module.padding, module.dilation, module.groups).sum()
            assert count[proj_name] == int(want)
    s = spikes["lif2"].flatten(2)
    assert s.sum() > 0
    assert nonzero["fc1"] == int((s @ (net[7].weight != 0).float().T).sum())
    assert structural["fc1"] == int(s.sum()) * 5
    assert nonzero["conv2"] < structural["conv2"]


# ------------------------------------------------------------------------------------- (2) SpikingJelly peer


@pytest.mark.parametrize("pruned", [False, True])
def test_structural_events_equal_spikingjelly_synop_counter(pruned):
    net, x = _default_net(), _poisson((T, 5, 2, 8, 8), 0.3, seed=6)
    if pruned:
        with torch.no_grad():
            for m in (net[0], net[4], net[9]):
                keep = torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(7)) > 0.5
                m.weight.mul_(keep.float())
    graph, trace = lower(net, x, batch_size=2)
    assert list(graph.populations) == ["input", "lif1", "pool1", "lif2", "pool2", "output"]
    assert np.all(trace.counts().sum(axis=(0, 1))[:-1] > 0)
    sj_total = _spikingjelly_synops(net, x)
    structural = synaptic_events(graph, trace, "structural")
    ours = _weight_layer_events(graph, structural)
    # SpikingJelly counts structural fan-out (zero weights included) of mm/addmm/convolution with a binary {0, 1}
    # input. MaxPool is no convolution, so it counts nothing for it; the lowered OR projection ("MaxPool2d"
    # origin) is therefore left out of the comparison.
    assert ours == sj_total
    nonzero = synaptic_events(graph, trace, "nonzero")
    assert (sum(nonzero.values()) < sum(structural.values())) == pruned


def test_spikingjelly_counts_nothing_for_graded_input():
    net = _default_net()
    x = torch.rand((T, 3, 2, 8, 8), generator=torch.Generator().manual_seed(8)) * 1.5  # direct encoding
    graph, trace = lower(net, x)
    assert graph.populations["input"].graded
    sj_total = _spikingjelly_synops(net, x)
    structural = synaptic_events(graph, trace, "structural")
    # a non-binary conv input makes SpikingJelly's rule return 0 (it only counts spike-driven operations),
    # while the hardware still delivers every graded event to its whole fan-out: conv1 is ours alone
    events = (x != 0).float().flatten(0, 1)
    assert structural["conv1"] == int(F.conv2d(events, torch.ones(4, 2, 3, 3), padding=1).sum())
    assert structural["conv2"] + structural["fc1"] == sj_total


# ------------------------------------------------------------------------------------------------ (3) replay


def test_avgpool_folds_into_hand_computed_geometry():
    graph, _ = lower(_fold_net(), X8)
    conv2, fc1 = (next(p for p in graph.projections if p.name == n) for n in ("conv2", "fc1"))
    assert conv2.weight.shape == (6, 4, 6, 6) and conv2.stride == (2, 2) and conv2.padding == (2, 2)
    assert fc1.weight.shape == (12, 6 * 4 * 4) and graph.metadata["origin"]["fc1"] == "Linear"
    assert graph.metadata["layers"]["projections"]["fc1"] == ["7:AvgPool2d", "9:Linear", "10:BatchNorm1d"]
    # a 2x2 window of the un-pooled LIF map shares one pooled weight, divided by 4
    w = graph.projections[-2].weight.reshape(12, 6, 4, 4)
    np.testing.assert_array_equal(w[:, :, 0::2, 0::2], w[:, :, 1::2, 1::2])
    np.testing.assert_array_equal(w[:, :, 0::2, 0::2], w[:, :, 0::2, 1::2])


def _untiled_pool_net() -> nn.Sequential:
    """Average pools whose window does not tile the map (torch drops the last row and column): 7x7 -> 3x3 before a
    conv, 3x3 -> 1x1 before a Linear."""
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, step_mode="m"), neuron.IFNode(v_threshold=0.5, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"), layer.Conv2d(4, 6, 1, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.3, step_mode="m"), layer.AvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(6, 3, step_mode="m"))
    return _init(net, seed=13, gain=3.0)


@pytest.mark.parametrize("make", [_fold_net, _default_net, _conv_net])
def test_replaying_recorded_spikes_through_folded_weights_gives_model_currents(make):
    _assert_replay_gives_model_currents(make(), _poisson((T, N, 2, 8, 8), 0.4, seed=9))


def test_untiled_average_pools_fold_with_zero_weight_on_the_dropped_rows_and_replay_exactly():
    net, x = _untiled_pool_net(), _poisson((T, N, 2, 9, 9), 0.5, seed=14)
    graph = _assert_replay_gives_model_currents(net, x)
    conv2, fc1 = (next(p for p in graph.projections if p.name == n) for n in ("conv2", "fc1"))
    assert graph.populations[conv2.source].shape == (4, 7, 7) and conv2.stride == (2, 2)
    w = fc1.weight.reshape(3, 6, 3, 3)  # lif2's 3x3 map pooled to 1x1: its last row and column weigh nothing
    np.testing.assert_array_equal(w[:, :, :2, :2], np.repeat(net[7].weight.detach().numpy()[:, :, None], 4, 2)
                                  .reshape(3, 6, 2, 2) / 4)
    assert not w[:, :, 2, :].any() and not w[:, :, :, 2].any()
    # a padded conv after the untiled pool would read the dropped row where torch reads padding: refused
    bad = nn.Sequential(*list(net[:3]), layer.Conv2d(4, 6, 3, padding=1, step_mode="m"))
    with pytest.raises(ValueError, match=r"layer 3 \(Conv2d\).*drops the last 1 of 7 rows.*not exact"):
        lower(bad, x)


def _assert_replay_gives_model_currents(net: nn.Sequential, x: torch.Tensor) -> NetworkGraph:
    """Lower `net` on `x` and replay each projection's recorded source spikes through its folded weights: the
    currents equal the model's neuron inputs (or its output). Returns the graph."""
    graph, trace = lower(net, x, batch_size=4)
    rec, y = _reference_run(net, x)
    _assert_shapes_consistent(graph)
    for proj in (p for p in graph.projections if graph.metadata["origin"][p.name] != "MaxPool2d"):
        s = _source_spikes(graph, trace, x, proj.source).double()
        assert s.sum() > 0, proj.source
        w = torch.from_numpy(proj.weight).double()
        if proj.kind == "conv":
            cur = F.conv2d(s.flatten(0, 1), w, None, proj.stride, proj.padding, proj.dilation, proj.groups)
        else:
            cur = s.flatten(2) @ w.T
        cur = cur.reshape(T, N, -1) + (0.0 if proj.bias is None else torch.from_numpy(proj.bias).double())
        want = y if proj.target == "output" else rec["in", _module_index(graph, proj.target)]
        np.testing.assert_allclose(cur.numpy(), want.reshape(T, N, -1).double().numpy(), rtol=1e-5, atol=1e-5)
    return graph


def test_neuron_models_are_read_from_the_layers():
    graph, _ = lower(_fold_net(), _poisson((2, 1, 2, 8, 8), 0.5, seed=10))
    plif, lif, if_, out = (graph.populations[n] for n in ("plif1", "lif2", "if3", "output"))
    assert (plif.neuron.kind, plif.neuron.threshold, plif.neuron.v_reset, plif.neuron.decay_input) == (
        "PLIF", pytest.approx(0.7), None, False)
    assert plif.neuron.tau == pytest.approx(1.0 + np.exp(-0.3))  # 1 / sigmoid(w), w = 0.3
    assert (lif.neuron.kind, lif.neuron.tau, lif.neuron.v_reset, lif.shape) == ("LIF", 1.5, 0.0, (6, 4, 4))
    assert (if_.neuron.kind, if_.neuron.tau, if_.shape) == ("IF", None, (12,))
    assert out.neuron.threshold == float("inf") and out.shape == (3,)


def test_maxpool_population_is_the_or_of_its_window():
    net, x = _default_net(), _poisson((T, N, 2, 8, 8), 0.3, seed=11)
    graph, trace = lower(net, x)
    for pool, lif in (("pool1", "lif1"), ("pool2", "lif2")):
        proj = graph.in_projections(pool)[0]
        assert (proj.source, proj.weight_bits, proj.groups, proj.stride) == (lif, 1, proj.weight.shape[0], (2, 2))
        assert graph.metadata["origin"][proj.name] == "MaxPool2d"
        src = torch.from_numpy(trace.to_dense(lif, graph.populations[lif].shape)).flatten(0, 1)
        got = torch.from_numpy(trace.to_dense(pool, graph.populations[pool].shape)).flatten(0, 1)
        assert src.sum() > 0 and got.sum() > 0
        assert torch.equal(got, F.max_pool2d(src, 2, 2))
        ored = F.conv2d(src, torch.from_numpy(proj.weight), None, proj.stride, proj.padding, groups=proj.groups)
        assert torch.equal(got, (ored >= graph.populations[pool].neuron.threshold).float())


@pytest.mark.parametrize("pool, size, ok", [
    (dict(kernel_size=2, stride=1, padding=1, dilation=2), 1, False),  # both taps of every window in the padding
    (dict(kernel_size=2, stride=2, padding=1, dilation=2, ceil_mode=True), 1, False),
    (dict(kernel_size=2, stride=1, padding=1, dilation=3), 2, False),  # the window reads rows -1 and 2 of 0..1
    (dict(kernel_size=2, stride=1, padding=1, dilation=2), 4, True),  # every window has an in-bounds tap
])
def test_a_dilated_maxpool_with_a_window_of_padding_only_is_refused(pool, size, ok):
    """torch gives -inf (no spike) where a max-pool window reads only padding; an OR population cannot."""
    net = nn.Sequential(layer.Conv2d(1, 1, 1, step_mode="m"), neuron.IFNode(step_mode="m"),
                        layer.MaxPool2d(**pool, step_mode="m"))
    x = _poisson((2, 2, 1, size, size), 0.5, seed=3)
    if ok:
        graph, trace = lower(net, x)
        src = torch.from_numpy(trace.to_dense("if1", graph.populations["if1"].shape)).flatten(0, 1)
        got = torch.from_numpy(trace.to_dense("pool1", graph.populations["pool1"].shape)).flatten(0, 1)
        assert torch.equal(got, F.max_pool2d(src, 2, 1, 1, 2))
        return
    with pytest.raises(ValueError, match=r"layer 2 \(MaxPool2d\).*window with only padding"):
        lower(net, x)


def test_avgpool_fold_counts_unpooled_spikes_and_spikingjelly_skips_them():
    net, x = _fold_net(), _poisson((T, N, 2, 8, 8), 0.4, seed=9)
    graph, trace = lower(net, x)
    rec, _ = _reference_run(net, x)
    structural = synaptic_events(graph, trace, "structural")
    # an un-pooled spike reaches every output that reads its 2x2 window: the original conv's fan-out of the pooled
    # position, once per spike in the window (sum pooling)
    window_counts = F.avg_pool2d(rec["out", 2].flatten(0, 1), 2) * 4
    assert structural["conv2"] == int(F.conv2d(window_counts, torch.ones(6, 4, 3, 3), padding=1).sum())
    assert structural["fc1"] == int(F.avg_pool2d(rec["out", 6].flatten(0, 1), 2).sum() * 4) * 12
    sj_total = _spikingjelly_synops(net, x)
    # SpikingJelly sees the pooled (non-binary) tensor at conv2 and fc1 and counts 0 there
    assert sj_total == structural["conv1"] + structural["fc2"]


def test_same_padding_and_options_reach_every_projection():
    net = nn.Sequential(layer.Conv2d(2, 3, 3, padding="same", step_mode="m"), neuron.IFNode(step_mode="m"),
                        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
                        layer.Linear(3 * 4 * 4, 2, step_mode="m"))
    # float weights are quantized to the 3 bits asked for (the default "widen" would store them as 32-bit)
    graph, _ = lower(net, X8, weight_bits=3, weight_fit="quantize", storage="conv")
    _assert_shapes_consistent(graph)
    assert [(p.name, p.padding, p.weight_bits, p.storage) for p in graph.projections] == [
        ("conv1", (1, 1), 3, "conv"), ("maxpool1", (0, 0), 1, "conv"), ("fc1", (0, 0), 3, "dense")]
    assert graph.metadata["origin"] == {"conv1": "Conv2d", "maxpool1": "MaxPool2d", "fc1": "Linear"}


class _Mask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_pruned_and_parametrized_layers_lower_their_effective_weights():
    net = _conv_net()
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    mask = (torch.rand(net[7].weight.shape, generator=torch.Generator().manual_seed(15)) > 0.5).float()
    parametrize.register_parametrization(net[7], "weight", _Mask(mask))
    x = _poisson((T, 2, 2, 8, 8), 0.4, seed=16)
    graph, trace = lower(net, x)
    rec, y = _reference_run(net, x)
    conv1, fc1 = graph.projections[0], graph.projections[-1]
    assert conv1.nonzero_synapses == net[0].weight.count_nonzero() == net[0].weight.numel() // 2
    np.testing.assert_array_equal(fc1.weight, (net[7].weight * 1.0).detach().numpy())
    original = net[7].parametrizations.weight.original
    assert fc1.nonzero_synapses == int((original * mask).count_nonzero()) < int(original.count_nonzero())
    s = torch.from_numpy(trace.to_dense("lif2", (8, 4, 4))).transpose(0, 1).flatten(2)
    np.testing.assert_allclose((s @ torch.from_numpy(fc1.weight).T + torch.from_numpy(fc1.bias)).numpy(),
                               y.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- (4) hand-built


def _tiny(threshold: float = 1.0) -> nn.Sequential:
    net = nn.Sequential(layer.Linear(2, 1, bias=False, step_mode="m"),
                        neuron.IFNode(v_threshold=threshold, step_mode="m"))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
    return net


def test_tiny_linear_if_gives_hand_computed_trace():
    x = torch.zeros(4, 2, 2)
    x[[0, 2], 0, 0] = 1  # sample 0: input 0 at t=0, 2; input 1 at t=1, 3
    x[[1, 3], 0, 1] = 1
    x[1, 1, :] = 1  # sample 1: both inputs at t=1
    graph, trace = lower(_tiny(), x, labels=[7, 3])
    assert list(graph.populations) == ["input", "if1"] and trace.populations == ("input", "if1")
    assert [p.name for p in graph.projections] == ["fc1"] and graph.projections[0].bias is None
    # rows (sample, t, population): s0: t0 [0][0], t1 [1][], t2 [0][0], t3 [1][]; s1: t1 [0, 1][0]
    np.testing.assert_array_equal(trace.offsets, [0, 1, 2, 3, 3, 4, 5, 6, 6, 6, 6, 8, 9, 9, 9, 9, 9])
    np.testing.assert_array_equal(trace.indices, [0, 0, 1, 0, 0, 1, 0, 1, 0])
    assert trace.values is None and trace.labels.tolist() == [7, 3]
    assert synaptic_events(graph, trace, "structural") == {"fc1": 6}  # 6 input spikes, fan-out 1 each
    assert synaptic_events(graph, trace, "nonzero") == {"fc1": 3}  # only input 0 has a non-zero synapse


def test_tiny_graded_input_carries_values():
    x = torch.zeros(3, 1, 2)
    x[0:2, 0, 0] = 0.6  # IF integrates 0.6, 1.2 -> spikes at t=1
    graph, trace = lower(_tiny(), x)
    assert graph.populations["input"].graded and not graph.populations["if1"].graded
    np.testing.assert_array_equal(trace.offsets, [0, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(trace.indices, [0, 0, 0])
    np.testing.assert_array_equal(trace.values, np.float32([0.6, 0.6, 1.0]))


# ---------------------------------------------------------------------------------------------- (5) errors


def _m(*mods):
    return nn.Sequential(*mods)


CONV = dict(step_mode="m")


def _twice_low_rank() -> nn.Module:
    """A LowRankLinear whose first factor is low-rank again (no method builds it: DSP skips factors)."""
    lr = LowRankLinear(128, 4, 2)
    lr.first = LowRankLinear(128, 2, 1)
    return lr


def _shared_neuron() -> nn.Sequential:
    node = neuron.IFNode(step_mode="m")
    return _m(layer.Conv2d(2, 2, 3, padding=1, **CONV), node, layer.Conv2d(2, 2, 3, padding=1, **CONV), node)


@pytest.mark.parametrize("model, x, match", [
    (lambda: _m(layer.Conv2d(2, 4, 3, **CONV), nn.ReLU()), X8, r"layer 1 \(ReLU\).*supported types:.*Conv2d"),
    (lambda: _m(layer.Conv1d(2, 4, 3, **CONV)), X8, r"layer 0 \(Conv1d\) needs inputs \(T, N, C=2, L\)"),
    (lambda: _m(layer.WSConv2d(2, 4, 3, **CONV), neuron.IFNode(step_mode="m")), X8, r"layer 0 \(WSConv2d\)"),
    (lambda: _m(layer.Conv2d(3, 4, 3, **CONV), neuron.IFNode(step_mode="m")), X8, r"layer 0 \(Conv2d\).*C=3"),
    (lambda: _m(layer.Flatten(**CONV), layer.Linear(100, 4, **CONV)), X8, r"layer 1 \(Linear\).*100"),
    (lambda: _m(layer.Conv2d(2, 4, 3, **CONV)), torch.zeros(2, 2, 8, 8), r"inputs: shape"),
    (lambda: _m(layer.AvgPool2d(2, **CONV), layer.Conv2d(2, 4, 3, padding=1, **CONV)), X5,
     r"layer 1 \(Conv2d\).*drops the last 1 of 5 rows"),
    (lambda: _m(layer.AvgPool2d(2, ceil_mode=True, **CONV), layer.Conv2d(2, 4, 1, **CONV)), X5,
     r"AvgPool2d.*ceil_mode=True on input 5x5"),
    (lambda: _m(layer.AvgPool2d(6, **CONV), layer.Conv2d(2, 4, 1, **CONV)), X5, r"AvgPool2d.*smaller than"),
    (lambda: _m(layer.AvgPool2d(3, 2, **CONV), layer.Conv2d(2, 4, 1, **CONV)), X8, r"AvgPool2d.*stride"),
    (lambda: _m(layer.AvgPool2d(2, **CONV)), X8, r"trailing average pooling"),
    (lambda: _m(layer.Flatten(**CONV), _twice_low_rank()), X8, r"\(LowRankLinear\): a LowRankLinear where a Conv1d"),
    (lambda: _m(layer.MaxPool2d(2, ceil_mode=True, **CONV)), X5, r"MaxPool2d.*ceil_mode"),
    (lambda: _m(layer.Conv2d(2, 4, 3, **CONV), layer.MaxPool2d(2, **CONV)), X8, r"MaxPool2d.*directly follow"),
    (lambda: _m(layer.MaxPool2d(2, **CONV)), X8 + 0.5, r"MaxPool2d.*graded"),
    (lambda: _m(layer.BatchNorm2d(2, **CONV)), X8, r"BatchNorm2d.*follow a Conv2d"),
    (lambda: _m(layer.Conv2d(2, 2, 3, **CONV), neuron.IFNode(step_mode="m"), layer.MaxPool2d(2, **CONV),
                neuron.IFNode(step_mode="m")), X8, r"layer 3 \(IFNode\).*needs a Conv2d or Linear"),
    (lambda: _m(layer.Conv2d(2, 4, 3, **CONV), neuron.IFNode()), X8, r"layer 1 \(IFNode\): step_mode"),
    (lambda: _m(nn.Conv2d(2, 4, 3)), X8, r"layer 0 \(Conv2d\): a plain torch layer"),
    (lambda: _m(layer.Conv2d(2, 4, 3, **CONV), layer.Conv2d(4, 4, 3, **CONV)), X8, r"two weight layers"),
    (lambda: layer.Conv2d(2, 4, 3, **CONV), X8, r"model: Conv2d must be a torch.nn.Sequential"),
    (lambda: _shared_neuron(), X8, r"3:IFNode.*used twice"),
])
def test_bad_models_and_inputs_raise_value_error(model, x, match):
    with pytest.raises(ValueError, match=match):
        lower(model(), x)


@pytest.mark.parametrize("kwargs, match", [({"labels": [1, 2, 3]}, "labels"), ({"storage": "csr"}, "storage"),
                                           ({"batch_size": 0}, "batch_size"), ({"weight_bits": 0}, "weight_bits")])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lower(_tiny(), torch.zeros(2, 2, 2), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_bits": 8.5}, r"weight_bits: 8.5 must be an integer in 1..32"),
    ({"weight_bits": True}, r"weight_bits: True must be an integer in 1..32"),
    ({"batch_size": 2.5}, r"batch_size: 2.5 must be an integer >= 1"),
    ({"batch_size": "4"}, r"batch_size: '4' must be an integer >= 1")])
def test_fractional_or_boolean_bits_and_batch_sizes_are_refused_not_truncated(kwargs, match):
    # 8.5 bits used to become 8 and True 1 bit, silently (int(...))
    with pytest.raises(ValueError, match=match):
        lower(_tiny(), torch.zeros(2, 2, 2), **kwargs)


@pytest.mark.parametrize("compression, error, match", [
    ({"weight_bits": {"nonexistent": 4}}, ValueError, r"compression.weight_bits\['nonexistent'\]: no module of the "
                                                      r"model is named 'nonexistent' \(module names: 0, 1, "),
    ({"weight_bits": {0: 4}}, ValueError, r"compression.weight_bits\[0\]: no module of the model is named 0"),
    ({"state_bits": {"1": 6.5}}, ValueError, r"compression.state_bits\['1'\]: 6.5 must be an integer in 1..32"),
    ({"weight_bits": {"0": True}}, ValueError, r"compression.weight_bits\['0'\]: True must be an integer"),
    ({"weight_bits": [4]}, ValueError, r"compression.weight_bits: list \[4\]; expected a dict"),
    ("int8", TypeError, r"compression: got str, expected a CompressionResult")])
def test_compression_settings_that_would_be_ignored_or_truncated_are_refused(compression, error, match):
    # a key naming no module (a typo, or the int 0 for "0") was ignored silently, 6.5 state bits became 6, a
    # string compression was read as no compression, a list failed inside dict()
    with pytest.raises(error, match=match):
        lower(_tiny(), torch.zeros(2, 2, 2), compression=compression)
    graph, _ = lower(_tiny(), torch.zeros(2, 2, 2), compression={"weight_bits": {"0": 4}, "state_bits": {"1": 6}})
    assert graph.projections[0].weight_bits == 4 and graph.populations["if1"].state_bits == 6


@pytest.mark.parametrize("device, match", [
    ("meta", "device: 'meta' holds no data"), ("gpu", "device: 'gpu' is not a torch device"),
    pytest.param("cuda", "device: 'cuda' is not available", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="CUDA present"))])
def test_a_bad_device_is_refused_before_the_model_moves(device, match):
    # device="meta" used to move the model there and fail, leaving the caller's model without its weights;
    # "cuda" without CUDA failed with torch's AssertionError "Torch not compiled with CUDA enabled"
    model = _tiny()
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        lower(model, torch.zeros(2, 2, 2), device=device)
    assert all(p.device.type == "cpu" and torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert lower(model, torch.zeros(2, 2, 2), device="cpu")[1].n_samples == 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_model_that_is_not_float32_is_refused_naming_the_parameter(dtype):
    # model.double() used to fail inside the forward with torch's "mat1 and mat2 must have the same dtype"
    with pytest.raises(ValueError, match=f"model: 0.weight is {str(dtype)[6:]}; lower records float32 models"):
        lower(_tiny().to(dtype), torch.zeros(2, 2, 2))


@pytest.mark.parametrize("labels", [[0.5, 1.0], ["a", "b"]])
def test_labels_that_are_not_class_indices_are_refused(labels):
    # [0.5, 1.0] used to be stored as classes [0, 1]
    with pytest.raises(ValueError, match="labels: .* values must be integer class indices"):
        lower(_tiny(), torch.zeros(2, 2, 2), labels=labels)
    wide = nn.Sequential(layer.Linear(2, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    assert lower(wide, torch.zeros(2, 2, 2), labels=[0.0, 3.0])[1].labels.tolist() == [0, 3]


@pytest.mark.parametrize("labels, match", [([0, -1], "labels: class indices must be >= 0 \\(got -1\\)"),
                                           ([0, 4], "labels: class index 4 is out of range for the model's 4 outputs "
                                                    "\\(accepted: 0..3\\)")])
def test_labels_outside_the_models_classes_are_refused_before_recording(tmp_path, labels, match):
    # they used to be stored, and every such sample counted wrong against predictions that cannot equal them
    wide = nn.Sequential(layer.Linear(2, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    with pytest.raises(ValueError, match=match):
        lower(wide, torch.zeros(2, 2, 2), labels=labels, out=tmp_path / "trace")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad, match", [(float("nan"), "inputs: 1 value is NaN or infinite"),
                                        (float("inf"), "inputs: 1 value is NaN or infinite")])
def test_non_finite_inputs_are_refused_by_the_lowering(bad, match):
    # they used to lower into a graded trace with NaN values that only simulate() refused
    x = torch.zeros(2, 2, 2)
    x[1, 0, 1] = bad
    with pytest.raises(ValueError, match=match):
        lower(_tiny(), x)
    graph, trace = lower(_tiny(), torch.zeros(2, 2, 2), batch_size=np.int64(1), weight_bits=np.int32(4))
    assert trace.n_samples == 2


# ------------------------------------------------------------------------------ (6) persistence and batching


def test_graph_and_trace_round_trip(tmp_path):
    net, x = _fold_net(), torch.rand((T, N, 2, 8, 8), generator=torch.Generator().manual_seed(12))
    graph, trace = lower(net, x, labels=np.arange(N) % 3, weight_bits=4, weight_fit="quantize", storage="sparse",
                         name="fold")
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    g2, t2 = NetworkGraph.load(tmp_path / "g.npz"), EventTrace.load(tmp_path / "t.npz")
    assert g2.name == "fold" and g2.metadata == graph.metadata and g2.populations == graph.populations
    assert len(g2.projections) == len(graph.projections)
    for a, b in zip(graph.projections, g2.projections):
        for attr in ("name", "source", "target", "kind", "stride", "padding", "dilation", "groups", "weight_bits",
                     "storage"):
            assert getattr(a, attr) == getattr(b, attr)
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
    assert {(p.weight_bits, p.storage) for p in graph.projections} == {(4, "sparse")}
    assert (t2.populations, t2.n_samples, t2.n_timesteps) == (trace.populations, N, T)
    for attr in ("offsets", "indices", "values", "labels"):
        np.testing.assert_array_equal(getattr(trace, attr), getattr(t2, attr))
    assert trace.values is not None and trace.indices.size > 0


def test_sequential_traces_record_their_graphs_fingerprint(tmp_path):
    """The Sequential engine writes the fingerprint (and population sizes) of the graph it lowered into the trace,
    after the weight fit (a quantized graph's own weights), kept by save/load; the simulator refuses the trace
    with another model's graph, naming both fingerprints."""
    from hwmodels import load_preset, simulate
    x = torch.rand((T, 2, 2, 8, 8), generator=torch.Generator().manual_seed(12))
    graph, trace = lower(_fold_net(), x, weight_bits=4, weight_fit="quantize")
    assert trace.graph_fingerprint == graph.fingerprint()
    assert trace.sizes == {name: pop.size for name, pop in graph.populations.items()}
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    g2, t2 = NetworkGraph.load(tmp_path / "g.npz"), EventTrace.load(tmp_path / "t.npz")
    assert t2.graph_fingerprint == g2.fingerprint() == graph.fingerprint()
    other, _ = lower(_fold_net(), x)  # the float model: other weights
    with pytest.raises(ValueError) as err:
        simulate(other, t2, load_preset("loihi"), model="analytic")
    assert graph.fingerprint() in str(err.value) and other.fingerprint() in str(err.value)
    assert simulate(g2, t2, load_preset("loihi"), model="analytic").n_samples == 2


def test_trace_does_not_depend_on_batch_size_and_matches_from_dense():
    net, x = _default_net(), torch.rand((T, 5, 2, 8, 8), generator=torch.Generator().manual_seed(13))
    net.train()
    graph, trace = lower(net, x, batch_size=2, device="cpu")
    assert net.training  # mode restored
    _, big = lower(net, x, batch_size=64)
    rec, _ = _reference_run(net, x)
    dense = {"input": x}
    for pop in list(graph.populations)[1:-1]:
        dense[pop] = rec["out", _module_index(graph, pop)]
    ref = EventTrace.from_dense({k: v.transpose(0, 1).numpy() for k, v in dense.items()}, graded=("input",))
    counts = np.diff(trace.offsets).reshape(5, T, -1)
    assert counts[..., -1].sum() == 0 and counts[..., :-1].sum() > 0  # readout "output": no spikes
    np.testing.assert_array_equal(counts[..., :-1].ravel(), np.diff(ref.offsets))
    for attr in ("indices", "values"):
        np.testing.assert_array_equal(getattr(trace, attr), getattr(ref, attr))
        np.testing.assert_array_equal(getattr(trace, attr), getattr(big, attr))
    np.testing.assert_array_equal(trace.offsets, big.offsets)


def test_seq_to_ann_container_lowers_like_multistep_layers():
    net = _default_net()
    wrapped = nn.Sequential(layer.SeqToANNContainer(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)),
                            neuron.LIFNode(step_mode="m"), layer.SeqToANNContainer(nn.MaxPool2d(2)),
                            layer.SeqToANNContainer(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)),
                            neuron.LIFNode(step_mode="m"), layer.SeqToANNContainer(nn.MaxPool2d(2), nn.Flatten()),
                            nn.Linear(32, 10))
    leaves = [m for m in net if list(m.state_dict())]
    for src, dst in zip(leaves, [m for m in wrapped.modules() if list(m.state_dict()) and not list(m.children())]):
        dst.load_state_dict(src.state_dict())
    x = _poisson((T, N, 2, 8, 8), 0.3, seed=14)
    (g1, t1), (g2, t2) = lower(net, x, storage="conv"), lower(wrapped, x, storage="conv")
    assert list(g1.populations) == list(g2.populations) and g1.metadata["origin"] == g2.metadata["origin"]
    assert g2.metadata["layers"]["projections"]["conv1"] == ["0.0:Conv2d", "0.1:BatchNorm2d"]
    assert [p.storage for p in g2.projections] == ["conv", "conv", "conv", "conv", "dense"]
    for a, b in zip(g1.projections, g2.projections):
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-6)
    np.testing.assert_array_equal(t1.offsets, t2.offsets)
    np.testing.assert_array_equal(t1.indices, t2.indices)


def _seq(*mods) -> nn.Sequential:
    net = nn.Sequential(*mods)
    functional.set_step_mode(net, "m")
    return _init(net, seed=11)


_GEOMETRIES = {  # layer geometries beyond the default net, each on 1x12x12 binary input
    "stride_padding": lambda: _seq(layer.Conv2d(1, 8, 3, stride=2, padding=1), neuron.IFNode(),
                                   layer.Conv2d(8, 8, 3, stride=2), neuron.LIFNode(), layer.Flatten(),
                                   layer.Linear(8 * 2 * 2, 10)),
    "groups": lambda: _seq(layer.Conv2d(1, 8, 3, padding=1), neuron.IFNode(),
                           layer.Conv2d(8, 8, 3, padding=1, groups=4, bias=False), neuron.IFNode(),
                           layer.Flatten(), layer.Linear(8 * 12 * 12, 10)),
    "dilation_plif": lambda: _seq(layer.Conv2d(1, 6, 3, dilation=2), neuron.ParametricLIFNode(),
                                  layer.MaxPool2d(3, stride=2), layer.Flatten(), layer.Linear(6 * 3 * 3, 10)),
    "plain_torch_top_level": lambda: _seq(nn.Flatten(2), nn.Linear(144, 40), neuron.LIFNode(), nn.Dropout(0.1),
                                          nn.Linear(40, 10), neuron.LIFNode()),
}


@pytest.mark.parametrize("name", sorted(_GEOMETRIES))
def test_structural_synops_equal_spikingjelly_on_other_geometries(name):
    net = _GEOMETRIES[name]()
    x = _poisson((T, 3, 1, 12, 12), 0.3, seed=12)
    graph, trace = lower(net, x)
    sj_total = _spikingjelly_synops(net, x)
    structural = synaptic_events(graph, trace, "structural")
    ours = _weight_layer_events(graph, structural)
    assert sj_total > 0 and ours == sj_total


def test_top_level_plain_flatten_must_keep_the_time_and_batch_axes():
    net = _seq(nn.Flatten(1), nn.Linear(144, 10), neuron.LIFNode())
    with pytest.raises(ValueError, match=r"layer 0 \(Flatten\): a plain torch layer at top level"):
        lower(net, _poisson((T, 2, 1, 12, 12), 0.3, seed=1))


# ------------------------------------------------------------------------------------------------ Unflatten


def _unflatten_nets() -> dict[str, nn.Module]:
    """Linear -> IF -> Unflatten(4, 6, 6) -> Conv2d inside SeqToANNContainer; Linear -> top-level Unflatten ->
    BatchNorm2d (folded per channel into the dense rows) -> IF -> Conv2d; the latter in a module with its own
    forward (fx engine); on 1x12x12 binary input."""
    container = nn.Sequential(
        nn.Flatten(2), nn.Linear(144, 4 * 6 * 6), neuron.IFNode(step_mode="m"),
        layer.SeqToANNContainer(nn.Unflatten(1, (4, 6, 6)), nn.Conv2d(4, 6, 3)), neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(6 * 4 * 4, 10, step_mode="m"))
    top = nn.Sequential(
        nn.Flatten(2), nn.Linear(144, 4 * 6 * 6), nn.Unflatten(2, (4, -1, 6)), layer.BatchNorm2d(4, step_mode="m"),
        neuron.IFNode(step_mode="m"), layer.Conv2d(4, 6, 3, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(6 * 4 * 4, 10, step_mode="m"))
    container, top = _init(container, seed=21), _init(top, seed=22)
    return {"container": container, "top_level": top, "graph_engine": Wrap(top).eval()}


@pytest.mark.parametrize("name", ["container", "top_level", "graph_engine"])
def test_unflatten_lowers_to_a_shaped_population_and_counts_as_spikingjelly(name):
    net = _unflatten_nets()[name]
    x = _poisson((T, 3, 1, 12, 12), 0.3, seed=23)
    graph, trace = lower(net, x)
    assert [(p.name, p.shape) for p in graph.populations.values()] == [
        ("input", (1, 12, 12)), ("if1", (4, 6, 6)), ("lif2", (6, 4, 4)), ("output", (10,))]
    assert [(p.name, p.kind, p.weight.shape) for p in graph.projections] == [
        ("fc1", "dense", (144, 144)), ("conv1", "conv", (6, 4, 3, 3)), ("fc2", "dense", (10, 96))]
    _assert_shapes_consistent(graph)
    sj_total = _spikingjelly_synops(net, x)
    ours = _weight_layer_events(graph, synaptic_events(graph, trace, "structural"))
    assert sj_total > 0 and ours == sj_total
    rec, _ = _reference_run(net if name != "graph_engine" else net.net, x)
    index = 2 if name == "container" else 4
    spikes = rec["out", index].reshape(T, 3, -1).transpose(0, 1).numpy()  # flat in the container net
    assert spikes.sum() > 0
    np.testing.assert_array_equal(trace.to_dense("if1", (4, 6, 6)).reshape(3, T, -1), spikes)


def test_unflatten_of_the_input_and_bad_unflattens():
    net = _seq(nn.Unflatten(2, (1, 12, 12)), layer.Conv2d(1, 4, 3), neuron.IFNode())
    graph, _ = lower(net, _poisson((T, 2, 144), 0.3, seed=24))
    assert graph.populations["input"].shape == (1, 12, 12) and graph.projections[0].kind == "conv"
    bad = [(_seq(layer.Conv2d(1, 4, 3), neuron.IFNode(), layer.Flatten(), nn.Unflatten(2, (4, 100)),
                 layer.Conv2d(4, 4, 3)), r"'if1' is the output of a convolution"),
           (_seq(nn.Unflatten(1, (1, 12, 12))), r"layer 0 \(Unflatten\): a plain torch layer at top level"),
           (_seq(nn.Flatten(2), nn.Unflatten(2, (5, 5, 5))), r"unflattened_size \(5, 5, 5\) does not hold 144")]
    for model, match in bad:
        with pytest.raises(ValueError, match=match):
            lower(model, _poisson((T, 2, 1, 12, 12), 0.3, seed=25))
