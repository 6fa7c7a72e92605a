"""Lowering of compressed models: every method's result pickles and lowers with its per-layer bits, storage format
and state bits, removed channels vanish, non-zero counts match the weights, a DSP layer becomes two projections
through a relay whose trace values carry B s exactly, and every result simulates on the Loihi preset."""
import dataclasses
import io

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import hwmodels
from hwmodels.mapping.connectivity import synaptic_events
from workloads.compression import FIXED_RATIOS, METHODS, compress
from workloads.compression.bestformer import BestformerConfig
from workloads.compression.binary import BinaryConfig
from workloads.compression.dsp import DSPConfig
from workloads.compression.l1p import L1PConfig
from workloads.compression.magnitude import ChannelPruneConfig
from workloads.compression.q_snn import QSNNConfig
from workloads.compression.qp_snn import QPSNNConfig
from workloads.compression.qt_snn import QTSNNConfig
from workloads.compression.sca import SCAConfig
from workloads.encoding import encode
from workloads.lowering import lower
from workloads.neurons import make_neuron
from workloads.train import TrainConfig

T, N_SAMPLES, DEFAULT_BITS = 4, 12, 6
FAST = TrainConfig(epochs=1, n_timesteps=T)
CFGS = {"sca": SCAConfig(epochs=1, finetune_epochs=0), "magnitude_channel": ChannelPruneConfig(finetune_epochs=1),
        "random": ChannelPruneConfig(finetune_epochs=1), "l1p": L1PConfig(l1_epochs=0, finetune_epochs=1),
        "dsp": DSPConfig(targets="all", finetune_epochs=1), "binary": BinaryConfig(finetune_epochs=1),
        "bestformer": BestformerConfig(finetune_epochs=1),
        "qp_snn": QPSNNConfig(bits=2, pre_epochs=0, finetune_epochs=1, score_batches=1),
        "q_snn": QSNNConfig(state_bits=3, finetune_epochs=1), "qt_snn": QTSNNConfig(state_bits=4, finetune_epochs=1)}



@pytest.fixture(scope="module", params=sorted(set(METHODS) - set(FIXED_RATIOS)))
def lowered(request, trained, small_ds):
    """(method, model, result, graph, trace) of every method at ratio 0.5 (methods with fixed ratios, i.e. dense,
    have no 0.5: test_methods_prune covers them)."""
    model, info = compress(request.param, trained, small_ds, 0.5, CFGS[request.param], train_cfg=FAST,
                           progress=False)
    x = encode(small_ds.x_test[:N_SAMPLES], T)
    graph, trace = lower(model, x, labels=small_ds.y_test[:N_SAMPLES], weight_bits=DEFAULT_BITS, compression=info)
    return request.param, model, info, graph, trace


def _index(graph, proj) -> str:
    """Module index of a weight projection, from the lowering tags ("4:Conv2d", "9.first:Linear" -> "9")."""
    tag = graph.metadata["layers"]["projections"][proj.name][0]
    return tag.split(":")[0].split(".")[0]


def _module_weight(model, graph, proj) -> torch.Tensor:
    mod = model.get_submodule(_index(graph, proj))
    if proj.name.endswith(("_b", "_a")):
        mod = mod.first if proj.name.endswith("_b") else mod.second
    return mod.weight.detach()


@pytest.mark.slow
def test_every_result_lowers_with_its_bits_storage_and_nonzeros_and_simulates(lowered):
    method, model, info, graph, trace = lowered
    torch.save(model, io.BytesIO())  # the whole module pickles (workloads.checkpoint stores it so)
    weights = [p for p in graph.projections if graph.metadata["origin"][p.name] != "MaxPool2d"]
    for proj in weights:
        index = _index(graph, proj)
        fit = graph.metadata["weight_fit"][proj.name]
        assert fit["declared"] == info.weight_bits.get(index, DEFAULT_BITS), proj.name
        if index in info.weight_bits:  # quantized by the method: its levels survive BN folding, the bits fit
            assert proj.weight_bits == fit["declared"] >= fit["needed"], proj.name
        else:  # full precision: "widen" stores the bits the weights need (32 for a float layer's many values)
            assert proj.weight_bits == max(fit["declared"], fit["needed"]), proj.name
        assert proj.storage == info.storage.get(index, "conv" if proj.kind == "conv" else "dense"), proj.name
        assert proj.nonzero_synapses == int(_module_weight(model, graph, proj).count_nonzero()), proj.name
    if "0" not in info.weight_bits:  # a full-precision first conv (all but Q-SNN): 9 float values per channel
        assert graph.projections[0].weight_bits == 32
    if info.channels_after:  # removed channels vanish from the populations
        assert graph.populations["lif1"].shape[0] == info.channels_after["0"]
    spiking = [p for p in graph.populations.values() if p.neuron.kind == "LIF"]
    assert {p.state_bits for p in spiking} == ({CFGS[method].state_bits} if method in ("q_snn", "qt_snn") else {16})
    chip = hwmodels.load_preset("loihi")
    sim = hwmodels.simulate(graph, trace, chip)
    assert sim.energy_j > 0 and sim.latency_s > 0 and sim.n_samples == N_SAMPLES
    if method == "l1p":
        assert {p.storage for p in weights} == {"sparse"}
        nonzero = synaptic_events(graph, trace, "nonzero")
        structural = synaptic_events(graph, trace, "structural")
        # layers with zeros and with input spikes pay fewer events in a sparse format
        pruned = [p for p in weights if p.nonzero_synapses < p.weight.size and structural[p.name] > 0]
        assert pruned and all(nonzero[p.name] < structural[p.name] for p in pruned)
        assert sim.synops_nonzero < sim.synops_structural


def test_dsp_layers_become_two_projections_through_a_relay_carrying_b_times_s(trained, small_ds):
    model, info = compress("dsp", trained, small_ds, 0.5, DSPConfig(targets="all", finetune_epochs=0), train_cfg=FAST,
                           progress=False)
    x = encode(small_ds.x_test[:N_SAMPLES], T)
    graph, trace = lower(model, x, compression=info)
    proj = {p.name: p for p in graph.projections}
    assert [(proj[n].source, proj[n].target) for n in ("conv2_b", "conv2_a", "fc1_b", "fc1_a")] == [
        ("pool1", "conv2_relay"), ("conv2_relay", "lif2"), ("pool2", "fc1_relay"), ("fc1_relay", "output")]
    relay = graph.populations["fc1_relay"]
    assert relay.shape == (info.ranks["9"],) and relay.neuron.kind == "relay" and relay.graded
    assert graph.populations["conv2_relay"].shape == (info.ranks["4"], 4, 4)
    assert proj["conv2_a"].weight.shape == (32, info.ranks["4"], 1, 1)
    values = torch.from_numpy(trace.to_dense("fc1_relay", relay.shape))  # (N, T, r)
    spikes = torch.from_numpy(trace.to_dense("pool2", graph.populations["pool2"].shape)).flatten(2)
    torch.testing.assert_close(values, spikes @ model[9].first.weight.detach().T, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        functional.reset_net(model.eval())
        out = model(x).transpose(0, 1)  # (N, T, 10)
    a = torch.from_numpy(proj["fc1_a"].weight)
    torch.testing.assert_close(values @ a.T + torch.from_numpy(proj["fc1_a"].bias), out, rtol=1e-4, atol=1e-4)


def test_compression_as_dict_and_storage_override(trained, small_ds):
    model, info = compress("l1p", trained, small_ds, 0.5, L1PConfig(l1_epochs=0, finetune_epochs=0), train_cfg=FAST,
                           progress=False)
    x = encode(small_ds.x_test[:4], T)
    g1, _ = lower(model, x, compression=info)
    g2, _ = lower(model, x, compression=dataclasses.asdict(info))
    assert [(p.storage, p.weight_bits) for p in g1.projections] == [(p.storage, p.weight_bits) for p in g2.projections]
    g3, _ = lower(model, x, compression=info, storage="dense")  # an explicit format wins over the layer's
    assert {p.storage for p in g3.projections} == {"dense"}
    g4, _ = lower(model, x)  # without the result: the zeros are there, the format is the default
    assert [p.storage for p in g4.projections if p.name.startswith(("conv", "fc"))] == ["conv", "conv", "dense"]
    with pytest.raises(ValueError, match=r"compression.storage\['0'\]"):
        lower(model, x, compression={"storage": {"0": "csr"}})
    with pytest.raises(ValueError, match=r"compression.weight_bits\['4'\]"):
        lower(model, x, compression={"weight_bits": {"4": 0}})


def test_qlif_slif_and_ternary_nodes_lower_to_their_models():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(6, 5, step_mode="m"), make_neuron("QLIF", 2.0, 1.0, bits=4),
                        layer.Linear(5, 4, step_mode="m"), make_neuron("sLIF", 2.0, 0.5, shape=(4,)),
                        layer.Linear(4, 3, step_mode="m"), neuron.TernaryLIFNode(tau=2.0, step_mode="m"))
    with torch.no_grad():
        net[3].theta.copy_(torch.tensor([0.25, 0.5, 0.75, 1.0]))
        for lin in (net[0], net[2], net[4]):
            lin.weight.mul_(4)
    x = torch.rand(T, 8, 6) * 2 - 0.5
    graph, trace = lower(net, x, compression={"state_bits": {"3": 5}})
    q, s, t = graph.populations["lif1"], graph.populations["slif2"], graph.populations["lif3"]
    assert (q.neuron.kind, q.neuron.tau, q.neuron.decay_input, q.state_bits) == ("LIF", 2.0, False, 4)
    assert (s.neuron.kind, s.neuron.threshold, s.neuron.decay_input, s.state_bits) == ("sLIF", 0.625, False, 5)
    assert t.graded and not q.graded
    values = trace.to_dense("lif3", (3,))
    assert set(np.unique(values)) <= {-1.0, 0.0, 1.0} and (values == -1).any()
