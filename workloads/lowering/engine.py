"""The entry point of the lowering, `lower`: argument checks, the graph build (trace, interpret, assemble the
NetworkGraph), the weight fit (workloads.lowering.fit: before the recording for weight_fit "error", which may
refuse; beside the trace write for "widen" and "quantize", LateFit) and the trace recording
(workloads.lowering.recorder).
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from hwmodels.trace import MAX_WEIGHT_BITS, STORAGE_FORMATS, EventTrace, NetworkGraph, NeuronModel, Population, is_int
from workloads.exchange.recurrent import make_graph
from workloads.lowering.activity import Probes
from workloads.lowering.build import Build, Settings, add_population, drop_unread_input
from workloads.lowering.fit import FIT_POLICIES, fit_graph, projection_fit, quantized_model
from workloads.lowering.interpreter import interpret, trace_module
from workloads.lowering.jobs import Jobs
from workloads.lowering.recorder import Recorder, node_sources, record_trace
from workloads.lowering.sink import check_out
from workloads.lowering.values import layout_fn
from workloads.models import check_float32


def lower(model: nn.Module, inputs: torch.Tensor, *, labels=None, weight_bits: int = 8, weight_fit: str = "widen",
          storage: str | None = None, compression=None, batch_size: int = 128, name: str = "network",
          device=None, out=None) -> tuple[NetworkGraph, EventTrace]:
    """Lower `model` and record its spikes and neuron activity on `inputs`.

    model: a SpikingJelly multi-step nn.Sequential of Conv1d/2d, BatchNorm1d/2d, AvgPool1d/2d,
        AdaptiveAvgPool1d/2d, MaxPool1d/2d, Flatten, Unflatten, Linear, Dropout, Identity (SpikingJelly `layer.*`
        in step_mode "m", or plain torch layers inside `layer.SeqToANNContainer`; plain Linear, Dropout, Identity,
        nn.Flatten(start_dim=2) and nn.Unflatten(2, ...) also at top level), the recurrent containers
        LinearRecurrentContainer and ElementWiseRecurrentContainer (workloads.lowering.rules_recurrent: a projection
        "rec<k>" from the container's population to itself, delay one timestep) and spiking nodes (IF, LIF, PLIF,
        their ternary forms, workloads.neurons' sLIF/QLIF; step_mode "m"; any other node is refused with a message
        naming it and the supported ones); or an nn.Module with its own forward over such layers, residual
        additions, reshapes keeping the time and batch axes (x.flatten(2), x.view / x.reshape(x.shape[0],
        x.shape[1], ...), x.unsqueeze(d >= 2), torch.flatten: layout only, workloads.lowering.reshape) and
        Spikformer's token modules and attention (spiking ResNets, Spikformer; workloads.lowering documents the
        residual and attention representation). Both kinds run through one engine
        (workloads.lowering.interpreter).
        Input current: a spiking node fed by the input tensor itself (no weight layer before it, e.g.
        Sequential(IFNode, Linear, IFNode, ...) on a constant (T, N, F) current, as SANA-FE and Loihi
        applications feed per-neuron biases; a Flatten/Unflatten may come between) becomes a population of depth 0
        with no in-projection whose neurons integrate that current (its activity records them updated at every
        step with a non-zero current); graph.metadata["input_current"] lists such populations, and the "input"
        population is left out of the graph and the trace when no projection reads it.
    inputs: encoded input, shape (T, N, C, H, W), (T, N, C, L) (1-D signals, e.g. audio for a Conv1d model;
        populations of such signals have shape (C, 1, L), see workloads.lowering.geometry)
        or (T, N, F). The population "input" is graded (its trace events carry the values) when any value is
        not 0 or 1 (direct encoding).
    labels: optional (N,) class labels stored in the trace: integers >= 0, below n_classes >= 2 when the model outputs
        (T, N, n_classes) (checked on the first batch's output, before anything is written).
    weight_bits: bits per stored weight on every weight projection the compression does not set (max-pool and
        identity projections use 1), subject to weight_fit.
    weight_fit: what to do with a projection whose weights do not fit its bits (per output channel an affine grid
        of 2^b levels after folding; the rule is in workloads.lowering.fit): "widen" (default) keeps the weights
        and stores the bits they need (32 for float weights), "error" raises ValueError naming the projection,
        "quantize" records the model with its Conv/Linear weights (low-rank factors included) quantized per
        output channel to their layer's bits (symmetric uniform, step max|w| / (2^(b-1) - 1), round to nearest;
        1 bit: sign x mean|w|), channels already on a b-bit grid untouched, so the trace holds the spikes of the
        b-bit model (the quantized weights are swapped into the model for the call and the original Parameters
        put back after, or, when a weight is parametrized, pruned or shared, a deep copy is quantized:
        workloads.lowering.fit.quantized_model; the model's weights are unchanged afterwards either way).
        graph.metadata["weight_fit"] reports every projection (declared, needed, stored bits, policy, grid
        levels; max_abs_error for "quantize"); widened or quantized projections are named in one logging
        warning.
    storage: one of hwmodels.trace.STORAGE_FORMATS, forced on every weight projection ("conv" on conv projections
        only), or None: the compression's per-layer format, else "conv" for conv and "dense" for dense ones.
    compression: the CompressionResult of the method that produced `model` (or its dataclasses.asdict form, e.g.
        read back from JSON), or None. Its per-layer settings, keyed by module name ("4", "3.1",
        "stages.layer1.0.conv1"), reach the lowered layers: weight_bits (quantized layers; BN folding keeps b-bit
        levels times a per-channel scale), storage (e.g. "sparse" after unstructured pruning), state_bits
        (membrane bits of a neuron layer; a QLIF node's own bits otherwise). Low-rank layers
        (workloads.compression.dsp) lower by type, each to "<base>_b" -> population "<base>_relay" (kind "relay",
        graded, r neurons per position) -> "<base>_a".
    batch_size: samples per forward pass (the default 128 lowers the 100 samples codesign uses in one pass instead
        of two of 64: the MNIST conv net's lowering 57 -> 50 ms, medians of 10; the memory of a pass grows with
        it: give less for large nets; the trace holds the spikes of the model run on those batches: torch may
        sum a convolution in another order for another batch size, so a current at a threshold tie can round
        differently and one spike differ, as it does in SpikingJelly run on the same batches); device: torch
        device for the forward passes (None: CUDA when available, else CPU; "meta", an unknown device or CUDA
        without CUDA: ValueError before the model moves). The model goes back to its original
        device and train/eval mode afterwards, with every attribute the recording changes (store_v_seq; the fused
        forward of plain IF/LIF/PLIF nodes, workloads.lowering.fused, which computes their spikes bit for bit as
        SpikingJelly does; the compiled forward of plain MaxPool2d layers, workloads.lowering.fused_pool, torch's
        values bit for bit) restored.
    out: None (default) returns the trace in memory; a folder path that does not exist yet (its parent must)
        streams the trace there batch by batch as it is recorded (hwmodels.stream.TraceWriter; written under a
        hidden temporary name and renamed when complete, so `out` is complete or absent) and returns it opened
        memory-mapped (hwmodels.stream.open_trace): memory stays at one batch's events whatever the sample count.

    Returns (graph, trace). Populations: "input", one per neuron layer ("lif1", "if2", "plif3", ...), one per
    max-pool ("pool1", ...) and, when the model ends in a weight layer, the non-spiking readout "output"
    (threshold inf, no spikes). Projections: "conv<k>", "fc<k>" (BatchNorm and AvgPool folded in exactly),
    "maxpool<k>", "rec<k>" (recurrent). The graph is a workloads.exchange.recurrent.RecurrentGraph when a
    recurrent container makes a cycle. graph.metadata: "origin" {projection: "Conv1d" | "Conv2d" | "Linear" |
    "MaxPool1d" | "MaxPool2d" | container type}, "recurrent" {projection: delay in timesteps} (when any), "layers"
    {"populations"|"projections": {name: ["<index>:<type>", ...]}}, "n_timesteps", "weight_fit" and, when
    present, "input_current". trace.activity (hwmodels.activity) holds, for every population but the input, the
    neurons updated at each timestep (workloads.lowering.activity: spiking nodes from their own input current and
    membrane potentials, max-pool and relays where they emit, the readout where its current or potential is
    non-zero); trace.predictions the class of each sample (argmax of the model output averaged over T) when the
    model outputs (T, N, n_classes), else None; trace.sizes the population sizes and trace.graph_fingerprint
    graph.fingerprint() (hwmodels.simulate refuses the trace with any other graph).
    Synaptic events of this graph and trace (hwmodels.mapping.connectivity) with count="structural" equal
    SpikingJelly's SynOpCounter on the Conv1d/Conv2d/Linear projections for binary inputs; SpikingJelly counts
    nothing for max-pool (no convolution) and for graded inputs (only spike-driven operations), and also nothing
    for a layer after an average pooling (its pooled input is not binary; NeuroBench counts MACs on the pooled
    values), whose folded projection here counts the un-pooled spikes; a weight layer whose output current (not
    yet spikes) reaches a population by two paths,
    e.g. a pre-activation residual block's conv read by both its BatchNorm-neuron branch and the shortcut sum,
    becomes one projection per path (currents fold into the projections that reach a population), so its input
    spikes are counted once per path where SynOpCounter counts the layer once. A recurrent projection's events are
    its population's spikes times their fan-out, as for any projection (the spikes of the last timestep are sent
    too; the model uses the spikes of t - 1 at t).
    Raises ValueError for an unsupported layer (naming its index and type) or spiking neuron (naming it and the
    supported ones), an unsupported layer order or geometry, inputs whose shape does not fit the model (naming
    the first layer that needs a shape) or that hold NaN or inf, weights that do not fit (weight_fit "error"), or
    bad arguments (weight_bits and batch_size: integers, not 8.5 or True) or a model whose floating-point
    parameters or buffers are not float32 (model.double(): call model.float() first).
    """
    _check_model_dtype(model)
    inputs = _check_inputs(inputs, model)
    n_t, n_s = inputs.shape[:2]
    labels = _check_labels(labels, n_s)
    _check_arguments(weight_bits, weight_fit, storage, batch_size)
    _check_device(device)
    out = None if out is None else check_out(out)
    per_layer = _per_layer(compression, model)
    with Jobs() as jobs, (quantized_model(model, int(weight_bits), storage, per_layer["layer_bits"],
                                          per_layer["layer_storage"], jobs) if weight_fit == "quantize"
                          else nullcontext((model, {}))) as (model, errors):
        graded = not bool(((inputs == 0) | (inputs == 1)).all())
        line = inputs.dim() == 4  # 1-D signals (C, L), held as (C, 1, L)
        shape = (inputs.shape[2], 1, inputs.shape[3]) if line else tuple(inputs.shape[2:])
        input_pop = Population("input", shape, NeuronModel("input"), graded=graded)
        settings = Settings(int(weight_bits), storage, **per_layer, line=line)
        graph, recorder, probes = build_graph(model, input_pop, settings, name, n_t)
        if weight_fit == "error":  # the fit may refuse the weights: before any recording or folder
            fingerprint = jobs.submit(graph.fingerprint)  # hashed beside the fit: it leaves weights and names alone
            graph = fit_graph(graph, weight_fit, errors, jobs)
            return graph, record_trace(recorder, inputs, graph, probes, labels, int(batch_size), device, out, jobs,
                                       fingerprint.result)
        late = LateFit(graph, weight_fit, errors, jobs)
        trace = record_trace(recorder, inputs, graph, probes, labels, int(batch_size), device, out, jobs,
                             late.fingerprint, recorded=late.start)
        return late.graph(), trace


class LateFit:
    """The weight fit and the graph fingerprint of a policy that never refuses ("widen", "quantize"), started on
    the threads of `jobs` once the last batch is recorded (start), so they run beside the last trace write, while
    torch is idle, rather than before the recording: the recording needs neither (the fit changes only
    projections' weight_bits and graph.metadata, which the fingerprint leaves out). Not beside a forward pass:
    a third busy thread on two cores stalls torch's OpenMP threads at every barrier (VGG-16 in
    benchmarks/test_bench_scale.py lowered in 12 s instead of 8 when the fit started after the first of two
    batches). The fingerprint (XXH3: NetworkGraph.fingerprint, a few ms that release the GIL on the weight
    arrays) is the first job, so it is hashed while the main thread writes the last batch rather than after
    it; each projection's fit is a job of its own after it, the largest weights first, so every thread of `jobs`
    fits. fingerprint() makes the fitted graph too, so a failing fit fails the recording before its trace is
    complete; graph() is the fitted graph."""

    def __init__(self, graph: NetworkGraph, policy: str, errors: dict, jobs: Jobs):
        self._graph, self.policy, self.errors, self.jobs = graph, policy, errors, jobs
        self._fits = self._hash = self._fitted = None

    def start(self) -> None:
        """Start the fingerprint's job, then the fits, one job per projection without a gate (largest weights
        first), once."""
        if self._fits is None:
            self._hash = self.jobs.submit(self._graph.fingerprint)
            weighted = sorted((p for p in self._graph.projections if p.gate is None), key=lambda p: -p.weight.size)
            self._fits = {p.name: self.jobs.submit(projection_fit, p) for p in weighted}

    def fingerprint(self) -> str:
        """graph.fingerprint(), once the fitted graph is made too (the jobs started here if they were not)."""
        self.start()
        self.graph()
        return self._hash.result()

    def graph(self) -> NetworkGraph:
        """The fitted graph (fit_graph's, with the fits of start), made once."""
        if self._fitted is None:
            self.start()
            fits = {name: fit.result() for name, fit in self._fits.items()}
            self._fitted = fit_graph(self._graph, self.policy, self.errors, None, fits)
        return self._fitted


def build_graph(model: nn.Module, input_pop: Population, settings: Settings, name: str,
                n_timesteps: int) -> tuple[NetworkGraph, nn.Module, Probes]:
    """Lower the traced `model` fed by `input_pop`: returns (graph, recorder, probes), where running the recorder
    module on the input runs the model and passes every population's (T, B, n) tensor through
    probes.spikes[population]; probes.nodes are the spiking nodes behind neuron populations and probes.readout
    the layout of the model output when it is the readout's input current (workloads.lowering.activity).
    Raises ValueError naming the module or operation that is not supported."""
    if not any(True for _ in model.children()):
        raise ValueError(f"model: {type(model).__name__} must be a torch.nn.Sequential (without its own forward) "
                         "or a module with submodules")
    fx_graph = trace_module(model)
    build = Build(settings)
    add_population(build, input_pop, [], None, None)
    interpret(build, model, fx_graph, input_pop)
    drop_unread_input(build)
    graph = make_graph(build.populations, build.projections, name=name, metadata=build.metadata(n_timesteps))
    recorder = Recorder(model, fx_graph, build.captures)
    readout = None if build.readout is None else layout_fn(build.readout)
    return graph, recorder, Probes(dict(recorder.probes.items()), node_sources(model, fx_graph, build.captures),
                                   readout)


def _check_arguments(weight_bits: int, weight_fit: str, storage: str | None, batch_size: int) -> None:
    """Raise ValueError naming the argument when it is out of range or not one of its accepted values (weight_bits
    and batch_size must be integers: 8.5 bits or a batch of 2.5 samples, and True/False, are refused rather than
    truncated)."""
    if storage is not None and storage not in STORAGE_FORMATS:
        raise ValueError(f"storage: {storage!r} is not one of None, {', '.join(STORAGE_FORMATS)}")
    if not is_int(weight_bits) or not 1 <= weight_bits <= MAX_WEIGHT_BITS:
        raise ValueError(f"weight_bits: {weight_bits!r} must be an integer in 1..{MAX_WEIGHT_BITS}")
    if weight_fit not in FIT_POLICIES:
        raise ValueError(f"weight_fit: {weight_fit!r} is not one of {', '.join(FIT_POLICIES)}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: {batch_size!r} must be an integer >= 1")


def _check_device(device) -> None:
    """ValueError naming `device` before the model is moved when it is not a torch device ("gpu"), is CUDA on a
    machine without it (torch's AssertionError "Torch not compiled with CUDA enabled" before), or is "meta",
    which holds no data: the model moved there could not come back, its weights lost."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {device!r} is not a torch device ({' '.join(str(exc).split())[:80]})") from None
    if dev.type == "meta":
        raise ValueError("device: 'meta' holds no data; give None, 'cpu' or an available 'cuda' device")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device: {device!r} is not available ({torch.cuda.device_count()} CUDA devices); give "
                         "None (CUDA when available, else CPU) or 'cpu'")


def _check_model_dtype(model: nn.Module) -> None:
    """ValueError naming the first floating-point parameter or buffer of `model` that is not float32: the recording
    runs the model on float32 inputs (a model.double() failed inside torch with "mat1 and mat2 must have the same
    dtype"), and the graph holds float32 weights."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: got {type(model).__name__}, expected a torch.nn.Module")
    check_float32(model, "lower records")


def _check_inputs(inputs, model: nn.Module) -> torch.Tensor:
    """inputs as a float tensor. ValueError when they are empty, hold NaN or inf, or are not (T, N, C, H, W),
    (T, N, C, L) or (T, N, F), or when the first Conv1d/Conv2d of an nn.Sequential `model` needs the other rank;
    the message names the first layer that needs an input shape and that shape."""
    x = torch.as_tensor(inputs)
    first = _first_shaped_layer(model)
    need = "" if first is None else f"; layer {first[0]} ({type(first[1]).__name__}) needs inputs {first[2]}"
    if x.dim() not in (3, 4, 5) or min(x.shape) == 0:
        raise ValueError(f"inputs: shape {tuple(x.shape)} must be non-empty (T, N, C, H, W), (T, N, C, L) or "
                         f"(T, N, F){need}")
    # module order is run order only in an nn.Sequential: another forward may reshape the input first
    # (x.view(T, N, 1, 28, 28) before its first conv) or run its layers in another order; the lowering names a
    # layer whose input does not fit it itself
    if first is not None and isinstance(first[1], (nn.Conv1d, nn.Conv2d)) and isinstance(model, nn.Sequential):
        rank = 4 if isinstance(first[1], nn.Conv1d) else 5
        if x.dim() != rank:
            raise ValueError(f"inputs: shape {tuple(x.shape)} does not fit the model{need}")
    x = x.float()
    bad = x.numel() - int(torch.isfinite(x).sum())
    if bad:
        raise ValueError(f"inputs: {bad} value{'s are' if bad > 1 else ' is'} NaN or infinite; an encoded input must "
                         "be finite")
    return x


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
    arr = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if arr.shape != (n_samples,):
        raise ValueError(f"labels: shape {arr.shape} should be ({n_samples},)")
    if arr.size and (arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr)))):
        raise ValueError(f"labels: {arr.dtype} values must be integer class indices (got e.g. {arr[0]!r})")
    if arr.size and arr.min() < 0:
        raise ValueError(f"labels: class indices must be >= 0 (got {int(arr.min())})")
    return arr.astype(np.int64)


def _per_layer(compression, model: nn.Module) -> dict[str, dict]:
    """{"layer_bits", "layer_storage", "state_bits"} from a CompressionResult, its asdict form or None. Raises
    TypeError for anything else, and ValueError naming the entry for a setting that is not a dict, a key that
    names no module of `model` (a typo or an int key would be ignored silently), bits that are not an integer in
    1..32 (4.5 or True) or an unknown storage format."""
    if compression is None:
        return {"layer_bits": {}, "layer_storage": {}, "state_bits": {}}
    if not isinstance(compression, dict) and not hasattr(compression, "weight_bits"):
        raise TypeError(f"compression: got {type(compression).__name__}, expected a CompressionResult, its "
                        "dataclasses.asdict form or None")
    get = compression.get if isinstance(compression, dict) else lambda key: getattr(compression, key, None)
    modules = {name for name, _ in model.named_modules() if name}
    out = {}
    for key, field_name in (("layer_bits", "weight_bits"), ("layer_storage", "storage"), ("state_bits", "state_bits")):
        table = get(field_name) or {}
        if not isinstance(table, dict):
            raise ValueError(f"compression.{field_name}: {type(table).__name__} {table!r:.40}; expected a dict "
                             "{module name: value}")
        for layer_name in table:
            if layer_name not in modules:
                names = sorted(modules)
                raise ValueError(f"compression.{field_name}[{layer_name!r}]: no module of the model is named "
                                 f"{layer_name!r} (module names: {', '.join(names[:12])}{', ...' * (len(names) > 12)})")
        out[key] = dict(table)
    for key, field_name in (("layer_bits", "weight_bits"), ("state_bits", "state_bits")):
        for layer_name, bits in out[key].items():
            if not is_int(bits) or not 1 <= bits <= 32:
                raise ValueError(f"compression.{field_name}[{layer_name!r}]: {bits!r} must be an integer in 1..32")
    for layer_name, fmt in out["layer_storage"].items():
        if fmt not in STORAGE_FORMATS:
            raise ValueError(f"compression.storage[{layer_name!r}]: {fmt!r} is not one of {', '.join(STORAGE_FORMATS)}")
    return out
