"""Lower a trained SpikingJelly multi-step model into the hardware contract: a NetworkGraph plus its EventTrace.

The graph comes from walking the model's layers with the rules in `workloads.lowering_rules`; the trace from
running the model (eval, no grad, in batches) with forward hooks on its neuron and max-pool layers.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from hwmodels.trace import STORAGE_FORMATS, EventTrace, NetworkGraph, NeuronModel, Population
from workloads.lowering_rules import NEURON_RULES, Walk, find_rule, finish, supported_types

#: plain torch layers that behave the same on (T, N, ...) tensors as on (N, ...) ones
_TIME_AGNOSTIC = (nn.Linear, nn.Dropout, nn.Dropout2d, nn.Identity)


def lower(model: nn.Module, inputs: torch.Tensor, *, labels=None, weight_bits: int = 8, storage: str | None = None,
          compression=None, batch_size: int = 64, name: str = "network",
          device=None) -> tuple[NetworkGraph, EventTrace]:
    """Lower `model` and record its spikes on `inputs`.

    model: a SpikingJelly multi-step nn.Sequential of Conv2d, BatchNorm1d/2d, AvgPool2d, AdaptiveAvgPool2d,
        MaxPool2d, Flatten, Linear, Dropout, Identity (SpikingJelly `layer.*` in step_mode "m", or plain torch
        layers inside `layer.SeqToANNContainer`; plain Linear, Dropout, Identity and nn.Flatten(start_dim=2)
        also at top level) and IFNode / LIFNode / ParametricLIFNode (step_mode "m"); or an
        nn.Module with its own forward over such layers, residual additions and Spikformer's token modules and
        attention (spiking ResNets, Spikformer: workloads.lowering_graph, which documents the residual and
        attention representation; keys of `compression` are then module names, "stages.layer1.0.conv1").
    inputs: encoded input, shape (T, N, C, H, W) or (T, N, F). The population "input" is graded (its trace
        events carry the values) when any value is not 0 or 1 (direct encoding).
    labels: optional (N,) class labels stored in the trace.
    weight_bits: bits per stored weight on every weight projection the compression does not set (max-pool
        projections use 1).
    storage: one of hwmodels.trace.STORAGE_FORMATS, forced on every weight projection ("conv" on conv projections
        only), or None: the compression's per-layer format, else "conv" for conv and "dense" for dense ones.
    compression: the CompressionResult of the method that produced `model` (or its dataclasses.asdict form, e.g.
        read back from JSON), or None. Its per-layer settings, keyed by module index ("4", "3.1"), reach the
        lowered layers: weight_bits (quantized layers; BN folding keeps b-bit levels times a per-channel scale),
        storage (e.g. "sparse" after unstructured pruning), state_bits (membrane bits of a neuron layer; a QLIF
        node's own bits otherwise). Low-rank layers (workloads.compression.dsp) lower by type, each to
        "<base>_b" -> population "<base>_relay" (kind "relay", graded, r neurons per position) -> "<base>_a".
    batch_size: samples per forward pass; device: torch device for the forward passes (None: CUDA when
        available, else CPU). The model goes back to its original device and train/eval mode afterwards.

    Returns (graph, trace). Populations: "input", one per neuron layer ("lif1", "if2", "plif3", ...), one per
    max-pool ("pool1", ...) and, when the model ends in a weight layer, the non-spiking readout "output"
    (threshold inf, no spikes). Projections: "conv<k>", "fc<k>" (BatchNorm and AvgPool folded in exactly),
    "maxpool<k>". graph.metadata: "origin" {projection: "Conv2d" | "Linear" | "MaxPool2d"}, "layers"
    {"populations"|"projections": {name: ["<index>:<type>", ...]}}, "n_timesteps".
    Synaptic events of this graph and trace (hwmodels.connectivity) with count="structural" equal SpikingJelly's
    SynOpCounter on the Conv2d/Linear projections for binary inputs; SpikingJelly counts nothing for max-pool
    (no convolution) and for graded inputs (only spike-driven operations), and also nothing for a layer after
    an AvgPool2d (its pooled input is not binary), whose folded projection here counts the un-pooled spikes.
    Raises ValueError for an unsupported layer (naming its index and type), an unsupported layer order or
    geometry, inputs whose shape does not fit the model, or bad arguments.
    """
    inputs = _check_inputs(inputs)
    n_t, n_s = inputs.shape[:2]
    labels = _check_labels(labels, n_s)
    if storage is not None and storage not in STORAGE_FORMATS:
        raise ValueError(f"storage: {storage!r} is not one of None, {', '.join(STORAGE_FORMATS)}")
    if not 1 <= int(weight_bits) <= 32:
        raise ValueError(f"weight_bits: {weight_bits} must be in 1..32")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: {batch_size} must be >= 1")
    graded = not bool(((inputs == 0) | (inputs == 1)).all())
    input_pop = Population("input", tuple(inputs.shape[2:]), NeuronModel("input"), graded=graded)
    from workloads import lowering_graph  # imports this module's rules; deferred to avoid an import cycle
    if lowering_graph.is_graph_model(model):
        graph, recorder, hooks = lowering_graph.build_graph(model, input_pop, weight_bits, storage,
                                                            _per_layer(compression), name, n_t)
        return graph, _record_trace(recorder, inputs, graph, hooks, labels, int(batch_size), device)
    walk = _walk(model, input_pop, weight_bits, storage, _per_layer(compression))
    graph = NetworkGraph(walk.populations, walk.projections, name=name,
                         metadata={"origin": walk.origin, "layers": walk.layers, "n_timesteps": int(n_t)})
    trace = _record_trace(model, inputs, graph, walk.hooks, labels, int(batch_size), device)
    return graph, trace


def _check_inputs(inputs) -> torch.Tensor:
    x = torch.as_tensor(inputs)
    if x.dim() not in (3, 5) or min(x.shape) == 0:
        raise ValueError(f"inputs: shape {tuple(x.shape)} must be non-empty (T, N, C, H, W) or (T, N, F)")
    return x.float()


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
          per_layer: dict[str, dict]) -> Walk:
    """Apply the lowering rule of every layer in order; returns the finished walk."""
    walk = Walk(input_pop, input_pop.shape, weight_bits, storage, **per_layer)
    walk.populations.append(input_pop)
    walk.layers["populations"]["input"] = []
    for index, module, in_container in _layers(model):
        rule = find_rule(module)
        if rule is None:
            raise ValueError(f"layer {index} ({type(module).__name__}): unsupported; supported types: "
                             f"{', '.join(supported_types())}")
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


def _top_level_flatten(m: nn.Module, in_container: bool) -> bool:
    """A plain nn.Flatten(start_dim=2) at top level: on (T, N, ...) tensors it flattens each sample."""
    return not in_container and type(m) is nn.Flatten and (m.start_dim, m.end_dim) == (2, -1)


def _per_sample(m: nn.Module, in_container: bool) -> nn.Module:
    """The module as the rules see it (per-sample view): a top-level nn.Flatten(2) acts as Flatten(1)."""
    return nn.Flatten(1, -1) if _top_level_flatten(m, in_container) else m


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
    if not in_container and mode is None and not isinstance(m, _TIME_AGNOSTIC) and not _top_level_flatten(m, False):
        raise ValueError(f"{what}: a plain torch layer at top level sees (T, N, ...) tensors; use the "
                         "spikingjelly layer with step_mode='m' or wrap it in layer.SeqToANNContainer")


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    t = next(iter(list(model.parameters()) + list(model.buffers())), None)
    return torch.device("cpu") if t is None else t.device


def _record_trace(model: nn.Module, inputs: torch.Tensor, graph: NetworkGraph, hooks: dict[str, nn.Module],
                  labels: np.ndarray | None, batch_size: int, device=None) -> EventTrace:
    """Run `model` on `inputs` (T, N, ...) in batches and collect every population's spikes as a CSR trace.

    hooks: {population: module whose forward output is that population's (T, B, ...) or (T*B, ...) spikes};
    "input" is `inputs` itself; populations with neither (the readout) get no events.
    Raises ValueError when a recorded tensor does not have the population's size.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(_store(captured, pop)) for pop, m in hooks.items()]
    default = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(default if device is None else device)
    old_device, was_training = _model_device(model), model.training
    with_values = any(p.graded for p in graph.populations.values())
    counts, indices, values = [], [], []
    try:
        model.to(dev).eval()
        with torch.no_grad():
            for lo in range(0, inputs.shape[1], batch_size):
                x = inputs[:, lo:lo + batch_size].to(dev)
                functional.reset_net(model)
                model(x)
                captured["input"] = x
                c, i, v = _batch_csr(captured, graph, x.shape[0], x.shape[1], with_values)
                counts.append(c)
                indices.append(i)
                values.append(v)
                captured.clear()
        functional.reset_net(model)
    finally:
        for h in handles:
            h.remove()
        model.to(old_device).train(was_training)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return EventTrace(list(graph.populations), inputs.shape[1], inputs.shape[0], offsets, np.concatenate(indices),
                      np.concatenate(values) if with_values else None, labels)


def _store(captured: dict[str, torch.Tensor], pop: str):
    """A forward hook that keeps the module's output as `captured[pop]`."""
    def hook(module, args, output):
        captured[pop] = output
    return hook


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
