"""Neuron activity and predictions in the lowered trace (workloads.lowering.activity), and spiking layers driven by
the input tensor itself (input current, no input population).

Expectations are hand-computed on tiny nets, or replayed independently of the recording (SpikingJelly forward hooks
+ workloads.neurons.charge_sequence, not store_v_seq) on the project's models.
"""
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import hwmodels
from hwmodels.activity import unpack
from hwmodels.trace import EventTrace
from workloads.compression.binary import swap_attention
from workloads.compression.dsp import LowRankLinear
from workloads.lowering import lower
from workloads.models import NeuronSpec, build_model
from workloads.models.blocks import conv_bn_sn
from workloads.models.resnet import BasicBlock, SpikingResNet, pool_fc_head, resnet_stages
from workloads.neurons import charge_sequence, make_neuron
from seeded import seeded_init, Wrap

T = 3


def _linear_if(weight, bias=None, **node) -> nn.Sequential:
    """Linear (given weights, optional bias) -> IFNode(**node), multi-step."""
    w = torch.tensor(weight)
    lin = layer.Linear(w.shape[1], w.shape[0], bias=bias is not None, step_mode="m")
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.tensor(bias))
    return nn.Sequential(lin, neuron.IFNode(step_mode="m", **node)).eval()


def _rows(trace: EventTrace, graph, pop: str) -> np.ndarray:
    """bool (n_samples, T + 1, size) activity of `pop`."""
    return unpack(trace.activity[pop], graph.populations[pop].size)


def _x_tiny() -> torch.Tensor:
    """Sample 0: t0 [0.6, 0, 0], t1 [0, 0, 1], t2 [0.6, 0.4, 0]; sample 1: nothing."""
    x = torch.zeros(T, 2, 3)
    x[0, 0, 0], x[1, 0, 2], x[2, 0, :2] = 0.6, 1.0, torch.tensor([0.6, 0.4])
    return x


def test_tiny_linear_if_hand_computed_activity_rows():
    # currents (W = [[1, 0, 0], [0, 0.5, 0]]): n0 0.6, 0, 0.6; n1 0, 0, 0.2. IF threshold 1, hard reset to 0:
    # n0 holds 0.6 at t1 (no input, potential != 0: updated), reaches 1.2 at t2, spikes and resets to 0;
    # n1 rests until t2 and keeps 0.2 after the last step (row T).
    graph, trace = lower(_linear_if([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]), _x_tiny())
    assert set(trace.activity) == {"if1"}  # the input gets no activity
    np.testing.assert_array_equal(_rows(trace, graph, "if1")[0], [[1, 0], [1, 0], [1, 1], [0, 1]])
    assert not _rows(trace, graph, "if1")[1].any()  # sample 1: no input, at rest throughout
    np.testing.assert_array_equal(trace.to_dense("if1", (2,))[0], [[0, 0], [0, 0], [1, 0]])
    assert trace.predictions is not None  # the output (T, N, 2) spikes: argmax of the spike counts
    np.testing.assert_array_equal(trace.predictions, [0, 0])


def test_soft_reset_keeps_the_residue_active_after_the_last_step():
    graph, trace = lower(_linear_if([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]], v_reset=None), _x_tiny())
    # soft reset: n0 at 1.2 - 1 = 0.2 after its spike, so it is left with a potential too
    np.testing.assert_array_equal(_rows(trace, graph, "if1")[0], [[1, 0], [1, 0], [1, 1], [1, 1]])


def test_a_bias_makes_every_neuron_active_at_every_step():
    # zero input, bias (0.1, -0.2, 0.3, 0.05): potentials 0.3, -0.6, 0.9, 0.15 after 3 steps, no spike
    graph, trace = lower(_linear_if([[1.0, 0.0]] * 4, [0.1, -0.2, 0.3, 0.05]), torch.zeros(T, 2, 2))
    assert _rows(trace, graph, "if1").all() and trace.indices.size == 0


def test_readout_activity_follows_its_input_current_and_accumulated_potential():
    net = _linear_if([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    net.append(layer.Linear(2, 2, bias=False, step_mode="m"))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    graph, trace = lower(net, _x_tiny())
    # the readout's current is n0's spike at t2 on output neuron 0 only; the sum (1) stays after the last step
    np.testing.assert_array_equal(_rows(trace, graph, "output")[0], [[0, 0], [0, 0], [1, 0], [1, 0]])
    assert not _rows(trace, graph, "output")[1].any()


# ------------------------------------------------------------------------ independent replay on real models


def _reference(model: nn.Module, x: torch.Tensor):
    """Every spiking node's input current and output by module name, and the model output (plain hooks)."""
    rec, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, neuron.BaseNode):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: rec.__setitem__(name, (args[0].clone(), out.clone()))))
    functional.reset_net(model.eval())
    with torch.no_grad():
        y = model(x)
    functional.reset_net(model)
    for h in handles:
        h.remove()
    return rec, y


def _replayed_activity(node: neuron.BaseNode, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """bool (T + 1, N, ...) by the activity rule, from potentials replayed with charge_sequence."""
    rest = 0.0 if node.v_reset is None else node.v_reset
    _, v = charge_sequence(node, x, s, rest)
    before = torch.cat([torch.zeros_like(v[:1], dtype=torch.bool), v[:-1] != rest])
    return torch.cat([(x != 0) | before | (s != 0), v[-1:] != rest])


def _as_population(t: torch.Tensor, name: str) -> np.ndarray:
    """(T', N, ...) -> (N, T', n) in the lowered C-order (tokens (L, D) channel-major; attention map (h, Lq, Lk)
    key-major, as the lowering lays them out)."""
    if t.dim() == 4 or name.endswith("map_sn"):
        t = t.transpose(-1, -2)
    return t.reshape(t.shape[0], t.shape[1], -1).transpose(0, 1).numpy()


def _check_activity(model: nn.Module, x: torch.Tensor) -> tuple:
    """Lower `model`; every spiking population's activity equals the replay, spikes are a subset of it, relays
    and max-pools are active exactly where they emit, predictions are the model's own. Returns (graph, trace)."""
    graph, trace = lower(model, x, batch_size=2)
    rec, y = _reference(model, x)
    layers = graph.metadata["layers"]["populations"]
    for pop in graph.populations.values():
        if pop.is_input:
            assert pop.name not in trace.activity
            continue
        rows = _rows(trace, graph, pop.name)
        emitted = trace.to_dense(pop.name, pop.shape).reshape(trace.n_samples, T, -1) != 0
        assert not (emitted & ~rows[:, :T]).any(), pop.name  # every spike is an update
        module = layers[pop.name][0].split(":")[0]
        if module in rec and pop.neuron.kind != "relay":
            node = model.get_submodule(module)
            want = _as_population(_replayed_activity(node, *rec[module]), module)
            np.testing.assert_array_equal(rows, want, err_msg=pop.name)
        elif pop.name != "output":  # max-pool OR and relays: active where they emit, nothing left after
            np.testing.assert_array_equal(rows[:, :T], emitted, err_msg=pop.name)
            assert not rows[:, T].any(), pop.name
        else:  # readout: an IF without threshold integrating y
            total = y.double().cumsum(0)
            before = torch.cat([torch.zeros_like(total[:1]), total[:-1]])
            want = torch.cat([(y != 0) | (before != 0), total[-1:] != 0])
            np.testing.assert_array_equal(rows, _as_population(want, "output"))
    np.testing.assert_array_equal(trace.predictions, y.mean(0).argmax(1).numpy())
    return graph, trace


def _spikes(shape, p: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def test_mnist_conv_activity_equals_replay_and_predictions_the_models_argmax():
    model = seeded_init(build_model("mnist_conv", (1, 8, 8), 4, seed=0, neuron="IF"), seed=1)
    graph, trace = _check_activity(model, _spikes((T, 5, 1, 8, 8), 0.4, seed=2))
    assert set(trace.activity) == set(graph.populations) - {"input"}  # readout included: its current is y
    assert trace.counts().sum(axis=(0, 1))[1:-1].min() > 0  # every hidden population spikes
    for name in ("pool1", "pool2"):  # OR populations are not all active: they rest where no spike arrives
        assert 0 < _rows(trace, graph, name).mean() < 1


@pytest.mark.parametrize("kind, options", [("QLIF", {"bits": 4}), ("sLIF", {}), ("LIF", {"ternary": True}),
                                           ("PLIF", {"reset": "soft"})])
def test_project_nodes_record_activity(kind, options):
    net = nn.Sequential(layer.Linear(6, 5, step_mode="m"), make_neuron(kind, 2.0, 0.5, **options),
                        layer.Linear(5, 3, step_mode="m"))
    net(torch.zeros(1, 1, 6))  # sizes a lazy sLIF threshold
    x = torch.rand(T, 4, 6, generator=torch.Generator().manual_seed(11)) * 2 - 0.5
    graph, trace = _check_activity(seeded_init(net, seed=3), x)
    assert _rows(trace, graph, list(graph.populations)[1]).any()


def test_low_rank_relay_is_active_where_it_relays_a_value():
    net = nn.Sequential(layer.Linear(6, 8, step_mode="m"), neuron.IFNode(step_mode="m"), LowRankLinear(8, 5, 2),
                        neuron.LIFNode(step_mode="m"), layer.Linear(5, 3, step_mode="m"))
    x = (torch.rand(T, 4, 6, generator=torch.Generator().manual_seed(12)) < 0.3).float()
    graph, trace = _check_activity(seeded_init(net, seed=13), x)
    assert graph.populations["fc2_relay"].neuron.kind == "relay"
    assert 0 < _rows(trace, graph, "fc2_relay")[:, :T].mean() < 1  # relays only where a spike arrived


def test_spikformer_and_resnet_lower_with_activity_for_every_population():
    sn = NeuronSpec("LIF", 2.0, 1.0)
    resnet = SpikingResNet(nn.Sequential(*conv_bn_sn(2, 4, sn)), resnet_stages(BasicBlock, 4, (4, 8), (1, 1), sn),
                           nn.Sequential(*pool_fc_head(8, 5)))
    x = _spikes((T, 3, 2, 16, 16), 0.3, seed=4)
    graph, trace = _check_activity(seeded_init(resnet, seed=5), x)
    assert set(trace.activity) == set(graph.populations) - {"input"}
    spikformer = seeded_init(build_model("spikformer", (2, 16, 16), 5, seed=0, depth=1, dim=16, heads=2), 6, gain=4.0)
    graph, trace = _check_activity(spikformer, x)
    assert set(trace.activity) == set(graph.populations) - {"input"}
    relays = [p for p in graph.populations.values() if p.neuron.kind == "relay"]
    assert len(relays) == 4 and all(_rows(trace, graph, p.name).any() for p in relays)  # 3 adds, K^T V
    swap_attention(spikformer, T)  # BinaryAttention: its map LIF is recorded by a module hook
    graph, trace = _check_activity(spikformer.eval(), x)
    amap = next(p.target for p in graph.projections if p.name.endswith("_qk"))
    assert _rows(trace, graph, amap).any()


def test_activity_survives_save_and_load_and_recording_restores_the_nodes(tmp_path):
    model = seeded_init(build_model("mnist_conv", (1, 8, 8), 4, seed=0), seed=1)
    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    graph, trace = lower(model, _spikes((T, 3, 1, 8, 8), 0.4, seed=7), labels=[0, 1, 2])
    assert not any(n.store_v_seq for n in nodes) and all(n.v_seq is None for n in nodes)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    trace.save(tmp_path / "t.npz")
    back = EventTrace.load(tmp_path / "t.npz")
    assert set(back.activity) == set(trace.activity) == {"lif1", "pool1", "lif2", "pool2", "output"}
    for name, packed in trace.activity.items():
        assert packed.dtype == np.uint8 and packed.shape == (3, T + 1, (graph.populations[name].size + 7) // 8)
        np.testing.assert_array_equal(back.activity[name], packed)
    np.testing.assert_array_equal(back.predictions, trace.predictions)


# ----------------------------------------------------------------------------------- input current (no input)


def _bias_driven() -> nn.Sequential:
    """IF fed the input tensor as its current -> Linear(20, 6) -> LIF -> Linear(6, 3) readout."""
    net = nn.Sequential(neuron.IFNode(step_mode="m"), layer.Linear(20, 6, bias=False, step_mode="m"),
                        neuron.LIFNode(step_mode="m"), layer.Linear(6, 3, step_mode="m"))
    return seeded_init(net, seed=8, gain=4.0)


@pytest.mark.parametrize("wrap", [False, True])
def test_first_spiking_layer_driven_by_the_input_current(wrap):
    current = torch.rand(5, 20, generator=torch.Generator().manual_seed(9)) * 0.8
    current[:, :4] = 0.0  # four neurons get no current: they never update
    x = current.expand(T + 3, 5, 20).clone()  # constant per-neuron current, as a per-neuron bias
    net = _bias_driven()
    model = Wrap(net).eval() if wrap else net
    graph, trace = lower(model, x)
    assert list(graph.populations) == ["if1", "lif2", "output"] and trace.populations == ("if1", "lif2", "output")
    assert graph.metadata["input_current"] == ["if1"] and graph.in_projections("if1") == []
    assert graph.populations["if1"].neuron.kind == "IF" and graph.depth("if1") == 0
    rec, y = _reference(model, x)
    for pop, module in (("if1", "0"), ("lif2", "2")):
        key = f"net.{module}" if wrap else module
        np.testing.assert_array_equal(trace.to_dense(pop, (graph.populations[pop].size,)),
                                      rec[key][1].transpose(0, 1).numpy())
    assert trace.to_dense("if1", (20,)).sum() > 0 and trace.to_dense("lif2", (6,)).sum() > 0
    rows = _rows(trace, graph, "if1")
    assert rows[:, :-1, 4:].all() and not rows[:, :, :4].any()
    np.testing.assert_array_equal(trace.predictions, y.mean(0).argmax(1).numpy())
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("loihi"))
    assert sim.energy_j > 0 and sim.latency_s > 0


def test_input_current_after_an_unflatten_and_a_conv_keeps_the_input_shape():
    net = nn.Sequential(nn.Unflatten(2, (2, 4, 4)), neuron.IFNode(step_mode="m"),
                        layer.Conv2d(2, 3, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"))
    graph, trace = lower(seeded_init(net, seed=10), torch.full((T, 2, 32), 0.4))
    assert graph.populations["if1"].shape == (2, 4, 4) and "input" not in graph.populations
    assert [(p.source, p.target) for p in graph.projections] == [("if1", "if2")]
    # 0.4 per step: every neuron updated at each step, spikes at t=2 (1.2 >= 1) and is reset to rest
    np.testing.assert_array_equal(trace.to_dense("if1", (32,))[:, :, 0], [[0, 0, 1]] * 2)
    rows = _rows(trace, graph, "if1")
    assert rows[:, :T].all() and not rows[:, T].any()
    assert trace.predictions is None  # the output (T, N, 3, 4, 4) is no class score
