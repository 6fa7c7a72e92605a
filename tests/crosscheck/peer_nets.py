"""Small SpikingJelly IF networks and MNIST spike inputs shared by the peer cross-checks and the benchmarks.

The networks have no bias and weights on SANA-FE's 1/64 grid, so SpikingJelly, our trace and SANA-FE's Loihi soma
give the same spikes (see sanafe_bridge). Weights are seeded Gaussian (std = gain / sqrt(fan-in)): untrained but
spiking at a few to ~20 % per step on MNIST rate-coded input.
"""
from __future__ import annotations

from typing import Callable

import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from sanafe_bridge import snap_to_grid
from workloads.data import load_dataset
from workloads.lowering import lower


def mlp_if() -> nn.Sequential:
    """MLP 784-100-10 of IF neurons (threshold 1, hard reset), no bias; input (T, N, 1, 28, 28)."""
    return nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(784, 100, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"), layer.Linear(100, 10, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"))


def conv_if() -> nn.Sequential:
    """Conv SNN 8C3-16C3-10FC of IF neurons, no padding (SANA-FE's Conv2D has none), no bias; input
    (T, N, 1, 28, 28) -> 8x26x26 -> 16x24x24 -> 10."""
    return nn.Sequential(layer.Conv2d(1, 8, 3, bias=False, step_mode="m"), neuron.IFNode(step_mode="m"),
                         layer.Conv2d(8, 16, 3, bias=False, step_mode="m"), neuron.IFNode(step_mode="m"),
                         layer.Flatten(step_mode="m"), layer.Linear(16 * 24 * 24, 10, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"))


def mlp_wide_if() -> nn.Sequential:
    """MLP 784-3000-10 of IF neurons, no bias: its hidden layer spans several cores on several tiles, so many
    cores send to one another over multi-hop routes."""
    return nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(784, 3000, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"), layer.Linear(3000, 10, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"))


#: name -> builder of an un-initialised network
NETS: dict[str, Callable[[], nn.Sequential]] = {"mlp": mlp_if, "conv": conv_if, "mlp_wide": mlp_wide_if}


def init_on_grid(net: nn.Sequential, seed: int, gain: float = 1.5) -> nn.Sequential:
    """Seeded N(0, (gain / sqrt(fan-in))^2) weights rounded to the 1/64 grid; returns `net` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = torch.randn(m.weight.shape, generator=g) * gain / m.weight[0].numel() ** 0.5
                m.weight.copy_(torch.from_numpy(snap_to_grid(w.numpy())))
    return net.eval()


def mnist_spikes(n_samples: int, n_timesteps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rate-coded (Bernoulli(pixel)) spikes of the first `n_samples` mnist5k test digits and their labels:
    ((T, N, 1, 28, 28) float 0/1, (N,) int64)."""
    ds = load_dataset("mnist5k", seed=0)
    x = ds.x_test[:n_samples]
    probs = x.unsqueeze(0).expand(n_timesteps, *x.shape)
    return torch.bernoulli(probs, generator=torch.Generator().manual_seed(seed)), ds.y_test[:n_samples]


def prune(net: nn.Sequential, ratio: float, seed: int) -> nn.Sequential:
    """Set a seeded Bernoulli(ratio) fraction of every Conv2d/Linear weight to 0 (unstructured pruning)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) >= ratio).float())
    return net


def lowered(name: str, n_samples: int, n_timesteps: int = 8, seed: int = 0, gain: float = 1.5,
            pruned: float = 0.0, storage: str | None = None):
    """(net, input spikes, graph, trace) of network `name` (a key of NETS) on MNIST spikes, `pruned` of its weights
    set to 0 (prune), lowered with `storage` for every weight projection (None: the default, conv projections
    "conv", dense ones "dense"). Raises KeyError for an unknown name."""
    net = init_on_grid(NETS[name](), seed, gain)
    net = prune(net, pruned, seed) if pruned else net
    x, y = mnist_spikes(n_samples, n_timesteps, seed + 1)
    graph, trace = lower(net, x, labels=y, name=name, device="cpu", storage=storage)
    return net, x, graph, trace
