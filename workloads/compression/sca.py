"""SCA: spiking-channel-activity structured pruning with gradient-based regrowth (Li, Xu, Shen, Xu, Chen, Pan,
"Towards Efficient Deep Spiking Neural Networks Construction with Spiking Activity based Pruning", ICML 2024,
arXiv 2406.01072), as specified in /work/shared/METHODS.md.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
from torch import nn

from workloads.compression.base import (CompressionResult, ConvUnit, apply_channel_mask, check_fields, check_ratio,
                                        channel_units, find_conv_units, masked_params, one_of, remove_channels)
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.neurons import charge_sequence
from workloads.train import (OPTIMIZERS, TrainConfig, default_device, make_optimizer, make_scheduler, run_epoch,
                             steps_per_epoch, torch_threads)


# Reduction of |H| over a channel's H x W map: "sum" is the paper's L1 norm.
SPATIAL = {"sum": lambda a: a.sum(-1), "mean": lambda a: a.mean(-1)}
#: remove(model, units, final masks) -> (reduced model, hold): hold is None, or a gradient hook (called after each
#: backward of the fine-tuning) that keeps at zero the masked parameters the reduced model still holds
Remover = Callable[[nn.Module, list, dict[str, torch.Tensor]], tuple[nn.Module, Optional[Callable[[], None]]]]


@dataclass(frozen=True)
class SCAConfig:
    """SCA hyper-parameters (ValueError names a field out of range).

    epochs >= 1: fine-tuning epochs under the prune/regrow schedule (mask updated at the end of each; the last
    update is the final top-(1-p) mask); finetune_epochs >= 0: epochs of the physically reduced model afterwards
    (cosine LR from finetune_lr, default lr); q in [0, 1): exploration (regrowth) fraction, 0.1 as in the paper;
    l1_lambda >= 0: L1 sub-gradient weight on conv weights, 3e-5 as in the paper; lr > 0 and optimizer (a key of
    workloads.train.OPTIMIZERS) for the schedule epochs (constant LR); spatial: "sum" (the paper's L1 norm of the
    H x W map) or "mean" (L1 norm / (H*W), not in the paper: makes layers with different map sizes comparable in
    the global ranking). Batch size, T and encoding come from the TrainConfig passed beside it.
    """

    epochs: int = 4
    finetune_epochs: int = 3
    q: float = 0.1
    l1_lambda: float = 3e-5
    lr: float = 1e-3
    optimizer: str = "adam"
    finetune_lr: Optional[float] = None
    spatial: str = "sum"

    def __post_init__(self) -> None:
        check_fields(self, lambda: {
            "epochs": (self.epochs >= 1, "epochs >= 1"),
            "finetune_epochs": (self.finetune_epochs >= 0, "finetune_epochs >= 0"),
            "q": (0 <= self.q < 1, "0 <= q < 1"), "l1_lambda": (self.l1_lambda >= 0, "l1_lambda >= 0"),
            "lr": (self.lr > 0, "lr > 0"), "optimizer": (self.optimizer in OPTIMIZERS, one_of(OPTIMIZERS)),
            "finetune_lr": (self.finetune_lr is None or self.finetune_lr > 0, "finetune_lr > 0, or None for lr"),
            "spatial": (self.spatial in SPATIAL, one_of(SPATIAL))})


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (1e-9 guards float error such as 0.75*48 = 35.99999...)."""
    return int(math.floor(x + 0.5 + 1e-9))


def channel_budget(p: float, q: float, n_total: int, n_layers: int) -> tuple[int, int]:
    """(n_top, n_final): channels kept by importance during the schedule and after it.

    n_final = max(n_layers, round_half_up((1 - p) * n_total)); n_top = round_half_up((1 - p - q) * n_total) clamped
    to [n_layers, n_final]; n_final - n_top channels are regrown, so every mask keeps exactly n_final channels.
    """
    n_final = min(n_total, max(n_layers, round_half_up((1.0 - p) * n_total)))
    n_top = min(max(round_half_up((1.0 - p - q) * n_total), n_layers), n_final)
    return n_top, n_final


class ImportanceRecorder:
    """Context manager accumulating SCA importance S_lk = 1/(N*T) sum_n sum_t ||U_lk[t]||_1 per conv channel.

    U[t] is the membrane potential before reset (H[t]) of the spiking node that follows each conv (and its BN),
    replayed from the node's input and spikes by `workloads.neurons.charge_sequence`; the L1 norm runs over the
    channel's H x W map (spatial="sum"; "mean" divides it by H*W). Records every forward pass while active (the
    caller activates it for one training epoch). scores(): conv name -> tensor (C_out,) on CPU.
    Raises ValueError if a conv has no following spiking node or spatial is not a key of SPATIAL.
    """

    def __init__(self, model: nn.Sequential, units: list[ConvUnit], spatial: str = "sum") -> None:
        if spatial not in SPATIAL:
            raise ValueError(f"spatial must be one of {sorted(SPATIAL)}, got {spatial!r}")
        self.reduce = SPATIAL[spatial]
        missing = [u.conv for u in units if u.node is None]
        if missing:
            raise ValueError(f"SCA needs a spiking node after every conv; layers without one: {missing}")
        self.nodes = {u.conv: model.get_submodule(u.node) for u in units}
        self.sums = {name: torch.zeros(0) for name in self.nodes}
        self.counts = {name: 0 for name in self.nodes}
        self._v0: dict[str, object] = {}
        self._handles: list = []

    def __enter__(self) -> "ImportanceRecorder":
        for name, node in self.nodes.items():
            self._handles.append(node.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(node.register_forward_hook(self._post_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre_hook(self, name: str):
        def hook(module, args):
            v = module.v
            self._v0[name] = v.detach().clone() if torch.is_tensor(v) else float(v)
        return hook

    def _post_hook(self, name: str):
        def hook(module, args, output):
            with torch.no_grad():
                h, _ = charge_sequence(module, args[0].detach(), output.detach(), self._v0[name])
                per_channel = self.reduce(h.abs().flatten(3)).sum((0, 1)).cpu().double()
            self.sums[name] = per_channel if self.sums[name].numel() == 0 else self.sums[name] + per_channel
            self.counts[name] += h.shape[0] * h.shape[1]
        return hook

    def scores(self) -> dict[str, torch.Tensor]:
        """Mean L1 norm per channel over the samples and timesteps seen (float64, CPU); ValueError if none seen."""
        if not all(self.counts.values()):
            raise ValueError("ImportanceRecorder saw no forward pass")
        return {name: self.sums[name] / self.counts[name] for name in self.nodes}


class GammaGradMeter:
    """Accumulates |dL/d gamma| of each conv's BN over the batches of an epoch: sum over batches of the absolute
    per-batch gradient (call accumulate() after backward). scores(): conv name -> tensor (C_out,) on CPU."""

    def __init__(self, model: nn.Sequential, units: list[ConvUnit]) -> None:
        missing = [u.conv for u in units if u.bn is None]
        if missing:
            raise ValueError(f"SCA needs a BatchNorm2d after every conv; layers without one: {missing}")
        self.bns = {u.conv: model.get_submodule(u.bn) for u in units}
        self.sums = {name: torch.zeros(bn.num_features, dtype=torch.float64) for name, bn in self.bns.items()}

    def accumulate(self) -> None:
        """Add |grad| of every BN gamma (call after backward, before the optimizer step)."""
        for name, bn in self.bns.items():
            if bn.weight.grad is not None:
                self.sums[name] += bn.weight.grad.detach().abs().cpu().double()

    def scores(self) -> dict[str, torch.Tensor]:
        """Accumulated |dL/d gamma| per conv name, float64 (C_out,) on CPU."""
        return dict(self.sums)


def all_convs(model: nn.Module) -> list[nn.Conv2d]:
    """Every Conv2d of `model`, nested ones included (the weights SCA's L1 term acts on), in module order."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def add_l1_subgradient(convs: list[nn.Conv2d], l1_lambda: float) -> None:
    """After backward: grad(W) += l1_lambda * sign(W) for every conv weight (L1 penalty, METHODS.md/SCA)."""
    for conv in convs:
        step = l1_lambda * torch.sign(conv.weight)
        conv.weight.grad = step if conv.weight.grad is None else conv.weight.grad.add_(step)


def select_top(scores: dict[str, torch.Tensor], n_keep: int) -> dict[str, torch.Tensor]:
    """Global ranking: keep the n_keep highest-scoring channels over all layers together (ties: earlier layer,
    lower index first), then make every layer keep >= 1 channel by swapping its best channel in for the
    lowest-ranked kept channel of a layer that keeps more than one. Returns conv name -> bool mask (C_out,).
    Raises ValueError unless len(scores) <= n_keep <= total channels."""
    names = list(scores)
    flat = torch.cat([scores[n].double().cpu() for n in names])
    layer_of = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    if not len(names) <= n_keep <= len(flat):
        raise ValueError(f"n_keep must be in [{len(names)}, {len(flat)}], got {n_keep}")
    order = torch.argsort(-flat, stable=True)
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[order[:n_keep]] = True
    for i in range(len(names)):
        if keep[layer_of == i].any():
            continue
        victim = next(int(c) for c in reversed(order[keep[order]]) if (keep & (layer_of == layer_of[c])).sum() > 1)
        keep[victim] = False
        keep[order[layer_of[order] == i][0]] = True
    return dict(zip(names, keep.split([len(scores[n]) for n in names])))


def regrow(masks: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], importance: dict[str, torch.Tensor],
           n_regrow: int) -> dict[str, torch.Tensor]:
    """Turn on the n_regrow pruned channels (mask False) with the largest |dL/d gamma| (grads), ties broken by
    larger importance, then earlier layer and lower index. Returns new masks; ValueError if too few are pruned."""
    candidates = [(-float(grads[n][k]), -float(importance[n][k]), i, k, n)
                  for i, n in enumerate(masks) for k in torch.nonzero(~masks[n]).flatten().tolist()]
    if not 0 <= n_regrow <= len(candidates):
        raise ValueError(f"n_regrow must be in [0, {len(candidates)}], got {n_regrow}")
    new = {n: m.clone() for n, m in masks.items()}
    for *_, k, n in sorted(candidates)[:n_regrow]:
        new[n][k] = True
    return new


@torch.no_grad()
def zero_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Sequential, units: list[ConvUnit],
                         masks: dict[str, torch.Tensor]) -> None:
    """Zero the optimizer's per-parameter state (Adam moments, SGD momentum) of masked channels, so a masked
    channel moves only by its own new gradients, not by momentum from before it was masked."""
    for unit in units:
        drop = ~masks[unit.conv]
        for p in masked_params(model, unit):
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value[drop.to(value.device)] = 0.0


def _schedule_epoch(model, units, x, y, cfg: SCAConfig, ft: TrainConfig, optimizer, generator, budget, final,
                    progress, desc) -> tuple[dict[str, torch.Tensor], dict]:
    """Train one epoch with the L1 term (every conv) while recording importance and |dL/dgamma|; return the next
    mask."""
    convs = all_convs(model)
    meter = GammaGradMeter(model, units)

    def after_backward() -> None:
        add_l1_subgradient(convs, cfg.l1_lambda)
        meter.accumulate()

    with ImportanceRecorder(model, units, cfg.spatial) as recorder:
        stats = run_epoch(model, x, y, ft, optimizer, generator, after_backward=after_backward,
                          progress=progress, desc=desc)
    importance = recorder.scores()
    n_top, n_final = budget
    masks = select_top(importance, n_final if final else n_top)
    if not final:
        masks = regrow(masks, meter.scores(), importance, n_final - n_top)
    apply_channel_mask(model, units, masks)
    zero_optimizer_state(optimizer, model, units, masks)
    return masks, {**stats, "channels_kept": n_final, "regrown": 0 if final else n_final - n_top}


def _finetune(model, x, y, cfg: SCAConfig, train_cfg: TrainConfig, generator, progress,
              hold: Optional[Callable[[], None]] = None) -> list[dict]:
    """Fine-tune the physically reduced model for cfg.finetune_epochs (cosine LR, L1 term kept; then `hold`, if
    given, after every backward)."""
    if cfg.finetune_epochs == 0:
        return []
    ft = replace(train_cfg, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr or cfg.lr, optimizer=cfg.optimizer,
                 lr_schedule="cosine")
    optimizer = make_optimizer(model.parameters(), ft)
    scheduler = make_scheduler(optimizer, ft, ft.epochs * steps_per_epoch(len(y), ft.batch_size))
    convs = all_convs(model)

    def after_backward() -> None:
        add_l1_subgradient(convs, cfg.l1_lambda)
        if hold is not None:
            hold()

    return [{"phase": "finetune", "epoch": e,
             **run_epoch(model, x, y, ft, optimizer, generator, scheduler, progress=progress, desc=f"finetune {e}",
                         after_backward=after_backward)}
            for e in range(ft.epochs)]


def run_schedule(work: nn.Module, units: list, remove: Remover, dataset: Dataset, p: float, cfg: SCAConfig,
                 train_cfg: TrainConfig, seed: int, device: torch.device,
                 progress: bool) -> tuple[nn.Module, dict[str, torch.Tensor], list[dict]]:
    """The SCA schedule shared by every model family (see `sca_prune`), on `work` (on `device`; trained and masked
    in place): cfg.epochs prune/regrow epochs over `units` (ConvUnit, or anything with conv/bn/node names such as
    sca_resnet.ChannelUnit), `remove(work, units, final masks)`, then cfg.finetune_epochs of the reduced model.
    Returns (reduced model, final masks {unit.conv: bool (C_out,)}, history)."""
    budget = channel_budget(p, cfg.q, sum(work.get_submodule(u.conv).out_channels for u in units), len(units))
    ft = replace(train_cfg, epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, lr_schedule="constant")
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(work.parameters(), ft)
    history = []
    with torch_threads(train_cfg.num_threads):
        for epoch in range(cfg.epochs):
            masks, record = _schedule_epoch(work, units, x, y, cfg, ft, optimizer, generator, budget,
                                            epoch == cfg.epochs - 1, progress, f"sca p={p} epoch {epoch}")
            history.append({"phase": "prune", "epoch": epoch, **record})
        pruned, hold = remove(work, units, masks)
        history += _finetune(pruned, x, y, cfg, train_cfg, generator, progress, hold)
    return pruned, masks, history


def sca_prune(model: nn.Sequential, dataset: Dataset, ratio: float, cfg: Optional[SCAConfig] = None,
              train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
              progress: bool = True) -> tuple[nn.Sequential, CompressionResult]:
    """SCA-prune a trained flat conv SNN (conv -> BN -> IF/LIF units; FC layers untouched) to remove `ratio` = p
    of all conv channels; returns (smaller dense Sequential of the same layer types, CompressionResult).
    The input model is not modified. ratio 0 returns an unchanged deep copy.

    Schedule (Li et al. 2024, METHODS.md): for each of cfg.epochs epochs, train on dataset's train split with
    grad(W) += lambda * sign(W) on conv weights after every backward while recording S_lk (mean over the epoch's
    samples and T of ||H_lk[t]||_1, H before reset) and |dL/dgamma|; at the epoch's end rank all conv channels of
    all layers together, keep the top 1-(p+q), regrow the q*N pruned channels with the largest |dL/dgamma|, zero
    the masked filters and BN gamma/beta (they stay trainable). The last epoch's update keeps exactly the top 1-p
    (no regrowth); the masked channels are then physically removed (`base.remove_channels`).

    Choices the paper leaves open (ours): S sums |H| over the H x W map as the paper's L1 norm (cfg.spatial="sum";
    "mean" is an opt-in variant, see SCAConfig); counts are n_final = max(#conv layers, round_half_up((1-p)N)) and
    n_top = round_half_up((1-p-q)N) (`channel_budget`), so every mask keeps n_final channels and each conv at least
    one (`select_top`); importance and gradients come from the epoch's own training passes (train-mode BN), the mask
    is applied once per epoch, not after every step; |dL/dgamma| is summed over the epoch's batches as the absolute
    value of each batch's gradient; a channel masked for a whole epoch has a zero filter and gamma, hence zero BN
    input and exactly zero dL/dgamma, so it regrows only by ties (broken by importance); regrown channels keep
    their current (possibly zero) values; the optimizer's moments of masked channels are zeroed at each mask
    update; the schedule uses a constant LR (cfg.lr, Adam by default instead of the paper's SGD 0.01, for a
    short run), and the reduced model is fine-tuned cfg.finetune_epochs with a cosine LR and the L1 term.
    Randomness: shuffling and Poisson spikes from torch.Generator(seed) on the device.
    Raises ValueError for ratio outside [0, 1) or a model without conv -> BN -> spiking-node units. Spiking ResNets
    take workloads.compression.sca_resnet.sca_prune_resnet (compress("sca", ...) picks it by model type).
    """
    start = time.perf_counter()
    p, cfg, train_cfg = check_ratio(ratio), cfg or SCAConfig(), train_cfg or TrainConfig()
    device = device or default_device()
    work = copy.deepcopy(model).to(device)
    units = find_conv_units(work) if p == 0.0 else channel_units(work)
    before = {u.conv: work.get_submodule(u.conv).out_channels for u in units}
    params_before = count_parameters(work)
    if p == 0.0:
        return work, CompressionResult("sca", 0.0, params_before, params_before,
                                       {n: list(range(c)) for n, c in before.items()}, before, dict(before), [],
                                       "ratio 0: unchanged deep copy", time.perf_counter() - start)
    pruned, masks, history = run_schedule(work, units, lambda m, u, k: (remove_channels(m, u, k), None), dataset,
                                          p, cfg, train_cfg, seed, device, progress)
    kept = {n: torch.nonzero(m).flatten().tolist() for n, m in masks.items()}
    notes = (f"SCA p={p} q={cfg.q} lambda={cfg.l1_lambda}: {sum(map(len, kept.values()))}/{sum(before.values())} "
             f"conv channels kept, {cfg.epochs} prune/regrow epochs + {cfg.finetune_epochs} fine-tune epochs")
    return pruned, CompressionResult("sca", p, params_before, count_parameters(pruned), kept, before,
                                     {n: len(k) for n, k in kept.items()}, history, notes,
                                     time.perf_counter() - start)
