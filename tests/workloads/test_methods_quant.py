"""Quantization methods: ReScaW / uniform / sign quantizers by hand, their straight-through gradients, attach and
bake, QP-SNN (levels per channel, SVS scores by hand), Q-SNN (1-bit weights, membrane levels, the firing-rate
term's exact gradient) and binary weights and attention (BESTformer)."""
import io

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn
from torch.nn.utils import parametrize

from workloads.compression import compose
from workloads.compression.base import find_conv_units, remove_channels
from workloads.compression.binary import BinaryAttention, BinaryConfig, binary, swap_attention
from workloads.compression.compose import ComposeConfig, PruneContext
from workloads.compression.magnitude import ChannelPruneConfig
from workloads.compression.q_snn import FiringRateRegulariser, QSNNConfig, q_snn
from workloads.compression.qp_snn import QPSNNConfig, qp_snn, svs_scores
from workloads.compression.quant import ReScaW, SignQuant, UniformQuant, attach, bake, distinct_levels
from workloads.encoding import encode
from workloads.models import build_model
from workloads.models.spikformer import SpikeAttention
from workloads.neurons import QLIFNode, make_neuron
from workloads.train import TrainConfig

T = 4



FAST = TrainConfig(epochs=1, n_timesteps=T)


# ------------------------------------------------------------------------------------------------ quantizers

def test_rescaw_hand_computed_levels_and_clipped_straight_through():
    # g = mean|w| = 0.275; b = 2, s = 3: c = clamp(w/g) = (0.364, -1, 1, 0.727); s/2 (c+1) = (2.05, 0, 3, 2.59)
    # -> k = (2, 0, 3, 3) -> q = 2k/3 - 1 = (1/3, -1, 1, 1) -> g q. Gradient 1 where |w/g| <= 1.
    w = torch.tensor([[0.1, -0.3, 0.5, 0.2]], requires_grad=True)
    out = ReScaW(2)(w)
    torch.testing.assert_close(out, 0.275 * torch.tensor([[1 / 3, -1.0, 1.0, 1.0]]))
    out.sum().backward()
    assert w.grad.tolist() == [[1.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_rescaw_holds_at_most_two_to_the_b_levels_per_channel(bits):
    w = torch.randn(8, 16, 3, 3, generator=torch.Generator().manual_seed(bits))
    q = ReScaW(bits)(w)
    assert int(distinct_levels(q).max()) <= 2 ** bits
    g = w.abs().mean((1, 2, 3), keepdim=True)  # every value is g * (2k/s - 1) for an integer k in 0..s
    k = (q / g + 1) * (2 ** bits - 1) / 2
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-3)
    assert k.min() >= -1e-4 and k.max() <= 2 ** bits - 1 + 1e-4


def test_uniform_quant_hand_computed():
    # b = 3: step = max|w| / 3 = 1/3; w/step = (1.5, -3, 0.78) -> round (half to even) (2, -3, 1)
    out = UniformQuant(3)(torch.tensor([[0.5, -1.0, 0.26]]))
    torch.testing.assert_close(out, torch.tensor([[2 / 3, -1.0, 1 / 3]]))


def test_sign_quant_hand_computed_scales():
    # w = (1, 2, 3, 6): mean 3, std sqrt(3.5); z = (-1.07, -0.53, 0, 1.60): sign (-, -, +, +) (0 -> +);
    # mean|z| = 0.80 -> 2^round(log2 0.80) = 1; l1 scale mean|w - 3| = 1.5
    w = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    assert SignQuant("pow2")(w).tolist() == [[-1.0, -1.0, 1.0, 1.0]]
    assert SignQuant("l1")(w).tolist() == [[-1.5, -1.5, 1.5, 1.5]]
    with pytest.raises(ValueError, match="scale"):
        SignQuant("max")


def test_sign_quant_gradient_is_identity_through_the_standardisation():
    w = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g_out = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    (SignQuant("l1")(w) * g_out).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    alpha = (w2 - w2.mean(1, keepdim=True)).abs().mean(1, keepdim=True).detach()
    z = (w2 - w2.mean(1, keepdim=True)) / w2.std(1, keepdim=True, unbiased=False)
    (alpha * z * g_out).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)


def test_attach_bake_and_channel_removal_keep_the_quantizer():
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=3)
    bits = attach(model, {"4": ReScaW(2)})
    assert bits == {"4": 2} and parametrize.is_parametrized(model[4], "weight")
    with pytest.raises(ValueError, match="not an unquantized"):
        attach(model, {"4": ReScaW(2)})
    units = find_conv_units(model)
    masks = {"0": torch.arange(16) % 2 == 0, "4": torch.arange(32) < 20}
    small = remove_channels(model, units, masks)
    latent = model[4].parametrizations.weight.original
    torch.testing.assert_close(small[4].parametrizations.weight.original, latent[:20][:, ::2])
    torch.testing.assert_close(small[4].weight, ReScaW(2)(latent[:20][:, ::2]))
    quantized = small[4].weight.detach().clone()
    bake(small)
    assert type(small[4]) is layer.Conv2d and torch.equal(small[4].weight, quantized)
    torch.save(small, io.BytesIO())  # plain modules pickle (a parametrized one would not)


# ------------------------------------------------------------------------------------------------ QP-SNN

def test_svs_score_counts_singular_values_of_the_mean_spike_map():
    """Identity 1x1 conv + identity BN + IF(theta 1) under direct encoding: spikes = the binary input image every
    step, so the score is the rank of each input channel: eye(4) -> 4, ones -> 1, zeros -> 0."""
    model = nn.Sequential(layer.Conv2d(3, 3, 1, bias=False, step_mode="m"),
                          layer.BatchNorm2d(3, eps=0.0, step_mode="m"), make_neuron("IF", v_threshold=1.0))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    x = torch.stack([torch.eye(4), torch.ones(4, 4), torch.zeros(4, 4)]).expand(5, 3, 4, 4).contiguous()
    ctx = PruneContext(x, torch.zeros(5, dtype=torch.long), TrainConfig(n_timesteps=3, batch_size=2), seed=0,
                       score_batches=2)
    scores = svs_scores(model, find_conv_units(model), ctx)
    assert scores["0"].tolist() == [4.0, 1.0, 0.0]
    assert model.training  # mode restored


def test_qp_snn_quantizes_hidden_layers_prunes_all_but_last_conv(trained, small_ds):
    cfg = QPSNNConfig(bits=2, pre_epochs=0, finetune_epochs=1, score_batches=2)
    small, info = qp_snn(trained, small_ds, 0.5, cfg, FAST, seed=0, progress=False)
    assert info.weight_bits == {"4": 2}  # first conv "0" and last FC "9" full precision
    assert info.channels_after == {"0": 8, "4": 32}  # last conv spared
    assert int(distinct_levels(small[4].weight).max()) <= 4
    assert len(torch.unique(small[0].weight)) > 4 * small[0].out_channels  # untouched full precision
    assert info.size_bits == small[4].weight.numel() * 2 + (info.params_after - small[4].weight.numel()) * 32
    assert not any(parametrize.is_parametrized(m) for m in small.modules())
    with pytest.raises(ValueError, match="layer_ratios"):
        qp_snn(trained, small_ds, 0.5, QPSNNConfig(layer_ratios={"7": 0.5}, finetune_epochs=0, pre_epochs=0),
               FAST, progress=False)


# ------------------------------------------------------------------------------------------------ Q-SNN

def test_q_snn_one_bit_weights_and_quantized_membrane(trained, small_ds):
    cfg = QSNNConfig(state_bits=3, finetune_epochs=1)
    small, info = q_snn(trained, small_ds, 0.0, cfg, FAST, seed=0, progress=False)
    assert info.weight_bits == {"0": 8, "4": 1, "9": 8} and info.state_bits == {"2": 3, "6": 3}
    w = small[4].weight.detach().reshape(32, -1)
    for row in w:  # exactly two levels +-2^k
        levels = torch.unique(row)
        assert len(levels) == 2 and levels[0] == -levels[1]
        assert float(torch.log2(levels[1])) == round(float(torch.log2(levels[1])))
    assert int(distinct_levels(small[0].weight).max()) <= 2 ** 8 - 1
    nodes = [m for m in small.modules() if isinstance(m, QLIFNode)]
    assert len(nodes) == 2 and all(n.bits == 3 for n in nodes)
    small.eval()
    with torch.no_grad():
        small(encode(small_ds.x_test[:20], T))
    for node in nodes:  # V after the last reset: per sample, multiples of max|V| / 3 -> at most 7 <= 2^3 levels
        v = node.v.reshape(20, -1)
        assert max(len(torch.unique(row)) for row in v) <= 2 ** 3
        step = v.abs().amax(1, keepdim=True) / 3
        torch.testing.assert_close(v / step, (v / step).round(), rtol=0, atol=1e-4)
    functional.reset_net(small)


def test_firing_rate_term_gradient_equals_autograd_of_the_full_loss():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(6, 5, step_mode="m"), make_neuron("LIF"), layer.Linear(5, 3, step_mode="m"),
                        make_neuron("LIF"), layer.Linear(3, 2, step_mode="m"))
    x = torch.rand(T, 7, 6) * 3
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    lam = 0.7  # large, so the term matters

    spikes = []
    hooks = [m.register_forward_hook(lambda m, a, o: spikes.append(o)) for m in (net[1], net[3])]
    loss = nn.functional.cross_entropy(net(x).mean(0), y)
    loss = loss + lam * sum((s.mean() - 0.5) ** 2 for s in spikes) / 2
    loss.backward()
    want = [p.grad.clone() for p in net.parameters()]
    for h in hooks:
        h.remove()
    net.zero_grad()
    functional.reset_net(net)

    with FiringRateRegulariser(net, lam, 0.5) as reg:
        nn.functional.cross_entropy(net(x).mean(0), y).backward()
    for p, g in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, g)
    rates = [float(s.detach().mean()) for s in spikes]
    assert reg.penalty() == pytest.approx(lam * sum((r - 0.5) ** 2 for r in rates) / 2)


# ------------------------------------------------------------------------------------------------ binary

def test_binary_attention_hand_computed():
    # Q K^T = [[2, 1], [1, 0]]; LIF tau 2: H = X/2 = [[1, .5], [.5, 0]] -> A = [[1, 0], [0, 0]]; A V * 0.125
    att = BinaryAttention(heads=1, n_timesteps=1)
    q = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    k = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).reshape(1, 1, 2, 2)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    out = att(q, k, v)
    assert out.reshape(2, 2).tolist() == [[0.125, 0.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="T=1"):
        att(q.expand(2, 1, 2, 2), k, v)


def test_binary_two_levels_per_channel_and_first_last_full_precision(trained, small_ds):
    small, info = binary(trained, small_ds, 0.0, BinaryConfig(finetune_epochs=1), FAST, progress=False)
    assert info.weight_bits == {"4": 1}
    for row in small[4].weight.detach().reshape(32, -1):
        levels = torch.unique(row)
        assert len(levels) == 2 and levels[0] == -levels[1]
    assert len(torch.unique(small[9].weight)) > 100


def test_binary_on_a_tiny_spikformer_swaps_attention_and_binarizes_block_linears(small_ds):
    model = build_model("spikformer", small_ds.in_shape, small_ds.n_classes, seed=0, depth=1, dim=16, heads=2)
    small, info = binary(model, small_ds, 0.0, BinaryConfig(finetune_epochs=0), FAST, progress=False)
    assert not any(isinstance(m, SpikeAttention) for m in small.modules())
    assert sum(isinstance(m, BinaryAttention) for m in small.modules()) == 1
    assert "tokenizer.proj.conv0" not in info.weight_bits and "head" not in info.weight_bits
    assert info.weight_bits["blocks.0.attn.q.linear"] == 1
    assert set(distinct_levels(small.blocks[0].mlp.fc1.linear.weight).tolist()) == {2}
    assert small(encode(small_ds.x_test[:3], T)).shape == (T, 3, 10)


def test_swap_attention_keeps_heads_and_scale():
    holder = nn.Module()
    holder.attn = SpikeAttention(4, 0.25)
    assert swap_attention(holder, 3) == ["attn"]
    assert holder.attn.heads == 4 and holder.attn.scale == 0.25 and holder.attn.alpha.shape == (3, 4)


def test_compose_quantizer_then_pruner(trained, small_ds):
    method = compose("q_snn", "magnitude_channel")
    small, info = method(trained, small_ds, 0.25, ComposeConfig(pruner=ChannelPruneConfig(finetune_epochs=0)), FAST,
                         progress=False)
    assert info.method == "q_snn+magnitude_channel" and info.channels_after == {"0": 12, "4": 24}
    assert info.weight_bits["4"] == 1 and set(distinct_levels(small[4].weight).tolist()) == {2}
    with pytest.raises(ValueError, match="quantizer must be one of"):
        compose("ternary", "random")


@pytest.mark.parametrize("cls, kwargs, field", [
    (QPSNNConfig, {"bits": 0}, "bits"), (QSNNConfig, {"state_bits": 1}, "state_bits"),
    (BinaryConfig, {"scale": "max"}, "scale"), (QSNNConfig, {"lr": 0}, "lr"), (ComposeConfig, {"pre_epochs": -1},
                                                                               "pre_epochs")])
def test_bad_configs_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=f"{cls.__name__}.{field}"):
        cls(**kwargs)
