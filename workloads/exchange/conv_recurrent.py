"""A convolutional recurrent loop around a spiking (C, H, W) population (snnTorch's RLeaky / RSynaptic with
conv2d_channels and kernel_size, NIR neuron -> Conv2d -> same neuron): the SpikingJelly container that runs it and
its lowering rule, a self-projection "rec<k>" of kind "conv" with a one-timestep delay, as
workloads.lowering_recurrent lowers LinearRecurrentContainer.

The rule is registered here into lowering's registries (workloads.lowering_recurrent.RECURRENT_RULES and
workloads.lowering_graph.GRAPH_RULES) when this module is imported (workloads.exchange.nir_recurrent imports it).
"""
from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

from hwmodels.trace import Projection
from workloads.lowering_recurrent import DELAY_STEPS, RECURRENT_RULES, _node
from workloads.lowering_rules import Walk, _conv_out, _conv_padding, _emit, _err, _pair, _tag, neuron_population


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
        if conv.in_channels != conv.out_channels or _pair(conv.stride) != (1, 1):
            raise ValueError(f"conv: {conv} must map C channels to C with stride 1 (a recurrent loop keeps the "
                             "population's shape)")
        super().__init__(sub_module, ConvFeedback(conv), step_mode=step_mode)

    @property
    def conv(self) -> nn.Conv2d:
        """The recurrent Conv2d."""
        return self.element_wise_function.conv


def _conv_recurrent(walk: Walk, m: ConvRecurrentContainer, index: str) -> None:
    """ConvRecurrentContainer after a Conv2d: population "<kind><k>" of the conv's output shape (C, H, W) with the
    feed-forward projection (the recurrent conv's bias, a constant current from t = 0 on, added to its bias) and
    projection "rec<k>" of kind "conv" from the population to itself, delay 1 (walk.recurrent). Raises ValueError
    when no Conv2d output (C, H, W) feeds it or the recurrent conv does not keep (C, H, W)."""
    tag = _tag(index, m)
    node = _node(m, m.sub_module, index)
    wt, conv = walk.weight, m.conv
    if wt is None or wt.kind != "conv" or len(walk.shape) != 3 or walk.shape != wt.out_shape:
        raise _err(index, m, "only the output of a Conv2d (a (C, H, W) current) can feed a conv recurrent container")
    padding = _conv_padding(conv, index)
    k, dilation = tuple(conv.kernel_size), _pair(conv.dilation)
    if _conv_out(walk.shape, conv.out_channels, k, (1, 1), padding, dilation, index, m) != walk.shape:
        raise _err(index, m, f"the recurrent conv maps {walk.shape} to another shape; it must keep it")
    if conv.bias is not None:
        b = conv.bias.detach().cpu().double()
        wt.b = b if wt.b is None else wt.b + b
    walk.tags.append(tag)
    pop = neuron_population(walk, node, index, walk.shape)
    _emit(walk, pop, [tag], m)
    name = walk.next_name("rec")
    walk.projections.append(Projection(
        name=name, source=pop.name, target=pop.name, kind="conv",
        weight=conv.weight.detach().cpu().numpy().astype(np.float32), padding=padding, dilation=dilation,
        groups=int(conv.groups), weight_bits=walk.layer_bits.get(index) or walk.weight_bits,
        storage=walk.storage_for("conv", walk.layer_storage.get(index))))
    walk.origin[name] = type(m).__name__
    walk.layers["projections"][name] = [tag]
    walk.recurrent[name] = DELAY_STEPS


def register() -> None:
    """Add the rule to the Sequential walk's and the fx lowering's registries (idempotent)."""
    from workloads.lowering_graph import GRAPH_RULES  # lowering_graph imports the exchange package: deferred
    from workloads.lowering_recurrent_graph import recurrent_rule
    RECURRENT_RULES[ConvRecurrentContainer] = _conv_recurrent
    GRAPH_RULES[ConvRecurrentContainer] = recurrent_rule


register()
