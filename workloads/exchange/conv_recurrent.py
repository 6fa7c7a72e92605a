"""A convolutional recurrent loop around a spiking (C, H, W) population (snnTorch's RLeaky / RSynaptic with
conv2d_channels and kernel_size, NIR neuron -> Conv2d -> same neuron): the SpikingJelly container that runs it and
its lowering rule, a self-projection "rec<k>" of kind "conv" with a one-timestep delay, as
workloads.lowering.rules_recurrent lowers LinearRecurrentContainer.

The rule is registered here into lowering's registry (workloads.lowering.registry.register) when this module is
imported (workloads.exchange.nir_recurrent imports it).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.lowering.build import Build, emit
from workloads.lowering.geometry import conv_out, conv_padding, pair
from workloads.lowering.naming import described, layer_error, tag
from workloads.lowering.registry import register as register_rule
from workloads.lowering.rules_neurons import neuron_population
from workloads.lowering.rules_recurrent import add_recurrent, stepped_neuron
from workloads.lowering.values import Current, Feed, layout_fn


class ConvFeedback(nn.Module):
    """f(y, x) = x + conv(y): the input of a ConvRecurrentContainer's node from the previous step's spikes y."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x, y: (N, C, H, W); conv must map (C, H, W) to itself (stride 1, 'same'-size padding)."""
        return x + self.conv(y)


class ConvRecurrentContainer(layer.ElementWiseRecurrentContainer):
    """i[t] = x[t] + conv(y[t-1]), y[t] = sub_module(i[t]), y[-1] = 0 (so conv's bias acts from t = 0), as snnTorch's
    RLeaky with a conv recurrent: mem = beta mem + x + recurrent(spk_prev).

    sub_module: a spiking node in step_mode "s" (the container steps it); conv: Conv2d(C, C, k, stride 1) whose
    output keeps the input's (H, W). x: (T, N, C, H, W) in step_mode "m". Raises ValueError when conv changes the
    channel count or has a stride other than 1.
    """

    def __init__(self, sub_module: nn.Module, conv: nn.Conv2d, step_mode: str = "m"):
        if conv.in_channels != conv.out_channels or pair(conv.stride) != (1, 1):
            raise ValueError(f"conv: {conv} must map C channels to C with stride 1 (a recurrent loop keeps the "
                             "population's shape)")
        super().__init__(sub_module, ConvFeedback(conv), step_mode=step_mode)

    @property
    def conv(self) -> nn.Conv2d:
        """The recurrent Conv2d."""
        return self.element_wise_function.conv


def _conv_recurrent(build: Build, m: ConvRecurrentContainer, name: str, at, args) -> Feed:
    """ConvRecurrentContainer after a Conv2d: population "<kind><k>" of the conv's output shape (C, H, W) with the
    feed-forward projection (the recurrent conv's bias, a constant current from t = 0 on, added to its bias) and
    projection "rec<k>" of kind "conv" from the population to itself, delay 1 (graph.metadata["recurrent"]).
    Raises ValueError when no Conv2d output (C, H, W) feeds it or the recurrent conv does not keep (C, H, W)."""
    t, where, cur, conv = tag(name, m), described(name, m), args[0], m.conv
    node = stepped_neuron(m, m.sub_module, name)
    if not isinstance(cur, Current) or cur.layout != "chw" or len(cur.out_shape) != 3 \
            or any(s.kind != "conv" for s in cur.stages):
        raise layer_error(where, "only the output of a Conv2d (a (C, H, W) current) can feed a conv recurrent "
                                 "container")
    padding = conv_padding(conv, where)
    k, dilation = tuple(conv.kernel_size), pair(conv.dilation)
    if conv_out(cur.out_shape, conv.out_channels, k, (1, 1), padding, dilation, where) != cur.out_shape:
        raise layer_error(where, f"the recurrent conv maps {cur.out_shape} to another shape; it must keep it")
    bias = cur.bias
    if conv.bias is not None:
        b = conv.bias.detach().cpu().double()
        bias = b if bias is None else bias + b
    pop = neuron_population(build, node, name, cur.out_shape)
    emit(build, replace(cur.tagged(t), bias=bias), pop, [t], at, layout_fn("chw"))
    add_recurrent(build, pop.name, m, name, "conv", conv.weight.detach().cpu().double(), int(conv.groups), padding,
                  dilation)
    return Feed(pop, "chw", line=cur.line)


def register() -> None:
    """Add the rule to lowering's registry (idempotent)."""
    register_rule(ConvRecurrentContainer, _conv_recurrent)


register()
