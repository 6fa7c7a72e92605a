"""Spiking neuron factory and the membrane potential before reset (H[t]) of SpikingJelly IF/LIF nodes.

SpikingJelly's fused multi-step kernels only expose the potential after reset (`v_seq`); pruning by membrane
potential (SCA) needs H[t], so `charge_sequence` replays the node's charge equation from its input and spikes.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
from spikingjelly.activation_based import neuron, surrogate

SpikingNode = Union[neuron.IFNode, neuron.LIFNode]


def _make_if(tau: float, v_threshold: float) -> neuron.IFNode:
    """IF node: H[t] = V[t-1] + X[t]; hard reset to 0; ATan surrogate; multi-step; `tau` is ignored."""
    return neuron.IFNode(v_threshold=float(v_threshold), surrogate_function=surrogate.ATan(),
                         detach_reset=True, step_mode="m")


def _make_lif(tau: float, v_threshold: float) -> neuron.LIFNode:
    """LIF node: H[t] = V[t-1] + (X[t] - V[t-1]) / tau (decay_input); hard reset to 0; ATan surrogate; multi-step."""
    return neuron.LIFNode(tau=float(tau), v_threshold=float(v_threshold), surrogate_function=surrogate.ATan(),
                          detach_reset=True, step_mode="m")


NEURONS: dict[str, Callable[[float, float], SpikingNode]] = {"IF": _make_if, "LIF": _make_lif}


def make_neuron(name: str, tau: float = 2.0, v_threshold: float = 1.0) -> SpikingNode:
    """Build a multi-step SpikingJelly neuron layer `name` (a key of NEURONS). tau must be > 1 for LIF.

    Raises ValueError for an unknown name, tau <= 1 (LIF) or v_threshold <= 0.
    """
    if name not in NEURONS:
        raise ValueError(f"neuron must be one of {sorted(NEURONS)}, got {name!r}")
    if name == "LIF" and not tau > 1.0:
        raise ValueError(f"tau must be > 1 for LIF, got {tau}")
    if not v_threshold > 0:
        raise ValueError(f"v_threshold must be > 0, got {v_threshold}")
    return NEURONS[name](tau, v_threshold)


def _charge_if(node: neuron.IFNode, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IF charge (SpikingJelly IFNode): H = V + X."""
    return v + x


def _charge_lif(node: neuron.LIFNode, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LIF charge (SpikingJelly LIFNode): decay_input H = V + (X - (V - V_reset))/tau, else H = V - (V - V_reset)/tau + X."""
    v_reset = 0.0 if node.v_reset is None else node.v_reset
    if node.decay_input:
        return v + (x - (v - v_reset)) / node.tau
    return v - (v - v_reset) / node.tau + x


CHARGE: dict[type, Callable[..., torch.Tensor]] = {neuron.IFNode: _charge_if, neuron.LIFNode: _charge_lif}


def charge_sequence(node: SpikingNode, x_seq: torch.Tensor, spikes: torch.Tensor,
                    v0: Union[float, torch.Tensor] = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay a node's dynamics: membrane potential before reset H and after reset V, both shaped like x_seq (T, N, ...).

    x_seq: the node's input current; spikes: the spikes it emitted (same shape), used for the reset so the replay
    follows the node exactly; v0: potential before t=0 (V_reset after `reset_net`). Reset as in SpikingJelly:
    hard V = S*V_reset + (1-S)*H, soft V = H - theta*S. Raises ValueError for node types outside CHARGE.
    """
    charge = CHARGE.get(type(node))
    if charge is None:
        raise ValueError(f"node must be one of {[c.__name__ for c in CHARGE]}, got {type(node).__name__}")
    v = torch.as_tensor(v0, dtype=x_seq.dtype, device=x_seq.device).expand_as(x_seq[0])
    h_seq, v_seq = [], []
    for x, s in zip(x_seq, spikes):
        h = charge(node, x, v)
        v = h - node.v_threshold * s if node.v_reset is None else s * node.v_reset + (1.0 - s) * h
        h_seq.append(h)
        v_seq.append(v)
    return torch.stack(h_seq), torch.stack(v_seq)
