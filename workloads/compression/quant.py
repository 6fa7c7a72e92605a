"""Weight fake-quantizers with straight-through gradients (ReScaW b-bit, uniform b-bit, sign 1-bit), applied as
torch parametrizations (`layer.weight` then reads the quantized weight, the optimizer trains the latent one), and
the helpers that choose which layers get which quantizer, attach them and bake them into plain weights.

Every quantizer returns `value + (x - x.detach())`: the forward value is exactly the quantized level (so a channel
holds exactly the promised levels) and the backward pass sees d(x)/dW (the straight-through estimator).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

#: layer types whose `weight` a quantizer may replace
WEIGHT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _dims(w: torch.Tensor) -> tuple[int, ...]:
    """Dimensions reduced for per-output-channel statistics: all but the first."""
    return tuple(range(1, w.dim()))


def _check_bits(bits: int, lo: int = 1, hi: int = 16) -> int:
    if not lo <= int(bits) <= hi:
        raise ValueError(f"bits must be in {lo}..{hi}, got {bits!r}")
    return int(bits)


class ReScaW(nn.Module):
    """ReScaW b-bit weight quantization of QP-SNN (Wei et al., ICLR 2025, arXiv 2502.05905), per output channel:

        W^ = g * (2/s * round(s/2 * (clamp(W/g, -1, 1) + 1)) - 1),  s = 2^b - 1,  g = mean|W| over the channel.

    Each channel holds at most 2^b levels g*(2k/s - 1), k = 0..s. Gradient: straight-through where |W/g| <= 1,
    zero outside (the clamp). Open detail, our choice: g is treated as a constant in the backward pass
    (detached). w: (C_out, ...) -> same shape. bits in 1..16 (ValueError otherwise)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = _check_bits(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = 2 ** self.bits - 1
        g = w.detach().abs().mean(_dims(w), keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        c = torch.clamp(w / g, -1.0, 1.0)
        q = torch.round(s / 2 * (c.detach() + 1.0)) * (2.0 / s) - 1.0
        return g * (q + (c - c.detach()))

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class UniformQuant(nn.Module):
    """Symmetric uniform b-bit quantization per output channel: step = max|W| / (2^(b-1) - 1),
    W^ = step * round(W / step), identity straight-through gradient; at most 2^b - 1 levels per channel.
    Used for Q-SNN's 8-bit first conv and last FC (Wei et al., ACM MM 2024), whose 8-bit quantizer the paper
    does not spell out: this max-abs form is our choice. w: (C_out, ...) -> same shape. bits in 2..16."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = _check_bits(bits, lo=2)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        peak = w.detach().abs().amax(_dims(w), keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        step = peak / (2 ** (self.bits - 1) - 1)
        return torch.round(w.detach() / step) * step + (w - w.detach())

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def _pow2_scale(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Q-SNN scale: 2^round(log2 mean|W~|) of the standardised weights W~ (Wei et al., ACM MM 2024)."""
    m = z.abs().mean(_dims(z), keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    return torch.exp2(torch.round(torch.log2(m)))


def _l1_scale(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """mean|W - mean W| per channel: the XNOR-Net (Rastegari et al., ECCV 2016) L1 scale of the centred weights."""
    return (w - w.mean(_dims(w), keepdim=True)).abs().mean(_dims(w), keepdim=True)


SIGN_SCALES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"pow2": _pow2_scale,
                                                                                 "l1": _l1_scale}


class SignQuant(nn.Module):
    """1-bit weights per output channel: standardise W~ = (W - mean) / std, take sign(W~) (0 -> +1) and multiply
    by a per-channel scale: "pow2" = 2^round(log2 mean|W~|) (Q-SNN, Wei et al., ACM MM 2024) or "l1" =
    mean|W - mean| (BESTformer, Cao et al., IJCAI 2025, whose scale the summary leaves open: XNOR-Net's, our
    choice). Exactly two levels +-scale per channel. Identity straight-through gradient through the sign into
    the standardised weights (BESTformer's identity STE; Q-SNN's STE form is not given, the same choice).
    std is the population std (unbiased=False). w: (C_out, ...) -> same shape. ValueError for an unknown scale."""

    bits = 1

    def __init__(self, scale: str = "pow2"):
        super().__init__()
        if scale not in SIGN_SCALES:
            raise ValueError(f"scale must be one of {sorted(SIGN_SCALES)}, got {scale!r}")
        self.scale = scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = _dims(w)
        mean = w.mean(dims, keepdim=True)
        std = w.std(dims, keepdim=True, unbiased=False).clamp_min(torch.finfo(w.dtype).eps)
        z = (w - mean) / std
        alpha = SIGN_SCALES[self.scale](w.detach(), z.detach())
        sign = torch.where(z.detach() >= 0, 1.0, -1.0).to(w.dtype)
        return alpha * (sign + (z - z.detach()))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv1d/Conv2d/Linear of `model` in registration order (parametrized ones too)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]


def split_edges(model: nn.Module) -> tuple[list[str], list[str]]:
    """(edge, hidden) weight-layer names: edge = the first weight layer (the first conv of a conv net, the
    tokenizer's first conv of a Spikformer) and the last one (the classifier head), which the quantization papers
    keep at higher precision, plus every weight layer in a module the model names in `model.readouts` (a model
    with several classifier heads, e.g. BESTformer's head and head_kd); hidden = all others, in model order.
    Raises ValueError when the model has no weight layer."""
    names = [n for n, _ in weight_layers(model)]
    if not names:
        raise ValueError("model: has no Conv1d, Conv2d or Linear layer to quantize")
    readouts = tuple(getattr(model, "readouts", ()))
    heads = {n for n in names if any(n == r or n.startswith(r + ".") for r in readouts)}
    edge = sorted({names[0], names[-1]} | heads, key=names.index)
    return edge, [n for n in names if n not in edge]


def attach(model: nn.Module, plan: dict[str, nn.Module]) -> dict[str, int]:
    """Register plan[name] as the weight parametrization of module `name`, in place; returns {name: bits}.
    Raises ValueError when a name is not a weight layer or already parametrized."""
    layers = dict(weight_layers(model))
    for name, quantizer in plan.items():
        if name not in layers or parametrize.is_parametrized(layers[name], "weight"):
            raise ValueError(f"layer {name!r}: not an unquantized Conv1d/Conv2d/Linear of the model")
        parametrize.register_parametrization(layers[name], "weight", quantizer)
    return {name: int(q.bits) for name, q in plan.items()}


def edge_hidden_plan(model: nn.Module, hidden: Callable[[], nn.Module],
                     edge: Optional[Callable[[], nn.Module]] = None) -> dict[str, nn.Module]:
    """A fresh quantizer per layer: hidden() for the hidden weight layers, edge() (or none: full precision) for
    the first and last weight layers (`split_edges`)."""
    edges, hiddens = split_edges(model)
    plan = {name: hidden() for name in hiddens}
    if edge is not None:
        plan.update({name: edge() for name in edges})
    return plan


def bake(model: nn.Module) -> nn.Module:
    """Replace, in place, every weight parametrization by its current value: plain layers whose weights are the
    quantized levels (picklable, and what inference and lowering read). Returns `model`."""
    for _, mod in weight_layers(model):
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
    return model


def distinct_levels(w: torch.Tensor) -> torch.Tensor:
    """Number of distinct values in each output channel of w (C_out, ...): int64 (C_out,). For tests/reports."""
    return torch.tensor([int(torch.unique(row).numel()) for row in w.detach().reshape(len(w), -1)])

