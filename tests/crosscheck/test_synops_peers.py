"""Synaptic operations against NeuroBench: its effective ACs equal our "nonzero" count of a lowered trace exactly
(pruned conv layers with padding and stride, and pruned linear layers), its dense count equals T x our structural
synapse count, and the simulator pays the count of the storage format: non-zeros for the compressed sparse format,
the structural count (zeros included) for dense and shared-kernel storage.

The SpikingJelly SynOpCounter side (structural count) is tests/workloads/test_lowering.py; the first test here
extends it to a stride-2 and a grouped conv.
"""
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

pytest.importorskip("neurobench")
pytest.importorskip("snntorch")  # NeuroBench's Benchmark imports it

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import SynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402

from hwmodels import load_preset, simulate  # noqa: E402
from hwmodels.mapping.connectivity import fan_in, synaptic_events  # noqa: E402
from workloads.lowering import lower  # noqa: E402

T, N = 4, 6


class TimeFirst(nn.Module):
    """NeuroBench feeds (batch, time, ...); a SpikingJelly multi-step net wants (time, batch, ...) and a fresh
    state per batch (PEERS.md)."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self.net)
        return self.net(x.transpose(0, 1)).transpose(0, 1)


def _conv_net() -> nn.Sequential:
    """Two pruned convs: stride 2 + padding 1, then stride 1 + padding 1 with groups; IF neurons."""
    return nn.Sequential(
        layer.Conv2d(2, 6, 3, stride=2, padding=1, bias=False, step_mode="m"), neuron.IFNode(0.5, step_mode="m"),
        layer.Conv2d(6, 8, 3, padding=1, groups=2, bias=False, step_mode="m"), neuron.IFNode(0.5, step_mode="m"))


def _linear_net() -> nn.Sequential:
    """Two pruned linear layers (biased: a bias is no synaptic operation for either side)."""
    return nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(128, 40, step_mode="m"),
                         neuron.IFNode(0.5, step_mode="m"), layer.Linear(40, 10, step_mode="m"),
                         neuron.IFNode(0.5, step_mode="m"))


def _prune(net: nn.Sequential, seed: int) -> nn.Sequential:
    """Seeded weights, ~half of them zeroed, plus one whole output row/filter zeroed (structured)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 2.0 / m.weight[0].numel() ** 0.5)
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) > 0.5).float())
                m.weight[0] = 0.0
    return net.eval()


def _neurobench_synops(net: nn.Sequential, x: torch.Tensor) -> dict:
    """NeuroBench SynapticOperations (per sample) of `net` on x (T, N, ...), in two batches."""
    model = TorchModel(TimeFirst(net))
    model.add_activation_module(neuron.BaseNode)
    data = torch.utils.data.TensorDataset(x.transpose(0, 1).contiguous(), torch.zeros(x.shape[1], dtype=torch.long))
    bench = Benchmark(model, torch.utils.data.DataLoader(data, batch_size=N // 2), [], [], [[], [SynapticOperations]])
    return bench.run(quiet=True)["SynapticOperations"]


@pytest.mark.parametrize("make, shape", [(_conv_net, (2, 8, 8)), (_linear_net, (2, 8, 8))])
def test_neurobench_effective_acs_equal_nonzero_count(make, shape):
    net = _prune(make(), seed=1)
    x = (torch.rand((T, N) + shape, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    graph, trace = lower(net, x, storage="sparse")
    nb = _neurobench_synops(net, x)
    nonzero, structural = synaptic_events(graph, trace, "nonzero"), synaptic_events(graph, trace, "structural")
    assert all(v > 0 for v in nonzero.values())  # every layer receives spikes
    assert sum(nonzero.values()) < sum(structural.values())  # the pruning is visible
    # effective ACs: non-zero input x non-zero weight pairs, averaged over samples (all inputs binary here)
    assert nb["Effective_MACs"] == 0
    assert nb["Effective_ACs"] * N == pytest.approx(sum(nonzero.values()), abs=1e-6)
    # NeuroBench's "Dense": every in-bounds synapse in every timestep, zeros included = T x structural synapses
    dense = sum(int(fan_in(p, graph.populations[p.source].shape, "structural").sum()) for p in graph.projections)
    assert nb["Dense"] == T * dense
    # SpikingJelly counts the structural fan-out (zero weights included), here with stride, padding and groups
    counter = SynOpCounter()
    functional.reset_net(net)
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(x)
    functional.reset_net(net)
    assert counter.get_total() == sum(structural.values())


@pytest.mark.parametrize("storage, paid", [("sparse", "nonzero"), ("dense", "structural"), ("conv", "structural")])
def test_simulator_pays_the_count_of_the_storage_format(storage, paid):
    net = _prune(nn.Sequential(*_conv_net(), layer.Flatten(step_mode="m"), layer.Linear(128, 10, step_mode="m"),
                               neuron.IFNode(0.5, step_mode="m")), seed=3)
    x = (torch.rand((T, N, 2, 8, 8), generator=torch.Generator().manual_seed(4)) < 0.4).float()
    graph, trace = lower(net, x, storage=storage)
    res = simulate(graph, trace, load_preset("loihi"), model="analytic")
    nb = _neurobench_synops(net, x)
    assert res.synops_nonzero == pytest.approx(nb["Effective_ACs"], rel=1e-12)
    assert res.synops_nonzero < res.synops_structural
    assert res.synops_structural == pytest.approx(sum(synaptic_events(graph, trace, "structural").values()) / N)
    assert res.synops == pytest.approx(getattr(res, f"synops_{paid}"), rel=1e-12)
    if storage == "conv":  # "conv" applies to conv projections only; the Linear stays dense (structural)
        assert {p.storage for p in graph.projections} == {"conv", "dense"}
    assert np.isfinite(res.energy_j) and res.energy_j > 0
