"""SpikingJelly's recurrent containers (LinearRecurrentContainer, ElementWiseRecurrentContainer).

A container's spiking node becomes one population with its feed-forward projection and a recurrent projection
"rec<k>" from the population to itself; the spikes the population emits at timestep t reach it through "rec<k>"
at timestep t + 1 (a one-timestep synaptic delay, recorded in graph.metadata["recurrent"]), as in the recurrent
graphs of workloads.exchange.recurrent.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from hwmodels.trace import Projection
from workloads.lowering.build import Build, add_projection, emit
from workloads.lowering.geometry import seen_shape, spread_pools
from workloads.lowering.naming import described, layer_error, tag
from workloads.lowering.rules_neurons import NEURON_MODELS, neuron_population, neuron_refusal
from workloads.lowering.rules_synaptic import batchnorm_terms
from workloads.lowering.values import Current, Feed, Stage, diagonal_stage, layout_fn

#: delay (timesteps) of every recurrent projection: spikes of t act at t + 1 (SpikingJelly's y[t - 1])
DELAY_STEPS = 1


def recurrent_node(m: nn.Module) -> neuron.BaseNode | None:
    """The spiking node a recurrent container steps (its sub_module, or the last layer of it), else None."""
    if not isinstance(m, (layer.LinearRecurrentContainer, layer.ElementWiseRecurrentContainer)):
        return None
    sub = m.sub_module
    return sub[-1] if isinstance(sub, nn.Sequential) and len(sub) else sub


def stepped_neuron(m: nn.Module, node: nn.Module, name: str) -> neuron.BaseNode:
    """`node` (stepped by container `m`, module name `name`) when the chip can run it (a type of NEURON_MODELS);
    ValueError naming it otherwise."""
    if isinstance(node, neuron.BaseNode) and type(node) not in NEURON_MODELS:
        raise neuron_refusal(f"{name}.sub_module", node)
    if type(node) not in NEURON_MODELS:
        raise layer_error(described(name, m), f"sub_module must be a spiking node or nn.Sequential(Linear, "
                                              f"[BatchNorm1d], node), got {type(node).__name__} last")
    return node


def _pre_neuron_affine(m: layer.LinearRecurrentContainer, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(A (out, in), a (out,) or None): the affine map the sub_module applies to i[t] before its spiking node
    (identity when the sub_module is the node itself; a Linear then an optional BatchNorm1d folded, float64)."""
    n_in, where = m.rc.out_features, described(name, m)
    sub = list(m.sub_module) if isinstance(m.sub_module, nn.Sequential) else [m.sub_module]
    stepped_neuron(m, sub[-1], name)
    w, b = torch.eye(n_in, dtype=torch.float64), None
    for j, mod in enumerate(sub[:-1]):
        if type(mod) in (nn.Linear, layer.Linear) and w.shape[0] == mod.in_features:
            lw = mod.weight.detach().cpu().double()
            lb = None if mod.bias is None else mod.bias.detach().cpu().double()
            w, b = lw @ w, lb if b is None else lw @ b + (0.0 if lb is None else lb)
        elif type(mod) in (nn.BatchNorm1d, layer.BatchNorm1d) and mod.num_features == w.shape[0]:
            scale, mean, beta = batchnorm_terms(mod, described(f"{name}.sub_module.{j}", mod))
            w = w * scale.reshape(-1, 1)
            b = ((torch.zeros_like(scale) if b is None else b) - mean) * scale + beta
        else:
            raise layer_error(where, f"sub_module layer {j} ({type(mod).__name__}): only nn.Sequential(Linear(in, "
                                     "out), [BatchNorm1d(out)], spiking node) is supported")
    if tuple(w.shape[:1]) != (m.sub_module_out_features,):
        raise layer_error(where, f"sub_module outputs {tuple(w.shape[:1])} before its node, expected "
                                 f"({m.sub_module_out_features},)")
    return w, b


def _composed(build: Build, value, m: nn.Module, name: str, w: torch.Tensor, b: torch.Tensor | None) -> Current:
    """x -> w x + b (float64) applied to the container's flat input: a new dense stage from the spikes of a Feed
    (pending pools spread over their windows), or composed with a flat Current of one dense stage (a Linear right
    before the container: w (W s + c) + b)."""
    t = tag(name, m)
    if isinstance(value, Feed):
        w_in = spread_pools(w, value.pop.shape, value.pools) if value.pools else w
        stage = build.settings.stamp(Stage(value.pop.name, "dense", w_in, "Linear", list(value.tags) + [t]), name)
        return Current([stage], b, (int(w.shape[0]),), "flat", value.line)
    if len(value.stages) != 1 or value.stages[0].kind != "dense" or value.stages[0].gate is not None:
        raise layer_error(described(name, m), "only spikes or the output of a Linear (a flat current) can feed a "
                                              "recurrent container")
    old = value.stages[0]
    shift = None if value.bias is None else w @ value.bias
    bias = shift if b is None else (b if shift is None else shift + b)
    stage = replace(old, w=w @ old.weight(), rows=(), tags=old.tags + [t])
    return Current([stage], bias, (int(w.shape[0]),), "flat", value.line)


def add_recurrent(build: Build, pop_name: str, m: nn.Module, name: str, kind: str, w: torch.Tensor,
                  groups: int = 1, padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                  storage: str | None = None) -> None:
    """The projection "rec<k>" from population `pop_name` to itself (weights w, float64, Projection geometry),
    delay DELAY_STEPS, with the weight bits and storage of container `m` (module name `name`; `storage` when it
    sets none, e.g. "sparse" for a flat diagonal)."""
    settings, proj_name = build.settings, build.next_name("rec")
    add_projection(build, Projection(
        name=proj_name, source=pop_name, target=pop_name, kind=kind, weight=w.numpy().astype(np.float32),
        padding=padding, dilation=dilation, groups=groups,
        weight_bits=settings.layer_bits.get(name) or settings.weight_bits,
        storage=settings.storage_for(kind, settings.layer_storage.get(name, storage))), type(m).__name__,
        [tag(name, m)])
    build.recurrent[proj_name] = DELAY_STEPS


def linear_recurrent_rule(build: Build, m: layer.LinearRecurrentContainer, name: str, at, args) -> Feed:
    """LinearRecurrentContainer(sub_module, in_features, out_features): i[t] = W_x x[t] + W_y y[t-1] + b_rc
    (rc = Linear(in + out, in), weight [W_x | W_y]), y[t] = sub_module(i[t]), sub_module a spiking node or
    nn.Sequential(Linear(in, out), [BatchNorm1d(out)], node) applying A i + a before its node.

    x: flat (in,) spikes of the source population or the (in,) current of a Linear right before. Lowered:
    population "<kind><k>" of shape (out,); projection "fc<k>" from the source, weight A W_x (times the pending
    Linear's weight), bias A b_rc + a (+ the pending bias through A W_x); projection "rec<k>" (out, out) = A W_y
    from the population to itself, delay 1: the spikes of t-1 drive the population at t. A product of two weight
    matrices (a pending Linear's, or A of a sub_module's Linear) is not on the grid of its factors' bits: under
    weight_fit "quantize" each factor is quantized, and the fit stores the bits their product needs (float32's
    32, with lower's warning naming the projection widened) rather than re-quantizing the product, whose spikes
    would differ from the recorded model's; put a spiking neuron before the container to keep x spikes.
    """
    n_in, n_out = m.rc.out_features, m.sub_module_out_features
    value = args[0]
    shape = value.shape if isinstance(value, Feed) else value.out_shape
    if shape != (n_in,) or (isinstance(value, Feed) and value.layout == "tokens"):
        raise layer_error(described(name, m), f"expects a flat input of {n_in} features, got per-sample shape "
                                              f"{seen_shape(shape, value.line)}")
    a_w, a_b = _pre_neuron_affine(m, name)
    rc_w = m.rc.weight.detach().cpu().double()
    b = None if m.rc.bias is None else a_w @ m.rc.bias.detach().cpu().double()
    b = a_b if b is None else (b if a_b is None else b + a_b)
    current = _composed(build, value, m, name, a_w @ rc_w[:, :n_in], b)
    pop = neuron_population(build, recurrent_node(m), name, (n_out,))
    emit(build, current, pop, [tag(name, m)], at, layout_fn("flat"))
    add_recurrent(build, pop.name, m, name, "dense", a_w @ rc_w[:, n_in:])
    return Feed(pop, "flat", line=value.line)


def linear_coefficients(f: Callable, tag_: str) -> tuple[float, float]:
    """(a, b) with f(y, x) == a y + b x for every y, x, checked on seeded random float64 values; ValueError naming
    `tag_` when f is not such a linear map (or fails on tensors)."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.rand(2, 64, generator=g, dtype=torch.float64) * 4 - 2
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    try:
        a, b = float(f(one, zero)), float(f(zero, one))
        linear = float(f(zero, zero)) == 0.0 and torch.allclose(f(y, x), a * y + b * x, rtol=1e-12, atol=1e-12)
    except Exception as exc:  # any failure of a user function means it is not an element-wise linear map
        raise ValueError(f"layer {tag_}: element_wise_function failed on tensors ({exc})") from exc
    if not linear:
        raise ValueError(f"layer {tag_}: element_wise_function must be linear, f(y, x) = a*y + b*x (e.g. "
                         "lambda y, x: x + y); a chip's synapses cannot compute anything else")
    return a, b


def elementwise_recurrent_rule(build: Build, m: layer.ElementWiseRecurrentContainer, name: str, at, args) -> Feed:
    """ElementWiseRecurrentContainer(node, f): i[t] = f(y[t-1], x[t]) = a y[t-1] + b x[t] (f linear,
    linear_coefficients), y[t] = node(i[t]).

    x: spikes of the source population (flat (n,) or (C, H, W)) or the current of the weight layer(s) before.
    Lowered: population "<kind><k>" of x's shape; the feed-forward current scaled by b (from spikes: "identity<k>",
    b times the identity: a diagonal stored "sparse" for flat, a 1x1 depthwise conv for (C, H, W)); projection
    "rec<k>" from the population to itself, a times the identity (the same forms), delay 1 (none when a == 0).
    """
    t, value = tag(name, m), args[0]
    if not isinstance(m.sub_module, neuron.BaseNode):  # e.g. nn.Sequential(Linear, node): a weight inside the loop
        raise layer_error(described(name, m), f"sub_module must be a spiking node (the container feeds it "
                                              f"f(y[t-1], x[t]) itself), got {type(m.sub_module).__name__}; put "
                                              "weight layers before the container, or use LinearRecurrentContainer")
    node = stepped_neuron(m, m.sub_module, name)
    a, b = linear_coefficients(m.element_wise_function, t)
    if isinstance(value, Feed):
        if not value.plain or value.layout == "tokens":
            raise layer_error(described(name, m), "needs the plain spikes of a population or a weight layer's "
                                                  "output as input")
        shape, layout = value.pop.shape, value.layout
        stage = diagonal_stage(value.pop.name, shape, b, "Identity", list(value.tags) + [t])
        current = Current([build.settings.stamp(stage, name)], None, shape, layout, value.line)
    elif value.layout == "tokens":
        raise layer_error(described(name, m), "only spikes or a weight layer's output can feed a recurrent container")
    else:
        shape, layout = value.out_shape, value.layout
        stages = [replace(s, w=s.weight() * b, rows=(), tags=s.tags + [t]) for s in value.stages]
        current = Current(stages, None if value.bias is None else value.bias * b, shape, layout, value.line)
    pop = neuron_population(build, node, name, shape)
    emit(build, current, pop, [t], at, layout_fn(layout))
    if a != 0.0:
        rec = diagonal_stage(pop.name, shape, a, "", [])
        add_recurrent(build, pop.name, m, name, rec.kind, rec.w, rec.groups, storage=rec.storage)
    return Feed(pop, layout, line=value.line)


#: container type -> rule
RULES = {layer.LinearRecurrentContainer: linear_recurrent_rule,
         layer.ElementWiseRecurrentContainer: elementwise_recurrent_rule}
