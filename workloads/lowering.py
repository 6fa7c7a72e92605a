"""Lower a trained SpikingJelly multi-step model into the hardware contract: a NetworkGraph plus its EventTrace.

The graph comes from walking the model's layers with the rules in `workloads.lowering_rules` (or, for a module with
its own forward, from workloads.lowering_graph), its weight bits checked by `workloads.lowering_fit`; the trace from
running the model (eval, no grad, in batches) with forward hooks on its neuron and max-pool layers, which also
record neuron activity and predictions (`workloads.lowering_activity`).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from hwmodels.trace import STORAGE_FORMATS, EventTrace, NetworkGraph, NeuronModel, Population
from workloads.lowering_activity import Capture, Probes, batch_activity, flat_layout, predictions
from workloads.lowering_fit import FIT_POLICIES, fit_graph, quantize_model
from workloads.lowering_recurrent import RECURRENT_RULES, recurrent_node
from workloads.lowering_rules import NEURON_RULES, Walk, find_rule, finish, neuron_refusal, supported_types

#: plain torch layers that behave the same on (T, N, ...) tensors as on (N, ...) ones
_TIME_AGNOSTIC = (nn.Linear, nn.Dropout, nn.Dropout2d, nn.Identity)


def lower(model: nn.Module, inputs: torch.Tensor, *, labels=None, weight_bits: int = 8, weight_fit: str = "widen",
          storage: str | None = None, compression=None, batch_size: int = 64, name: str = "network",
          device=None) -> tuple[NetworkGraph, EventTrace]:
    """Lower `model` and record its spikes and neuron activity on `inputs`.

    model: a SpikingJelly multi-step nn.Sequential of Conv1d/2d, BatchNorm1d/2d, AvgPool1d/2d,
        AdaptiveAvgPool1d/2d, MaxPool1d/2d, Flatten, Unflatten, Linear, Dropout, Identity (SpikingJelly `layer.*`
        in step_mode "m", or plain torch layers inside `layer.SeqToANNContainer`; plain Linear, Dropout, Identity,
        nn.Flatten(start_dim=2) and nn.Unflatten(2, ...) also at top level), the recurrent containers
        LinearRecurrentContainer and ElementWiseRecurrentContainer (workloads.lowering_recurrent: a projection
        "rec<k>" from the container's population to itself, delay one timestep) and spiking nodes (IF, LIF, PLIF,
        their ternary forms, workloads.neurons' sLIF/QLIF; step_mode "m"; any other node is refused with a message
        naming it and the supported ones); or an nn.Module with its own forward over such layers, residual
        additions, reshapes keeping the time and batch axes (x.flatten(2), x.view / x.reshape(x.shape[0],
        x.shape[1], ...), x.unsqueeze(d >= 2), torch.flatten: layout only, workloads.lowering_reshape) and
        Spikformer's token modules and attention (spiking ResNets, Spikformer: workloads.lowering_graph, which
        documents the residual and attention representation; keys of `compression` are then module names,
        "stages.layer1.0.conv1").
        Input current: a spiking node fed by the input tensor itself (no weight layer before it, e.g.
        Sequential(IFNode, Linear, IFNode, ...) on a constant (T, N, F) current, as SANA-FE and Loihi
        applications feed per-neuron biases; a Flatten/Unflatten may come between) becomes a population of depth 0
        with no in-projection whose neurons integrate that current (its activity records them updated at every
        step with a non-zero current); graph.metadata["input_current"] lists such populations, and the "input"
        population is left out of the graph and the trace when no projection reads it.
    inputs: encoded input, shape (T, N, C, H, W), (T, N, C, L) (1-D signals, e.g. audio for a Conv1d model;
        populations of such signals have shape (C, 1, L), see workloads.lowering_rules)
        or (T, N, F). The population "input" is graded (its trace events carry the values) when any value is
        not 0 or 1 (direct encoding).
    labels: optional (N,) class labels stored in the trace.
    weight_bits: bits per stored weight on every weight projection the compression does not set (max-pool and
        identity projections use 1), subject to weight_fit.
    weight_fit: what to do with a projection whose weights do not fit its bits (per output channel an affine grid
        of 2^b levels after folding; the rule is in workloads.lowering_fit): "widen" (default) keeps the weights
        and stores the bits they need (32 for float weights), "error" raises ValueError naming the projection,
        "quantize" records a deep copy of the model whose Conv/Linear weights (low-rank factors included) are
        quantized per output channel to their layer's bits (symmetric uniform, step max|w| / (2^(b-1) - 1),
        round to nearest; 1 bit: sign x mean|w|), channels already on a b-bit grid untouched, so the trace holds
        the spikes of the b-bit model. graph.metadata["weight_fit"] reports every projection (declared, needed,
        stored bits, policy, grid levels; max_abs_error for "quantize"); widened or quantized projections are
        named in one logging warning.
    storage: one of hwmodels.trace.STORAGE_FORMATS, forced on every weight projection ("conv" on conv projections
        only), or None: the compression's per-layer format, else "conv" for conv and "dense" for dense ones.
    compression: the CompressionResult of the method that produced `model` (or its dataclasses.asdict form, e.g.
        read back from JSON), or None. Its per-layer settings, keyed by module index ("4", "3.1"), reach the
        lowered layers: weight_bits (quantized layers; BN folding keeps b-bit levels times a per-channel scale),
        storage (e.g. "sparse" after unstructured pruning), state_bits (membrane bits of a neuron layer; a QLIF
        node's own bits otherwise). Low-rank layers (workloads.compression.dsp) lower by type, each to
        "<base>_b" -> population "<base>_relay" (kind "relay", graded, r neurons per position) -> "<base>_a".
    batch_size: samples per forward pass; device: torch device for the forward passes (None: CUDA when
        available, else CPU). The model goes back to its original device and train/eval mode afterwards, with
        every attribute the recording changes (store_v_seq) restored.

    Returns (graph, trace). Populations: "input", one per neuron layer ("lif1", "if2", "plif3", ...), one per
    max-pool ("pool1", ...) and, when the model ends in a weight layer, the non-spiking readout "output"
    (threshold inf, no spikes). Projections: "conv<k>", "fc<k>" (BatchNorm and AvgPool folded in exactly),
    "maxpool<k>", "rec<k>" (recurrent). The graph is a workloads.exchange.recurrent.RecurrentGraph when a
    recurrent container makes a cycle. graph.metadata: "origin" {projection: "Conv1d" | "Conv2d" | "Linear" |
    "MaxPool1d" | "MaxPool2d" | container type}, "recurrent" {projection: delay in timesteps} (when any), "layers"
    {"populations"|"projections": {name: ["<index>:<type>", ...]}}, "n_timesteps", "weight_fit" and, when
    present, "input_current". trace.activity (hwmodels.activity) holds, for every population but the input, the
    neurons updated at each timestep (workloads.lowering_activity: spiking nodes from their own input current and
    membrane potentials, max-pool and relays where they emit, the readout where its current or potential is
    non-zero); trace.predictions the class of each sample (argmax of the model output averaged over T) when the
    model outputs (T, N, n_classes), else None; trace.sizes the population sizes and trace.graph_fingerprint
    graph.fingerprint() (hwmodels.simulate refuses the trace with any other graph).
    Synaptic events of this graph and trace (hwmodels.mapping.connectivity) with count="structural" equal SpikingJelly's
    SynOpCounter on the Conv1d/Conv2d/Linear projections for binary inputs; SpikingJelly counts nothing for
    max-pool (no convolution) and for graded inputs (only spike-driven operations), and also nothing for a layer
    after an average pooling (its pooled input is not binary), whose folded projection here counts the un-pooled
    spikes. A recurrent projection's events are its population's spikes times their fan-out, as for any
    projection (the spikes of the last timestep are sent too; the model uses the spikes of t - 1 at t).
    Raises ValueError for an unsupported layer (naming its index and type) or spiking neuron (naming it and the
    supported ones), an unsupported layer order or geometry, inputs whose shape does not fit the model (naming
    the first layer that needs a shape), weights that do not fit (weight_fit "error"), or bad arguments.
    """
    inputs = _check_inputs(inputs, model)
    n_t, n_s = inputs.shape[:2]
    labels = _check_labels(labels, n_s)
    _check_arguments(weight_bits, weight_fit, storage, batch_size)
    per_layer = _per_layer(compression)
    errors = {}
    if weight_fit == "quantize":
        model, errors = quantize_model(model, int(weight_bits), storage, per_layer.get("layer_bits", {}),
                                       per_layer.get("layer_storage", {}))
    graded = not bool(((inputs == 0) | (inputs == 1)).all())
    line = inputs.dim() == 4  # 1-D signals (C, L), held as (C, 1, L)
    shape = (inputs.shape[2], 1, inputs.shape[3]) if line else tuple(inputs.shape[2:])
    input_pop = Population("input", shape, NeuronModel("input"), graded=graded)
    graph, runner, probes = _build(model, input_pop, int(weight_bits), storage, per_layer, name, n_t, line)
    graph = fit_graph(graph, weight_fit, errors)
    return graph, _record_trace(runner, inputs, graph, probes, labels, int(batch_size), device)


def _check_arguments(weight_bits: int, weight_fit: str, storage: str | None, batch_size: int) -> None:
    """Raise ValueError naming the argument when it is out of range or not one of its accepted values."""
    if storage is not None and storage not in STORAGE_FORMATS:
        raise ValueError(f"storage: {storage!r} is not one of None, {', '.join(STORAGE_FORMATS)}")
    if not 1 <= int(weight_bits) <= 32:
        raise ValueError(f"weight_bits: {weight_bits} must be in 1..32")
    if weight_fit not in FIT_POLICIES:
        raise ValueError(f"weight_fit: {weight_fit!r} is not one of {', '.join(FIT_POLICIES)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: {batch_size} must be >= 1")


def _build(model: nn.Module, input_pop: Population, weight_bits: int, storage: str | None, per_layer: dict,
           name: str, n_t: int, line: bool = False) -> tuple[NetworkGraph, nn.Module, Probes]:
    """(graph, module to run on the inputs, probes) of either engine: the Sequential walk or the fx graph.
    line: the inputs are 1-D signals (T, N, C, L)."""
    from workloads import lowering_graph  # imports this module's rules; deferred to avoid an import cycle
    from workloads.exchange.recurrent import make_graph
    if lowering_graph.is_graph_model(model):
        return lowering_graph.build_graph(model, input_pop, weight_bits, storage, per_layer, name, n_t, line)
    walk = _walk(model, input_pop, weight_bits, storage, per_layer, line)
    metadata = {"origin": walk.origin, "layers": walk.layers, "n_timesteps": int(n_t)}
    if walk.input_current:
        metadata["input_current"] = list(walk.input_current)
    if walk.recurrent:
        metadata["recurrent"] = dict(walk.recurrent)
    graph = make_graph(walk.populations, walk.projections, name=name, metadata=metadata)
    nodes = {pop: (m, flat_layout) for pop, m in walk.hooks.items() if isinstance(m, neuron.BaseNode)}
    nodes.update({pop: (recurrent_node(m), flat_layout) for pop, m in walk.hooks.items() if recurrent_node(m)})
    return graph, model, Probes(walk.hooks, nodes, flat_layout if "output" in graph.populations else None)


def _check_inputs(inputs, model: nn.Module) -> torch.Tensor:
    """inputs as a float tensor. ValueError when they are empty or not (T, N, C, H, W), (T, N, C, L) or (T, N, F),
    or when the first Conv1d/Conv2d of `model` needs the other rank; the message names the first layer that
    needs an input shape and that shape."""
    x = torch.as_tensor(inputs)
    first = _first_shaped_layer(model)
    need = "" if first is None else f"; layer {first[0]} ({type(first[1]).__name__}) needs inputs {first[2]}"
    if x.dim() not in (3, 4, 5) or min(x.shape) == 0:
        raise ValueError(f"inputs: shape {tuple(x.shape)} must be non-empty (T, N, C, H, W), (T, N, C, L) or "
                         f"(T, N, F){need}")
    if first is not None and isinstance(first[1], (nn.Conv1d, nn.Conv2d)):
        rank = 4 if isinstance(first[1], nn.Conv1d) else 5
        if x.dim() != rank:
            raise ValueError(f"inputs: shape {tuple(x.shape)} does not fit the model{need}")
    return x.float()


#: layer type -> the (T, N, ...) input it needs when it is the first shaped layer of a model
_INPUT_LAYOUTS = ((nn.Conv1d, lambda m: f"(T, N, C={m.in_channels}, L)"),
                  (nn.Conv2d, lambda m: f"(T, N, C={m.in_channels}, H, W)"),
                  (nn.Linear, lambda m: f"(T, N, F={m.in_features})"))


def _first_shaped_layer(model: nn.Module) -> tuple[str, nn.Module, str] | None:
    """(name, module, needed input layout) of the first Conv1d/Conv2d/Linear of `model` in module order; None when
    a Flatten or Unflatten comes first (the input's own shape is then free) or there is none."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Flatten, nn.Unflatten)):
            return None
        for cls, layout in _INPUT_LAYOUTS:
            if isinstance(m, cls):
                return name, m, layout(m)
    return None


def _check_labels(labels, n_samples: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).astype(np.int64)
    if arr.shape != (n_samples,):
        raise ValueError(f"labels: shape {arr.shape} should be ({n_samples},)")
    return arr


def _per_layer(compression) -> dict[str, dict]:
    """{"layer_bits", "layer_storage", "state_bits"} from a CompressionResult, its asdict form or None; ValueError
    for bits outside 1..32 or an unknown storage format."""
    if compression is None:
        return {}
    get = compression.get if isinstance(compression, dict) else lambda key: getattr(compression, key, None)
    out = {"layer_bits": dict(get("weight_bits") or {}), "layer_storage": dict(get("storage") or {}),
           "state_bits": dict(get("state_bits") or {})}
    for key, field_name in (("layer_bits", "weight_bits"), ("state_bits", "state_bits")):
        for layer_name, bits in out[key].items():
            if not 1 <= int(bits) <= 32:
                raise ValueError(f"compression.{field_name}[{layer_name!r}]: {bits} must be in 1..32")
    for layer_name, fmt in out["layer_storage"].items():
        if fmt not in STORAGE_FORMATS:
            raise ValueError(f"compression.storage[{layer_name!r}]: {fmt!r} is not one of {', '.join(STORAGE_FORMATS)}")
    return out


def _walk(model: nn.Module, input_pop: Population, weight_bits: int, storage: str | None,
          per_layer: dict[str, dict], line: bool = False) -> Walk:
    """Apply the lowering rule of every layer in order; returns the finished walk. line: the input population
    holds 1-D signals (C, L) as (C, 1, L)."""
    walk = Walk(input_pop, input_pop.shape, weight_bits, storage, **per_layer, line=line)
    walk.populations.append(input_pop)
    walk.layers["populations"]["input"] = []
    for index, module, in_container in _layers(model):
        rule = RECURRENT_RULES.get(type(module)) or find_rule(module)
        if rule is None and isinstance(module, neuron.BaseNode):
            raise neuron_refusal(index, module)
        if rule is None:
            raise ValueError(f"layer {index} ({type(module).__name__}): unsupported; supported types: "
                             f"{', '.join(sorted(supported_types() + [t.__name__ for t in RECURRENT_RULES]))}")
        _check_step_mode(index, module, in_container)
        rule(walk, _per_sample(module, in_container), index)
    finish(walk)
    return walk


def _layers(model: nn.Module, prefix: str = "",
            in_container: bool = False) -> Iterator[tuple[str, nn.Module, bool]]:
    """(index, module, inside SeqToANNContainer) for every leaf layer; nested Sequentials are opened."""
    if not prefix and (not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward):
        raise ValueError(f"model: {type(model).__name__} must be a torch.nn.Sequential (without its own forward) "
                         "or a module with submodules")
    for i, m in enumerate(model):
        index = f"{prefix}{i}"
        if type(m) is nn.Sequential or type(m) is layer.SeqToANNContainer:
            yield from _layers(m, index + ".", in_container or type(m) is layer.SeqToANNContainer)
        else:
            yield index, m, in_container


def _top_level_reshape(m: nn.Module, in_container: bool) -> bool:
    """A plain nn.Flatten(start_dim=2) or nn.Unflatten(2 or -1, ...) at top level: on (T, N, ...) tensors it
    reshapes each sample."""
    if in_container:
        return False
    if type(m) is nn.Flatten:
        return (m.start_dim, m.end_dim) == (2, -1)
    return type(m) is nn.Unflatten and m.dim in (2, -1)


def _per_sample(m: nn.Module, in_container: bool) -> nn.Module:
    """The module as the rules see it (per-sample view): a top-level nn.Flatten(2) acts as Flatten(1), a top-level
    nn.Unflatten(2, sizes) as Unflatten(1, sizes)."""
    if not _top_level_reshape(m, in_container):
        return m
    return nn.Flatten(1, -1) if type(m) is nn.Flatten else nn.Unflatten(1, m.unflattened_size)


def _check_step_mode(index: str, m: nn.Module, in_container: bool) -> None:
    """Neurons and SpikingJelly layers run multi-step at top level; layers in SeqToANNContainer single-step."""
    what = f"layer {index} ({type(m).__name__})"
    if type(m) in NEURON_RULES and in_container:
        raise ValueError(f"{what}: a neuron inside SeqToANNContainer loses its time axis; put it at top level")
    mode = getattr(m, "step_mode", None)
    if in_container and mode not in (None, "s"):
        raise ValueError(f"{what}: step_mode must be 's' inside SeqToANNContainer, got {mode!r}")
    if not in_container and mode is not None and mode != "m":
        raise ValueError(f"{what}: step_mode must be 'm', got {mode!r} (functional.set_step_mode(model, 'm'))")
    if not in_container and mode is None and not isinstance(m, _TIME_AGNOSTIC) and not _top_level_reshape(m, False):
        raise ValueError(f"{what}: a plain torch layer at top level sees (T, N, ...) tensors; use the "
                         "spikingjelly layer with step_mode='m' or wrap it in layer.SeqToANNContainer")


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    t = next(iter(list(model.parameters()) + list(model.buffers())), None)
    return torch.device("cpu") if t is None else t.device


def _record_trace(model: nn.Module, inputs: torch.Tensor, graph: NetworkGraph, probes: Probes,
                  labels: np.ndarray | None, batch_size: int, device=None) -> EventTrace:
    """Run `model` on `inputs` (T, N, ...) in batches and collect every population's spikes as a CSR trace, with
    neuron activity (workloads.lowering_activity) and, when the model outputs (T, N, n_classes), predictions.

    probes: what to read while the model runs (lowering_activity.Probes); "input" (when the graph has it) is
    `inputs` itself; populations with no probe (the readout) get no events.
    Raises ValueError when a recorded tensor does not have the population's size.
    """
    default = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(default if device is None else device)
    old_device, modes = _model_device(model), [(m, m.training) for m in model.modules()]
    batches = []
    try:
        model.to(dev).eval()
        with torch.no_grad(), Capture(probes) as cap:
            for lo in range(0, inputs.shape[1], batch_size):
                batches.append(_record_batch(model, inputs[:, lo:lo + batch_size].to(dev), graph, probes, cap))
        functional.reset_net(model)
    finally:
        model.to(old_device)
        for m, training in modes:  # each module's own mode (a wrapper in train mode may hold eval submodules)
            m.training = training
    return _assemble(graph, inputs.shape[1], inputs.shape[0], batches, labels)


def _record_batch(model: nn.Module, x: torch.Tensor, graph: NetworkGraph, probes: Probes, cap: Capture) -> dict:
    """One forward pass on x (T, B, ...) from reset: {"csr": (counts, indices, values), "activity": {population:
    packed rows}, "predictions": int64 (B,) or None}."""
    n_t, n_b = x.shape[:2]
    functional.reset_net(model)
    y = model(x)
    if "input" in graph.populations:
        cap.spikes["input"] = x
    with_values = any(p.graded for p in graph.populations.values())
    out = {"csr": _batch_csr(cap.spikes, graph, n_t, n_b, with_values),
           "activity": batch_activity(graph.populations, cap.spikes, cap.rows, probes.readout, y, n_t, n_b),
           "predictions": predictions(y, n_t, n_b)}
    cap.clear()
    return out


def _assemble(graph: NetworkGraph, n_samples: int, n_t: int, batches: list[dict],
              labels: np.ndarray | None) -> EventTrace:
    """The EventTrace of the batches of _record_batch, in order, with the sizes and fingerprint of `graph` (the
    graph the spikes were recorded on, so hwmodels.simulate refuses it with another graph)."""
    counts, indices, values = zip(*(b["csr"] for b in batches))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    activity = {name: np.concatenate([b["activity"][name] for b in batches]) for name in batches[0]["activity"]}
    preds = [b["predictions"] for b in batches]
    return EventTrace(list(graph.populations), n_samples, n_t, offsets, np.concatenate(indices),
                      None if values[0] is None else np.concatenate(values), labels, activity,
                      None if any(p is None for p in preds) else np.concatenate(preds),
                      sizes={name: pop.size for name, pop in graph.populations.items()},
                      graph_fingerprint=graph.fingerprint())


def _batch_csr(captured: dict[str, torch.Tensor], graph: NetworkGraph, n_t: int, n_b: int,
               with_values: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CSR pieces of one batch: (counts per (sample, t, population) row, int32 indices, float32 values).

    Each population's events, sorted by (sample, t, neuron), are scattered to their rows without a global sort.
    """
    n_rows, n_p = n_b * n_t, len(graph.populations)
    counts, parts = np.zeros((n_rows, n_p), np.int64), []
    for p, pop in enumerate(graph.populations.values()):
        if pop.name in captured:
            bt, idx, val = _population_events(captured[pop.name], pop, n_t, n_b, with_values)
            counts[:, p] = np.bincount(bt, minlength=n_rows)
            parts.append((p, bt, idx, val))
    row_start = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(n_rows, n_p)
    indices = np.empty(int(counts.sum()), np.int32)
    values = np.empty(len(indices), np.float32) if with_values else None
    for p, bt, idx, val in parts:
        first = np.cumsum(counts[:, p]) - counts[:, p]  # position of each row's first event in this population
        pos = row_start[bt, p] + np.arange(len(bt)) - first[bt]
        indices[pos] = idx
        if with_values:
            values[pos] = val
    return counts.ravel(), indices, values


def _population_events(spikes: torch.Tensor, pop: Population, n_t: int, n_b: int, with_values: bool):
    """(sample*T + t, neuron index, value) of every non-zero entry of one population, sorted by row then index.

    Raises ValueError when the recorded tensor does not have `pop.size` neurons per sample and timestep.
    """
    a = spikes.reshape(n_t, n_b, -1).transpose(0, 1)  # (B, T, n)
    if a.shape[2] != pop.size:
        raise ValueError(f"population {pop.name!r}: recorded {a.shape[2]} neurons per step, expected {pop.size} "
                         f"for shape {pop.shape}")
    nz = a.nonzero()
    bt, idx = (nz[:, 0] * n_t + nz[:, 1]).cpu().numpy(), nz[:, 2].cpu().numpy()
    val = None
    if with_values:
        val = a[nz[:, 0], nz[:, 1], nz[:, 2]].float().cpu().numpy() if pop.graded else np.ones(len(bt), np.float32)
    key = bt * pop.size + idx
    if np.any(key[1:] <= key[:-1]):  # torch.nonzero is row-major in practice; do not rely on it
        order = np.argsort(key, kind="stable")
        bt, idx, val = bt[order], idx[order], None if val is None else val[order]
    return bt, idx, val
