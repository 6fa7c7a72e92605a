"""QP-SNN (Wei et al., "QP-SNN: Quantized and Pruned Spiking Neural Networks", ICLR 2025, arXiv 2502.05905):
ReScaW b-bit weight quantization, then pruning of the kernels whose spike maps have the fewest non-zero singular
values (SVS), then fine-tuning, as specified in /work/shared/METHODS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from spikingjelly.activation_based import functional
from torch import nn

from workloads.compression.base import Check, CompressionResult, ConvUnit
from workloads.compression.compose import (FineTuneConfig, PruneContext, QuantStage, lowest_masks,
                                           quantize_then_prune)
from workloads.compression.quant import ReScaW, attach, edge_hidden_plan
from workloads.data import Dataset
from workloads.encoding import encode
from workloads.train import TrainConfig


@dataclass(frozen=True)
class QPSNNConfig(FineTuneConfig):
    """QP-SNN settings (ValueError names a field out of range): bits b in {8, 4, 2} (any 1..16 accepted) for
    ReScaW; pre_epochs >= 0 quantization-aware epochs before the SVS scores; score_batches >= 1 training
    mini-batches the SVS score is averaged over; sv_eps > 0, singular values above it count (1e-6, the paper's);
    layer_ratios: optional {conv name: ratio} overriding the global ratio per layer (the last conv is never
    pruned); finetune_epochs, lr, optimizer as FineTuneConfig (defaults 2 epochs, Adam 1e-3 cosine)."""

    bits: int = 4
    pre_epochs: int = 1
    score_batches: int = 4
    sv_eps: float = 1e-6
    layer_ratios: Optional[dict] = None

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus the QP-SNN fields' ranges."""
        return {**super()._checks(), "bits": (1 <= self.bits <= 16, "1 <= bits <= 16"),
                "pre_epochs": (self.pre_epochs >= 0, "pre_epochs >= 0"),
                "score_batches": (self.score_batches >= 1, "score_batches >= 1"),
                "sv_eps": (self.sv_eps > 0, "sv_eps > 0"),
                "layer_ratios": (self.layer_ratios is None or isinstance(self.layer_ratios, dict),
                                 "a {conv name: ratio} mapping, or None")}


def rescaw_stage(model: nn.Module, cfg: QPSNNConfig, train_cfg: TrainConfig) -> QuantStage:
    """Attach ReScaW(cfg.bits) to every weight layer but the first (conv) and the last (FC), which stay full
    precision (QP-SNN); returns their bits. In place."""
    bits = attach(model, edge_hidden_plan(model, lambda: ReScaW(cfg.bits)))
    return QuantStage(bits, notes=f"ReScaW {cfg.bits}-bit on {len(bits)} hidden weight layers, first/last full "
                                  "precision")


@torch.no_grad()
def svs_scores(model: nn.Sequential, units: list[ConvUnit], ctx: PruneContext,
               sv_eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """SVS score of every conv kernel (output channel): for each sample, average the channel's spike map (the
    output of the neuron after the conv) over T, count its singular values above sv_eps (the rank of the H x W
    map), and average that count over the samples of the first ctx.score_batches mini-batches of a seeded
    shuffle of ctx.x (Wei et al. 2025, Sec. 4.2). Runs in eval mode (BN running statistics; our choice) and
    restores the mode. Returns conv name -> float64 tensor (C_out,) on CPU. Raises ValueError for a conv with
    no neuron after it."""
    missing = [u.conv for u in units if u.node is None]
    if missing:
        raise ValueError(f"SVS needs a spiking neuron after every conv; convs without one: {missing}")
    captured: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(u.node).register_forward_hook(
        lambda m, a, out, name=u.conv: captured.__setitem__(name, out)) for u in units]
    sums = {u.conv: torch.zeros(model.get_submodule(u.conv).out_channels, dtype=torch.float64) for u in units}
    gen = torch.Generator(device=ctx.x.device).manual_seed(ctx.seed)
    order = torch.randperm(len(ctx.x), generator=gen, device=ctx.x.device)
    was_training, seen = model.training, 0
    model.eval()
    try:
        for idx in order.split(ctx.train_cfg.batch_size)[:ctx.score_batches]:
            functional.reset_net(model)
            model(encode(ctx.x[idx], ctx.train_cfg.n_timesteps, ctx.train_cfg.encoding, gen))
            for name, spikes in captured.items():
                rank = (torch.linalg.svdvals(spikes.float().mean(0)) > sv_eps).sum(-1)  # (B, C)
                sums[name] += rank.sum(0).cpu().double()
            seen += len(idx)
    finally:
        for h in handles:
            h.remove()
        functional.reset_net(model)
        model.train(was_training)
    return {name: s / seen for name, s in sums.items()}


def svs_masks(model: nn.Sequential, units: list[ConvUnit], counts: dict[str, int], ctx: PruneContext,
              sv_eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Keep-masks dropping the counts[conv] kernels of lowest SVS score per conv (ties: lower index first)."""
    return lowest_masks(svs_scores(model, units, ctx, sv_eps), counts)


def qp_snn(model: nn.Sequential, dataset: Dataset, ratio: float, cfg: Optional[QPSNNConfig] = None,
           train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
           progress: bool = True) -> tuple[nn.Sequential, CompressionResult]:
    """QP-SNN: quantize every hidden weight layer with ReScaW (cfg.bits; first conv and last FC full precision),
    train cfg.pre_epochs quantization-aware, prune in each conv but the last round_half_up(r * C_out) kernels
    of lowest SVS score (r = ratio or cfg.layer_ratios[conv]), physically (base.remove_channels, the
    quantizers kept), fine-tune cfg.finetune_epochs, then bake the quantized weights.

    Result: weight_bits {layer: b} for the quantized layers (the full-precision first/last layers are absent, so
    lowering stores them at its default width), kept_channels, size_bits (quantized x b + the rest x 32).
    Choices where the paper is open: the same ratio in every conv unless layer_ratios says otherwise (the paper
    gives per-layer ratios per network); short schedules (Adam, cosine) instead of the paper's full training;
    the model's own neurons are kept (the paper's neuron, decay 0.5, threshold 1, hard reset, triangle surrogate,
    belongs to the workload, not to the method). Ratio 0 quantizes only.
    Raises ValueError for a ratio outside [0, 1), bad layer_ratios or a model without conv units.
    """
    cfg = cfg or QPSNNConfig()
    return quantize_then_prune(model, dataset, ratio, "qp_snn", cfg, train_cfg, seed, device, progress,
                               quantizer=rescaw_stage,
                               pruner=lambda m, u, c, ctx: svs_masks(m, u, c, ctx, cfg.sv_eps),
                               overrides=cfg.layer_ratios, skip_last=True, pre_epochs=cfg.pre_epochs,
                               score_batches=cfg.score_batches)
