"""The lowering engine: torch.fx traces the model's forward down to its supported layers, and each traced call is
interpreted on symbolic values (workloads.lowering.values) by the rule the registry holds for its module type
(workloads.lowering.registry), additions by `add_rule`, reshapes by workloads.lowering.reshape.

A plain nn.Sequential traces into the chain of its layers (nested nn.Sequential opened, names "3.1"); a
SpikingJelly SeqToANNContainer is one call whose layers run single-step on (T*N, ...) tensors, interpreted here
layer by layer. Layers see per-sample tensors: a top-level plain nn.Flatten(2) / nn.Unflatten(2, ...) is read as
Flatten(1) / Unflatten(1, ...); any other plain torch layer at top level would see (T, N, ...) tensors and is
refused, as are SpikingJelly layers and neurons in the wrong step mode.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
from spikingjelly.activation_based import layer, neuron
from torch import nn

from hwmodels.trace import NeuronModel, Population
from workloads.lowering.build import Build, emit, relay_of_sum
from workloads.lowering.naming import described, tag
from workloads.lowering.registry import find_rule, supported_types
from workloads.lowering.reshape import apply_reshape, find_reshape_rule
from workloads.lowering.rules_neurons import NEURON_MODELS, neuron_refusal
from workloads.lowering.values import Current, Feed, add_currents, as_current

_ADDS = (operator.add, torch.add)
#: SpikingJelly containers whose layers run on every timestep alike: SeqToANNContainer on the (T*N, ...) batch,
#: MultiStepContainer one timestep after another (the same outputs for layers without state)
_CONTAINERS = (layer.SeqToANNContainer, layer.MultiStepContainer)
#: plain torch layers that behave the same on (T, N, ...) tensors as on (N, ...) ones
_TIME_AGNOSTIC = (nn.Linear, nn.Dropout, nn.Dropout2d, nn.Identity)


class _Tracer(fx.Tracer):
    """Stops at every module with a rule, every spiking neuron and every SeqToANNContainer or MultiStepContainer;
    traces through other containers and blocks. A module object reached under several names gets its k-th name at
    its k-th call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names: dict[int, list[str]] = {}
        for name, m in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(m), []).append(name)
        self.calls: dict[int, int] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        """True for a module the interpreter calls as one (see the class docstring)."""
        return (find_rule(m) is not None or isinstance(m, neuron.BaseNode) or type(m) in _CONTAINERS
                or not any(True for _ in m.children()))

    def path_of_module(self, mod: nn.Module) -> str:
        """The name of `mod` at this call: its k-th qualified name at its k-th call (the last one after that)."""
        names = self.names.get(id(mod))
        if not names:
            return super().path_of_module(mod)
        k = self.calls.get(id(mod), 0)
        self.calls[id(mod)] = k + 1
        return names[min(k, len(names) - 1)]


def trace_module(model: nn.Module) -> fx.Graph:
    """The fx graph of `model.forward`. Raises ValueError when torch.fx cannot trace it."""
    try:
        return _Tracer(model).trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... for untraceable code
        raise ValueError(f"model: {type(model).__name__}.forward cannot be traced by torch.fx ({exc})") from exc


def interpret(build: Build, model: nn.Module, fx_graph: fx.Graph, input_pop: Population) -> None:
    """Interpret every node of `fx_graph` (the trace of `model`) on the input population's spikes, emitting into
    `build`. Raises ValueError naming the module or operation that is not supported."""
    env: dict[fx.Node, object] = {}
    used: set[int] = set()
    for node in fx_graph.nodes:
        env[node] = _interpret(build, model, node, env, used, input_pop)


def _interpret(build: Build, model: nn.Module, node: fx.Node, env: dict, used: set, input_pop: Population):
    """Symbolic value of one fx node."""
    if node.op == "placeholder":
        if any(n.op == "placeholder" for n in env):
            raise ValueError(f"model: forward takes more than one input ({node.name})")
        return Feed(input_pop, "chw" if len(input_pop.shape) == 3 else "flat", line=build.settings.line)
    if node.op == "output":
        if isinstance(node.args[0], (tuple, list, dict)):  # env is keyed by fx nodes: a container is none
            raise ValueError(f"model: the forward must return one tensor (the readout), got a "
                             f"{type(node.args[0]).__name__} of {len(node.args[0])}; return the head to lower")
        return finish(build, env.get(node.args[0]), node)
    reshape = find_reshape_rule(node)
    if reshape is not None:  # x.flatten(2), x.view(...), x.shape[0], ...: layout only (workloads.lowering.reshape)
        return apply_reshape(build, reshape, node, env)
    supported = node.op == "call_module" or (node.op == "call_function" and node.target in _ADDS)
    if not supported:
        raise ValueError(f"operation {node.name} ({node.op} {node.target}): unsupported; a forward may only call "
                         "supported modules, add their outputs and reshape them (flatten(2), view, reshape, "
                         "unsqueeze keeping the time and batch axes)")
    if node.kwargs or any(not isinstance(a, fx.Node) for a in node.args):
        raise ValueError(f"operation {node.name} ({node.target}): only tensor arguments, no keywords, are supported")
    args = [env[a] for a in node.args]
    if node.op == "call_function":
        return add_rule(build, args[0], args[1], f"{node.name}:add", node.name)
    mod = model.get_submodule(node.target)
    if id(mod) in used:
        raise ValueError(f"layer {node.target}: the same module object is called twice ({tag(node.target, mod)} "
                         "used twice: its state and recorded spikes would mix)")
    used.add(id(mod))
    if type(mod) in _CONTAINERS:
        return _container(build, mod, node.target, args)
    return _call(build, mod, node.target, node.name, args, in_container=False)


def _call(build: Build, m: nn.Module, name: str, at, args: list, in_container: bool):
    """Apply the rule of module `m` (name `name`) after checking it has one and its step mode."""
    rule = find_rule(m)
    if rule is None and isinstance(m, neuron.BaseNode):
        raise neuron_refusal(name, m)
    if rule is None:
        raise ValueError(f"layer {name} ({type(m).__name__}): unsupported; supported types: "
                         f"{', '.join(supported_types())}")
    check_step_mode(name, m, in_container)
    return rule(build, m if in_container else _per_sample(m), name, at, args)


def _container(build: Build, m: nn.Module, name: str, args: list):
    """A SeqToANNContainer or MultiStepContainer: its layers in order (nested containers opened), each captured by
    its own module. ValueError naming the container when a MultiStepContainer holds a spiking neuron (stepped one
    timestep at a time in single-step mode, which the lowering does not follow: use a step_mode='m' neuron after
    the container)."""
    value = args[0]
    layers = list(_layers(m, name))
    if type(m) is layer.MultiStepContainer:
        for child_name, child in layers:
            if isinstance(child, neuron.BaseNode):
                raise ValueError(f"layer {name} (MultiStepContainer): holds the spiking neuron {child_name}; put "
                                 "stateless layers in the container and a step_mode='m' neuron after it")
    for child_name, child in layers:
        value = _call(build, child, child_name, child, [value], in_container=True)
    return value


def _layers(m: nn.Module, prefix: str):
    """(name, module) of the leaf layers of a container, nested nn.Sequential and SeqToANNContainer opened."""
    for i, child in enumerate(m):
        if type(child) in (nn.Sequential, *_CONTAINERS):
            yield from _layers(child, f"{prefix}.{i}")
        else:
            yield f"{prefix}.{i}", child


def _top_level_reshape(m: nn.Module) -> bool:
    """A plain nn.Flatten(start_dim=2) or nn.Unflatten(2 or -1, ...) outside a container: on (T, N, ...)
    tensors it reshapes each sample."""
    if type(m) is nn.Flatten:
        return (m.start_dim, m.end_dim) == (2, -1)
    return type(m) is nn.Unflatten and m.dim in (2, -1)


def _per_sample(m: nn.Module) -> nn.Module:
    """The module as the rules see it (per-sample view): a top-level nn.Flatten(2) acts as Flatten(1), a
    top-level nn.Unflatten(2, sizes) as Unflatten(1, sizes)."""
    if not _top_level_reshape(m):
        return m
    return nn.Flatten(1, -1) if type(m) is nn.Flatten else nn.Unflatten(1, m.unflattened_size)


def check_step_mode(name: str, m: nn.Module, in_container: bool) -> None:
    """Neurons and SpikingJelly layers run multi-step at top level, layers in SeqToANNContainer single-step; a
    plain torch layer at top level must be time-agnostic (_TIME_AGNOSTIC) or a top-level reshape. Raises
    ValueError naming the layer otherwise."""
    what, mode = f"layer {described(name, m)}", getattr(m, "step_mode", None)
    if type(m) in NEURON_MODELS and in_container:
        raise ValueError(f"{what}: a neuron inside SeqToANNContainer loses its time axis; put it at top level")
    if in_container and mode not in (None, "s"):
        raise ValueError(f"{what}: step_mode must be 's' inside SeqToANNContainer, got {mode!r}")
    if not in_container and mode is not None and mode != "m":
        raise ValueError(f"{what}: step_mode must be 'm', got {mode!r} (functional.set_step_mode(model, 'm'))")
    per_sample = type(m).__module__.startswith("torch.nn") or hasattr(m, "step_mode")
    if not in_container and mode is None and per_sample and not isinstance(m, _TIME_AGNOSTIC) \
            and not _top_level_reshape(m):
        raise ValueError(f"{what}: a plain torch layer at top level sees (T, N, ...) tensors; use the "
                         "spikingjelly layer with step_mode='m' or wrap it in layer.SeqToANNContainer")


def add_rule(build: Build, a, b, tag_: str, at: object):
    """a + b. Currents add (their target neurons receive both: two incoming projections); a current plus spikes
    takes the spikes through an identity projection; spikes plus spikes become a graded relay population."""
    if isinstance(a, Feed) and isinstance(b, Feed):
        return relay_of_sum(build, a, b, tag_, at)
    return add_currents(as_current(a, tag_), as_current(b, tag_), tag_)


def finish(build: Build, value, node: fx.Node) -> None:
    """A trailing current becomes the non-spiking readout population "output" (threshold inf, no spikes);
    trailing spikes stay as they are. Raises ValueError for a trailing average pooling or token mean."""
    if isinstance(value, Current):
        readout = Population("output", value.out_shape, NeuronModel("IF", float("inf"), None, 0.0))
        emit(build, value, readout, value.stages[0].tags[-1:], None, None)
        build.readout = value.layout
    elif isinstance(value, Feed) and value.pools:
        raise ValueError("model: trailing average pooling has no Conv2d/Linear after it to fold into")
    elif not isinstance(value, Feed) or value.mean:
        raise ValueError(f"model: the output ({node.args[0]}) must be spikes or a weight layer's output, not a "
                         "pending pooling/flatten/token mean")
