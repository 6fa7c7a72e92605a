"""L1-norm filter pruning, the plain structured baseline of Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters
for Efficient ConvNets", ICLR 2017 (arXiv 1608.08710), on flat SpikingJelly conv Sequentials."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from workloads.compression.base import Check, CompressionResult, ConvUnit, latent_weight
from workloads.compression.compose import FineTuneConfig, PruneContext, lowest_masks, quantize_then_prune
from workloads.data import Dataset
from workloads.train import TrainConfig


@dataclass(frozen=True)
class ChannelPruneConfig(FineTuneConfig):
    """Config of the one-shot channel pruners (magnitude_channel, random): fine-tuning epochs (default 2), lr
    (1e-3, cosine) and optimizer ("adam") of the pruned model (see FineTuneConfig); layer_ratios: optional
    {conv name: ratio} overriding the global ratio per layer (e.g. from codesign's hardware-aware allocator)."""

    layer_ratios: Optional[dict] = None

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus layer_ratios (a dict or None)."""
        return {**super()._checks(), "layer_ratios": (self.layer_ratios is None or isinstance(self.layer_ratios, dict),
                                                      "a {conv name: ratio} mapping, or None")}


def l1_filter_scores(model: nn.Sequential, units: list[ConvUnit]) -> dict[str, torch.Tensor]:
    """L1 norm of every filter, sum |W[k, :, :, :]| of the (latent, if fake-quantized) conv weight: conv name ->
    tensor (C_out,). Li et al. 2017, Sec. 3.1."""
    return {u.conv: latent_weight(model.get_submodule(u.conv)).detach().abs().sum((1, 2, 3)) for u in units}


def l1_filter_masks(model: nn.Sequential, units: list[ConvUnit], counts: dict[str, int],
                    ctx: Optional[PruneContext] = None) -> dict[str, torch.Tensor]:
    """Keep-masks dropping the counts[conv] filters of smallest L1 norm in each conv (ties: lower index first).
    ctx is unused (the pruner signature of workloads.compression.compose)."""
    return lowest_masks(l1_filter_scores(model, units), counts)


def magnitude_channel(model: nn.Sequential, dataset: Dataset, ratio: float,
                      cfg: Optional[ChannelPruneConfig] = None, train_cfg: Optional[TrainConfig] = None,
                      seed: int = 0, device: Optional[torch.device] = None,
                      progress: bool = True) -> tuple[nn.Sequential, CompressionResult]:
    """L1-norm filter pruning (Li et al., ICLR 2017): in every conv remove round_half_up(ratio * C_out) filters
    of smallest L1 norm (at least one kept), physically, with their BN entries and the matching input channels
    of the next layer (base.remove_channels), then fine-tune cfg.finetune_epochs. FC layers are not pruned.

    Choices where the paper leaves them open or differs: the same ratio in every conv layer (the paper picks
    per-layer ratios from a sensitivity analysis; a plain baseline here), the last conv included; filters of one
    layer are scored independently of the pruning of the previous layer (the paper's "independent" strategy);
    prune once, then retrain (its one-shot schedule), with Adam and a cosine LR for a short run.
    Returns (smaller Sequential, CompressionResult with kept_channels); ratio 0 returns an unchanged deep copy.
    Raises ValueError for a ratio outside [0, 1) or a model without conv units (base.find_conv_units).
    """
    cfg = cfg or ChannelPruneConfig()
    return quantize_then_prune(model, dataset, ratio, "magnitude_channel", cfg, train_cfg, seed, device, progress,
                               pruner=l1_filter_masks, overrides=cfg.layer_ratios)
