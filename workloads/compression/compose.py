"""Quantize, then prune channels, then fine-tune: the one flow behind magnitude_channel, random, qp_snn, q_snn and
binary, and `compose(quantizer, pruner)` for any other pair of a registered quantizer and channel pruner.

Order as the papers compose them (QP-SNN, Wei et al., ICLR 2025: "quantize first, then prune"): attach the fake
quantizers (and, for Q-SNN, the quantized-membrane neurons), optionally train a few quantization-aware epochs,
score and physically remove channels on the quantized model, fine-tune the smaller quantized model, then bake the
quantizers into plain weights (picklable; lowering reads the quantized levels).
"""
from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Optional

import torch
from torch import nn

from workloads.compression.base import (Check, CompressionResult, ConvUnit, check_fields, check_ratio, finetune,
                                        channel_units, model_size_bits, one_of, remove_channels)
from workloads.compression.quant import bake
from workloads.compression.sca import round_half_up
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.train import OPTIMIZERS, Objective, TrainConfig, default_device, torch_threads


@dataclass(frozen=True)
class FineTuneConfig:
    """Fine-tuning shared by the methods (ValueError names a field out of range): finetune_epochs >= 0 after the
    compression step, lr > 0 with a cosine schedule to 0, optimizer a key of workloads.train.OPTIMIZERS. Batch
    size, T and encoding come from the TrainConfig passed beside it."""

    finetune_epochs: int = 2
    lr: float = 1e-3
    optimizer: str = "adam"

    def _checks(self) -> dict[str, Check]:
        """{field: (ok, accepted values)} for `check_fields`; subclasses extend it."""
        return {"finetune_epochs": (self.finetune_epochs >= 0, "finetune_epochs >= 0"),
                "lr": (self.lr > 0, "lr > 0"), "optimizer": (self.optimizer in OPTIMIZERS, one_of(OPTIMIZERS))}

    def __post_init__(self) -> None:
        check_fields(self, self._checks)


@dataclass
class QuantStage:
    """What a quantizer did to the model (in place): weight_bits {layer: bits}; state_bits {neuron layer: bits};
    regulariser: factory model -> context manager active while training (Q-SNN's firing-rate term); notes."""

    weight_bits: dict[str, int]
    state_bits: dict[str, int] = field(default_factory=dict)
    regulariser: Optional[Callable[[nn.Module], ContextManager]] = None
    notes: str = ""


@dataclass(frozen=True)
class PruneContext:
    """Data a channel pruner may use: training images x (N, C, H, W) and labels y on the model's device, the
    TrainConfig (T, encoding, batch size), the seed and the number of mini-batches to score on."""

    x: torch.Tensor
    y: torch.Tensor
    train_cfg: TrainConfig
    seed: int
    score_batches: int = 4


#: quantizer(model, cfg, train_cfg) -> QuantStage, modifying the model in place
Quantizer = Callable[[nn.Module, object, TrainConfig], QuantStage]
#: pruner(model, units, {conv name: channels to remove}, context) -> {conv name: bool keep-mask (C_out,)}
Pruner = Callable[[nn.Sequential, list[ConvUnit], dict[str, int], PruneContext], dict[str, torch.Tensor]]


def removal_counts(model: nn.Sequential, units: list[ConvUnit], ratios: dict[str, float]) -> dict[str, int]:
    """Channels to remove per conv: round_half_up(r * C_out), at most C_out - 1 (every conv keeps one)."""
    out = {}
    for u in units:
        c = model.get_submodule(u.conv).out_channels
        out[u.conv] = min(c - 1, round_half_up(ratios.get(u.conv, 0.0) * c))
    return out


def lowest_masks(scores: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per layer, drop the counts[name] lowest-scoring channels (ties: lower index dropped first); bool masks."""
    masks = {}
    for name, s in scores.items():
        keep = torch.ones(len(s), dtype=torch.bool)
        keep[torch.argsort(s.detach().double().cpu(), stable=True)[:counts.get(name, 0)]] = False
        masks[name] = keep
    return masks


def layer_ratios(units: list[ConvUnit], ratio: float, overrides: Optional[dict[str, float]] = None,
                 skip_last: bool = False) -> dict[str, float]:
    """Pruning ratio per conv: `ratio`, or overrides[name] when given; the last conv gets 0 when skip_last.
    Raises ValueError for an override naming no conv, outside [0, 1), or, when skip_last, naming the last conv
    with a ratio > 0 (the method never prunes it)."""
    names = [u.conv for u in units]
    out = {n: ratio for n in names}
    for name, r in (overrides or {}).items():
        if name not in out:
            raise ValueError(f"layer_ratios: {name!r} is not one of the convs {names}")
        try:
            out[name] = check_ratio(r)
        except ValueError:
            raise ValueError(f"layer_ratios: {name!r}: {r!r} is not a ratio in [0, 1)") from None
        if skip_last and name == names[-1] and out[name] > 0:
            raise ValueError(f"layer_ratios: {name!r} is the last conv, which this method never prunes (it feeds "
                             f"the classifier); name one of {names[:-1]}")
    if skip_last and names:
        out[names[-1]] = 0.0
    return out


def _train(model, x, y, cfg, train_cfg, epochs, stage: QuantStage, generator, progress, phase,
           objective: Optional[Objective] = None) -> list[dict]:
    """Fine-tune with the quantizer's regulariser active (if any) on `objective` (None: cross-entropy)."""
    with (stage.regulariser(model) if stage.regulariser else nullcontext()):
        return finetune(model, x, y, train_cfg, epochs, cfg.lr, cfg.optimizer, generator, progress, phase,
                        objective=objective)


def quantize_then_prune(model: nn.Module, dataset: Dataset, ratio: float, method: str, cfg: FineTuneConfig,
                        train_cfg: Optional[TrainConfig], seed: int, device: Optional[torch.device], progress: bool,
                        quantizer: Optional[Quantizer] = None, pruner: Optional[Pruner] = None,
                        overrides: Optional[dict[str, float]] = None, skip_last: bool = False,
                        pre_epochs: int = 0, score_batches: int = 4,
                        objective: Optional[Objective] = None) -> tuple[nn.Module, CompressionResult]:
    """Compress a copy of `model`: quantizer (may be None), `pre_epochs` quantization-aware epochs, then, when
    pruner is given and ratio > 0 (or a per-layer override > 0), remove per conv round_half_up(r * C_out) channels
    chosen by the pruner (r = ratio, per-layer overrides, last conv spared when skip_last; needs a flat Sequential,
    see base.find_conv_units), then cfg.finetune_epochs of fine-tuning, then bake the quantizers.
    Without a quantizer, ratio 0 returns an unchanged deep copy. The input model is not modified.
    objective: the training loss of both training phases (workloads.train.Objective; None: cross-entropy), e.g.
    BESTformer's distillation from a frozen teacher.
    Randomness: shuffling/Poisson spikes from torch.Generator(seed) on the device; pruners get the seed.
    Raises ValueError for a ratio outside [0, 1) or a model the pruner cannot walk."""
    start, p = time.perf_counter(), check_ratio(ratio)
    train_cfg, device = train_cfg or TrainConfig(), device or default_device()
    work = copy.deepcopy(model).to(device)
    params_before = count_parameters(work)
    prunes = pruner is not None and (p > 0.0 or any(check_ratio(r) > 0.0 for r in (overrides or {}).values()))
    if quantizer is None and not prunes:
        return work, CompressionResult(method, p, params_before, params_before, notes="ratio 0: unchanged deep copy",
                                       size_bits=model_size_bits(work, {}), seconds=time.perf_counter() - start)
    stage = quantizer(work, cfg, train_cfg) if quantizer is not None else QuantStage({})
    work.to(device)
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    kept, before = {}, {}
    with torch_threads(train_cfg.num_threads):
        history = _train(work, x, y, cfg, train_cfg, pre_epochs, stage, generator, progress, "qat", objective)
        if prunes:  # a ratio > 0, or a per-layer ratio > 0 at ratio 0
            units = channel_units(work)
            before = {u.conv: work.get_submodule(u.conv).out_channels for u in units}
            counts = removal_counts(work, units, layer_ratios(units, p, overrides, skip_last))
            masks = pruner(work, units, counts, PruneContext(x, y, train_cfg, seed, score_batches))
            work = remove_channels(work, units, masks)
            kept = {n: torch.nonzero(m).flatten().tolist() for n, m in masks.items()}
        history += _train(work, x, y, cfg, train_cfg, cfg.finetune_epochs, stage, generator, progress, "finetune",
                          objective)
    bake(work)
    removed = sum(before.values()) - sum(map(len, kept.values()))
    if prunes and not removed:
        logging.getLogger("workloads.compression").warning(
            "%s: ratio %g removes no conv channel (round_half_up(ratio x channels) is 0 in every layer it prunes)",
            method, p)
    parts = [stage.notes, f"{removed} of {sum(before.values())} conv channels removed" if kept else ""]
    notes = "; ".join(s for s in parts if s)
    return work, CompressionResult(method, p, params_before, count_parameters(work), kept, before,
                                   {n: len(k) for n, k in kept.items()}, history, notes, time.perf_counter() - start,
                                   weight_bits=dict(stage.weight_bits), state_bits=dict(stage.state_bits),
                                   size_bits=model_size_bits(work, stage.weight_bits))


@dataclass(frozen=True)
class ComposeConfig:
    """Configs of the two stages of `compose`: quantizer (its method's config, None -> defaults), pruner (the
    FineTuneConfig-derived config whose finetune_epochs/lr/optimizer drive the fine-tuning), pre_epochs >= 0
    quantization-aware epochs before pruning."""

    quantizer: Optional[object] = None
    pruner: Optional[object] = None
    pre_epochs: int = 0

    def __post_init__(self) -> None:
        check_fields(self, lambda: {"pre_epochs": (self.pre_epochs >= 0, "pre_epochs >= 0")})


def compose_with(quantizer: str, pruner: str, quantizers: dict[str, tuple[Callable, type]],
                 pruners: dict[str, tuple[Callable, type]]) -> Callable[..., tuple[nn.Module, CompressionResult]]:
    """A compression method (the METHODS signature, cfg a ComposeConfig) that quantizes with the registered
    quantizer `quantizer` (workloads.compression.QUANTIZERS: "qp_snn", "q_snn", "binary") and then removes
    `ratio` of each conv's channels with the registered pruner `pruner` (PRUNERS: "magnitude_channel",
    "random", "svs"), e.g. compose("q_snn", "magnitude_channel"). Every conv is pruned at `ratio` (qp_snn's
    sparing of the last conv and per-layer ratios are qp_snn's own); the quantizer config's regulariser (Q-SNN's
    rate term) stays active while fine-tuning. quantizers / pruners: the registries to look the names up in
    (workloads.compression passes its QUANTIZERS and PRUNERS: they import the method modules, which import this
    one). Raises ValueError for unknown names."""
    if quantizer not in quantizers or pruner not in pruners:
        raise ValueError(f"compose: quantizer must be one of {sorted(quantizers)} and pruner one of "
                         f"{sorted(pruners)}, got {quantizer!r}, {pruner!r}")
    (quant_fn, quant_cfg), (prune_fn, prune_cfg) = quantizers[quantizer], pruners[pruner]

    def method(model, dataset, ratio, cfg=None, train_cfg=None, seed=0, device=None, progress=True):
        if cfg is not None and not isinstance(cfg, ComposeConfig):
            raise ValueError(f"cfg: compose({quantizer!r}, {pruner!r}) takes a ComposeConfig (its quantizer and "
                             f"pruner configs inside), got a {type(cfg).__name__}")
        cfg = cfg or ComposeConfig()
        qcfg, pcfg = cfg.quantizer or quant_cfg(), cfg.pruner or prune_cfg()
        return quantize_then_prune(model, dataset, ratio, f"{quantizer}+{pruner}", pcfg, train_cfg, seed, device,
                                   progress, lambda m, _c, t: quant_fn(m, qcfg, t), prune_fn,
                                   pre_epochs=cfg.pre_epochs, score_batches=getattr(pcfg, "score_batches", 4))
    method.__doc__ = f"{quantizer} quantization, then {pruner} channel pruning (workloads.compression.compose)."
    return method
