"""Weights that do not fit weight_bits (workloads.lowering.fit, lower(..., weight_fit=)): the per-channel grid rule
on hand-made values, float layers widened, quantized layers kept at their bits after BN folding, "error", and
"quantize" checked against an independent quantization of the model."""
import logging

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from workloads.compression.dsp import LowRankLinear
from workloads.compression.quant import ReScaW, SignQuant, attach, bake, distinct_levels
from workloads.lowering import lower
from workloads.lowering.fit import bits_for_intervals, grid_intervals
from workloads.lowering.grid import bits_for_steps, row_intervals
from workloads.models import build_model

T = 4


@pytest.mark.parametrize("values, steps", [
    ([0.0, 0.25, 1.0], 4), ([-1.0, 1.0], 1), ([0.3, 0.3, 0.3], 0), ([], 0), ([-0.2, 0.1, 0.4, 0.7], 3),
    ([2.0, 2.0 + 2 / 15, 2.0 + 14 / 15, 3.0], 15),  # 4-bit levels with gaps: offset 2, step 1/15
    ([0.0, 1 / 3 + 3e-7, 1.0], 3),  # float32-sized noise stays on the grid
])
def test_grid_intervals_of_hand_made_channels(values, steps):
    assert grid_intervals(np.array(values)) == steps
    if values:  # the compiled row search (workloads.lowering.grid_kernel) on the same channel, alone and reversed
        assert row_intervals(np.array([values, values[::-1]])) == [steps, steps]


def test_row_search_scans_past_a_first_candidate_that_fails_and_stops_at_the_limit():
    # smallest gap 0.3: first candidate ceil(1 / 0.30002) = 4, which fails (1.2 off the grid), as do 5..9; 10 fits
    assert grid_intervals(np.array([0.0, 0.3, 1.0])) == 10
    assert row_intervals(np.array([[0.0, 0.3, 1.0], [1.0, 0.0, 0.3]]), limit=10) == [10, 10]
    assert row_intervals(np.array([[0.0, 0.3, 1.0]]), limit=9) == [None]


def test_float_values_have_no_grid_and_bits_follow_the_levels():
    floats = np.random.default_rng(0).normal(size=64)
    assert grid_intervals(floats) is None and bits_for_intervals(None) == 32
    assert [bits_for_intervals(m) for m in (0, 1, 2, 3, 4, 15, 16, 255)] == [1, 1, 2, 2, 3, 4, 5, 8]


def test_bits_for_steps_is_bits_for_intervals_entry_by_entry():
    """The array form (steps -1 for None) gives bits_for_intervals' bits for every step count up to 2^20 and at
    powers of two and their neighbours up to 2^40."""
    powers = [(1 << k) + d for k in range(41) for d in (-1, 0, 1)]
    steps = np.array([-1] + list(range(1 << 20)) + powers, np.int64)
    want = [bits_for_intervals(None if m < 0 else m) for m in steps.tolist()]
    assert bits_for_steps(steps).tolist() == want
    assert bits_for_steps(steps.reshape(1, -1)).shape == (1, len(steps))


def _init(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights that make neurons fire, BatchNorm statistics to fold (a per-channel scale and shift)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 3 / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _net() -> nn.Sequential:
    """conv(2->6)-BN-IF-maxpool-flatten-fc(6*4*4->12)-BN1d-LIF-fc(12->3) on 2x8x8 spikes."""
    return _init(nn.Sequential(
        layer.Conv2d(2, 6, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(6, step_mode="m"),
        neuron.IFNode(step_mode="m"), layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(6 * 4 * 4, 12, step_mode="m"), layer.BatchNorm1d(12, step_mode="m"),
        neuron.LIFNode(step_mode="m"), layer.Linear(12, 3, step_mode="m")), seed=0)


X = (torch.rand(T, 5, 2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def test_float_layers_widen_to_32_bits_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="workloads.lowering"):
        graph, _ = lower(_net(), X)
    bits = {p.name: p.weight_bits for p in graph.projections}
    assert bits == {"conv1": 32, "maxpool1": 1, "fc1": 32, "fc2": 32}
    assert graph.metadata["weight_fit"]["fc1"] == {"declared": 8, "needed": 32, "stored": 32, "policy": "widen",
                                                   "levels": None}
    assert graph.metadata["weight_fit"]["maxpool1"]["needed"] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "workloads.lowering"]
    assert len(lines) == 1 and "conv1 8->32" in lines[0] and "fc2 8->32" in lines[0] and "maxpool1" not in lines[0]


@pytest.mark.parametrize("bits", [12, 13, 16])
def test_quantize_stores_the_bits_asked_for_also_above_what_the_fit_can_tell(bits):
    """Grids finer than 12 bits cannot be told from float32 weights, but quantize made them: stored at `bits` (13
    and 16 were stored as 32 before); 12 bits is still found by the grid search itself (levels given)."""
    graph, _ = lower(_net(), X, weight_bits=bits, weight_fit="quantize")
    fit = graph.metadata["weight_fit"]
    assert {p.name: p.weight_bits for p in graph.projections} == {"conv1": bits, "maxpool1": 1, "fc1": bits,
                                                                   "fc2": bits}
    assert (fit["fc1"]["needed"], fit["fc1"]["stored"]) == (bits, bits)
    assert (fit["fc1"]["levels"] is None) == (bits > 12)
    graph, _ = lower(_net(), X, weight_bits=bits, weight_fit="widen")  # float weights, not quantized: 32
    assert graph.metadata["weight_fit"]["fc1"]["stored"] == 32


def test_error_policy_names_the_projection_and_the_bits():
    with pytest.raises(ValueError, match=r"weight_fit: projection 'conv1' declares weight_bits 8 but its weights "
                                         r"need 32 bits"):
        lower(_net(), X, weight_fit="error")
    with pytest.raises(ValueError, match=r"weight_fit: 'round' is not one of widen, error, quantize"):
        lower(_net(), X, weight_fit="round")


def _quantized_net() -> nn.Sequential:
    """_net with ReScaW 4-bit on the conv (QP-SNN: levels g (2k/15 - 1) per channel) and sign 1-bit on fc1."""
    net = _net()
    attach(net, {"0": ReScaW(4), "5": SignQuant("l1")})
    return bake(net)


def test_quantized_layers_keep_their_bits_after_batchnorm_folding():
    net = _quantized_net()
    assert set(distinct_levels(net[0].weight).tolist()) <= set(range(2, 17))
    graph, _ = lower(net, X, compression={"weight_bits": {"0": 4, "5": 1}})
    fit = graph.metadata["weight_fit"]
    assert [(p.name, p.weight_bits) for p in graph.projections] == [("conv1", 4), ("maxpool1", 1), ("fc1", 1),
                                                                     ("fc2", 32)]
    assert fit["conv1"]["needed"] <= 4 and 2 < fit["conv1"]["levels"] <= 16
    assert (fit["fc1"]["needed"], fit["fc1"]["levels"]) == (1, 2)  # sign x scale x BN scale: two levels per row
    conv = graph.projections[0].weight.reshape(6, -1)  # folded: BN scales each channel, levels stay 2^4 at most
    assert max(len(np.unique(row)) for row in conv) <= 16
    with pytest.raises(ValueError, match=r"'conv1' declares weight_bits 2 but its weights need [34] bits"):
        lower(net, X, compression={"weight_bits": {"0": 2, "5": 1}}, weight_fit="error")


def _reference_quantized(net: nn.Sequential, bits: int) -> nn.Sequential:
    """Independent per-output-channel symmetric uniform quantization of every Conv2d/Linear, in place."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight.double()
                step = w.abs().flatten(1).max(1).values / (2 ** (bits - 1) - 1)
                m.weight.copy_((torch.round(w / step.reshape((-1,) + (1,) * (w.dim() - 1))) *
                                step.reshape((-1,) + (1,) * (w.dim() - 1))).float())
    return net


def _model_spikes(net: nn.Sequential, x: torch.Tensor) -> dict[int, np.ndarray]:
    """(N, T, n) spikes of every neuron / max-pool module of `net` (index -> array), by plain hooks."""
    out, handles = {}, []
    for i, m in enumerate(net):
        if isinstance(m, (neuron.BaseNode, nn.MaxPool2d)):
            handles.append(m.register_forward_hook(
                lambda mod, a, o, i=i: out.__setitem__(i, o.reshape(T, x.shape[1], -1).transpose(0, 1).numpy())))
    functional.reset_net(net)
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return out


def test_quantize_policy_records_the_spikes_of_the_quantized_model():
    net = _net()
    original = [p.detach().clone() for p in net.parameters()]
    graph, trace = lower(net, X, weight_bits=3, weight_fit="quantize")
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), original))  # a copy was quantized
    fit = graph.metadata["weight_fit"]
    for name in ("conv1", "fc1", "fc2"):
        proj = next(p for p in graph.projections if p.name == name)
        assert proj.weight_bits == 3 and fit[name]["needed"] <= 3 and fit[name]["policy"] == "quantize"
        rows = proj.weight.reshape(len(proj.weight), -1)
        assert max(len(np.unique(r)) for r in rows) <= 2 ** 3 - 1  # symmetric: -3..3 steps per channel
    step = net[0].weight.detach().abs().flatten(1).max(1).values / 3
    assert 0 < fit["conv1"]["max_abs_error"] <= float(step.max()) / 2 + 1e-7  # round to nearest
    want = _model_spikes(_reference_quantized(_net(), 3), X)
    for pop, index in (("if1", 2), ("pool1", 3), ("lif2", 7)):
        got = trace.to_dense(pop, graph.populations[pop].shape).reshape(5, T, -1)
        assert want[index].sum() > 0
        np.testing.assert_array_equal(got, want[index], err_msg=pop)
    assert not np.array_equal(want[7], _model_spikes(_net(), X)[7])  # 3 bits do change the spikes


def test_quantize_leaves_layers_on_their_grid_untouched_bit_for_bit():
    net = _quantized_net()
    compression = {"weight_bits": {"0": 4, "5": 1}}
    widen, _ = lower(net, X, compression=compression)
    quant, _ = lower(net, X, compression=compression, weight_fit="quantize")
    for a, b in zip(widen.projections[:3], quant.projections[:3]):  # conv1, maxpool1, fc1: already on grid
        np.testing.assert_array_equal(a.weight, b.weight)
        assert quant.metadata["weight_fit"][a.name]["max_abs_error"] == 0.0
    assert quant.projections[3].weight_bits == 8 and quant.metadata["weight_fit"]["fc2"]["max_abs_error"] > 0


def test_quantize_reaches_low_rank_factors_and_gated_attention_is_exempt():
    net = _init(nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(128, 10, step_mode="m"),
                              neuron.IFNode(step_mode="m"), LowRankLinear(10, 6, 3), neuron.IFNode(step_mode="m")), 2)
    graph, _ = lower(net, X, compression={"weight_bits": {"3": 2}}, weight_fit="quantize")
    bits = {p.name: (p.weight_bits, graph.metadata["weight_fit"][p.name]["needed"]) for p in graph.projections}
    assert bits == {"fc1": (8, 8), "fc2_b": (2, 2), "fc2_a": (2, 2)}  # the factors take the low-rank layer's bits
    assert max(len(np.unique(r)) for r in graph.projections[1].weight) <= 3  # 2 bits symmetric: -1, 0, 1 steps
    # a factor's own bits (a quantizer run after DSP keys them so: "3.first") win over the low-rank layer's
    graph, _ = lower(net, X, compression={"weight_bits": {"3": 6, "3.first": 4, "3.second": 3}}, weight_fit="quantize")
    fit = graph.metadata["weight_fit"]
    assert [(fit[n]["declared"], fit[n]["stored"]) for n in ("fc2_b", "fc2_a")] == [(4, 4), (3, 3)]
    graph, _ = lower(net, X, compression={"weight_bits": {"3": 6, "3.second": 3}}, weight_fit="widen")
    assert [graph.metadata["weight_fit"][n]["declared"] for n in ("fc2_b", "fc2_a")] == [6, 3]
    spikformer = build_model("spikformer", (2, 8, 8), 3, seed=0, depth=1, dim=16, heads=2, pool_after=(2,))
    graph, _ = lower(spikformer.eval(), X[:, :2])
    gated = [p for p in graph.projections if p.gate is not None]
    assert len(gated) == 2 and not any(p.name in graph.metadata["weight_fit"] for p in gated)
    assert {p.weight_bits for p in gated} == {1, 5}  # binary operands: 1 bit (K^T V stage), log2(16 + 1) bits


def test_short_float_channels_are_floats_and_short_quantized_ones_keep_their_bits():
    """A channel of 3 or 4 float weights lies within GRID_TOL of some grid of a few thousand steps (the float
    second factor of a rank-4 DSP layer was called 11-12-bit); a quantized one lies on its grid to float32's
    resolution, which random values do not (workloads.lowering.grid.chance_of_grid)."""
    from workloads.lowering.fit import weight_grid
    from workloads.lowering.grid import bits_for_intervals
    floats = [bits_for_intervals(weight_grid(np.random.default_rng(s).standard_normal((10, k)).astype(np.float32),
                                             False)) for s in range(10) for k in (3, 4)]
    assert floats == [32] * 20
    for bits, k in ((2, 3), (4, 4), (8, 3), (8, 4)):
        rng = np.random.default_rng(bits * 10 + k)
        half = (2 ** bits - 1) // 2
        q = rng.integers(-half, half + 1, size=(10, k)).astype(np.float32)
        q[:, 0], q[:, 1] = -half, half  # every channel spans the whole grid: 2^b - 1 steps
        scaled = q * rng.uniform(0.01, 0.1, size=(10, 1)).astype(np.float32)
        assert bits_for_intervals(weight_grid(scaled, False)) == bits
    sparse = np.random.default_rng(1).standard_normal((8, 40)).astype(np.float32)
    sparse[np.abs(sparse) < 1.8] = 0  # a few non-zeros a channel, stored sparse: was 11 bits
    assert bits_for_intervals(weight_grid(sparse, True)) == 32
    on_grid = np.round(sparse / np.abs(sparse).max() * 7) * np.float32(0.03)
    assert bits_for_intervals(weight_grid(on_grid.astype(np.float32), True)) == 4
