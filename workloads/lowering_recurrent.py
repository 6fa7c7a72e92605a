"""Lowering rules of SpikingJelly's recurrent containers for the Sequential walk (workloads.lowering_rules).

A container's spiking node becomes one population with its feed-forward projection and a recurrent projection
"rec<k>" from the population to itself; the spikes the population emits at timestep t reach it through "rec<k>"
at timestep t + 1 (a one-timestep synaptic delay, recorded in graph.metadata["recurrent"]), as in the recurrent
graphs of workloads.exchange.recurrent.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from hwmodels.trace import Projection
from workloads.lowering_rules import (NEURON_RULES, Walk, _batchnorm, _emit, _err, _tag, _Weight, dense_stage,
                                      neuron_population, neuron_refusal, seen_shape)

#: delay (timesteps) of every recurrent projection: spikes of t act at t + 1 (SpikingJelly's y[t - 1])
DELAY_STEPS = 1


def recurrent_node(m: nn.Module) -> neuron.BaseNode | None:
    """The spiking node a recurrent container steps (its sub_module, or the last layer of it), else None."""
    if not isinstance(m, (layer.LinearRecurrentContainer, layer.ElementWiseRecurrentContainer)):
        return None
    sub = m.sub_module
    return sub[-1] if isinstance(sub, nn.Sequential) and len(sub) else sub


def _node(m: nn.Module, node: nn.Module, index: str) -> neuron.BaseNode:
    """`node` when the chip can run it (a type of NEURON_RULES); ValueError naming it otherwise."""
    if isinstance(node, neuron.BaseNode) and type(node) not in NEURON_RULES:
        raise neuron_refusal(f"{index}.sub_module", node)
    if type(node) not in NEURON_RULES:
        raise _err(index, m, f"sub_module must be a spiking node or nn.Sequential(Linear, [BatchNorm1d], node), "
                             f"got {type(node).__name__} last")
    return node


def _pre_neuron_affine(m: layer.LinearRecurrentContainer, index: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(A (out, in), a (out,) or None): the affine map the sub_module applies to i[t] before its spiking node
    (identity when the sub_module is the node itself; a Linear then an optional BatchNorm1d folded, float64)."""
    n_in = m.rc.out_features
    sub = list(m.sub_module) if isinstance(m.sub_module, nn.Sequential) else [m.sub_module]
    _node(m, sub[-1], index)
    probe = Walk(None, (n_in,), 1, None)
    probe.weight = _Weight("dense", torch.eye(n_in, dtype=torch.float64), None, (n_in,), "")
    for j, mod in enumerate(sub[:-1]):
        wt = probe.weight
        if isinstance(mod, nn.Linear) and type(mod) in (nn.Linear, layer.Linear) and wt.out_shape == (mod.in_features,):
            w = mod.weight.detach().cpu().double()
            bias = None if mod.bias is None else mod.bias.detach().cpu().double()
            wt.w, wt.out_shape = w @ wt.w, (mod.out_features,)
            wt.b = bias if wt.b is None else w @ wt.b + (0.0 if bias is None else bias)
            probe.shape = wt.out_shape
        elif type(mod) in (nn.BatchNorm1d, layer.BatchNorm1d):
            _batchnorm(probe, mod, f"{index}.sub_module.{j}")
        else:
            raise _err(index, m, f"sub_module layer {j} ({type(mod).__name__}): only nn.Sequential(Linear(in, "
                                 "out), [BatchNorm1d(out)], spiking node) is supported")
    if probe.weight.out_shape != (m.sub_module_out_features,):
        raise _err(index, m, f"sub_module outputs {probe.weight.out_shape} before its node, expected "
                             f"({m.sub_module_out_features},)")
    return probe.weight.w, probe.weight.b


def _compose(walk: Walk, m: nn.Module, index: str, w: torch.Tensor, b: torch.Tensor | None, origin: str) -> None:
    """Apply x -> w x + b (float64) to the container's input: a new dense stage from the spikes of walk.src, or
    composed with the pending dense stage (a Linear right before the container: w (W s + c) + b)."""
    wt = walk.weight
    if wt is None:
        dense_stage(walk, w, b, origin)
        walk.hardware_of(index, walk.weight)
        return
    if wt.kind != "dense" or walk.shape != wt.out_shape:
        raise _err(index, m, "only spikes or the output of a Linear (a flat current) can feed a recurrent container")
    shift = None if wt.b is None else w @ wt.b
    wt.w, wt.out_shape = w @ wt.w, (int(w.shape[0]),)
    wt.b = shift if b is None else (b if shift is None else shift + b)
    walk.shape = wt.out_shape


def _add_recurrent(walk: Walk, pop_name: str, m: nn.Module, index: str, kind: str, w: torch.Tensor,
                   groups: int = 1) -> None:
    """The projection "rec<k>" from population `pop_name` to itself (weights w, float64), delay DELAY_STEPS."""
    name = walk.next_name("rec")
    walk.projections.append(Projection(
        name=name, source=pop_name, target=pop_name, kind=kind, weight=w.numpy().astype(np.float32), groups=groups,
        weight_bits=walk.layer_bits.get(index) or walk.weight_bits,
        storage=walk.storage_for(kind, walk.layer_storage.get(index))))
    walk.origin[name] = type(m).__name__
    walk.layers["projections"][name] = [_tag(index, m)]
    walk.recurrent[name] = DELAY_STEPS


def _linear_recurrent(walk: Walk, m: layer.LinearRecurrentContainer, index: str) -> None:
    """LinearRecurrentContainer(sub_module, in_features, out_features): i[t] = W_x x[t] + W_y y[t-1] + b_rc
    (rc = Linear(in + out, in), weight [W_x | W_y]), y[t] = sub_module(i[t]), sub_module a spiking node or
    nn.Sequential(Linear(in, out), [BatchNorm1d(out)], node) applying A i + a before its node.

    x: flat (in,) spikes of the source population or the (in,) current of a Linear right before. Lowered:
    population "<kind><k>" of shape (out,); projection "fc<k>" from the source, weight A W_x (times the pending
    Linear's weight), bias A b_rc + a (+ the pending bias through A W_x); projection "rec<k>" (out, out) = A W_y
    from the population to itself, delay 1: the spikes of t-1 drive the population at t.
    """
    n_in, n_out = m.rc.out_features, m.sub_module_out_features
    if walk.shape != (n_in,):
        raise _err(index, m, f"expects a flat input of {n_in} features, got per-sample shape {seen_shape(walk)}")
    a_w, a_b = _pre_neuron_affine(m, index)
    rc_w = m.rc.weight.detach().cpu().double()
    b = None if m.rc.bias is None else a_w @ m.rc.bias.detach().cpu().double()
    b = a_b if b is None else (b if a_b is None else b + a_b)
    _compose(walk, m, index, a_w @ rc_w[:, :n_in], b, "Linear")
    walk.tags.append(_tag(index, m))
    pop = neuron_population(walk, recurrent_node(m), index, (n_out,))
    _emit(walk, pop, [_tag(index, m)], m)
    _add_recurrent(walk, pop.name, m, index, "dense", a_w @ rc_w[:, n_in:])
    walk.shape = (n_out,)


def linear_coefficients(f: Callable, tag: str) -> tuple[float, float]:
    """(a, b) with f(y, x) == a y + b x for every y, x, checked on seeded random float64 values; ValueError naming
    `tag` when f is not such a linear map (or fails on tensors)."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.rand(2, 64, generator=g, dtype=torch.float64) * 4 - 2
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    try:
        a, b = float(f(one, zero)), float(f(zero, one))
        linear = float(f(zero, zero)) == 0.0 and torch.allclose(f(y, x), a * y + b * x, rtol=1e-12, atol=1e-12)
    except Exception as exc:  # any failure of a user function means it is not an element-wise linear map
        raise ValueError(f"layer {tag}: element_wise_function failed on tensors ({exc})") from exc
    if not linear:
        raise ValueError(f"layer {tag}: element_wise_function must be linear, f(y, x) = a*y + b*x (e.g. "
                         "lambda y, x: x + y); a chip's synapses cannot compute anything else")
    return a, b


def _elementwise_recurrent(walk: Walk, m: layer.ElementWiseRecurrentContainer, index: str) -> None:
    """ElementWiseRecurrentContainer(node, f): i[t] = f(y[t-1], x[t]) = a y[t-1] + b x[t] (f linear,
    linear_coefficients), y[t] = node(i[t]).

    x: spikes of the source population (flat (n,) or (C, H, W)) or the current of the weight layer before. Lowered:
    population "<kind><k>" of x's shape; the feed-forward stage scaled by b (from spikes: "identity<k>", b times
    a dense identity or a 1x1 depthwise conv of weight b); projection "rec<k>" from the population to itself, a
    times the identity (dense for flat, 1x1 depthwise conv for (C, H, W)), delay 1 (none when a == 0).
    """
    tag = _tag(index, m)
    node = _node(m, m.sub_module, index)
    a, b = linear_coefficients(m.element_wise_function, tag)
    shape = walk.shape
    if walk.weight is None:
        if walk.pools or walk.src.shape != shape:
            raise _err(index, m, "needs the plain spikes of a population or a weight layer's output as input")
        walk.weight = _diagonal(shape, b, "Identity", walk.next_name("identity"))
        walk.hardware_of(index, walk.weight)
    elif walk.shape != walk.weight.out_shape:
        raise _err(index, m, "only spikes or a weight layer's output can feed a recurrent container")
    else:
        walk.weight.w = walk.weight.w * b
        walk.weight.b = None if walk.weight.b is None else walk.weight.b * b
    walk.tags.append(tag)
    pop = neuron_population(walk, node, index, shape)
    _emit(walk, pop, [tag], m)
    if a != 0.0:
        rec = _diagonal(shape, a, "", None)
        _add_recurrent(walk, pop.name, m, index, rec.kind, rec.w, rec.groups)


def _diagonal(shape: tuple[int, ...], scale: float, origin: str, name: str | None) -> _Weight:
    """`scale` times the identity on per-sample `shape`: a 1x1 depthwise conv for (C, H, W), a dense matrix else."""
    if len(shape) == 3:
        c = shape[0]
        return _Weight("conv", torch.full((c, 1, 1, 1), scale, dtype=torch.float64), None, shape, origin, groups=c,
                       name=name)
    n = int(np.prod(shape))
    return _Weight("dense", torch.eye(n, dtype=torch.float64) * scale, None, shape, origin, name=name)


#: container type -> rule(walk, module, index), as lowering_rules.LAYER_RULES
RECURRENT_RULES: dict[type, Callable[[Walk, nn.Module, str], None]] = {
    layer.LinearRecurrentContainer: _linear_recurrent, layer.ElementWiseRecurrentContainer: _elementwise_recurrent,
}
