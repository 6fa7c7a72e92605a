"""SpikingJelly multi-step model zoo: a registry of builders by name, each returning a network that maps
(T, N, C, H, W) inputs to (T, N, n_classes) outputs (mean over T = logits).

Plain chains (mnist_conv, sca_dvs, vgg*, vggsnn_dvs) are flat nn.Sequential of `layer.*` and neuron modules,
which compression and lowering walk layer by layer; ResNets and Spikformer are nn.Module classes with small,
explicitly named submodules.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from workloads.models.bestformer import bestformer, bestformer_mnist
from workloads.models.blocks import NeuronSpec
from workloads.models.dvs import sca_dvs, vggsnn_dvs
from workloads.models.mnist import mnist_conv
from workloads.models.resnet import preact_resnet18, resnet19
from workloads.models.snn_vit import snn_vit, snn_vit_cifar, snn_vit_mnist
from workloads.models.spikformer import spikformer, spikformer_2_256, spikformer_4_384
from workloads.models.vgg import vgg9, vgg11, vgg16_qp, vgg16_sca

#: name -> builder(in_shape, n_classes, sn, *, options); the keyword-only parameters are the model's options
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mnist_conv": mnist_conv, "sca_dvs": sca_dvs, "vgg9": vgg9, "vgg11": vgg11, "vgg16_sca": vgg16_sca,
    "vgg16_qp": vgg16_qp, "resnet19": resnet19, "preact_resnet18": preact_resnet18, "vggsnn_dvs": vggsnn_dvs,
    "spikformer": spikformer, "spikformer_4_384": spikformer_4_384, "spikformer_2_256": spikformer_2_256,
    "snn_vit": snn_vit, "snn_vit_cifar": snn_vit_cifar, "snn_vit_mnist": snn_vit_mnist,
    "bestformer": bestformer, "bestformer_mnist": bestformer_mnist,
}

__all__ = ["MODELS", "NeuronSpec", "build_model", "count_parameters", "model_options", "mnist_conv"]


def model_options(name: str) -> dict[str, object]:
    """The options model `name` accepts, with their defaults. Raises ValueError for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    params = inspect.signature(MODELS[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check(name: str, in_shape: Sequence[int], n_classes: int, options: dict) -> None:
    accepted = model_options(name)
    for key in options:
        if key not in accepted:
            raise ValueError(f"option {key!r} is not accepted by model {name!r}; accepted: {sorted(accepted)}")
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {tuple(in_shape)}")
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in in_shape):
        raise ValueError(f"in_shape must hold integers, got {tuple(in_shape)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")


def build_model(name: str, in_shape: Sequence[int], n_classes: int, neuron: str = "LIF", tau: float = 2.0,
                v_threshold: float = 1.0, seed: Optional[int] = None, neuron_options: Optional[dict] = None,
                **options) -> nn.Module:
    """Build model `name` (a key of MODELS) for inputs (T, N, *in_shape) -> outputs (T, N, n_classes).

    neuron, tau, v_threshold, neuron_options: the spiking neuron of every layer (`workloads.neurons.make_neuron`:
    kinds IF, LIF, PLIF, sLIF, QLIF; options ternary, reset, bits, shape). options: the model's own keyword
    options (see `model_options(name)`, e.g. Spikformer depth/dim/heads, VGG head). With `seed`, the weights are
    initialised under torch.manual_seed(seed) inside a forked RNG (the global RNG is left untouched); without it,
    from the global torch RNG. sLIF per-neuron thresholds are sized here by one zero-input eval forward, so every
    parameter exists when this returns. Raises ValueError for an unknown name, option or neuron, a bad in_shape
    (each model states its spatial constraint) or n_classes < 2.
    """
    _check(name, in_shape, n_classes, options)
    if (neuron_options or {}).get("shape") is not None:
        raise ValueError("neuron_options: shape fixes one threshold shape for every layer; build_model sizes each "
                         "sLIF layer's thresholds itself (leave shape out)")
    sn = NeuronSpec(neuron, float(tau), float(v_threshold), dict(neuron_options or {}))
    sn.check()
    if seed is None:
        return _materialize(MODELS[name](tuple(in_shape), n_classes, sn, **options), in_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _materialize(MODELS[name](tuple(in_shape), n_classes, sn, **options), in_shape)


def _has_lazy(model: nn.Module) -> bool:
    return any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())


def _materialize(model: nn.Module, in_shape: Sequence[int]) -> nn.Module:
    """Size lazily sized parameters (sLIF per-neuron thresholds) with one eval-mode forward of a zero input
    (T = N = 1; BN running statistics untouched), then reset the neuron states; optimizers can then be built."""
    if _has_lazy(model):
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *in_shape))
        functional.reset_net(model.train())
    return model


def check_float32(model: nn.Module, action: str) -> None:
    """ValueError naming the first floating-point parameter or buffer of `model` that is not float32:
    "model: <name> is <dtype>; <action> float32 models (call model.float() first)"."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            raise ValueError(f"model: {name} is {str(t.dtype).replace('torch.', '')}; {action} float32 models "
                             "(call model.float() first)")


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; BN running statistics are buffers and are not counted).

    Raises ValueError while a lazily sized parameter (an sLIF threshold built outside build_model) is still
    uninitialised: run one forward first.
    """
    if _has_lazy(model):
        raise ValueError("model: has uninitialised (lazy) parameters; run one forward pass before counting")
    return sum(p.numel() for p in model.parameters())
