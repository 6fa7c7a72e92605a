"""BESTformer (Cao et al., IJCAI 2025): the reversible block's inverse on real spikes, the paper-size parameter
count against the authors' log, the distillation loss by hand and its pull toward the frozen teacher, the binary
student's 1-bit hidden layers and binary attention, and lowering + Loihi simulation of teacher and student with the
couplings as relays of weight-1 and weight-0.5 projections."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional

import hwmodels
from hwmodels.mapping.connectivity import synaptic_events
from seeded import seeded_init
from workloads.compression import compress
from workloads.compression.base import finetune
from workloads.compression.bestformer import (BestformerConfig, bestformer_stage, distillation_objective,
                                              frozen_teacher, hard_distillation, soft_distillation)
from workloads.compression.binary import BinaryAttention
from workloads.compression.quant import distinct_levels, weight_layers
from workloads.encoding import encode
from workloads.lowering import lower
from workloads.models import build_model, count_parameters
from workloads.models.spikformer import SpikeAttention
from workloads.train import TrainConfig

T = 4
FAST = TrainConfig(epochs=1, n_timesteps=T)
#: a 2-block BESTformer for the 1x8x8 digits: tokenizer pool after conv 0 (8x8 -> 4x4 = 16 tokens), D 16, 2 heads
SMALL = {"depth": 2, "dim": 16, "heads": 2, "pool_after": (0,)}

# Authors' CIFAR model (cifar10.yml), D = 384, h = 1536, no Linear bias in the blocks:
# tokenizer convs 3->48->96->192->384->384 (3x3, no bias) + 5 BN; per block Q, K, V, proj D*D + 4 BN (2D each),
# MLP D*h + h*D + BN 2h + 2D; heads 2 * (D*10 + 10).
TOKENIZER = 9 * (3 * 48 + 48 * 96 + 96 * 192 + 192 * 384 + 384 * 384) + 2 * (48 + 96 + 192 + 384 + 384)
BLOCK = 4 * 384 * 384 + 4 * 2 * 384 + 2 * 384 * 1536 + 2 * 1536 + 2 * 384
BESTFORMER_TEACHER = TOKENIZER + 4 * BLOCK + 2 * (384 * 10 + 10)
BESTFORMER_STUDENT = BESTFORMER_TEACHER + 4 * T * 8  # BinaryAttention's lambda (T, heads) per block
# bestformer_mnist, 1x28x28: tokenizer 1->8->16->32->64->64, one block at D 64, h 256
MNIST = (9 * (8 + 8 * 16 + 16 * 32 + 32 * 64 + 64 * 64) + 2 * (8 + 16 + 32 + 64 + 64)
         + 4 * 64 * 64 + 4 * 2 * 64 + 2 * 64 * 256 + 2 * 256 + 2 * 64 + 2 * (64 * 10 + 10))


def _spikes(shape, p: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


@pytest.fixture(scope="module")
def tiny_ds(small_ds):
    """The first 128 digits training samples (the properties tested need no accuracy)."""
    return dataclasses.replace(small_ds, x_train=small_ds.x_train[:128], y_train=small_ds.y_train[:128])


@pytest.fixture(scope="module")
def teacher(tiny_ds):
    """The small full-precision BESTformer with seeded weights and BatchNorm statistics that make every stream
    spike (a stand-in for the dense stage's trained model: a few epochs on 128 digits leave this tiny model
    silent in eval mode); eval mode."""
    return seeded_init(build_model("bestformer", tiny_ds.in_shape, tiny_ds.n_classes, seed=0, **SMALL), seed=3,
                       gain=4.0)


@pytest.fixture(scope="module")
def student(teacher, tiny_ds):
    """(model, CompressionResult) of the bestformer method, 1 fine-tuning epoch."""
    return compress("bestformer", teacher, tiny_ds, 0.0, BestformerConfig(finetune_epochs=1), train_cfg=FAST,
                    progress=False)


# ------------------------------------------------------------------------------------------------ architecture

def test_reversible_blocks_reconstruct_their_inputs_from_real_spikes():
    model = seeded_init(build_model("bestformer", (2, 16, 16), 5, seed=0, depth=3, dim=16, heads=2), seed=3,
                        gain=4.0)
    x = _spikes((T, 3, 2, 16, 16), 0.3, seed=4)
    with torch.no_grad():
        streams = [(None, model.tokenizer(x))]
        for block in model.blocks:
            streams.append(block(*streams[-1]))
        for (_, x1), (x2, x3) in zip(streams[:-1], streams[1:]):  # the MLP branch x3 - (x1 + x2) / 2 spikes
            assert set((x3 - (x1 + x2) / 2).unique().tolist()) == {0.0, 1.0}
        assert (x3 != x3.round()).any()  # graded streams: halves of spike sums
        for i, block in reversed(list(enumerate(model.blocks))):
            x0, x1 = block.inverse(*streams[i + 1])
            want0, want1 = streams[i]
            torch.testing.assert_close(x1, want1, rtol=0, atol=1e-6)
            torch.testing.assert_close(x0, want1 if want0 is None else want0, rtol=0, atol=1e-6)  # first: x0 = x1
        functional.reset_net(model)
        out = model(x)
        functional.reset_net(model)
        head, head_kd = model.head_outputs(x)
    torch.testing.assert_close(out, (head + head_kd) / 2)  # the model's output: the mean of its two heads


def test_parameter_counts_match_the_authors_log():
    # cifar/logs/cifar10.log: "Model vitsnn created, param count:9314884" (the binary student)
    assert (BESTFORMER_TEACHER, BESTFORMER_STUDENT, MNIST) == (9_314_756, 9_314_884, 113_100)
    model = build_model("bestformer", (3, 32, 32), 10)
    assert count_parameters(model) == BESTFORMER_TEACHER
    stage = bestformer_stage(model, BestformerConfig(), FAST)
    assert count_parameters(model) == BESTFORMER_STUDENT and len(stage.weight_bits) == 3 + 1 + 4 * 6  # + rpe
    assert count_parameters(build_model("bestformer_mnist", (1, 28, 28), 10)) == MNIST


@pytest.mark.parametrize("options, match", [({"dim": 20}, "dim must be"), ({"depth": 0}, "depth"),
                                            ({"pool_after": (4,)}, "pool_after")])
def test_bad_sizes_raise(options, match):
    with pytest.raises(ValueError, match=match):
        build_model("bestformer", (3, 8, 8), 10, **options)


# ------------------------------------------------------------------------------------------------ distillation

def test_distillation_terms_by_hand():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    tau = 2.0
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    want = float((pt * (pt.log() - ps.log())).sum()) * tau ** 2 / 6  # summed KL x tau^2 / (N * n_classes)
    assert soft_distillation(s, t, tau).item() == pytest.approx(want, rel=1e-6)
    assert hard_distillation(s, t, tau).item() == pytest.approx(F.cross_entropy(s, torch.tensor([1, 2])).item())


@pytest.mark.parametrize("field, value", [("alpha", 1.5), ("temperature", 0.0), ("distillation", "mse"),
                                          ("finetune_epochs", -1)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"BestformerConfig.{field} out of range"):
        BestformerConfig(**{field: value})


def test_one_step_with_alpha_one_moves_the_student_toward_the_frozen_teacher(teacher, tiny_ds):
    cfg = BestformerConfig(distillation="soft", alpha=1.0, temperature=2.0)
    frozen = frozen_teacher(teacher, torch.device("cpu"))
    objective = distillation_objective(frozen, cfg)
    student = frozen_teacher(teacher, torch.device("cpu")).requires_grad_(True).train()
    bestformer_stage(student, cfg, FAST)
    x, y = tiny_ds.x_train[:64], tiny_ds.y_train[:64]
    inputs = encode(x, T)
    before_teacher = {k: v.clone() for k, v in frozen.state_dict().items()}

    def loss(labels):
        with torch.no_grad():
            value, _ = objective(student, inputs, labels)
        functional.reset_net(student)
        return value.item()

    start = loss(y)
    assert loss(y.roll(1)) == start  # alpha = 1: the labels play no part, only the teacher
    finetune(student, x, y, dataclasses.replace(FAST, batch_size=64), 1, 1e-2, "adam",
             torch.Generator().manual_seed(0), False, objective=objective)
    assert loss(y) < start
    assert all(torch.equal(v, before_teacher[k]) for k, v in frozen.state_dict().items())
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())


def test_method_leaves_the_teacher_unchanged_and_refuses_pruning_a_bestformer(teacher, tiny_ds):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with pytest.raises(ValueError, match="flat nn.Sequential"):
        compress("bestformer", teacher, tiny_ds, 0.5, BestformerConfig(finetune_epochs=0), train_cfg=FAST,
                 progress=False)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert all(p.requires_grad for p in teacher.parameters())


def test_student_has_one_bit_hidden_layers_and_binary_attention(student):
    model, info = student
    names = [n for n, _ in weight_layers(model)]
    full = {"tokenizer.proj.conv0", "head", "head_kd"}
    assert set(info.weight_bits) == set(names) - full and set(info.weight_bits.values()) == {1}
    for name, m in weight_layers(model):
        levels = distinct_levels(m.weight)
        assert (levels > 2).any() if name in full else (levels <= 2).all(), name
    attention = [m for m in model.modules() if isinstance(m, (SpikeAttention, BinaryAttention))]
    assert len(attention) == 2 and all(isinstance(m, BinaryAttention) for m in attention)
    assert info.method == "bestformer" and [h["phase"] for h in info.history] == ["finetune"]


# ------------------------------------------------------------------------------------------------ lowering

def _synapse_bits(sim) -> int:
    return int(sim.cores["synapse_bits"].sum())


def test_teacher_and_student_lower_and_simulate_couplings_as_weighted_relays(teacher, student, small_ds):
    model, info = student
    x = encode(small_ds.x_test[:6], T)
    chip = hwmodels.load_preset("loihi")
    results = {}
    for name, net, comp in (("teacher", teacher, None), ("student", model.eval(), info)):
        graph, trace = lower(net, x, labels=small_ds.y_test[:6], compression=comp)
        results[name] = graph, trace, hwmodels.simulate(graph, trace, chip)
    graph, trace, sim = results["student"]
    assert sim.energy_j > 0 and sim.n_samples == 6
    assert _synapse_bits(sim) < _synapse_bits(results["teacher"][2])
    # couplings: block 1's MLP (x3 = y + x1/2 + x2/2) and block 2's attention and MLP, each one graded relay
    tags = graph.metadata["layers"]["populations"]
    couples = [p for p, t in tags.items() if any(s.endswith(":Couple") for s in t)]
    assert len(couples) == 3
    events = synaptic_events(graph, trace, "structural")
    for pop in couples:
        assert graph.populations[pop].neuron.kind == "relay" and graph.populations[pop].graded
        projs = graph.in_projections(pop)
        assert [p.name[:4] for p in projs] == ["iden", "half", "half"]
        assert all(p.weight_bits == 1 and p.kind == "conv" and p.groups == 16 for p in projs)
        assert all(graph.metadata["weight_fit"][p.name]["needed"] == 1 for p in projs)
        for p in projs:  # fan-out 1: the chip pays one synaptic event per event of the operand
            assert events[p.name] == np.count_nonzero(trace.to_dense(p.source, (16, 4, 4))), p.name
        assert events[projs[1].name] > 0 and events[projs[2].name] > 0  # the graded streams carry values
        assert [float(np.unique(p.weight)[0]) for p in projs] == [1.0, 0.5, 0.5]
        value = torch.from_numpy(trace.to_dense(pop, (16, 4, 4)))  # replay: y + a/2 + b/2 from the recorded values
        got = sum(float(np.unique(p.weight)[0]) * torch.from_numpy(trace.to_dense(p.source, (16, 4, 4)))
                  for p in projs)
        torch.testing.assert_close(got, value, rtol=0, atol=1e-6)
    with torch.no_grad():  # the last coupling's relay holds the model's stream x3
        functional.reset_net(model)
        x3 = model.streams(x)[1]
        functional.reset_net(model)
    want = x3.transpose(-1, -2).reshape(T, 6, 16, 4, 4).transpose(0, 1)
    torch.testing.assert_close(torch.from_numpy(trace.to_dense(couples[-1], (16, 4, 4))), want)
    readout = graph.in_projections("output")  # the two heads, each weight / 2 (Average) / 16 (TokenMean)
    assert len(readout) == 2
    np.testing.assert_allclose(readout[1].weight[:, ::16], model.head_kd.weight.detach().numpy() / 32, rtol=1e-6)
    predictions = model(x).mean(0).argmax(1).numpy()
    np.testing.assert_array_equal(trace.predictions, predictions)
