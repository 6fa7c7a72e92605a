"""The trace recorder: runs the traced model on real tensors, batch by batch, with a probe at every population;
a forward hook turns each population's tensor into CSR events (workloads.lowering.events) and packed neuron
activity (workloads.lowering.activity) as soon as it is computed, so one forward pass per batch records the
EventTrace (spikes, activity, predictions) and no population's tensor is kept for later.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.fx as fx
from spikingjelly.activation_based import functional, neuron
from torch import nn

from hwmodels.trace import EventTrace, NetworkGraph
from workloads.lowering.activity import (Capture, Probes, packed_rows, population_activity, predictions,
                                         readout_activity)
from workloads.lowering.events import event_mask, mask_events, merge_events, row_events
from workloads.lowering.fused_pool import FusedPools
from workloads.lowering.jobs import Jobs
from workloads.lowering.rules_recurrent import recurrent_node
from workloads.lowering.sink import FolderSink, MemorySink


class _Probe(nn.Module):
    """Identity module: the recorder passes each population's tensor through one, where Capture's hook reads it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x unchanged."""
        return x


class Recorder(nn.Module):
    """Runs the traced graph of `model` on real tensors; captured values go through probes[population].

    captures: {population: (fx node name or module, fn(output, args))} (workloads.lowering.build.Build). Tensors
    are freed after their last use. train/eval mode mirrors the model's at construction.
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
        """The model's output on x, every captured population's values passed through its probe."""
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


def node_sources(model: nn.Module, fx_graph: fx.Graph, captures: dict) -> dict[str, tuple[nn.Module, object]]:
    """{population: (spiking node, layout fn)} of the captures taken from a SpikingJelly node's output (by fx
    node or by module hook), whose activity comes from the node itself (workloads.lowering.activity); a recurrent
    container's population from the node it steps."""
    calls = {n.name: model.get_submodule(n.target) for n in fx_graph.nodes if n.op == "call_module"}
    out = {}
    for pop, (where, fn) in captures.items():
        mod = where if isinstance(where, nn.Module) else calls.get(where)
        mod = recurrent_node(mod) or mod
        if isinstance(mod, neuron.BaseNode):
            out[pop] = (mod, fn)
    return out


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    t = next(iter(list(model.parameters()) + list(model.buffers())), None)
    return torch.device("cpu") if t is None else t.device


def record_trace(model: nn.Module, inputs: torch.Tensor, graph: NetworkGraph, probes: Probes,
                 labels: np.ndarray | None, batch_size: int, device=None, out: Path | None = None,
                 jobs: Jobs | None = None, fingerprint: Callable[[], str] | None = None,
                 recorded: Callable[[], None] | None = None) -> EventTrace:
    """Run `model` (a Recorder) on `inputs` (T, N, ...) in batches and collect every population's spikes as a CSR
    trace, with neuron activity and, when the model outputs (T, N, n_classes), predictions: one forward pass per
    batch, each population's tensor turned into CSR events (its rows split over `jobs`; None: a Jobs of its own)
    and packed activity by a forward hook as it is computed. Plain IF/LIF/PLIF nodes and MaxPool2d layers run
    compiled forwards meanwhile (workloads.lowering.fused, fused_pool: the same values bit for bit).

    probes: what to read while the model runs (workloads.lowering.activity.Probes); "input" (when the graph has
    it) is `inputs` itself; populations with no probe (the readout) get no events. The model goes back to its
    device and to each module's train/eval mode afterwards. out: None keeps the batches in memory; a trace folder
    (checked by workloads.lowering.sink.check_out) receives each batch as it is recorded (workloads.lowering.sink.
    FolderSink: complete or absent) and the trace returned is that folder, memory-mapped. fingerprint: returns
    graph.fingerprint() (None: graph.fingerprint), called by the sink as it finishes. recorded: called once, after
    the last batch's forward pass, before the sink takes that batch (workloads.lowering.engine.LateFit.start: work
    for the threads beside the last trace write; beside a forward pass it would slow torch's threads), or None.
    Raises ValueError when a recorded tensor does not have the population's size.
    """
    default = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(default if device is None else device)
    old_device, modes = _model_device(model), [(m, m.training) for m in model.modules()]
    n_t = inputs.shape[0]
    fingerprint = fingerprint or graph.fingerprint
    sink = MemorySink(graph, n_t, labels, fingerprint) if out is None else \
        FolderSink(out, graph, n_t, labels, fingerprint)
    own = jobs is None
    jobs = Jobs() if own else jobs
    try:
        model.to(dev).eval()
        with torch.no_grad(), Capture(probes, jobs=jobs) as cap, FusedPools(model, jobs):
            for lo in range(0, inputs.shape[1], batch_size):
                batch = _record_batch(model, inputs[:, lo:lo + batch_size].to(dev), graph, probes, cap, jobs)
                if recorded is not None and lo + batch_size >= inputs.shape[1]:
                    recorded()  # after the last forward pass: beside the last write, never beside a forward
                if lo == 0:
                    check_label_range(labels, batch["classes"])
                sink.add(lo, batch)
                del batch  # a folder sink wrote it: its arrays go now, not at the next batch's assignment
        functional.reset_net(model)
        return sink.finish()
    except BaseException:
        sink.abort()
        raise
    finally:
        if own:
            jobs.close()
        model.to(old_device)
        for m, training in modes:  # each module's own mode (a wrapper in train mode may hold eval submodules)
            m.training = training


class BatchRecord:
    """The recording of one batch of B samples and T timesteps, filled by Capture's hooks while the model runs:
    events {population index in `graph`: Events} (each population's rows split over `jobs`) and activity
    {population: packed uint8 (B, T + 1, bytes)}."""

    def __init__(self, graph: NetworkGraph, n_t: int, n_b: int, jobs: Jobs):
        self.graph, self.n_t, self.n_b, self.jobs = graph, n_t, n_b, jobs
        self.with_values = any(p.graded for p in graph.populations.values())
        self.index = {name: i for i, name in enumerate(graph.populations)}
        self.events, self.activity = {}, {}

    def __call__(self, name: str, values: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Take population `name`'s values (T, B, ...) or (T*B, ...) and activity rows (T + 1, B, ...) or None."""
        pop = self.graph.populations.get(name)
        if pop is None:
            return
        graded = self.with_values and pop.graded  # values of graded populations: merge_events gives others 1.0
        fast = row_events(values, pop, self.n_t, self.n_b, graded, rows is None and not pop.is_input, self.jobs)
        if fast is None:  # another device or dtype, or token flags that do not end on a byte
            mask, vals = event_mask(values, pop, self.n_t, self.n_b, self.with_values)
            self.events[self.index[name]], flags = mask_events(mask, vals, graded, self.jobs), None
        else:
            (self.events[self.index[name]], flags), mask = fast, None
        act = population_activity(pop, mask, rows, self.n_t, self.n_b, flags)
        if act is not None:
            self.activity[name] = act

    def result(self, y, readout) -> dict:
        """{"csr": (counts, indices, values), "activity": {population: packed rows} in graph order, "predictions":
        int64 (B,) or None, "classes": n_classes of a (T, B, n_classes) output or None} once the model output y
        is known (readout: layout of y as the readout's current)."""
        output = self.graph.populations.get("output")
        if output is not None and readout is not None and "output" not in self.activity and not output.is_input:
            self.activity["output"] = packed_rows(output, readout_activity(readout(y, ())), self.n_t, self.n_b)
        return {"csr": merge_events(self.events, len(self.graph.populations), self.n_t, self.n_b,
                                    self.with_values),
                "activity": {n: self.activity[n] for n in self.graph.populations if n in self.activity},
                "predictions": predictions(y, self.n_t, self.n_b),
                "classes": int(y.shape[2]) if torch.is_tensor(y) and y.dim() == 3 else None}


def check_label_range(labels: np.ndarray | None, n_classes: int | None) -> None:
    """Refuse labels at or above the model's n_classes (its output (T, N, n_classes); None: no class output), a
    class no prediction can equal. A single output (a detector, whose labels may be 0/1) is not checked. Raises
    ValueError naming the range."""
    if labels is not None and labels.size and (n_classes or 0) >= 2 and int(labels.max()) >= n_classes:
        raise ValueError(f"labels: class index {int(labels.max())} is out of range for the model's "
                         f"{n_classes} outputs (accepted: 0..{n_classes - 1})")


def _record_batch(model: nn.Module, x: torch.Tensor, graph: NetworkGraph, probes: Probes, cap: Capture,
                  jobs: Jobs) -> dict:
    """One forward pass on x (T, B, ...) from reset, recorded by a BatchRecord (BatchRecord.result)."""
    record = BatchRecord(graph, *x.shape[:2], jobs)
    cap.sink = record
    functional.reset_net(model)
    y = model(x)
    if "input" in graph.populations:
        record("input", x, None)
    cap.clear()
    out = record.result(y, probes.readout)
    cap.sink = None  # the record's per-population events go now: the result holds them merged
    return out
