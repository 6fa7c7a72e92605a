"""Random channel pruning: the chance baseline for structured pruning (same counts as magnitude_channel)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from workloads.compression.base import CompressionResult, ConvUnit
from workloads.compression.compose import PruneContext, quantize_then_prune
from workloads.compression.magnitude import ChannelPruneConfig
from workloads.data import Dataset
from workloads.train import TrainConfig


def random_masks(model: nn.Sequential, units: list[ConvUnit], counts: dict[str, int],
                 ctx: PruneContext) -> dict[str, torch.Tensor]:
    """Keep-masks dropping counts[conv] channels of each conv drawn uniformly without replacement from a CPU
    torch.Generator seeded with ctx.seed (one permutation per conv, in layer order)."""
    generator = torch.Generator().manual_seed(ctx.seed)
    masks = {}
    for u in units:
        c = model.get_submodule(u.conv).out_channels
        keep = torch.ones(c, dtype=torch.bool)
        keep[torch.randperm(c, generator=generator)[:counts.get(u.conv, 0)]] = False
        masks[u.conv] = keep
    return masks


def random_channels(model: nn.Sequential, dataset: Dataset, ratio: float, cfg: Optional[ChannelPruneConfig] = None,
                    train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
                    progress: bool = True) -> tuple[nn.Sequential, CompressionResult]:
    """Remove round_half_up(ratio * C_out) random channels from every conv (seeded by `seed`), physically, then
    fine-tune as magnitude_channel does: the baseline any importance criterion must beat (e.g. Li et al.,
    ICLR 2017, compare L1-norm against random filter selection). Returns (smaller Sequential, CompressionResult);
    ratio 0 returns an unchanged deep copy. Raises ValueError for a ratio outside [0, 1)."""
    cfg = cfg or ChannelPruneConfig()
    return quantize_then_prune(model, dataset, ratio, "random", cfg, train_cfg, seed, device, progress,
                               pruner=random_masks, overrides=cfg.layer_ratios)
