"""Model zoo: exact parameter counts (arithmetic written out) against METHODS.md, output shapes on tiny inputs,
plain chains that lowering and SCA walk, Spikformer/ResNet structure, neuron choice and registry errors."""
import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from workloads.compression.base import find_conv_units
from workloads.lowering import lower
from workloads.models import MODELS, build_model, count_parameters, model_options
from workloads.models.resnet import BasicBlock, PreActBlock
from workloads.models.spikformer import SpikeAttention
from workloads.neurons import SLIFNode, make_neuron

# Conv3x3 without bias: 9 * c_in * c_out; BN: 2 * c; Linear: in * out + out.
SCA_DVS = 9 * (2 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256) + 2 * (64 + 128 + 128 + 256 + 256) + 256 * 10 + 10
VGG16_CONVS = (9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2 * 256 * 256 + 256 * 512 + 5 * 512 * 512)
               + 2 * (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512))
VGG16_SCA = VGG16_CONVS + 2 * (512 * 512 + 512) + 2 * 2 * 512 + 512 * 10 + 10
VGG16_QP = VGG16_CONVS + 512 * 10 + 10
VGG11 = (9 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
         + 2 * (64 + 128 + 2 * 256 + 4 * 512) + 512 * 10 + 10)
VGG9 = (9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2 * 256 * 256) + 2 * (2 * 64 + 2 * 128 + 3 * 256)
        + 256 * 4 * 4 * 1024 + 1024 + 1024 * 10 + 10)
RESNET19 = (9 * 3 * 128 + 2 * 128                                                       # stem
            + 3 * (2 * 9 * 128 * 128 + 2 * 2 * 128)                                     # layer1: 3 blocks
            + 9 * 128 * 256 + 9 * 256 * 256 + 128 * 256 + 3 * 2 * 256                   # layer2 block 1 (1x1 proj)
            + 2 * (2 * 9 * 256 * 256 + 2 * 2 * 256)                                     # layer2 blocks 2-3
            + 9 * 256 * 512 + 9 * 512 * 512 + 256 * 512 + 3 * 2 * 512                   # layer3 block 1
            + 2 * 9 * 512 * 512 + 2 * 2 * 512                                           # layer3 block 2
            + 512 * 10 + 10)                                                            # fc
PREACT18 = (9 * 3 * 64                                                                  # stem conv only
            + 2 * (2 * 2 * 64 + 2 * 9 * 64 * 64)                                        # layer1
            + 2 * 64 + 9 * 64 * 128 + 2 * 128 + 9 * 128 * 128 + 64 * 128                # layer2 block 1
            + 2 * 2 * 128 + 2 * 9 * 128 * 128                                           # layer2 block 2
            + 2 * 128 + 9 * 128 * 256 + 2 * 256 + 9 * 256 * 256 + 128 * 256             # layer3 block 1
            + 2 * 2 * 256 + 2 * 9 * 256 * 256
            + 2 * 256 + 9 * 256 * 512 + 2 * 512 + 9 * 512 * 512 + 256 * 512             # layer4 block 1
            + 2 * 2 * 512 + 2 * 9 * 512 * 512
            + 2 * 512 + 512 * 10 + 10)                                                  # final BN, fc
VGGSNN = (9 * (2 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
          + 2 * (64 + 128 + 2 * 256 + 4 * 512) + 512 * 3 * 3 * 10 + 10)  # Linear(4608, 10)
# Spikformer: tokenizer convs D/8, D/4, D/2, D + rpe D->D (+BN); block: Q, K, V, proj linear + BN1d (2D each),
# MLP D->4D->D with BN1d; head D*10 + 10 (no LayerNorm / position embedding: unused in the reference forward).
SPIKFORMER_4_384 = (9 * (3 * 48 + 48 * 96 + 96 * 192 + 192 * 384 + 384 * 384) + 2 * (48 + 96 + 192 + 384 + 384)
                    + 4 * (4 * (384 * 384 + 384) + 4 * 2 * 384
                           + 384 * 1536 + 1536 + 1536 * 384 + 384 + 2 * 1536 + 2 * 384)
                    + 384 * 10 + 10)
SPIKFORMER_2_256 = (9 * (2 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 256) + 2 * (32 + 64 + 128 + 256 + 256)
                    + 2 * (3 * 256 * 256 + 256 * 256 + 256 + 4 * 2 * 256                # Q, K, V without bias
                           + 256 * 1024 + 1024 + 1024 * 256 + 256 + 2 * 1024 + 2 * 256)
                    + 256 * 10 + 10)


@pytest.mark.parametrize("name, in_shape, expected, printed_m", [
    ("sca_dvs", (2, 32, 32), SCA_DVS, None), ("sca_dvs", (2, 48, 48), SCA_DVS, None),
    ("vgg16_sca", (3, 32, 32), VGG16_SCA, 15.25), ("vgg16_qp", (3, 32, 32), VGG16_QP, 14.72),
    ("vgg11", (3, 32, 32), VGG11, None), ("vgg9", (3, 32, 32), VGG9, None),
    ("resnet19", (3, 32, 32), RESNET19, 12.57), ("preact_resnet18", (3, 32, 32), PREACT18, None),
    ("vggsnn_dvs", (2, 48, 48), VGGSNN, 9.27), ("spikformer_2_256", (2, 128, 128), SPIKFORMER_2_256, 2.57),
    ("spikformer", (3, 32, 32), SPIKFORMER_4_384, 9.32),
])
def test_exact_parameter_counts(name, in_shape, expected, printed_m):
    assert count_parameters(build_model(name, in_shape, 10)) == expected
    if printed_m is not None:  # METHODS.md / paper value, rounded to 0.01M
        assert round(expected / 1e6, 2) == printed_m


def test_exact_counts_by_value():
    # the same numbers spelled out, so a change in the arithmetic above cannot hide a change in a model
    assert (SCA_DVS, VGG16_SCA, VGG16_QP, RESNET19, VGGSNN) == (1_111_306, 15_251_402, 14_724_042, 12_569_226,
                                                                9_268_746)
    assert (SPIKFORMER_4_384, SPIKFORMER_2_256, VGG11, VGG9, PREACT18) == (9_324_730, 2_566_666, 9_228_362,
                                                                           5_942_218, 11_172_170)


def test_spikformer_4_384_forward_at_cifar_size():
    model = build_model("spikformer_4_384", (3, 32, 32), 10, seed=0)
    assert count_parameters(model) == SPIKFORMER_4_384
    tokens = []
    model.tokenizer.register_forward_hook(lambda m, i, o: tokens.append(o.shape))
    with torch.no_grad():
        out = model(torch.rand(2, 1, 3, 32, 32))
    assert out.shape == (2, 1, 10) and tokens == [(2, 1, 64, 384)]  # 32x32 -> 8x8 = 64 tokens of D = 384


TINY = {  # (in_shape, options): the smallest inputs each model accepts, to keep forwards cheap
    "mnist_conv": ((1, 8, 8), {}), "sca_dvs": ((2, 32, 32), {}), "vgg9": ((3, 8, 8), {}),
    "vgg11": ((3, 32, 32), {}), "vgg16_sca": ((3, 32, 32), {}), "vgg16_qp": ((3, 32, 32), {}),
    "resnet19": ((3, 8, 8), {}), "preact_resnet18": ((3, 8, 8), {}), "vggsnn_dvs": ((2, 16, 16), {}),
    "spikformer": ((3, 8, 8), {"depth": 1, "dim": 32, "heads": 2}), "spikformer_2_256": ((2, 16, 16), {}),
    "bestformer": ((3, 8, 8), {"depth": 2, "dim": 32, "heads": 2}), "bestformer_mnist": ((1, 8, 8), {}),
    "snn_vit": ((3, 8, 8), {"depth": 1, "dim": 16, "heads": 2}), "snn_vit_cifar": ((3, 8, 8), {}),
    "snn_vit_mnist": ((1, 8, 8), {}),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shape_and_state_reset(name):
    in_shape, options = TINY[name]
    model = build_model(name, in_shape, 7, seed=0, v_threshold=0.5, **options)
    x = torch.rand(2, 3, *in_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        functional.reset_net(model)
        again = model(x)
    assert out.shape == (2, 3, 7)
    torch.testing.assert_close(again, out, rtol=0, atol=0)  # every node is a MemoryModule reset by reset_net


def test_registry_covers_every_tested_name():
    assert set(MODELS) == set(TINY) | {"spikformer_4_384"}


@pytest.mark.parametrize("name, in_shape, n_units, kinds", [
    ("sca_dvs", (2, 32, 32), 5, ["Conv2d", "BatchNorm2d", "IFNode", "AvgPool2d"] * 5 + ["Flatten", "Linear"]),
    ("vgg16_sca", (3, 32, 32), 13, ["Flatten", "Linear", "BatchNorm1d", "IFNode", "Linear", "BatchNorm1d", "IFNode",
                                    "Linear"]),
    ("vgg11", (3, 32, 32), 8, ["MaxPool2d", "AvgPool2d", "Flatten", "Linear"]),
    ("vggsnn_dvs", (2, 16, 16), 8, ["IFNode", "AvgPool2d", "Flatten", "Linear"]),
])
def test_plain_chains_are_walked_by_sca_and_lowering(name, in_shape, n_units, kinds):
    model = build_model(name, in_shape, 10, neuron="IF", v_threshold=0.3, seed=0).eval()
    types = [type(m).__name__ for m in model]
    assert types[-len(kinds):] == kinds and all(m.step_mode == "m" for m in model)
    assert len(find_conv_units(model)) == n_units  # every conv is a prunable SCA unit
    graph, trace = lower(model, torch.rand(2, 1, *in_shape, generator=torch.Generator().manual_seed(0)))
    n_neuron_layers = sum(isinstance(m, neuron.IFNode) for m in model)
    n_maxpools = types.count("MaxPool2d")
    assert len(graph.populations) == 1 + n_neuron_layers + n_maxpools + 1  # input, neurons, pools, output


def test_neuron_kind_and_threshold_reach_every_layer():
    model = build_model("vgg11", (3, 32, 32), 10, neuron="PLIF", tau=3.0, v_threshold=0.7)
    nodes = [m for m in model if isinstance(m, neuron.BaseNode)]
    assert len(nodes) == 8 and all(type(m) is neuron.ParametricLIFNode and m.v_threshold == 0.7 for m in nodes)
    q = build_model("resnet19", (3, 8, 8), 10, neuron="QLIF", neuron_options={"bits": 4})
    assert {m.bits for m in q.modules() if isinstance(m, neuron.BaseNode)} == {4}


def test_spikformer_attention_neuron_and_slif_thresholds():
    model = build_model("spikformer", (3, 8, 8), 10, neuron="sLIF", depth=1, dim=16, heads=2)
    attn = model.blocks[0].attn  # thresholds sized at build (8x8 -> 2x2 = 4 tokens, D = 16), before any forward
    assert type(attn.attn_sn) is SLIFNode and torch.equal(attn.attn_sn.theta, torch.full((4, 16), 0.5))
    assert torch.equal(attn.q.sn.theta, torch.ones(4, 16)) and model.training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(int(m.num_batches_tracked) == 0 and not m.running_mean.any() for m in bns)  # sizing left BN alone
    # one threshold per neuron: tokenizer (2,8,8) + (4,8,8) + (8,8,8) + (16,4,4) + rpe (16,2,2); block: Q, K, V,
    # attention, proj (4,16) each, MLP fc1 (4,64) and fc2 (4,16)
    n_thresholds = 128 + 256 + 512 + 256 + 64 + 5 * 64 + 256 + 64
    base = count_parameters(build_model("spikformer", (3, 8, 8), 10, depth=1, dim=16, heads=2))
    assert count_parameters(model) == base + n_thresholds
    with pytest.raises(ValueError, match="forward"):
        count_parameters(torch.nn.Sequential(make_neuron("sLIF")))  # a bare lazy node is sized on its first forward


def test_spike_attention_matches_per_head_computation():
    g = torch.Generator().manual_seed(0)
    q, k, v = ((torch.rand(2, 1, 3, 4, generator=g) > 0.5).float() for _ in range(3))  # T=2, N=1, L=3, D=4
    out = SpikeAttention(heads=2, scale=0.125)(q, k, v)
    for h in range(2):  # head h owns features 2h, 2h+1: out = (q_h k_h^T) v_h * 0.125
        cols = slice(2 * h, 2 * h + 2)
        expected = torch.einsum("tnid,tnjd,tnje->tnie", q[..., cols], k[..., cols], v[..., cols]) * 0.125
        torch.testing.assert_close(out[..., cols], expected)


def test_resnet_blocks_and_gradient_flow():
    model = build_model("resnet19", (3, 8, 8), 10, v_threshold=0.3, seed=0)
    blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
    assert len(blocks) == 8 and [type(b.shortcut).__name__ for b in blocks].count("Sequential") == 2
    model(torch.rand(2, 2, 3, 8, 8)).sum().backward()
    assert model.stem[0].weight.grad.abs().sum() > 0
    pre = build_model("preact_resnet18", (3, 8, 8), 10)
    assert [b.projection for b in pre.modules() if isinstance(b, PreActBlock)] == [False, False] + [True, False] * 3


def test_seeded_build_of_a_class_model_is_reproducible():
    state = torch.random.get_rng_state()
    a = build_model("spikformer", (3, 8, 8), 10, seed=3, depth=1, dim=16, heads=2)
    b = build_model("spikformer", (3, 8, 8), 10, seed=3, depth=1, dim=16, heads=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_model_options():
    assert model_options("spikformer")["depth"] == 4 and model_options("vgg11") == {"head": "qp"}
    assert model_options("mnist_conv") == {}
    assert count_parameters(build_model("vgg11", (3, 32, 32), 10, head="sca")) == VGG11 - 5130 + (
        2 * (512 * 512 + 512) + 2 * 2 * 512 + 5130)


@pytest.mark.parametrize("name, in_shape, kwargs, match", [
    ("resnet50", (3, 32, 32), {}, r"model must be one of \[.*'spikformer'"),
    ("vgg11", (3, 32, 32), {"depth": 3}, r"option 'depth' is not accepted by model 'vgg11'; accepted: \['head'\]"),
    ("spikformer_4_384", (3, 32, 32), {"dim": 64}, "option 'dim'"),
    ("vgg11", (3, 32, 32), {"head": "mlp"}, "head must be one of"),
    ("vgg16_sca", (3, 48, 48), {}, "in_shape"), ("sca_dvs", (2, 16, 16), {}, "in_shape"),
    ("spikformer", (3, 8, 8), {"dim": 20, "heads": 2}, "dim"),
    ("spikformer", (3, 8, 8), {"dim": 32, "heads": 3}, "dim"),
    ("spikformer", (3, 8, 8), {"pool_after": (4,)}, "pool_after"), ("spikformer", (3, 8, 8), {"depth": 0}, "depth"),
    ("resnet19", (3, 8), {}, "in_shape"), ("mnist_conv", (1, 8, 8), {"neuron": "HH"}, "neuron"),
    ("mnist_conv", (1, 8, 8), {"neuron_options": {"bits": 4}}, "bits"),
])
def test_bad_arguments_raise(name, in_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, in_shape, 10, **kwargs)
