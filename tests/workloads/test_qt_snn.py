"""QT-SNN (Wang et al., arXiv 2407.05310): the threshold-adaptive ternary encoding (workloads.tae, encoding "tae")
on hand-computed inputs, the qt_snn compression method, ternary spikes through lowering into the trace (one event
each, carrying its sign) and their hardware cost: a -1 spike is one message with the same synaptic events as +1."""
import dataclasses

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import hwmodels
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
from workloads.compression import CONFIGS, METHODS, QUANTIZERS, compress
from workloads.compression.qt_snn import QTSNNConfig
from workloads.encoding import ENCODERS, encode
from workloads.lowering import lower
from workloads.models import build_model
from workloads.neurons import QLIFNode
from workloads.tae import initial_threshold, tae_sequence
from workloads.train import TrainConfig

T = 4
PJ = 1e-12
TAE_TRAIN = TrainConfig(epochs=1, batch_size=32, n_timesteps=T, encoding="tae")


# ------------------------------------------------------------------------------------------ the encoder (TAE)

def test_tae_hand_computed_on_a_static_input():
    """x = (0.6, 0.3, 0, 1): theta0 = 0.5 * max|x| = 0.5, halving each step. 0.6: d = 0.6 >= 0.5 fires +1, base 1;
    d = -0.4 <= -0.25 fires -1, base 0.5; d = 0.1 < 0.125; d = 0.1 >= 0.0625 fires +1, base 0.625. 0.3: waits,
    +1 at 0.25 (base 0.5), -1 at 0.125 (base 0.25). 1.0: +1 once, exact. 0: never fires."""
    x = torch.tensor([[0.6, 0.3, 0.0, 1.0]])
    spikes = encode(x, T, "tae")
    assert spikes.shape == (T, 1, 4)
    expected = torch.tensor([[1., -1., 0., 1.], [0., 1., -1., 0.], [0., 0., 0., 0.], [1., 0., 0., 0.]]).T
    torch.testing.assert_close(spikes[:, 0], expected, rtol=0, atol=0)
    run = tae_sequence(x.expand(T, 1, 4), initial_threshold(x))
    torch.testing.assert_close(run.thresholds[:, 0, 0], torch.tensor([0.5, 0.25, 0.125, 0.0625]), rtol=0, atol=0)
    torch.testing.assert_close(run.bases[-1, 0], torch.tensor([0.625, 0.25, 0.0, 1.0]), rtol=0, atol=1e-7)


def test_tae_thresholds_follow_the_input_amplitude():
    """theta0 = alpha * max|x| per sample: a sample at half the amplitude gets half the thresholds and the same
    spikes; each sample is encoded alone (its batch-mates do not change it)."""
    a = torch.tensor([[0.6, 0.3, 0.0, 1.0]])
    both = torch.cat([a, 0.5 * a])
    torch.testing.assert_close(initial_threshold(both).flatten(), torch.tensor([0.5, 0.25]), rtol=0, atol=0)
    assert initial_threshold(both, alpha=1.0).flatten().tolist() == [1.0, 0.5]
    spikes = encode(both, T, "tae")
    torch.testing.assert_close(spikes[:, 0], spikes[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(spikes[:, :1], encode(a, T, "tae"), rtol=0, atol=0)
    run = tae_sequence(both.expand(T, 2, 4), initial_threshold(both))
    torch.testing.assert_close(run.thresholds[:, 1], 0.5 * run.thresholds[:, 0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="alpha"):
        initial_threshold(a, alpha=0.0)


def test_tae_threshold_grows_when_the_signal_outruns_the_base():
    """Signal 0, 0.3, 0.6, 0.9 with theta0 = 0.25: t0 d = 0 (no spike, theta -> 0.125); t1 d = 0.3 fires +1, base
    0.25, theta -> 0.0625 (no spike before); t2 d = 0.35 fires +1 again: base 0.375 and theta doubles to 0.125;
    t3 d = 0.525 fires +1: base 0.625, theta 0.25 next."""
    run = tae_sequence(torch.tensor([0.0, 0.3, 0.6, 0.9]).reshape(T, 1, 1), torch.tensor(0.25))
    assert run.spikes.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    torch.testing.assert_close(run.thresholds.flatten(), torch.tensor([0.25, 0.125, 0.0625, 0.125]), rtol=0, atol=0)
    torch.testing.assert_close(run.bases.flatten(), torch.tensor([0.0, 0.25, 0.375, 0.625]), rtol=0, atol=1e-7)


def test_tae_on_digits_is_ternary_sparse_and_decodes_within_the_last_threshold(digits_ds):
    x = digits_ds.x_test[:64]
    run = tae_sequence(x.unsqueeze(0).expand(T, *x.shape), initial_threshold(x))
    assert set(torch.unique(run.spikes).tolist()) == {-1.0, 0.0, 1.0}
    assert not run.spikes[:, x == 0].any()  # background never fires
    assert float((run.spikes != 0).float().mean()) < 0.5
    assert bool(((x - run.bases[-1]).abs() <= run.thresholds[-1] + 1e-6).all())
    torch.testing.assert_close(encode(x, T, "tae"), run.spikes, rtol=0, atol=0)
    assert "tae" in ENCODERS and "ternary" in ENCODERS


# ------------------------------------------------------------------------------------------ the method (qt_snn)

def test_qt_snn_is_registered_and_checks_its_config():
    assert METHODS["qt_snn"] is not None and CONFIGS["qt_snn"] is QTSNNConfig and "qt_snn" in QUANTIZERS
    for bad in ({"weight_bits": 0}, {"state_bits": 1}, {"edge_bits": 17}, {"tau": 1.0}, {"pre_epochs": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            QTSNNConfig(**bad)


def _ternary_mlp(in_features: int, n_classes: int) -> nn.Sequential:
    """Flatten-FC32-LIF(threshold 0.5)-FC: no max-pool, so QT-SNN's ternary hidden spikes lower (mnist_conv
    max-pools them); the first weights scaled x3 so the sparse TAE input drives both signs of spikes."""
    torch.manual_seed(0)
    net = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(in_features, 32, step_mode="m"),
                        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m"),
                        layer.Linear(32, n_classes, step_mode="m"))
    with torch.no_grad():
        net[1].weight.mul_(3.0)
    return net


@pytest.fixture(scope="module")
def qt_models(small_ds):
    """qt_snn on mnist_conv (binary hidden neurons, default) and on a max-pool-free MLP with ternary hidden
    neurons, both fine-tuned one epoch on TAE spikes of 96 digits."""
    ds = dataclasses.replace(small_ds, x_train=small_ds.x_train[:96], y_train=small_ds.y_train[:96])
    conv = build_model("mnist_conv", ds.in_shape, ds.n_classes, seed=0)
    conv_q, conv_info = compress("qt_snn", conv, ds, 0.0, QTSNNConfig(finetune_epochs=1), train_cfg=TAE_TRAIN,
                                 progress=False)
    mlp_q, mlp_info = compress("qt_snn", _ternary_mlp(64, ds.n_classes), ds, 0.0,
                               QTSNNConfig(finetune_epochs=1, ternary_neurons=True, state_bits=4),
                               train_cfg=TAE_TRAIN, progress=False)
    return (conv, conv_q, conv_info), (mlp_q, mlp_info)


def test_qt_snn_quantizes_weights_and_membrane_and_trains_on_tae(qt_models, small_ds):
    (conv, conv_q, info), (mlp_q, mlp_info) = qt_models
    assert info.weight_bits == {"0": 8, "4": 2, "9": 8} and info.state_bits == {"2": 8, "6": 8}
    assert all(isinstance(conv_q[i], QLIFNode) and not conv_q[i].ternary for i in (2, 6))
    hidden = conv_q[4].weight.detach().reshape(32, -1)
    assert all(len(torch.unique(row)) <= 3 for row in hidden)  # 2-bit symmetric: {-s, 0, s}
    quantized_only, _ = compress("qt_snn", conv, small_ds, 0.0, QTSNNConfig(finetune_epochs=0), train_cfg=TAE_TRAIN,
                                 progress=False)
    for i in (0, 4, 9):  # the epoch on TAE spikes moved the latent weights (surrogate gradients reach every layer)
        assert not torch.equal(conv_q[i].weight, quantized_only[i].weight), i
    assert info.history and info.history[-1]["phase"] == "finetune"
    assert isinstance(mlp_q[2], QLIFNode) and mlp_q[2].ternary and mlp_info.state_bits == {"2": 4}


def test_ternary_spikes_reach_the_trace_with_their_signs_and_simulate_on_loihi(qt_models, small_ds):
    """TAE input (mnist_conv) and ternary hidden neurons (MLP) lower to graded populations whose trace events are
    the non-zero spikes, one event each with its sign; the Loihi simulation pays per event exactly the fan-out."""
    (_, conv_q, conv_info), (mlp_q, mlp_info) = qt_models
    x = encode(small_ds.x_test[:8], T, "tae")
    n_in = int((x != 0).sum())
    graph, trace = lower(conv_q, x, compression=conv_info)
    assert graph.populations["input"].graded and not graph.populations["lif1"].graded
    values = trace.to_dense("input", graph.populations["input"].shape)  # (N, T, C, H, W)
    np.testing.assert_array_equal(values, x.transpose(0, 1).numpy())
    assert int((values != 0).sum()) == n_in and (values < 0).any()
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("loihi"))
    assert sim.energy_j > 0 and sim.n_samples == 8

    hidden = {}
    mlp_q[2].register_forward_hook(lambda m, a, out: hidden.__setitem__("s", out.detach().clone()))
    graph, trace = lower(mlp_q, x, compression=mlp_info, weight_bits=8)
    pop = next(p for p in graph.populations.values() if p.neuron.kind == "LIF")
    assert pop.graded and pop.state_bits == 4
    s = hidden["s"]  # (T, N, 32) ternary spikes of the hidden QLIF, recorded by lowering's forward
    assert set(torch.unique(s).tolist()) <= {-1.0, 0.0, 1.0} and (s < 0).any()
    np.testing.assert_array_equal(trace.to_dense(pop.name, pop.shape), s.transpose(0, 1).numpy())
    n_hidden = int((s != 0).sum())
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("loihi"), model="analytic")
    # dense fan-outs: every input event reaches the 32 hidden neurons, every hidden event the 10 outputs
    assert sim.spikes * sim.n_samples == pytest.approx(n_in + n_hidden, rel=1e-12)
    assert sim.synops_structural * sim.n_samples == pytest.approx(n_in * 32 + n_hidden * 10, rel=1e-12)
    functional.reset_net(mlp_q)


# ------------------------------------------------------------------------------------------ hardware cost

def _one_spike(value: float) -> tuple[NetworkGraph, EventTrace]:
    """in (2, graded input) -> out (2) dense with weights [[1, 0.5], [0.25, 0]]: input neuron 0 spikes `value`
    once (T = 1)."""
    w = np.array([[1.0, 0.25], [0.5, 0.0]])
    g = NetworkGraph([Population("in", (2,), NeuronModel(kind="input"), graded=True), Population("out", (2,))],
                     [Projection("p", "in", "out", "dense", w, weight_bits=8)])
    spikes = {"in": np.zeros((1, 1, 2)), "out": np.zeros((1, 1, 2))}
    spikes["in"][0, 0, 0] = value
    return g, EventTrace.from_dense(spikes, graded=("in",))


@pytest.mark.parametrize("model", ["analytic", "des"])
def test_a_minus_one_spike_costs_the_same_message_as_a_plus_one(model):
    """Loihi: input neuron 0's spike is one message (1.7 pJ within-tile, 0 hops: both cores on tile 0) and a dense
    row of 2 synaptic events (2 x 23.6 pJ), whatever its sign; the trace keeps the sign."""
    chip = hwmodels.load_preset("loihi")
    g, neg = _one_spike(-1.0)
    assert neg.values.tolist() == [-1.0]
    r_neg = hwmodels.simulate(g, neg, chip, model=model)
    r_pos = hwmodels.simulate(*_one_spike(1.0), chip, model=model)
    assert r_neg.messages == r_pos.messages == 1 and r_neg.hops == 0
    assert r_neg.synops == r_pos.synops == 2 and r_neg.spikes == 1
    assert r_neg.energy_breakdown_j["synapse_compute"] == pytest.approx(2 * 23.6 * PJ, rel=1e-12)
    assert r_neg.energy_breakdown_j["network"] == pytest.approx(1.7 * PJ, rel=1e-12)
    assert r_neg.energy_breakdown_j == r_pos.energy_breakdown_j and r_neg.latency_s == r_pos.latency_s
    counts = r_neg.action_counts.sum()
    assert counts["messages_out"] == 1 and counts["synops_dense"] == 2
