"""Binary spiking networks after BESTformer (Cao et al., "BESTformer: Boosting Binary Spiking Transformer...",
IJCAI 2025): binary weights (per output channel standardise, sign, identity straight-through) on every weight layer
but the first conv and the head, and a binary spiking attention for Spikformer-style models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from workloads.compression.base import Check, CompressionResult, one_of
from workloads.compression.compose import FineTuneConfig, QuantStage, quantize_then_prune
from workloads.compression.magnitude import l1_filter_masks
from workloads.compression.quant import SIGN_SCALES, SignQuant, attach, edge_hidden_plan
from workloads.data import Dataset
from workloads.neurons import make_neuron
from workloads.train import TrainConfig


@dataclass(frozen=True)
class BinaryConfig(FineTuneConfig):
    """Binary-weight settings (ValueError names a field out of range): scale of the +-1 levels, "l1" (mean|W -
    mean W| per channel, default) or "pow2" (quant.SIGN_SCALES); binary_attention: swap every Spikformer
    SpikeAttention for BinaryAttention (models without one are unaffected); finetune_epochs (default 3), lr,
    optimizer as FineTuneConfig."""

    finetune_epochs: int = 3
    scale: str = "l1"
    binary_attention: bool = True

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus scale (a key of quant.SIGN_SCALES)."""
        return {**super()._checks(), "scale": (self.scale in SIGN_SCALES, one_of(SIGN_SCALES))}


class BinaryAttention(nn.Module):
    """BESTformer binary spiking self-attention core, a drop-in for workloads.models.spikformer.SpikeAttention:
    per head, A = LIF_1(Q K^T) (a multi-step LIF with threshold 1 makes the attention map binary), then
    out = (A V) * scale * alpha[t, h] with a learnable per-timestep, per-head alpha (initialised to 1); the
    caller's attention LIF (threshold 0.5 in Spikformer's SSA) and projection follow, as in the paper.

    q, k, v: (T, N, L, D) spikes with D divisible by heads; returns (T, N, L, D) currents (heads concatenated).
    n_timesteps: T the alphas are sized for (ValueError when an input has another T). The attention-map LIF is
    workloads.neurons' "LIF" with `tau` (the LIF of the rest of the model; the paper's tau is not in our summary).
    Lowering of attention belongs to the Spikformer lowering (not done here)."""

    def __init__(self, heads: int, n_timesteps: int, scale: float = 0.125, tau: float = 2.0,
                 map_threshold: float = 1.0):
        super().__init__()
        if heads < 1 or n_timesteps < 1:
            raise ValueError(f"heads and n_timesteps must be >= 1, got {heads}, {n_timesteps}")
        self.heads, self.scale = int(heads), float(scale)
        self.alpha = nn.Parameter(torch.ones(int(n_timesteps), int(heads)))
        self.map_sn = make_neuron("LIF", tau, map_threshold)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        t, n, length, d = x.shape
        return x.reshape(t, n, length, self.heads, d // self.heads).transpose(2, 3)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.shape[0] != len(self.alpha) or q.shape[-1] % self.heads:
            raise ValueError(f"q: shape {tuple(q.shape)} needs T={len(self.alpha)} and D divisible by {self.heads}")
        q, k, v = self._split(q), self._split(k), self._split(v)
        attn = self.map_sn(q @ k.transpose(-2, -1))  # (T, N, h, L, L) binary
        out = (attn @ v) * self.scale * self.alpha[:, None, :, None, None]
        return out.transpose(2, 3).reshape(*out.shape[:2], out.shape[3], -1)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale}, n_timesteps={len(self.alpha)}"


def swap_attention(model: nn.Module, n_timesteps: int) -> list[str]:
    """Replace, in place, every workloads.models.spikformer.SpikeAttention by a BinaryAttention with the same
    heads and scale; returns the names replaced."""
    from workloads.models.spikformer import SpikeAttention

    names = [n for n, m in model.named_modules() if isinstance(m, SpikeAttention)]
    for name in names:
        parent, _, child = name.rpartition(".")
        old = model.get_submodule(name)
        setattr(model.get_submodule(parent), child, BinaryAttention(old.heads, n_timesteps, old.scale))
    return names


def binary_stage(model: nn.Module, cfg: BinaryConfig, train_cfg: TrainConfig) -> QuantStage:
    """In place: SignQuant(cfg.scale) on every weight layer but the first and the last (full precision), and
    BinaryAttention for every SpikeAttention when cfg.binary_attention."""
    bits = attach(model, edge_hidden_plan(model, lambda: SignQuant(cfg.scale)))
    swapped = swap_attention(model, train_cfg.n_timesteps) if cfg.binary_attention else []
    return QuantStage(bits, notes=f"binary weights ({cfg.scale} scale) on {len(bits)} hidden layers, first/last "
                                  f"full precision; {len(swapped)} binary attention modules")


def binary(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[BinaryConfig] = None,
           train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
           progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """BESTformer-style binarization: every weight layer but the first (the first conv / tokenizer conv) and the
    last (the head) gets 1-bit weights, per output channel standardise, sign (0 -> +1), times a per-channel
    scale (cfg.scale "l1" = mean|W - mean W|, XNOR-Net's; the paper's scale is open in our summary), identity
    straight-through; Spikformer attention cores become BinaryAttention; fine-tune cfg.finetune_epochs; bake.

    Not implemented: BESTformer's coupled information enhancement (reversible two-stream blocks, distillation
    from a full-precision teacher), which changes the architecture and training, not the stored weights.
    ratio: BESTformer does not prune; ours: ratio > 0 also removes round_half_up(ratio * C_out) channels of every
    conv by latent L1 norm after binarization (needs a flat Sequential), ratio 0 = binarization only.
    Result: weight_bits {layer: 1} for the binarized layers (first/last absent: lowering's default width).
    Raises ValueError for a ratio outside [0, 1).
    """
    return quantize_then_prune(model, dataset, ratio, "binary", cfg or BinaryConfig(), train_cfg, seed, device,
                               progress, quantizer=binary_stage, pruner=l1_filter_masks)
