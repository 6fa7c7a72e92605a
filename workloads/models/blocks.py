"""Shared building blocks of the model zoo: the neuron factory handed to every builder and conv-BN-neuron stages.

All layers are SpikingJelly `layer.*` modules in step_mode "m": they take and return (T, N, ...) tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from spikingjelly.activation_based import layer
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from workloads.neurons import NeuronOptions, make_neuron


@dataclass(frozen=True)
class NeuronSpec:
    """The neuron every builder places after its weight layers: kind, tau, v_threshold and the keyword options
    of `workloads.neurons.make_neuron` (ternary, reset, bits, shape). Calling it builds one fresh node."""

    kind: str = "LIF"
    tau: float = 2.0
    v_threshold: float = 1.0
    options: dict = field(default_factory=dict)

    def __call__(self, v_threshold: Optional[float] = None) -> BaseNode:
        """A new multi-step node; `v_threshold` overrides the spec's threshold (Spikformer's attention LIF: 0.5)."""
        theta = self.v_threshold if v_threshold is None else v_threshold
        return make_neuron(self.kind, self.tau, theta, **self.options)

    def check(self) -> None:
        """Build one node to validate kind and options now; raises ValueError from make_neuron, and naming an
        option that is none of NeuronOptions' fields (listing them)."""
        known = [f.name for f in fields(NeuronOptions)]
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(f"neuron_options: unknown key {unknown[0]!r}; accepted keys: {', '.join(known)}")
        self()


def conv_bn_sn(c_in: int, c_out: int, sn: NeuronSpec, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """[Conv2d(kernel, stride, padding kernel//2, no bias), BatchNorm2d(c_out), neuron]; parameters
    c_in*c_out*kernel^2 + 2*c_out."""
    return [layer.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False, step_mode="m"),
            layer.BatchNorm2d(c_out, step_mode="m"), sn()]


def linear_bn_sn(f_in: int, f_out: int, sn: NeuronSpec) -> list[nn.Module]:
    """[Linear(f_in, f_out, bias), BatchNorm1d(f_out), neuron] on (T, N, F); parameters (f_in+1)*f_out + 2*f_out."""
    return [layer.Linear(f_in, f_out, step_mode="m"), layer.BatchNorm1d(f_out, step_mode="m"), sn()]


def pool(kind: str, size: int = 2) -> nn.Module:
    """Multi-step pooling by kind: "M" max-pool or "A" average-pool (kernel = stride = size)."""
    cls = {"M": layer.MaxPool2d, "A": layer.AvgPool2d}[kind]
    return cls(size, size, step_mode="m")


def check_spatial(name: str, in_shape: tuple[int, int, int], divisor: int) -> None:
    """Raise ValueError naming the model unless H and W are positive multiples of `divisor`."""
    _, h, w = in_shape
    if h < divisor or w < divisor or h % divisor or w % divisor:
        raise ValueError(f"in_shape H and W must be multiples of {divisor} for {name}, got {tuple(in_shape)}")
