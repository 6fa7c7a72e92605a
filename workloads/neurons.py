"""Spiking neuron factory (IF, LIF, PLIF, sLIF, QLIF; binary or ternary spikes), the two-state CubaLIFNode
(imported NIR CubaLIF / snnTorch Synaptic) and the replay of a node's membrane
potential before reset H[t], which SCA pruning needs (SpikingJelly's fused kernels only expose V after reset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

RESETS = ("hard", "soft")
#: any node make_neuron builds (kept for callers of the former IF/LIF union)
SpikingNode = neuron.BaseNode


@dataclass(frozen=True)
class NeuronOptions:
    """Options beyond (tau, v_threshold). ternary: spikes in {-1, 0, 1} (+1 when H >= theta, -1 when H <= -theta;
    QT-SNN, arXiv 2407.05310); reset: "hard" (V = 0 after any spike, the default) or "soft" (V = H - theta*S, so a
    -1 spike adds theta); bits: QLIF state bits (default 8); shape: sLIF per-neuron threshold shape (None: sized
    on the first forward from the input's per-sample shape)."""

    ternary: bool = False
    reset: str = "hard"
    bits: Optional[int] = None
    shape: Optional[tuple[int, ...]] = None


def _fire(h: torch.Tensor, theta, sg: Callable, ternary: bool) -> torch.Tensor:
    """Heaviside with surrogate gradient: S = sg(H - theta), or sg(H - theta) - sg(-H - theta) when ternary."""
    spike = sg(h - theta)
    return spike - sg(-h - theta) if ternary else spike


class DecayNode(neuron.BaseNode):
    """Multi-step LIF without input decay: H[t] = decay * V[t-1] + X[t]; spike when H >= theta (ATan surrogate);
    reset hard (V = (1 - |S|) * H, V_reset = 0) or soft (V = H - theta * S), reset branch detached.

    decay = 1 - 1/tau (tau = 2 gives the 0.5 of QP-SNN, Wei et al. ICLR 2025, and Q-SNN). Shapes: input and output
    (T, N, *). Base of SLIFNode and QLIFNode; subclasses change `threshold()` and `after_reset()`.
    """

    def __init__(self, tau: float, v_threshold: float, options: NeuronOptions):
        super().__init__(v_threshold=float(v_threshold), v_reset=0.0 if options.reset == "hard" else None,
                         surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")
        self.tau, self.decay, self.ternary = float(tau), 1.0 - 1.0 / float(tau), bool(options.ternary)

    def threshold(self, x: torch.Tensor) -> Union[float, torch.Tensor]:
        """Firing threshold for a step input x (N, *): the float v_threshold here."""
        return self.v_threshold

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H = decay * V + X."""
        return self.decay * v + x

    def after_reset(self, v: torch.Tensor) -> torch.Tensor:
        """Transform of the potential after the reset (identity here; QLIF quantizes)."""
        return v

    def reset_potential(self, h: torch.Tensor, spike: torch.Tensor, theta) -> torch.Tensor:
        """V after the reset of H by `spike` (detached), then `after_reset`."""
        s = spike.detach()
        v = h - theta * s if self.v_reset is None else (1.0 - s.abs()) * h + s.abs() * self.v_reset
        return self.after_reset(v)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        """SpikingJelly 2.0 functional step: ((x,), (v,)) -> ((spike,), (v_next,))."""
        x, v = inputs[0], states[0]
        theta = self.threshold(x)
        h = self.charge(x, v)
        spike = _fire(h, theta, self.surrogate_function, self.ternary)
        return (spike,), (self.reset_potential(h, spike, theta), *states[1:])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, ternary={self.ternary}"


class SLIFNode(DecayNode):
    """sLIF (Sun, Cai et al., arXiv 2508.01992, form of its predecessor): DecayNode whose threshold `theta` is a
    learnable nn.Parameter per neuron (shape = the per-sample shape of the input, e.g. (C, H, W) or (L, D)),
    initialised to v_threshold; hard reset; ATan surrogate. With options.shape None the parameter is an
    nn.UninitializedParameter materialised on the first forward (build the optimizer after one forward pass).
    """

    def __init__(self, tau: float, v_threshold: float, options: NeuronOptions):
        super().__init__(tau, v_threshold, options)
        if options.shape is None:
            self.theta = nn.UninitializedParameter()
        else:
            self.theta = nn.Parameter(torch.full(tuple(options.shape), float(v_threshold)))
        self.register_load_state_dict_pre_hook(_materialize_from_state)

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """theta (per neuron), materialised to x.shape[1:] on first use. Raises ValueError on a shape mismatch."""
        if isinstance(self.theta, nn.parameter.UninitializedParameter):
            self.theta.materialize(tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
            with torch.no_grad():
                self.theta.fill_(self.v_threshold)
        if tuple(self.theta.shape) != tuple(x.shape[1:]):
            raise ValueError(f"input per-sample shape {tuple(x.shape[1:])} != theta shape {tuple(self.theta.shape)}")
        return self.theta


def _materialize_from_state(module, state_dict, prefix, *args) -> None:
    """Load hook: size a still-uninitialised theta from the checkpoint before it is copied in."""
    key = prefix + "theta"
    if key in state_dict and isinstance(module.theta, nn.parameter.UninitializedParameter):
        module.theta.materialize(tuple(state_dict[key].shape))


def quantize_state(u: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform symmetric b-bit quantization scaled by max|u| per sample (Q-SNN, Wei et al., ACM MM 2024).

    u: (N, *). step s = max|u| / (2^(b-1) - 1) over each sample's neurons; Q(u) = s * round(u / s), so each
    sample holds at most 2^b - 1 levels. Straight-through gradient (identity). All-zero samples stay zero.
    Per-sample (not per-batch) scaling is our choice: a sample's result never depends on its batch-mates.
    """
    levels = 2 ** (bits - 1) - 1
    peak = u.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(u.dtype).tiny)
    step = (peak / levels).reshape(-1, *([1] * (u.dim() - 1)))
    return u + (torch.round(u.detach() / step) * step - u.detach())


class QLIFNode(DecayNode):
    """Q-SNN neuron (Wei et al., ACM MM 2024): DecayNode whose potential after each reset becomes
    V <- Q_b(tanh(V)) (`quantize_state`, straight-through), so the stored neuron state has b bits. Default b = 8."""

    def __init__(self, tau: float, v_threshold: float, options: NeuronOptions):
        super().__init__(tau, v_threshold, options)
        self.bits = 8 if options.bits is None else int(options.bits)

    def after_reset(self, v: torch.Tensor) -> torch.Tensor:
        """Q_b(tanh(V))."""
        return quantize_state(torch.tanh(v), self.bits)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bits={self.bits}"


class CubaLIFNode(neuron.BaseNode):
    """Current-based LIF (two states per neuron: synaptic current I and membrane potential V), multi-step:

        I[t] = I[t-1] - I[t-1] / tau_syn + X[t]
        H[t] = V[t-1] - (V[t-1] - V_reset) / tau + I[t]       (SpikingJelly's LIF form without input decay)

    spike when H >= theta (ATan surrogate); V = V_reset after a spike (hard) or H - theta (soft, v_reset None);
    I is not reset. Start: V = V_reset (0 for soft), I = 0. tau_syn, tau in timesteps (>= 1, > 1). This is the
    forward-Euler step of NIR's CubaLIF with X = (dt/tau_syn) w_in R (dt/tau_mem) x and v_leak = v_reset
    (workloads.exchange.nir_import) and snnTorch's Synaptic, syn = alpha syn + x, mem = beta mem + syn with
    alpha = 1 - 1/tau_syn, beta = 1 - 1/tau. With store_v_seq the run also keeps i_seq (I after each step), so
    the activity recording (workloads.lowering.activity) sees neurons that hold a current but no potential.
    Raises ValueError for tau_syn < 1, tau <= 1 or a non-finite threshold.
    """

    def __init__(self, tau_syn: float, tau: float, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 step_mode: str = "m"):
        if not 1.0 <= float(tau_syn) < float("inf") or not 1.0 < float(tau) < float("inf"):
            raise ValueError(f"CubaLIFNode: tau_syn {tau_syn} must be >= 1 and tau {tau} > 1 timesteps (finite)")
        super().__init__(v_threshold=float(v_threshold), v_reset=None if v_reset is None else float(v_reset),
                         surrogate_function=surrogate.ATan(), detach_reset=True, step_mode=step_mode)
        self.tau_syn, self.tau = float(tau_syn), float(tau)
        self.register_memory("i", 0.0)
        self.i_seq = None

    def materialize_states(self, inputs, states, step_mode):
        """(V, I) as tensors of one step's shape: V as BaseNode does, I zeros when it is not such a tensor."""
        v, i = super().materialize_states(inputs, states, step_mode)
        if not torch.is_tensor(i) or i.shape != v.shape:
            i = torch.zeros_like(v)
        return v, i

    def single_step_functional_forward(self, inputs, states, **kwargs):
        """((x,), (V, I)) -> ((spike,), (V_next, I_next))."""
        x, (v, i) = inputs[0], states
        i = i - i / self.tau_syn + x
        base = 0.0 if self.v_reset is None else self.v_reset
        h = v - (v - base) / self.tau + i
        spike = self.surrogate_function(h - self.v_threshold)
        s = spike.detach()
        v = h - self.v_threshold * s if self.v_reset is None else (1.0 - s) * h + s * self.v_reset
        return (spike,), (v, i)

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        """Step through x_seq (T, N, *); with store_v_seq keep v_seq and i_seq (T, N, *)."""
        states = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        spikes, vs, cs = [], [], []
        for x in x_seq:
            (spike,), states = self.single_step_functional_forward((x,), states)
            spikes.append(spike)
            vs.append(states[0])
            cs.append(states[1])
        self.v, self.i = states
        if self.store_v_seq:
            self.v_seq, self.i_seq = torch.stack(vs), torch.stack(cs)
        return torch.stack(spikes)

    def reset(self):
        super().reset()
        self.i_seq = None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau_syn={self.tau_syn}, tau={self.tau}"


def _sj_kwargs(v_threshold: float, o: NeuronOptions) -> dict:
    return dict(v_threshold=float(v_threshold), v_reset=0.0 if o.reset == "hard" else None,
                surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")


def _make_if(tau: float, v_threshold: float, o: NeuronOptions) -> neuron.BaseNode:
    """IF (SpikingJelly IFNode / TernaryIFNode): H[t] = V[t-1] + X[t]; `tau` is ignored."""
    return (neuron.TernaryIFNode if o.ternary else neuron.IFNode)(**_sj_kwargs(v_threshold, o))


def _make_lif(tau: float, v_threshold: float, o: NeuronOptions) -> neuron.BaseNode:
    """LIF (SpikingJelly LIFNode / TernaryLIFNode, decay_input): H[t] = V[t-1] + (X[t] - V[t-1]) / tau."""
    return (neuron.TernaryLIFNode if o.ternary else neuron.LIFNode)(tau=float(tau), **_sj_kwargs(v_threshold, o))


def _make_plif(tau: float, v_threshold: float, o: NeuronOptions) -> neuron.ParametricLIFNode:
    """PLIF (Fang et al., ICCV 2021; SpikingJelly ParametricLIFNode): LIF with learnable 1/tau = sigmoid(w)."""
    return neuron.ParametricLIFNode(init_tau=float(tau), **_sj_kwargs(v_threshold, o))


#: kind -> (builder(tau, v_threshold, options), options the kind accepts besides reset)
NEURONS: dict[str, tuple[Callable[..., neuron.BaseNode], tuple[str, ...]]] = {
    "IF": (_make_if, ("ternary",)), "LIF": (_make_lif, ("ternary",)), "PLIF": (_make_plif, ()),
    "sLIF": (SLIFNode, ("ternary", "shape")), "QLIF": (QLIFNode, ("ternary", "bits")),
}
_DEFAULTS = NeuronOptions()


def make_neuron(name: str, tau: float = 2.0, v_threshold: float = 1.0, *, ternary: bool = False,
                reset: str = "hard", bits: Optional[int] = None,
                shape: Optional[Sequence[int]] = None) -> neuron.BaseNode:
    """Build a multi-step (step_mode "m") spiking neuron layer `name`, a key of NEURONS; input/output (T, N, *).

    tau: time constant in timesteps (> 1 for every kind but IF; LIF/PLIF use SpikingJelly's decay_input form,
    sLIF/QLIF the decay 1 - 1/tau); v_threshold > 0 (initial threshold for sLIF). Options (see NeuronOptions):
    ternary (IF, LIF, sLIF, QLIF), reset "hard"/"soft" (all), bits in 2..16 (QLIF), shape (sLIF).
    All kinds: ATan surrogate, detached reset, V_reset = 0.
    Raises ValueError naming the field for an unknown name, an option the kind does not accept, or a bad value.
    """
    if name not in NEURONS:
        raise ValueError(f"neuron must be one of {sorted(NEURONS)}, got {name!r}")
    build, accepted = NEURONS[name]
    if not isinstance(ternary, bool):  # bool("false") would be True
        raise ValueError(f"ternary must be true or false, got {ternary!r}")
    opts = NeuronOptions(bool(ternary), reset, bits, None if shape is None else tuple(int(s) for s in shape))
    for field in ("ternary", "bits", "shape"):
        if getattr(opts, field) != getattr(_DEFAULTS, field) and field not in accepted:
            raise ValueError(f"{field}: not accepted by neuron {name!r} (accepts {', '.join(accepted) or 'none'})")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {list(RESETS)}, got {reset!r}")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16):
        raise ValueError(f"bits must be an integer in 2..16, got {bits!r}")  # 2.7 became 2 bits
    if name != "IF" and not (tau > 1.0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a finite number > 1 for {name}, got {tau}")
    if not (v_threshold > 0 and math.isfinite(v_threshold)):
        raise ValueError(f"v_threshold must be a finite number > 0, got {v_threshold}")  # inf never fires
    return build(float(tau), float(v_threshold), opts)


def _charge_if(node, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IF charge (SpikingJelly IFNode): H = V + X."""
    return v + x


def _charge_lif(node, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LIF charge (SpikingJelly LIFNode): decay_input H = V + (X - (V - V_reset))/tau,
    else H = V - (V - V_reset)/tau + X."""
    v_reset = 0.0 if node.v_reset is None else node.v_reset
    if node.decay_input:
        return v + (x - (v - v_reset)) / node.tau
    return v - (v - v_reset) / node.tau + x


def _charge_plif(node: neuron.ParametricLIFNode, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PLIF charge: as LIF with 1/tau = sigmoid(w) (Fang et al., ICCV 2021)."""
    v_reset = 0.0 if node.v_reset is None else node.v_reset
    k = node.w.detach().sigmoid()
    return v + (x - (v - v_reset)) * k if node.decay_input else v - (v - v_reset) * k + x


def _reset_sj(node, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """SpikingJelly reset: hard V = |S|*V_reset + (1-|S|)*H (|S| = S for binary spikes), soft V = H - theta*S."""
    if node.v_reset is None:
        return h - node.v_threshold * s
    return s.abs() * node.v_reset + (1.0 - s.abs()) * h


#: node type -> (charge(node, x, v) -> H, reset(node, H, S) -> V)
REPLAY: dict[type, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    neuron.IFNode: (_charge_if, _reset_sj), neuron.TernaryIFNode: (_charge_if, _reset_sj),
    neuron.LIFNode: (_charge_lif, _reset_sj), neuron.TernaryLIFNode: (_charge_lif, _reset_sj),
    neuron.ParametricLIFNode: (_charge_plif, _reset_sj),
    SLIFNode: (lambda n, x, v: n.charge(x, v), lambda n, h, s: n.reset_potential(h, s, n.theta.detach())),
    QLIFNode: (lambda n, x, v: n.charge(x, v), lambda n, h, s: n.reset_potential(h, s, n.v_threshold)),
}


def charge_sequence(node: neuron.BaseNode, x_seq: torch.Tensor, spikes: torch.Tensor,
                    v0: Union[float, torch.Tensor] = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay a node's dynamics: potential before reset H and after reset V, both shaped like x_seq (T, N, ...).

    x_seq: the node's input current; spikes: the spikes it emitted (same shape), used for the reset so the replay
    follows the node exactly; v0: potential before t=0 (V_reset after `reset_net`). Charge and reset per node type
    in REPLAY (SpikingJelly's equations for IF/LIF/PLIF and their ternary forms; the nodes' own methods for
    sLIF/QLIF). Raises ValueError for node types outside REPLAY.
    """
    rules = REPLAY.get(type(node))
    if rules is None:
        raise ValueError(f"node must be one of {[c.__name__ for c in REPLAY]}, got {type(node).__name__}")
    charge, reset = rules
    v = torch.as_tensor(v0, dtype=x_seq.dtype, device=x_seq.device).expand_as(x_seq[0])
    h_seq, v_seq = [], []
    for x, s in zip(x_seq, spikes):
        h = charge(node, x, v)
        v = reset(node, h, s)
        h_seq.append(h)
        v_seq.append(v)
    return torch.stack(h_seq), torch.stack(v_seq)
