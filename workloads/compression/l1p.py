"""L1P: unstructured synapse pruning with an L1 penalty (Sun, Cai et al., "Towards lightweight spiking transformers:
synapse pruning with synergistic learning-based compensation", arXiv 2508.01992), global or per weight matrix."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from workloads.compression.base import Check, CompressionResult, check_ratio, finetune, model_size_bits, one_of
from workloads.compression.compose import FineTuneConfig
from workloads.compression.sca import add_l1_subgradient, round_half_up
from workloads.compression.quant import split_edges
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.models.snn_vit import SSSA
from workloads.models.spikformer import MLP, SSA
from workloads.train import TrainConfig, default_device, torch_threads

_LOG = logging.getLogger("workloads.compression")
SCOPES = ("global", "per_matrix")
#: which weight layers L1P prunes (prunable_layers)
LAYER_SETS = {"auto": "'blocks' on a spiking transformer (a model with attention or MLP blocks), else 'all'",
              "blocks": "the Linear layers of the transformer blocks: Q, K, V, projection and MLP (the paper's)",
              "linear": "the hidden Linear layers: not the first or last weight layer nor a readout head",
              "all": "every Conv1d, Conv2d and Linear layer, first conv and classifier included"}


@dataclass(frozen=True)
class L1PConfig(FineTuneConfig):
    """L1P settings (ValueError names a field out of range): scope "global" (one magnitude threshold over all
    pruned matrices) or "per_matrix" (each matrix loses the same fraction, at most all but one weight); layers, a
    key of LAYER_SETS ("auto", default: a spiking transformer's block linears, every conv and linear weight of
    other nets); l1_epochs >= 0 of training with the L1 term before pruning (1); l1_lambda >= 0
    (1e-4, our choice: the paper's value is not in our summary); finetune_epochs (2), lr, optimizer as
    FineTuneConfig, with the pruning mask kept."""

    scope: str = "global"
    layers: str = "auto"
    l1_epochs: int = 1
    l1_lambda: float = 1e-4

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus scope (SCOPES), layers (a key of LAYER_SETS), l1_epochs and l1_lambda."""
        return {**super()._checks(), "scope": (self.scope in SCOPES, one_of(SCOPES)),
                "layers": (self.layers in LAYER_SETS, one_of(LAYER_SETS)),
                "l1_epochs": (self.l1_epochs >= 0, "l1_epochs >= 0"),
                "l1_lambda": (self.l1_lambda >= 0, "l1_lambda >= 0")}


def prunable_layers(model: nn.Module, layers: str = "auto") -> dict[str, nn.Module]:
    """{name: module} of the weight layers L1P prunes (`layers`, a key of LAYER_SETS), in registration order.
    Raises ValueError for another key, and ("linear") for a model without weight layers."""
    if layers not in LAYER_SETS:
        raise ValueError(f"layers must be one of {list(LAYER_SETS)}, got {layers!r}")
    if layers in ("blocks", "auto"):
        blocks = _block_linears(model)
        if layers == "blocks" or blocks:
            return blocks
    if layers == "linear":
        edge, _ = split_edges(model)
        return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in edge}
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}


def _block_linears(model: nn.Module) -> dict[str, nn.Module]:
    """The Linear layers inside a transformer block's attention (Spikformer's SSA, SNN-ViT's SSSA) or MLP."""
    blocks = [n for n, m in model.named_modules() if isinstance(m, (SSA, SSSA, MLP))]
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and any(n.startswith(b + ".") for b in blocks)}


def magnitude_masks(weights: dict[str, torch.Tensor], ratio: float, scope: str) -> dict[str, torch.Tensor]:
    """Keep-masks (bool, shaped like each weight) removing the smallest |w|: "global" removes exactly
    round_half_up(ratio * total) entries over all matrices together, "per_matrix" round_half_up(ratio * n) of each
    matrix of n entries, at most n - 1 (as the channel pruners keep one channel). Ties go to the earlier matrix
    and lower flat index. ValueError for an unknown scope."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
    groups = [list(weights)] if scope == "global" else [[n] for n in weights]
    masks = {}
    for names in groups:
        flat = torch.cat([weights[n].detach().abs().flatten().double().cpu() for n in names])
        keep = torch.ones(len(flat), dtype=torch.bool)
        removed = round_half_up(ratio * len(flat))
        if scope == "per_matrix":  # all but one at most: a matrix of no weight passes nothing
            removed = min(removed, len(flat) - 1)
        keep[torch.argsort(flat, stable=True)[:removed]] = False
        for n, part in zip(names, keep.split([weights[n].numel() for n in names])):
            masks[n] = part.reshape(weights[n].shape).to(weights[n].device)
    return masks


def _mask_grads(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]):
    """after_backward hook: zero the gradient of pruned weights, so they stay exactly 0 (a fresh Adam/SGD state
    fed zero gradients never moves them)."""
    def hook() -> None:
        for name, mod in layers.items():
            if mod.weight.grad is not None:
                mod.weight.grad.mul_(masks[name])
    return hook


def l1p(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[L1PConfig] = None,
        train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
        progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """L1P (Sun, Cai et al. 2025): train cfg.l1_epochs with grad(W) += l1_lambda * sign(W) on the pruned layers,
    zero the smallest-magnitude weights to sparsity `ratio` (cfg.scope global or per matrix), fine-tune
    cfg.finetune_epochs with the mask kept (pruned gradients zeroed; the weights stay exactly 0).

    Layers (cfg.layers, LAYER_SETS): the paper prunes every transformer-block linear layer (Q, K, V, projection,
    MLP), not the tokenizer, position conv or head, and so does "auto" on a spiking transformer; on other nets
    "auto" prunes every Conv1d, Conv2d and Linear weight, first conv and classifier included; biases, BN and
    thresholds are not pruned. Result: storage {layer: "sparse"} (the paper's compressed
    sparse format on hardware), params_after = non-zero parameters (the zeros are still stored in the torch
    model). ratio 0 returns an unchanged deep copy. The input model is not modified.
    Raises ValueError for a ratio outside [0, 1) or a model without prunable layers.
    """
    start, p, cfg = time.perf_counter(), check_ratio(ratio), cfg or L1PConfig()
    train_cfg, device = train_cfg or TrainConfig(), device or default_device()
    work = copy.deepcopy(model).to(device)
    params_before = count_parameters(work)
    layers = prunable_layers(work, cfg.layers)
    if not layers:
        raise ValueError(f"model: has no {cfg.layers!r} weight layers to prune")
    if p == 0.0:
        return work, CompressionResult("l1p", 0.0, params_before, params_before, notes="ratio 0: unchanged deep copy",
                                       size_bits=model_size_bits(work, {}), seconds=time.perf_counter() - start)
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch_threads(train_cfg.num_threads):
        history = finetune(work, x, y, train_cfg, cfg.l1_epochs, cfg.lr, cfg.optimizer, generator, progress, "l1",
                           lambda: add_l1_subgradient(list(layers.values()), cfg.l1_lambda))
        masks = magnitude_masks({n: m.weight for n, m in layers.items()}, p, cfg.scope)
        with torch.no_grad():
            for name, mod in layers.items():
                mod.weight.mul_(masks[name])
        history += finetune(work, x, y, train_cfg, cfg.finetune_epochs, cfg.lr, cfg.optimizer, generator, progress,
                            "finetune", _mask_grads(layers, masks))
    pruned = sum(int((~m).sum()) for m in masks.values())
    emptied = [n for n, m in masks.items() if not bool(m.any())]
    notes = (f"L1P {cfg.scope}: {pruned} of {sum(m.numel() for m in masks.values())} weights of "
             f"{len(layers)} layers zeroed" + (f"; layers {emptied} have no weight left: nothing passes them"
                                                 if emptied else ""))
    if emptied:
        _LOG.warning("l1p: the %s threshold at ratio %g zeroes every weight of layers %s; nothing passes them (a "
                     "per-matrix scope keeps some in each)", cfg.scope, p, emptied)
    return work, CompressionResult("l1p", p, params_before, params_before - pruned, history=history, notes=notes,
                                   seconds=time.perf_counter() - start, storage={n: "sparse" for n in layers},
                                   size_bits=model_size_bits(work, {}))
