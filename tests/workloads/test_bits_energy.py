"""Issue 10's acceptance: on the same trained MNIST model, weight_bits 8 -> 4 -> 1 lowers synapse-memory energy on
every preset whose synapse memory is not folded into a measured per-event cost, and leaves it at 0 on the others."""
import dataclasses

import pytest

import hwmodels
from workloads.data import load_dataset
from workloads.encoding import encode
from workloads.lowering import lower
from workloads.models import build_model
from workloads.train import TrainConfig, train


@pytest.fixture(scope="module")
def mnist_model():
    """mnist_conv trained one epoch on 1,000 MNIST-5k digits (seeded), and 20 encoded test digits."""
    full = load_dataset("mnist5k", seed=0)
    ds = dataclasses.replace(full, x_train=full.x_train[:1000], y_train=full.y_train[:1000])
    model = build_model("mnist_conv", ds.in_shape, ds.n_classes, seed=0)
    train(model, ds, TrainConfig(epochs=1, n_timesteps=4), seed=0, progress=False)
    return model, encode(ds.x_test[:20], 4, "direct"), ds.y_test[:20]


@pytest.mark.slow
def test_fewer_weight_bits_read_less_synapse_memory_energy(mnist_model):
    model, x, y = mnist_model
    lowered = {b: lower(model, x, labels=y, weight_bits=b, weight_fit="quantize") for b in (8, 4, 1)}
    for bits, (graph, _) in lowered.items():
        assert {p.weight_bits for p in graph.projections if not p.name.startswith("maxpool")} == {bits}
    for name in hwmodels.list_presets():
        chip = hwmodels.load_preset(name)
        try:
            hwmodels.map_network(lowered[8][0], chip)
        except hwmodels.MappingError:  # truenorth: 256 inputs per neuron, the readout has 1,568
            assert chip.core.synapse_memory.folded, name
            continue
        memory = {}
        for bits, (graph, trace) in lowered.items():
            sim = hwmodels.simulate(graph, trace, chip, model="analytic")
            memory[bits] = sim.energy_breakdown_j["synapse_memory"]
            assert sim.action_counts["synapse_bits_read"].sum() > 0
        if chip.core.synapse_memory.folded:
            assert memory == {8: 0.0, 4: 0.0, 1: 0.0}, name
        elif chip.core.stored_weight_bits is None:
            assert memory[8] > memory[4] > memory[1] > 0, (name, memory)
        else:  # a chip that stores a fixed width reads it whatever the model's bits
            assert memory[8] == pytest.approx(memory[4], rel=0.05), (name, memory)
    unfolded = [n for n in hwmodels.list_presets() if not hwmodels.load_preset(n).core.synapse_memory.folded]
    assert set(unfolded) >= {"generic-45nm", "lemaire-45nm"}
