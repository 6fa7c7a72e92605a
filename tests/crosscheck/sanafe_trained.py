"""Trained, sparse, bias-driven IF networks side by side with SANA-FE (the issue-10 cross-check).

The networks' first spiking layer is driven by a constant per-neuron current (the pixel intensity, on the 1/64 grid),
as SANA-FE and Loihi applications feed inputs through a bias; it has no synapses in. They are trained briefly on
MNIST-5k with a surrogate gradient (seeded) and their weights put on SANA-FE's 1/64 grid, so SpikingJelly, our
trace and SANA-FE's Loihi soma give the same spikes (see sanafe_bridge). SANA-FE runs T steps with the biases
on, then the L drain steps with them off (our trace has T timesteps; a neuron left with a potential keeps being
updated in the drain steps in both models).

`even_mapping` is the mapping SANA-FE's own examples use (tutorial_5_dvs): every layer split evenly over
consecutive cores (a fresh core per layer, at most 1,024 neurons per core), cores taken in SANA-FE's order.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from hwmodels import ChipSpec, NetworkGraph
from hwmodels.mapping.check import mapping_from_assignment
from sanafe_bridge import GRID, SanafeRun, SanafeSample, snap_to_grid
from workloads.data import load_dataset
from workloads.lowering import lower
from workloads.train import TrainConfig, train


def mlp_bias() -> nn.Sequential:
    """IF(1x28x28, input current) -> 100 IF -> 10 IF, no bias; input (T, N, 1, 28, 28)."""
    return nn.Sequential(neuron.IFNode(step_mode="m"), layer.Flatten(step_mode="m"),
                         layer.Linear(784, 100, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"), layer.Linear(100, 10, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"))


def conv_bias() -> nn.Sequential:
    """IF(1x28x28, input current) -> 8C3 IF -> 16C3 IF -> 10 IF, no padding (SANA-FE's Conv2D has none), no bias."""
    return nn.Sequential(neuron.IFNode(step_mode="m"), layer.Conv2d(1, 8, 3, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"), layer.Conv2d(8, 16, 3, bias=False, step_mode="m"),
                         neuron.IFNode(step_mode="m"), layer.Flatten(step_mode="m"),
                         layer.Linear(16 * 24 * 24, 10, bias=False, step_mode="m"), neuron.IFNode(step_mode="m"))


NETS = {"mlp": mlp_bias, "conv": conv_bias}


def trained(name: str, seed: int = 0, epochs: int = 1, n_train: int = 1000) -> tuple[nn.Sequential, object]:
    """The network `name` trained on the first n_train mnist5k training digits (seeded; T=4, Adam, one epoch: a
    few seconds) with weights snapped to the 1/64 grid, and the dataset."""
    torch.manual_seed(seed)
    net = NETS[name]()
    full = load_dataset("mnist5k", seed=0)
    ds = dataclasses.replace(full, x_train=full.x_train[:n_train], y_train=full.y_train[:n_train])
    train(net, ds, TrainConfig(epochs=epochs, lr=2e-3, n_timesteps=4), seed=seed, progress=False,
          device=torch.device("cpu"))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.from_numpy(snap_to_grid(m.weight.numpy())))
    return net.eval(), ds


def currents(ds, n_samples: int, n_timesteps: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """(input (T, N, ...) of the first n_samples test digits as constant currents on the 1/64 grid, the same
    currents (N, size) for SANA-FE's biases, labels)."""
    x = torch.from_numpy(snap_to_grid(ds.x_test[:n_samples].numpy()))
    return x.unsqueeze(0).expand(n_timesteps, *x.shape).contiguous(), x.reshape(n_samples, -1).numpy(), \
        ds.y_test[:n_samples]


def lowered(name: str, n_samples: int, n_timesteps: int, seed: int = 0):
    """(net, graph, trace, biases (N, size)) of the trained network on the first test digits."""
    net, ds = trained(name, seed)
    x, biases, y = currents(ds, n_samples, n_timesteps)
    graph, trace = lower(net, x, labels=y, name=name, device="cpu")
    return net, graph, trace, biases


def even_mapping(graph: NetworkGraph, chip: ChipSpec, per_core: int = 1024):
    """SANA-FE examples' mapping: each population split evenly over ceil(size / per_core) fresh consecutive cores;
    SANA-FE core k sits on tile k // cores_per_tile, tile t at (t // mesh_height, t % mesh_height)."""
    core_of, next_core = {}, 0
    for name, pop in graph.populations.items():
        n = -(-pop.size // per_core)
        core_of[name] = next_core + (np.arange(pop.size) * n) // pop.size
        next_core += n
    tiles = np.arange(next_core) // chip.cores_per_tile
    xy = np.stack([tiles // chip.mesh_height, tiles % chip.mesh_height], axis=1)
    return mapping_from_assignment(graph, chip, core_of, xy, placement="sanafe_even")


class BiasSanafeRun(SanafeRun):
    """SanafeRun for networks whose first spiking layers are driven by per-neuron currents (lowering's
    graph.metadata["input_current"]): those populations get SANA-FE's LIF soma with a per-sample bias and no
    synapse unit; run_sample keeps the biases on for T steps and off for the L drain steps."""

    def _synapse_unit(self, name: str) -> str:
        return "" if not self.graph.in_projections(name) else super()._synapse_unit(name)

    def run_sample(self, trace, sample: int, biases: np.ndarray | None = None,
                   per_step: bool = True) -> SanafeSample:
        """Play sample `sample` with `biases` (size of the input-current population) for T steps, then L steps
        without; returns the two phases summed (per-step arrays concatenated)."""
        name = self.graph.metadata["input_current"][0]
        chip = self.chip
        chip.reset()
        phases = []
        for values, steps in ((biases, trace.n_timesteps), (np.zeros_like(biases), self.graph.n_layers)):
            for mapped, b in zip(chip.mapped_neuron_groups[name], values):
                mapped.set_attributes(model_attributes={"bias": float(b)})
            phases.append(chip.sim(steps, timing_model="detailed", perf_trace=per_step, spike_trace=self.log_spikes))
        return _joined(phases, self, per_step, trace.n_timesteps + self.graph.n_layers)


def _joined(phases: list, run: BiasSanafeRun, per_step: bool, n_steps: int) -> SanafeSample:
    """One SanafeSample of consecutive chip.sim results."""
    energy = {k: sum(float(p["energy"][k]) for p in phases) for k in phases[0]["energy"]}
    step = np.concatenate([np.asarray(p["perf_trace"]["sim_time"], float) for p in phases]) if per_step else None
    hops = int(sum(np.sum(p["perf_trace"]["hops"]) for p in phases)) if per_step else None
    spikes = run._spikes([s for p in phases for s in p["spike_trace"]], n_steps) if run.log_spikes else None
    return SanafeSample(energy, sum(float(p["sim_time"]) for p in phases), step,
                        sum(int(p["spikes"]) for p in phases), sum(int(p["neurons_fired"]) for p in phases),
                        sum(int(p["neurons_updated"]) for p in phases), hops, 0.0, spikes)


__all__ = ["GRID", "BiasSanafeRun", "even_mapping", "lowered", "trained"]
