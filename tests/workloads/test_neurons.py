"""Neurons: factory kinds and errors, hand-computed traces of sLIF (and its threshold gradient), QLIF (tanh then
b-bit quantization), ternary spikes (neurons and encoder), and the H/V replay used by SCA for every kind."""
import math

import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from workloads.encoding import encode
from workloads.neurons import QLIFNode, SLIFNode, charge_sequence, make_neuron, quantize_state


def _seq(values):
    """(T,) values -> (T, N=1, 1) float tensor."""
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1)


@pytest.mark.parametrize("kind, kwargs, cls", [
    ("IF", {}, neuron.IFNode), ("LIF", {}, neuron.LIFNode), ("PLIF", {}, neuron.ParametricLIFNode),
    ("sLIF", {}, SLIFNode), ("QLIF", {}, QLIFNode), ("IF", {"ternary": True}, neuron.TernaryIFNode),
    ("LIF", {"ternary": True}, neuron.TernaryLIFNode),
])
def test_factory_kinds_are_multi_step_nodes(kind, kwargs, cls):
    node = make_neuron(kind, 2.0, 1.0, **kwargs)
    assert type(node) is cls and node.step_mode == "m" and node.v_reset == 0.0 and node.detach_reset
    assert make_neuron(kind, 2.0, 1.0, reset="soft", **kwargs).v_reset is None


@pytest.mark.parametrize("kind, kwargs, match", [
    ("Izhikevich", {}, "neuron"), ("LIF", {"bits": 4}, "bits"), ("QLIF", {"shape": (3,)}, "shape"),
    ("PLIF", {"ternary": True}, "ternary"), ("LIF", {"reset": "zero"}, "reset"), ("QLIF", {"bits": 1}, "bits"),
    ("QLIF", {"bits": 17}, "bits"), ("sLIF", {"tau": 1.0}, "tau"), ("LIF", {"v_threshold": 0.0}, "v_threshold"),
    ("QLIF", {"bits": 2.7}, "bits must be an integer in 2..16, got 2.7"),  # became 2 bits
    ("QLIF", {"bits": "4"}, "bits must be an integer"), ("LIF", {"tau": float("inf")}, "tau must be a finite"),
    ("IF", {"v_threshold": float("inf")}, "v_threshold must be a finite number > 0"),  # never fired
])
def test_factory_rejects_bad_arguments(kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_neuron(kind, **kwargs)


def test_slif_matches_hand_trace_with_per_neuron_thresholds():
    # decay = 1 - 1/tau = 0.5. Neuron 0 (theta 1.0), input 0.6 each step: H = 0.6, 0.9, 1.05 (spike, V=0), 0.6.
    # Neuron 1 (theta 0.8): H = 0.6, 0.9 (spike, V=0), 0.6, 0.9 (spike).
    node = make_neuron("sLIF", 2.0, 1.0, shape=(2,))
    with torch.no_grad():
        node.theta.copy_(torch.tensor([1.0, 0.8]))
    node.store_v_seq = True
    spikes = node(torch.full((4, 1, 2), 0.6))
    assert spikes[:, 0].tolist() == [[0, 0], [0, 1], [1, 0], [0, 1]]
    torch.testing.assert_close(node.v_seq[:, 0], torch.tensor([[0.6, 0.6], [0.9, 0.0], [0.0, 0.6], [0.6, 0.0]]))


def test_slif_threshold_gets_the_surrogate_gradient():
    # H = 0.6, 0.9, 1.05, 0.6 (hand trace above); ATan(alpha=2): dS/dH = 1 / (1 + (pi*(H - theta))^2), reset
    # detached, so dL/dtheta for L = sum S is -sum_t 1 / (1 + (pi*(H_t - 1))^2).
    node = make_neuron("sLIF", 2.0, 1.0)
    node(torch.full((4, 1, 1), 0.6)).sum().backward()
    expected = -sum(1.0 / (1.0 + (math.pi * (h - 1.0)) ** 2) for h in (0.6, 0.9, 1.05, 0.6))
    assert node.theta.shape == (1,)
    assert node.theta.grad.item() == pytest.approx(expected, rel=1e-5)


def test_slif_lazy_threshold_sizing_and_checkpoint_round_trip():
    node = make_neuron("sLIF", 2.0, 0.7)
    fresh = make_neuron("sLIF", 2.0, 0.7)
    node(torch.zeros(2, 3, 4, 5))  # per-sample shape (4, 5)
    assert node.theta.shape == (4, 5) and torch.equal(node.theta, torch.full((4, 5), 0.7))
    with torch.no_grad():
        node.theta.add_(0.1)
    fresh.load_state_dict(node.state_dict())
    assert torch.equal(fresh.theta, node.theta)
    with pytest.raises(ValueError, match="theta shape"):
        functional.reset_net(node)
        node(torch.zeros(2, 3, 4, 6))


def test_qlif_state_is_tanh_then_quantized_by_hand():
    # b = 2: step = max|u| / (2^1 - 1), levels {-m, 0, m}. t0: H = x = (0.4, -0.8, 1.2) -> spike on neuron 2,
    # reset (0.4, -0.8, 0), tanh -> (0.380, -0.664, 0), m = tanh(0.8): round(0.572) = 1 -> (m, -m, 0).
    # t1: H = 0.5*V + x = (0.4 + m/2, -0.8 - m/2, 1.2) -> spike on neuron 2, tanh -> m' = tanh(0.8 + m/2) is
    # the largest magnitude, tanh(0.4 + m/2)/m' = 0.77 rounds to 1 -> (m', -m', 0).
    node = make_neuron("QLIF", 2.0, 1.0, bits=2)
    node.store_v_seq = True
    x = torch.tensor([0.4, -0.8, 1.2]).expand(2, 1, 3)
    spikes = node(x)
    m = math.tanh(0.8)
    m1 = math.tanh(0.8 + m / 2)
    assert spikes[:, 0].tolist() == [[0, 0, 1], [0, 0, 1]]
    torch.testing.assert_close(node.v_seq[:, 0], torch.tensor([[m, -m, 0.0], [m1, -m1, 0.0]]))


def test_qlif_state_has_at_most_2_pow_b_levels_per_sample():
    bits = 3
    node = make_neuron("QLIF", 2.0, 1.0, bits=bits)
    node.store_v_seq = True
    node(torch.randn(5, 4, 6, 7, generator=torch.Generator().manual_seed(0)) * 2)
    for t in range(5):
        for n in range(4):
            v = node.v_seq[t, n]
            step = v.abs().max() / (2 ** (bits - 1) - 1)
            assert len(torch.unique(v)) <= 2 ** bits
            torch.testing.assert_close(v / step, torch.round(v / step))  # every value on the grid k * step


def test_quantize_state_is_straight_through_and_keeps_zero_samples():
    u = torch.tensor([[0.2, -0.4, 1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    q = quantize_state(u, 3)  # 3 levels a side, step 1/3 in sample 0: 0.2 -> 0.6 steps -> 1/3, -0.4 -> -1/3
    torch.testing.assert_close(q.detach(), torch.tensor([[1 / 3, -1 / 3, 1.0], [0.0, 0.0, 0.0]]))
    q.sum().backward()
    assert torch.equal(u.grad, torch.ones_like(u))


@pytest.mark.parametrize("kind, reset, spikes, v", [
    # IF, hard: H = 0.6, 1.2 (+1, V 0), -1.5 (-1, V 0), -0.3
    ("IF", "hard", [0, 1, -1, 0], [0.6, 0.0, 0.0, -0.3]),
    # IF, soft: H = 0.6, 1.2 (+1, V 0.2), -1.3 (-1, V -0.3), -0.6
    ("IF", "soft", [0, 1, -1, 0], [0.6, 0.2, -0.3, -0.6]),
    # sLIF (decay 0.5), hard: H = 0.6, 0.3 + 0.6 = 0.9, 0.45 - 1.5 = -1.05 (-1, V 0), -0.3
    ("sLIF", "hard", [0, 0, -1, 0], [0.6, 0.9, 0.0, -0.3]),
    # LIF tau 2 (H = V + (X - V)/2), hard: 0.3, 0.45, -0.525, -0.4125
    ("LIF", "hard", [0, 0, 0, 0], [0.3, 0.45, -0.525, -0.4125]),
])
def test_ternary_spikes_by_hand(kind, reset, spikes, v):
    node = make_neuron(kind, 2.0, 1.0, ternary=True, reset=reset)
    node.store_v_seq = True
    out = node(_seq([0.6, 0.6, -1.5, -0.3]))
    assert out.flatten().tolist() == spikes
    torch.testing.assert_close(node.v_seq.flatten(), torch.tensor(v))


def test_ternary_lif_fires_negative_spikes():
    # LIF tau 2 from V=0: input -2.4 -> H = -1.2 <= -1 -> -1, V 0; input 2.4 -> H = 1.2 -> +1.
    node = make_neuron("LIF", 2.0, 1.0, ternary=True)
    assert node(_seq([-2.4, 2.4, 0.5])).flatten().tolist() == [-1, 1, 0]


def test_ternary_encoder_by_hand():
    # sample (8, 6, 10, 4, 7): mean 7, population std sqrt((1+1+9+9+0)/5) = 2, d = (0.5, -0.5, 1.5, -1.5, 0).
    # Ternary IF, threshold 1, soft reset: d = 0.5 -> U 0.5, 1.0 (+1, 0), 0.5, 1.0 (+1); d = 1.5 fires every
    # step (U 1.5 -> 0.5 -> 2.0 -> 1.0 -> 2.5 ...); d = 0 never. A constant sample encodes to zeros.
    x = torch.tensor([[8.0, 6.0, 10.0, 4.0, 7.0], [3.0, 3.0, 3.0, 3.0, 3.0]]).reshape(2, 1, 1, 5)
    seq = encode(x, 4, "ternary")
    assert seq.shape == (4, 2, 1, 1, 5)
    assert seq[:, 0].reshape(4, 5).tolist() == [[0, 0, 1, -1, 0], [1, -1, 1, -1, 0],
                                                [0, 0, 1, -1, 0], [1, -1, 1, -1, 0]]
    assert not seq[:, 1].any()


@pytest.mark.parametrize("kind, kwargs", [
    ("IF", {}), ("LIF", {}), ("PLIF", {}), ("sLIF", {}), ("QLIF", {"bits": 4}), ("IF", {"ternary": True}),
    ("LIF", {"ternary": True, "reset": "soft"}), ("sLIF", {"ternary": True}), ("QLIF", {"reset": "soft"}),
])
def test_charge_replay_matches_every_kind(kind, kwargs):
    node = make_neuron(kind, 2.0, 1.0, **kwargs)
    node.store_v_seq = True
    x = torch.randn(6, 3, 4, 5, generator=torch.Generator().manual_seed(1)) * 1.5
    spikes = node(x)
    h, v = charge_sequence(node, x, spikes, 0.0)
    torch.testing.assert_close(v, node.v_seq, rtol=0, atol=1e-6)
    assert (spikes != 0).any() and not (spikes != 0).all()
    ternary = kwargs.get("ternary", False)
    assert bool((h[spikes > 0] >= 1.0).all())  # H is the potential the spikes were decided on
    assert bool(((h[spikes == 0].abs() if ternary else h[spikes == 0]) < 1.0).all())
    assert bool((h[spikes < 0] <= -1.0).all()) and (ternary or not (spikes < 0).any())


@pytest.mark.parametrize("kind", ["sLIF", "QLIF"])
def test_reset_net_restores_custom_nodes(kind):
    node = make_neuron(kind)
    x = torch.rand(3, 2, 4) * 2
    first = node(x)
    functional.reset_net(node)
    assert torch.equal(node(x), first)
