"""Neuron activity and predictions recorded while a lowered model runs (hwmodels.activity): which neurons a
time-stepped chip updates at each timestep, one batch at a time, next to the spikes of workloads.lowering.

A neuron of a spiking-node population is active at timestep t when its input current x[t] is non-zero (the
node's input, folded biases included) or its membrane potential before the step differs from rest (v_reset for a
hard reset, 0 for a soft one; before step 0 the node's initial v); a neuron that spiked at t is active at t. Row
n_timesteps marks the neurons whose potential after the last step differs from rest. The potentials are the
nodes' own: SpikingJelly's `store_v_seq` (v_seq = the potential after each step's reset, for IF/LIF/PLIF, their
ternary forms and the workloads.neurons nodes, which run through BaseNode's functional step), switched on for
the recording and restored after. Max-pool OR populations and relays are active where they emit a non-zero
value; the non-spiking readout "output" (an IF without threshold) where its input current or its accumulated
potential is non-zero. A two-state node (workloads.neurons.CubaLIFNode) is also active while its synaptic current
before the step is non-zero (current_activity; its i_seq, kept with store_v_seq).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from hwmodels.activity import pack
from hwmodels.trace import Population
from workloads.lowering.activity_kernel import activity_rows
from workloads.lowering.fused import FusedForward, fusable

#: fn(tensor (T', B, ...), module args) -> (T', B, ...) whose C order is the population's neuron numbering (read
#: as (T', B, n); workloads.lowering.values.layout_fn)
Layout = Callable[[torch.Tensor, tuple], torch.Tensor]


@dataclass
class Probes:
    """What the trace recorder reads while the model runs.

    spikes: {population: module whose forward output is its (T, B, ...) or (T*B, ...) spikes or values};
    nodes: {population: (spiking node, layout fn)} of the populations driven by a SpikingJelly node (their
    activity comes from the node's input and potentials); readout: layout fn of the model output when it is the
    input current of the readout "output" (else None). Populations in `spikes` but not in `nodes` (max-pool,
    relays) are active where their value is non-zero.
    """

    spikes: dict[str, nn.Module]
    nodes: dict[str, tuple[nn.Module, Layout]] = field(default_factory=dict)
    readout: Layout | None = None


def node_activity(x: torch.Tensor, v0, v_seq: torch.Tensor, spikes: torch.Tensor,
                  v_reset: float | None) -> torch.Tensor:
    """bool (T + 1, B, ...) activity of one spiking node: rows t < T: x[t] != 0, or the potential before step t
    (v0 at t = 0, v_seq[t - 1] after) != rest, or a spike at t; row T: v_seq[T - 1] != rest.

    x, v_seq, spikes: (T, B, ...) input current, potential after each step's reset, output; v0: the node's v
    before the run (float, or a tensor of one step's shape; another shape means rest, as SpikingJelly resets it).
    CPU float32/float64 tensors are compared by numpy on their own memory (the same IEEE != as torch's, faster;
    the result shares the numpy array's memory), other ones by torch.
    """
    rest = 0.0 if v_reset is None else float(v_reset)
    arrays = [_numpy_view(t) for t in (x, v_seq, spikes)]
    if any(a is None for a in arrays):
        return node_activity_torch(x, v0, v_seq, spikes, rest)
    out = torch.from_numpy(_node_activity_numpy(*arrays, rest))
    _first_row(out, v0, x.shape[1:], rest)
    return out


def _numpy_view(t: torch.Tensor) -> np.ndarray | None:
    """numpy view (no copy) of a CPU float32/float64 tensor, else None."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return t.detach().numpy()
    return None


def _node_activity_numpy(x: np.ndarray, v_seq: np.ndarray, spikes: np.ndarray, rest: float) -> np.ndarray:
    """node_activity's rows of numpy arrays, without the initial potential (see _first_row): one compiled pass
    (workloads.lowering.activity_kernel) when the three are C-contiguous arrays of one shape, else numpy's."""
    if x.shape == v_seq.shape == spikes.shape and x.shape[0] > 0 and all(a.flags.c_contiguous
                                                                        for a in (x, v_seq, spikes)):
        return activity_rows(x, v_seq, spikes, rest)
    n_t = x.shape[0]
    out = np.empty((n_t + 1,) + x.shape[1:], bool)
    np.not_equal(x, 0, out=out[:n_t])
    out[:n_t] |= np.not_equal(spikes, 0)
    out[1:n_t] |= np.not_equal(v_seq[:-1], rest)
    np.not_equal(v_seq[-1], rest, out=out[n_t])
    return out


def node_activity_torch(x: torch.Tensor, v0, v_seq: torch.Tensor, spikes: torch.Tensor,
                        rest: float) -> torch.Tensor:
    """node_activity computed with torch ops (any device and dtype); the reference the numpy path of CPU tensors
    is checked against. Returns bool (T + 1, ...) as node_activity."""
    n_t = x.shape[0]
    out = torch.empty((n_t + 1,) + tuple(x.shape[1:]), dtype=torch.bool, device=x.device)
    torch.ne(x, 0, out=out[:n_t])
    out[:n_t].logical_or_(spikes != 0)
    out[1:n_t].logical_or_(v_seq[:-1] != rest)
    torch.ne(v_seq[-1], rest, out=out[n_t])
    _first_row(out, v0, x.shape[1:], rest)
    return out


def _first_row(out: torch.Tensor, v0, step_shape, rest: float) -> None:
    """OR into row 0 of `out` the neurons whose potential before the run, v0, differs from rest (v0: a tensor of
    one step's shape, or a float; a tensor of another shape is stale and SpikingJelly replaces it by rest)."""
    if torch.is_tensor(v0) and v0.shape == step_shape:
        out[0].logical_or_(v0.to(out.device) != rest)
    elif not torch.is_tensor(v0) and float(v0) != rest:
        out[0] = True


def current_activity(i0, i_seq: torch.Tensor) -> torch.Tensor:
    """bool (T + 1, B, ...) of a two-state node's synaptic current: rows t < T: the current before step t (i0 at
    t = 0: a tensor of one step's shape, else zero) != 0; row T: i_seq[T - 1] != 0."""
    first = (i0 != 0).unsqueeze(0) if torch.is_tensor(i0) and i0.shape == i_seq.shape[1:] else \
        torch.zeros_like(i_seq[:1], dtype=torch.bool)
    return torch.cat([first, i_seq != 0])


def _with_current(act: torch.Tensor, i0, i_seq) -> torch.Tensor:
    """`act` OR the current activity when the node keeps a current sequence (i_seq a tensor), else `act`."""
    return act | current_activity(i0, i_seq) if torch.is_tensor(i_seq) else act


def value_activity(values: torch.Tensor) -> torch.Tensor:
    """bool (T + 1, B, n) activity of a max-pool or relay population from its (T, B, n) values: active where the
    value is non-zero; no state after the last step."""
    out = torch.zeros((values.shape[0] + 1,) + tuple(values.shape[1:]), dtype=torch.bool, device=values.device)
    torch.ne(values, 0, out=out[:-1])
    return out


def readout_activity(current: torch.Tensor) -> torch.Tensor:
    """bool (T + 1, B, ...) activity of the readout (IF, no threshold, potential = running sum of its input):
    active at t when the input current at t or the sum before t is non-zero; row T: the final sum is non-zero."""
    total = current.double().cumsum(0)
    before = torch.cat([torch.zeros_like(total[:1]), total[:-1]])
    return torch.cat([(current != 0) | (before != 0), total[-1:] != 0])


def predictions(y, n_t: int, n_b: int) -> np.ndarray | None:
    """int64 (B,) argmax over classes of the model output averaged over T when it is (T, B, n_classes), else None."""
    if not torch.is_tensor(y) or y.dim() != 3 or tuple(y.shape[:2]) != (n_t, n_b):
        return None
    return y.float().mean(0).argmax(1).cpu().numpy().astype(np.int64)


def packed(active: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 (B, T + 1, ceil(n / 8)) of a bool (T + 1, B, n) activity (hwmodels.activity layout): packed in its
    own (T + 1, B) order, then the 8x smaller packed rows are transposed (the same bytes as packing the
    transposed activity)."""
    a = active.cpu().numpy() if isinstance(active, torch.Tensor) else active
    return np.ascontiguousarray(pack(a).transpose(1, 0, 2))


def population_activity(pop: Population, mask: np.ndarray | None, rows: torch.Tensor | None, n_t: int,
                        n_b: int, flags: np.ndarray | None = None) -> np.ndarray | None:
    """uint8 (B, T + 1, ceil(size / 8)) packed activity of one population in one batch: a spiking node's recorded
    rows (T + 1, B, ...), else (max-pool, relays) where its values are non-zero, `mask` (T * B, size), the event
    mask of workloads.lowering.events.event_mask (the same test as value_activity), or `flags` (T * B,
    ceil(size / 8)), that mask already packed (workloads.lowering.events.row_events), with no state after the last
    step; None for an input population. Raises ValueError when the activity does not have the population's size."""
    if rows is not None:
        return packed_rows(pop, rows, n_t, n_b)
    if pop.is_input:
        return None
    bits = pack(mask.reshape(n_t, n_b, mask.shape[1])) if flags is None else flags.reshape(n_t, n_b, -1)
    return np.ascontiguousarray(np.concatenate([bits, np.zeros_like(bits[:1])]).transpose(1, 0, 2))


def packed_rows(pop: Population, active: torch.Tensor, n_t: int, n_b: int) -> np.ndarray:
    """packed() of a bool (T + 1, B, ...) activity of population `pop`; ValueError when it does not have the
    population's size. The rows are reshaped by numpy: a token population's rows are a transposed view (its
    (D, L) neurons over (L, D) memory), which numpy copies in ~0.4 ns per neuron-step, torch's bool copy in 2-15
    (measured on (5, 4, 1536, 64) and (5, 4, 384, 64) views)."""
    act = active.cpu().numpy().reshape(n_t + 1, n_b, -1)
    if act.shape[2] != pop.size:
        raise ValueError(f"population {pop.name!r}: recorded activity of {act.shape[2]} neurons, expected {pop.size}")
    return packed(act)


class Capture:
    """Context manager that hands, for every forward of the model while active, the spikes/values of each
    population of `probes.spikes` (forward hooks) to `self.sink(population, values, rows)` as they are computed,
    rows being the activity (T + 1, B, ...) of a population of `probes.nodes` (None for others), the nodes running
    with store_v_seq, or fused when they are plain IF/LIF/PLIF nodes (workloads.lowering.fused: spikes, potential
    and activity in one compiled pass, split over the threads of `jobs`, a workloads.lowering.jobs.Jobs, for
    large nodes; the node's own forward is put back on exit); nothing is kept after the call (set `sink` before
    each forward, e.g. one per batch). Hooks are removed and store_v_seq restored on exit.

    A node in step_mode "s" (stepped by a recurrent container, one call per timestep) has its input, potential
    and output collected step by step instead; its rows are built when its population's spikes are stored.
    Raises ValueError when a node does not expose v_seq after a multi-step forward.
    """

    def __init__(self, probes: Probes, sink: Callable[[str, torch.Tensor, torch.Tensor | None], None] | None = None,
                 jobs=None):
        self.probes, self.sink, self.rows, self.jobs = probes, sink, {}, jobs
        self._handles, self._saved, self._inputs, self._steps = [], {}, {}, {}
        self._fused, self._fused_rows = [], {}

    def __enter__(self) -> "Capture":
        for pop, m in self.probes.spikes.items():
            self._handles.append(m.register_forward_hook(self._store(pop)))
        for pop, (m, fn) in self.probes.nodes.items():
            if getattr(m, "step_mode", "m") == "s":
                self._handles.append(m.register_forward_pre_hook(self._pre_step(pop)))
                self._handles.append(m.register_forward_hook(self._post_step(pop)))
                continue
            self._saved[pop] = m.store_v_seq
            m.store_v_seq = True
            if fusable(m):
                run, workers = (None, 1) if self.jobs is None else (self.jobs.map, self.jobs.workers)
                self._fused.append(FusedForward(m, pop, self._fused_rows, run, workers))
                self._fused[-1].install()
            self._handles.append(m.register_forward_pre_hook(self._pre(pop)))
            self._handles.append(m.register_forward_hook(self._post(pop, fn)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for pop, old in self._saved.items():
            self.probes.nodes[pop][0].store_v_seq = old
        for f in self._fused:
            f.remove()
        self._handles, self._saved, self._fused = [], {}, []
        self.clear()

    def clear(self) -> None:
        """Forget the last batch's tensors."""
        self.rows, self._inputs, self._steps = {}, {}, {}
        self._fused_rows.clear()

    def _store(self, pop: str):
        def hook(module, args, out) -> None:
            if pop in self._steps:
                self._finish_steps(pop)
            self.sink(pop, out, self.rows.pop(pop, None))
        return hook

    def _pre_step(self, pop: str):
        def hook(module, args) -> None:
            self._steps.setdefault(pop, []).append((args[0], module.v, getattr(module, "i", None)))
        return hook

    def _post_step(self, pop: str):
        def hook(module: neuron.BaseNode, args, out) -> None:
            x, v0, i0 = self._steps[pop][-1]
            i1 = getattr(module, "i", None)
            i1 = torch.as_tensor(i1).expand_as(x).clone() if i1 is not None else None
            self._steps[pop][-1] = (x, v0, torch.as_tensor(module.v).expand_as(x).clone(), out, i0, i1)
        return hook

    def _finish_steps(self, pop: str) -> None:
        """Rows (T + 1, B, n) of a single-step node from its collected steps (input, v before, v after, spikes)."""
        steps, (m, fn) = self._steps.pop(pop), self.probes.nodes[pop]
        x, v_seq, out = (torch.stack([s[i] for s in steps]) for i in (0, 2, 3))
        i_seq = torch.stack([s[5] for s in steps]) if steps[0][5] is not None else None
        act = _with_current(node_activity(x, steps[0][1], v_seq, out, m.v_reset), steps[0][4], i_seq)
        self.rows[pop] = fn(act, ())

    def _pre(self, pop: str):
        def hook(module, args) -> None:
            self._inputs[pop] = (args[0], module.v, getattr(module, "i", None))
        return hook

    def _post(self, pop: str, fn: Layout):
        def hook(module: neuron.BaseNode, args, out) -> None:
            x, v0, i0 = self._inputs.pop(pop)
            act = self._fused_rows.pop(pop, None)
            if act is not None:  # a fused IF/LIF node (no two-state current)
                _first_row(act, v0, x.shape[1:], 0.0 if module.v_reset is None else float(module.v_reset))
                self.rows[pop] = fn(act, args)
                return
            if not torch.is_tensor(module.v_seq) or module.v_seq.shape != x.shape:
                raise ValueError(f"population {pop!r}: {type(module).__name__} did not store v_seq of shape "
                                 f"{tuple(x.shape)} (store_v_seq); its activity cannot be recorded")
            act = node_activity(x, v0, module.v_seq, out, module.v_reset)
            self.rows[pop] = fn(_with_current(act, i0, getattr(module, "i_seq", None)), args)
        return hook
