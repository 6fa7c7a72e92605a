"""Lowering of nn.Module models with their own forward (spiking ResNets, Spikformer) into the hardware contract.

torch.fx traces the model's forward down to its supported layers (leaves: every type of GRAPH_RULES, every spiking
neuron); each traced call is interpreted on symbolic values (workloads.lowering_values: spikes `Feed`, summed
`Current`) by its rule (workloads.lowering_graph_rules, workloads.lowering_attention), additions by `add_rule`.
The trace comes from re-running the traced graph on the real tensors with a probe module at every population,
so the recording of workloads.lowering is reused unchanged. Entry point: workloads.lowering.lower.

Representation (every stage exact: replaying the recorded spikes gives the model's own currents):
- Residual add of currents before a neuron (ResNet-19's BasicBlock, sn2(bn2(conv2(.)) + shortcut(x))): the
  block's output population gets one projection per addend, "conv<k>" (main path, BN folded) and the shortcut,
  a 1x1 conv + BN "conv<k>" or, for an identity shortcut, "identity<k>": a 1x1 depthwise conv of weight 1 (C stored
  weights, fan-out 1). Pre-activation blocks add currents that the next block's BN + neuron read: that neuron
  layer gets one projection per addend with the BN folded into each (a current read by two layers is stored
  twice; no extra population or pipeline step).
- Spikes + spikes (Spikformer's x + attn(x), tokenizer x + rpe(x)): a graded relay population "add<k>" (kind
  "relay") fed by two identity projections; it forwards the sum (0, 1, 2, ...) every timestep.
- Tokens (T, N, L, D) are populations of shape (D, H, W); a token-wise Linear is a 1x1 conv, TokenMean is folded
  into the head Linear (weight / L per token), TokenBatchNorm per channel.
- Attention: gated projections (hwmodels.trace.Projection.gate), see workloads.lowering_attention.
- Max-pool, average-pool, BatchNorm and DSP low-rank layers as in workloads.lowering_rules.
- Reshapes keeping the time and batch axes (x.flatten(2), x.view/reshape(x.shape[0], x.shape[1], ...),
  x.unsqueeze(d >= 2), torch.flatten, nn.Flatten(2), nn.Unflatten(2, ...)): layout only
  (workloads.lowering_reshape).
Names: neuron populations "<kind><k>" (one counter), "pool<k>", "add<k>", "attn<k>_kv", "<base>_relay";
projections "conv<k>", "fc<k>", "identity<k>", "maxpool<k>", "attn<k>_k"/"attn<k>_q" (SpikeAttention),
"attn<k>_qk"/"attn<k>_v" (BinaryAttention), "<base>_b"/"<base>_a" (low-rank); a trailing weight stage feeds the
non-spiking readout "output".
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
from spikingjelly.activation_based import neuron
from torch import nn

from hwmodels.trace import NetworkGraph, NeuronModel, Population
from workloads.lowering_attention import ATTENTION_RULES
from workloads.lowering_graph_rules import RULES, add_rule
from workloads.lowering_activity import Probes
from workloads.exchange.recurrent import make_graph
from workloads.lowering_recurrent import recurrent_node
from workloads.lowering_recurrent_graph import RECURRENT_GRAPH_RULES
from workloads.lowering_reshape import apply_reshape, find_reshape_rule
from workloads.lowering_rules import Walk, _base_type, drop_unread_input, neuron_refusal
from workloads.lowering_values import Current, Feed, GraphBuild, add_population, emit, layout_fn

#: module type -> rule fn(build, module, name, fx node, argument values) -> value
GRAPH_RULES = {**RULES, **ATTENTION_RULES, **RECURRENT_GRAPH_RULES}
_ADDS = (operator.add, torch.add)


def is_graph_model(model: nn.Module) -> bool:
    """True for a module this lowering handles: it has submodules and is not a plain nn.Sequential (those are
    walked layer by layer by workloads.lowering)."""
    plain = isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward
    return not plain and any(True for _ in model.children())


class _Tracer(fx.Tracer):
    """Stops at every module with a rule and at every spiking neuron; traces through containers and blocks."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (_base_type(m) in GRAPH_RULES or isinstance(m, neuron.BaseNode)
                or not any(True for _ in m.children()))


def trace_module(model: nn.Module) -> fx.Graph:
    """The fx graph of `model.forward`. Raises ValueError when torch.fx cannot trace it."""
    try:
        return _Tracer().trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... for untraceable code
        raise ValueError(f"model: {type(model).__name__}.forward cannot be traced by torch.fx ({exc})") from exc


def build_graph(model: nn.Module, input_pop: Population, weight_bits: int, storage: str | None,
                per_layer: dict[str, dict], name: str, n_timesteps: int,
                line: bool = False) -> tuple[NetworkGraph, nn.Module, Probes]:
    """Lower the traced `model` fed by `input_pop`: returns (graph, recorder, probes), where running the recorder
    module on the input runs the model and passes every population's (T, B, n) tensor through
    probes.spikes[population]; probes.nodes are the spiking nodes behind neuron populations and probes.readout
    the layout of the model output when it is the readout's input current (workloads.lowering_activity).
    line: the input holds 1-D signals (C, L) as (C, 1, L) (Conv1d models, workloads.lowering_rules).

    graph.metadata: "origin" {projection: layer type, "Identity", "MaxPool2d", "SpikeAttention", ...}, "layers"
    {"populations"|"projections": {name: ["<module name>:<type>", ...]}}, "n_timesteps", "recurrent"
    {projection: delay in timesteps} when a recurrent container adds a self-projection (the graph is then a
    workloads.exchange.recurrent.RecurrentGraph), "approximations"
    {projection: reason} when a stage is not exact (BinaryAttention with a time-varying scale) and
    "input_current" when spiking nodes take the input tensor as their current (the input population is then left
    out unless a projection reads it).
    Raises ValueError naming the module or operation that is not supported.
    """
    fx_graph = trace_module(model)
    build = GraphBuild(Walk(input_pop, input_pop.shape, weight_bits, storage, **per_layer, line=line))
    add_population(build, input_pop, [], None, None)
    env: dict[fx.Node, object] = {}
    used: set[int] = set()
    for node in fx_graph.nodes:
        env[node] = _interpret(build, model, node, env, used, input_pop)
    walk = build.walk
    drop_unread_input(walk)
    metadata = {"origin": walk.origin, "layers": walk.layers, "n_timesteps": int(n_timesteps)}
    if build.notes:
        metadata["approximations"] = dict(build.notes)
    if walk.input_current:
        metadata["input_current"] = list(walk.input_current)
    if walk.recurrent:
        metadata["recurrent"] = dict(walk.recurrent)
    graph = make_graph(walk.populations, walk.projections, name=name, metadata=metadata)
    recorder = _Recorder(model, fx_graph, build.captures)
    readout = None if build.readout is None else layout_fn(build.readout)
    probes = Probes(dict(recorder.probes.items()), _node_sources(model, fx_graph, build.captures), readout)
    return graph, recorder, probes


def _node_sources(model: nn.Module, fx_graph: fx.Graph, captures: dict) -> dict[str, tuple[nn.Module, object]]:
    """{population: (spiking node, layout fn)} of the captures taken from a SpikingJelly node's output (by fx
    node or by module hook), whose activity comes from the node itself (workloads.lowering_activity)."""
    calls = {n.name: model.get_submodule(n.target) for n in fx_graph.nodes if n.op == "call_module"}
    out = {}
    for pop, (where, fn) in captures.items():
        mod = where if isinstance(where, nn.Module) else calls.get(where)
        mod = recurrent_node(mod) or mod  # a recurrent container's population: the node it steps
        if isinstance(mod, neuron.BaseNode):
            out[pop] = (mod, fn)
    return out


def _interpret(build: GraphBuild, model: nn.Module, node: fx.Node, env: dict, used: set, input_pop: Population):
    """Symbolic value of one fx node (see build_graph)."""
    if node.op == "placeholder":
        if any(n.op == "placeholder" for n in env):
            raise ValueError(f"model: forward takes more than one input ({node.name})")
        return Feed(input_pop, "chw" if len(input_pop.shape) == 3 else "flat")
    if node.op == "output":
        return _finish(build, env.get(node.args[0]), node)
    reshape = find_reshape_rule(node)
    if reshape is not None:  # x.flatten(2), x.view(...), x.shape[0], ...: layout only (workloads.lowering_reshape)
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
        raise ValueError(f"layer {node.target}: the same module object is called twice; its state would mix")
    used.add(id(mod))
    if getattr(mod, "step_mode", None) not in (None, "m"):
        raise ValueError(f"layer {node.target} ({type(mod).__name__}): step_mode must be 'm', got {mod.step_mode!r}")
    rule = GRAPH_RULES.get(_base_type(mod))
    if rule is None and isinstance(mod, neuron.BaseNode):
        raise neuron_refusal(node.target, mod)
    if rule is None:
        raise ValueError(f"layer {node.target} ({type(mod).__name__}): unsupported; supported types: "
                         f"{', '.join(sorted({t.__name__ for t in GRAPH_RULES}))}")
    return rule(build, mod, node.target, node, args)


def _finish(build: GraphBuild, value, node: fx.Node) -> None:
    """A trailing current becomes the non-spiking readout population "output" (threshold inf, no spikes)."""
    if isinstance(value, Current):
        readout = Population("output", value.out_shape, NeuronModel("IF", float("inf"), None, 0.0))
        emit(build, value, readout, value.terms[0].tags[-1:], None, None)
        build.readout = value.layout
    elif not isinstance(value, Feed) or not value.plain:
        raise ValueError(f"model: the output ({node.args[0]}) must be spikes or a weight layer's output, not a "
                         "pending pooling/flatten/token mean")


class _Probe(nn.Module):
    """Identity module: the recorder passes each population's tensor through one, where lowering's hook reads it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Recorder(nn.Module):
    """Runs the traced graph of `model` on real tensors; captured values go through probes[population].

    captures: {population: (fx node name, fn(output, args)) or (module, fn(output, hook args))}. Tensors are freed
    after their last use. train/eval mode mirrors the model's at construction.
    """

    def __init__(self, model: nn.Module, fx_graph: fx.Graph, captures: dict):
        super().__init__()
        self.model, self.nodes = model, list(fx_graph.nodes)
        self.probes = nn.ModuleDict({pop: _Probe() for pop in captures})
        self.by_node, self.by_module = {}, []
        for pop, (where, fn) in captures.items():
            if isinstance(where, nn.Module):
                self.by_module.append((where, pop, fn))
            else:
                self.by_node.setdefault(where, []).append((pop, fn))
        self.training = model.training  # not train(): that would reset the modes of the model's submodules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        handles = [mod.register_forward_hook(self._hook(pop, fn)) for mod, pop, fn in self.by_module]
        try:
            return self._run(x)
        finally:
            for h in handles:
                h.remove()

    def _hook(self, pop: str, fn):
        """A forward hook feeding probes[pop]; returns None so the module's output is left unchanged."""
        def hook(module, args, out) -> None:
            self.probes[pop](fn(out, args))
        return hook

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        env, uses = {}, {n: len(n.users) for n in self.nodes}
        for node in self.nodes:
            if node.op == "output":
                return env[node.args[0]]
            args = fx.node.map_arg(node.args, lambda a: env[a])
            kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a])
            if node.op == "placeholder":
                out = x
            elif node.op == "call_module":
                out = self.model.get_submodule(node.target)(*args)
            elif node.op == "call_method":
                out = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                out = node.target(*args, **kwargs)
            for pop, fn in self.by_node.get(node.name, ()):
                self.probes[pop](fn(out, args))
            for a in set(node.all_input_nodes):
                uses[a] -= 1
                if uses[a] == 0:
                    del env[a]
            env[node] = out
        raise ValueError("model: traced graph has no output")
