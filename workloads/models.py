"""SpikingJelly multi-step model zoo: flat nn.Sequential conv SNNs that compression and lowering can walk layer by layer."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.neurons import make_neuron


def _conv_block(c_in: int, c_out: int, neuron: str, tau: float, v_threshold: float) -> list[nn.Module]:
    """Conv2d 3x3 (padding 1, no bias) -> BatchNorm2d -> spiking neuron -> MaxPool2d(2), all multi-step."""
    return [layer.Conv2d(c_in, c_out, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(c_out, step_mode="m"), make_neuron(neuron, tau, v_threshold),
            layer.MaxPool2d(2, step_mode="m")]


def mnist_conv(in_shape: Sequence[int], n_classes: int, neuron: str, tau: float, v_threshold: float) -> nn.Sequential:
    """16C3-BN-SN-MP2-32C3-BN-SN-MP2-FC(n_classes); no neuron after the last Linear (readout = mean over T).

    H and W must be divisible by 4. Linear in_features = 32 * (H/4) * (W/4) (1568 at 28x28, 128 at 8x8).
    """
    c, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"in_shape H and W must be divisible by 4 for mnist_conv, got {tuple(in_shape)}")
    return nn.Sequential(*_conv_block(c, 16, neuron, tau, v_threshold), *_conv_block(16, 32, neuron, tau, v_threshold),
                         layer.Flatten(step_mode="m"), layer.Linear(32 * (h // 4) * (w // 4), n_classes, step_mode="m"))


MODELS: dict[str, Callable[..., nn.Sequential]] = {"mnist_conv": mnist_conv}


def build_model(name: str, in_shape: Sequence[int], n_classes: int, neuron: str = "LIF", tau: float = 2.0,
                v_threshold: float = 1.0, seed: Optional[int] = None) -> nn.Sequential:
    """Build model `name` (a key of MODELS) for inputs (T, N, *in_shape) -> outputs (T, N, n_classes).

    neuron: "IF" or "LIF" (tau, v_threshold as in `workloads.neurons.make_neuron`). With `seed`, the weights are
    initialised under torch.manual_seed(seed) inside a forked RNG (the global RNG is left untouched); without it,
    from the global torch RNG. Raises ValueError for an unknown name, a bad in_shape or n_classes < 2.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if seed is None:
        return MODELS[name](tuple(in_shape), n_classes, neuron, tau, v_threshold)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](tuple(in_shape), n_classes, neuron, tau, v_threshold)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; BN running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters())
