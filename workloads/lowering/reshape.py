"""Tensor reshapes in traced forwards (x.flatten(2), x.view(...), x.reshape(...), x.unsqueeze(...),
torch.flatten, x.size(i), x.shape[i]): layout only, no population.

A reshape keeps the time and batch axes (T, N) and changes the per-sample shape; it maps onto the Flatten and
Unflatten rules of workloads.lowering.rules_pooling (spikes: the population's C-order numbering kept; a flat dense
current takes the new shape). Sizes come from `Dim` values: x.shape[0] / x.size(0) is the time axis, [1] the batch
axis, [i >= 2] the concrete per-sample size.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from workloads.lowering.build import Build, reshape_population
from workloads.lowering.geometry import unflattened
from workloads.lowering.rules_pooling import flatten_rule
from workloads.lowering.values import Current, Feed

@dataclass(frozen=True)
class Shape:
    """x.shape (or x.size()) of a traced tensor value: (T, N) + its per-sample shape."""

    per_sample: tuple[int, ...]


@dataclass(frozen=True)
class Dim:
    """The size of the time (axis 0) or batch (axis 1) dimension of a traced tensor, known only when it runs."""

    axis: int


def per_sample(value, tag: str) -> tuple[int, ...]:
    """Per-sample shape of a Feed or Current value as the model sees it (a (C, 1, L) value holding a 1-D signal
    is a (C, L) tensor); ValueError naming `tag` for anything else."""
    shape = _held_shape(value, tag)
    if getattr(value, "line", False) and len(shape) == 3 and shape[1] == 1:
        return (shape[0], shape[2])
    return shape


def _held_shape(value, tag: str) -> tuple[int, ...]:
    """Per-sample shape of a Feed or Current value as the lowering holds it."""
    if isinstance(value, Feed):
        return value.shape
    if isinstance(value, Current):
        if value.layout == "tokens":  # (L, D) over out_shape (D, H, W)
            d, h, w = value.out_shape
            return (h * w, d)
        return tuple(value.out_shape)
    raise ValueError(f"operation {tag}: expects a tensor, got {type(value).__name__}")


def _dim(shape: Shape, i: int, tag: str):
    """Dim(0)/Dim(1) for the time/batch axes, the concrete size for a per-sample axis."""
    n = 2 + len(shape.per_sample)
    if not -n <= i < n:
        raise ValueError(f"operation {tag}: axis {i} is out of range for a tensor of {n} dims")
    i = i % n
    return Dim(i) if i < 2 else shape.per_sample[i - 2]


def _sizes(args: tuple, tag: str) -> tuple[int, ...]:
    """Per-sample sizes of view/reshape arguments (varargs or one tuple): the first two must be the time and batch
    sizes of a tensor (x.shape[0], x.size(1), ...), the rest ints (one may be -1)."""
    sizes = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)
    if len(sizes) < 3 or sizes[0] != Dim(0) or sizes[1] != Dim(1):
        raise ValueError(f"operation {tag}: a reshape must keep the time and batch axes, e.g. x.view(x.shape[0], "
                         f"x.shape[1], ...); got sizes {sizes}")
    if not all(isinstance(s, int) for s in sizes[2:]):
        raise ValueError(f"operation {tag}: per-sample sizes must be ints, got {sizes[2:]}")
    return tuple(int(s) for s in sizes[2:])


def reshape_value(build: Build, value, shape: tuple[int, ...], name: str, node: fx.Node):
    """`value` with per-sample shape `shape` (same size, one entry may be -1): unchanged; spikes of a (C, H, W)
    population flattened (nn.Flatten's rule, pending pools kept) or unflattened back; the plain spikes of a
    population given the new shape (reshape_population: C-order numbering kept, a conv output refused); a flat
    current of dense weight layers given the new shape. Layouts: "chw" for a 3-D shape, "flat" otherwise.
    Raises ValueError naming the operation for any other reshape."""
    tag = f"{name}:reshape"
    seen = per_sample(value, tag)
    shape = unflattened(shape, int(np.prod(seen)), tag)
    if value.line and len(shape) == 2:  # a (C, L) signal is held as (C, 1, L)
        shape = (shape[0], 1, shape[1])
    old = _held_shape(value, tag)
    if shape == old:
        return value
    layout = "chw" if len(shape) == 3 else "flat"
    if isinstance(value, Feed):
        if value.layout == "chw" and len(shape) == 1 and len(value.pop.shape) == 3:
            return flatten_rule(build, nn.Flatten(1, -1), name, node.name, [value])
        if value.flat and shape == value.chw:  # undoes the Flatten: pools stay pending
            return Feed(value.pop, "chw", value.pools, tags=value.tags + (tag,), line=value.line)
        if value.plain and value.layout in ("flat", "chw"):
            pop = reshape_population(build, value.pop, shape, tag)
            return Feed(pop, layout, tags=value.tags + (tag,), line=value.line)
    elif isinstance(value, Current) and value.layout == "flat" and all(t.kind == "dense" for t in value.stages):
        return Current(value.stages, value.bias, shape, layout, value.line)
    raise ValueError(f"operation {tag}: reshaping per-sample {old} to {shape} is not supported (layout-only "
                     "reshapes: flattening spikes, reshaping a population that is no conv output, reshaping a flat "
                     "current of dense layers)")


def _view(build, value, args, kwargs, name, node):
    return reshape_value(build, value, _sizes(args, f"{name}:{node.target}"), name, node)


def _flatten_op(build, value, args, kwargs, name, node):
    """x.flatten(2) / torch.flatten(x, 2): start_dim 2 (the first per-sample axis) to the last axis."""
    start = kwargs.get("start_dim", args[0] if args else 0)
    end = kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
    n = 2 + len(per_sample(value, name))
    if start % n != 2 or end % n != n - 1:
        raise ValueError(f"operation {name}: only flatten(2) (start_dim=2, end_dim=-1: each sample flattened, "
                         f"time and batch axes kept) is supported, got start_dim={start}, end_dim={end}")
    return reshape_value(build, value, (-1,), name, node)


def _unsqueeze(build, value, args, kwargs, name, node):
    """x.unsqueeze(d) with d a per-sample position (d >= 2, or negative)."""
    d = kwargs.get("dim", args[0] if args else None)
    old = per_sample(value, name)
    n = 3 + len(old)
    if not isinstance(d, int) or not -n <= d < n or d % n < 2:
        raise ValueError(f"operation {name}: unsqueeze(dim={d}) must insert a per-sample axis (dim >= 2)")
    d = d % n - 2
    return reshape_value(build, value, old[:d] + (1,) + old[d:], name, node)


def _size(build, value, args, kwargs, name, node):
    shape = Shape(per_sample(value, name))
    i = kwargs.get("dim", args[0] if args else None)
    return shape if i is None else _dim(shape, int(i), name)


def _getattr(build, value, args, kwargs, name, node):
    if args != ("shape",):
        raise ValueError(f"operation {name}: only the .shape attribute of a tensor is supported, got {args}")
    return Shape(per_sample(value, name))


def _getitem(build, value, args, kwargs, name, node):
    if not isinstance(value, Shape) or not isinstance(args[0], int):
        raise ValueError(f"operation {name}: only x.shape[i] with an int i is supported")
    return _dim(value, args[0], name)


#: method name -> rule(build, value, other args, kwargs, fx node name, fx node) -> value
METHOD_RULES: dict[str, Callable] = {"view": _view, "reshape": _view, "flatten": _flatten_op,
                                     "unsqueeze": _unsqueeze, "size": _size}
#: function -> rule, as METHOD_RULES (the first argument is the value)
FUNCTION_RULES: dict[Callable, Callable] = {torch.flatten: _flatten_op, torch.reshape: _view,
                                            torch.unsqueeze: _unsqueeze, getattr: _getattr,
                                            operator.getitem: _getitem}


def find_reshape_rule(node: fx.Node) -> Callable | None:
    """The rule of a call_method / call_function node, or None when it is no reshape."""
    if node.op == "call_method":
        return METHOD_RULES.get(node.target)
    if node.op == "call_function":
        return FUNCTION_RULES.get(node.target)
    return None


def apply_reshape(build: Build, rule: Callable, node: fx.Node, env: dict):
    """Run `rule` on the node's first argument (a value) and its other arguments (fx nodes resolved from env)."""
    args = fx.node.map_arg(node.args, lambda a: env[a])
    kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a])
    return rule(build, args[0], tuple(args[1:]), dict(kwargs), node.name, node)
