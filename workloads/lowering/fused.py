"""Fused recording of SpikingJelly's IF and LIF nodes (workloads.lowering.node_kernel): while the recorder runs, a
node's multi-step forward computes its spikes, final potential and activity rows in one compiled pass instead of
SpikingJelly's per-timestep torch loop plus store_v_seq's stacked potentials read again by the activity hook.
Spikes and potentials are the node's own bit for bit (tests/workloads/test_fused_nodes.py checks them against
SpikingJelly); inputs the kernel does not cover take the node's own forward.
"""
from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from workloads.lowering.node_kernel import IF, LIF, LIF_DECAY_INPUT, PLIF, PLIF_DECAY_INPUT, node_rows

#: neurons per thread below which a node runs on the caller's thread only
_SPLIT_NEURONS = 1 << 15


def fusable(module: nn.Module) -> bool:
    """True for a SpikingJelly IFNode, LIFNode or ParametricLIFNode (exactly those classes, with their own forward:
    a subclass or an instance's replaced forward may change the dynamics) in multi-step mode with the default
    float32 precision, float threshold, reset and tau, and a PLIF's one shared w."""
    if type(module) not in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode) or module.step_mode != "m":
        return False
    if isinstance(module, neuron.ParametricLIFNode) and not (torch.is_tensor(module.w) and module.w.numel() == 1):
        return False
    if "forward" in module.__dict__ or "multi_step_forward" in module.__dict__:
        return False
    if getattr(module, "_neuron_precision", None) is not None:
        return False
    numbers = [module.v_threshold, module.v_reset, getattr(module, "tau", 2.0)]
    return all(v is None or isinstance(v, (int, float)) for v in numbers) and module.v_threshold is not None


class Shadow:
    """Base of a callable set as the instance attribute `attr` of `self.module` for the recording, over the
    class's method of that name (install), and taken away again (remove), which gives the module its own back."""

    attr = "forward"
    module: nn.Module

    def install(self) -> None:
        """Shadow the module's method `attr` with this callable."""
        self.module.__dict__[self.attr] = self

    def remove(self) -> None:
        """Give the module its own method back."""
        self.module.__dict__.pop(self.attr, None)


class FusedForward(Shadow):
    """Callable set as a fusable node's `multi_step_forward` for the recording (install / remove): on a CPU
    float32 C-contiguous x_seq (T, B, ...) with the node's potential a float or a float32 tensor of one step's
    shape, it returns the spikes (T, B, ...) float32, sets the node's v to the final potential and v_seq to None,
    and leaves the activity rows bool (T + 1, B, ...) (without the initial potential's term of row 0, see
    workloads.lowering.activity.node_activity) in `rows[pop]`; any other input goes to the node's own forward.

    run: fn(call, ranges) that runs call on each range (workloads.lowering.jobs.Jobs.map), workers: its threads.
    """

    attr = "multi_step_forward"

    def __init__(self, module: nn.Module, pop: str, rows: dict, run=None, workers: int = 1):
        self.module, self.pop, self.rows, self.run, self.workers = module, pop, rows, run, workers
        self.own = type(module).multi_step_forward.__get__(module)

    def __call__(self, x_seq: torch.Tensor, *args, **kwargs):
        """The node's multi-step forward on x_seq (see the class)."""
        v0 = self._initial(x_seq) if not args and not kwargs else None
        if v0 is None:
            return self.own(x_seq, *args, **kwargs)
        m, n_t = self.module, x_seq.shape[0]
        x = x_seq.detach().numpy().reshape(n_t, -1)
        kind, factor = _charge(m)
        parts = min(self.workers, max(1, x.shape[1] // _SPLIT_NEURONS))
        spikes, v, act = node_rows(x, v0, kind, factor, float(m.v_threshold),
                                   None if m.v_reset is None else float(m.v_reset), parts, self.run)
        step = tuple(x_seq.shape[1:])
        m.v = torch.from_numpy(v).reshape(step)
        m.v_seq = None
        self.rows[self.pop] = torch.from_numpy(act).reshape((n_t + 1,) + step)
        return torch.from_numpy(spikes).reshape(x_seq.shape)

    def _initial(self, x_seq: torch.Tensor) -> np.ndarray | None:
        """float32 (n,) potential before the run as SpikingJelly materializes it (a float filled in, a tensor of
        one step's shape as it is), or None when the fused path does not apply."""
        if x_seq.device.type != "cpu" or x_seq.dtype != torch.float32 or x_seq.dim() < 2 or x_seq.shape[0] < 1 \
                or not x_seq.is_contiguous() or x_seq.requires_grad or x_seq[0].numel() == 0:
            return None
        v = self.module.v
        n = x_seq[0].numel()
        if isinstance(v, float):
            return np.full(n, v, np.float32)
        if torch.is_tensor(v) and v.shape == x_seq.shape[1:] and v.dtype == torch.float32 \
                and v.device.type == "cpu" and not v.requires_grad:
            return v.detach().reshape(-1).numpy()
        return None


def _charge(m: nn.Module) -> tuple[int, float]:
    """(node_kernel charge kind, its factor) of a fusable node: IF; LIF with tau; PLIF with sigmoid(w) as
    SpikingJelly computes it (w.float().sigmoid(), float32)."""
    if isinstance(m, neuron.IFNode):
        return IF, 0.0
    if isinstance(m, neuron.ParametricLIFNode):
        k = float(m.w.detach().float().sigmoid().cpu())
        return (PLIF_DECAY_INPUT if m.decay_input else PLIF), k
    return (LIF_DECAY_INPUT if m.decay_input else LIF), float(m.tau)
