"""Shared pieces of compression: the result record, the ratio check, the conv units of a flat SpikingJelly
Sequential, channel masking (zeroing), physical channel removal (a smaller dense Sequential), parametrization
handling, model size and the fine-tuning loop every method uses.
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Iterable, Optional

import torch
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn
from torch.nn.utils import parametrize

from workloads.train import Objective, TrainConfig, make_optimizer, make_scheduler, run_epoch, steps_per_epoch

# Layers that carry a conv's channels unchanged to the next weighted layer.
CHANNEL_PRESERVING = (nn.BatchNorm2d, BaseNode, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout,
                      nn.Identity)


@dataclass
class CompressionResult:
    """What a compression method did. params_* count scalar parameters; kept_channels maps a conv layer's name in
    the Sequential (e.g. "4") to its kept output-channel indices (sorted); channels_before/after map the same names
    to channel counts; history holds one dict per epoch (with "phase"); seconds is the wall time of the method.

    What lowering needs (workloads.lowering.lower(..., compression=result)), keyed by module name in the returned
    model (`model.named_modules()`, e.g. "4" or "3.1", the index lowering reports): weight_bits: bits per stored
    weight of quantized weight layers (layers absent keep lower()'s weight_bits, both subject to its weight_fit
    policy; full-precision layers are absent);
    storage: storage format of a weight layer ("sparse" for unstructured zeros); state_bits: membrane-state bits
    of a spiking-neuron layer; ranks: rank r of a low-rank layer (workloads.compression.dsp), lowered as two
    projections through a relay population of r neurons (per position for a conv). size_bits: model size as
    QP-SNN (Wei et al., ICLR 2025) counts it, quantized weights x their bits + every other parameter x 32
    (`model_size_bits`); unstructured zeros are not subtracted (their index cost is the hardware model's)."""

    method: str
    ratio: float
    params_before: int
    params_after: int
    kept_channels: dict[str, list[int]] = field(default_factory=dict)
    channels_before: dict[str, int] = field(default_factory=dict)
    channels_after: dict[str, int] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0
    weight_bits: dict[str, int] = field(default_factory=dict)
    storage: dict[str, str] = field(default_factory=dict)
    state_bits: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    size_bits: int = 0


def check_ratio(ratio: float) -> float:
    """Return ratio as float if it is a real number (not a bool or a string) in [0, 1) (fraction of channels
    removed), else raise ValueError."""
    if isinstance(ratio, (bool, str, bytes)) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    return float(ratio)


@dataclass(frozen=True)
class ConvUnit:
    """A prunable conv and the layers its output channels reach, by module name in the Sequential.

    bn: the BatchNorm2d right after the conv (None if absent); node: the spiking neuron after it (None if absent);
    consumer: the next Conv2d or Linear (None if the conv is last); flattened: a Flatten lies before the consumer.
    """

    conv: str
    bn: str | None
    node: str | None
    consumer: str | None
    flattened: bool


def _unit_at(names: list[str], mods: list[nn.Module], i: int) -> ConvUnit:
    """Build the ConvUnit of the conv at position i; ValueError if a layer between it and its consumer would
    mix or reshape channels in a way the removal cannot follow."""
    bn = names[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
    j = i + (2 if bn else 1)
    node = names[j] if j < len(mods) and isinstance(mods[j], BaseNode) else None
    flattened = False
    for name, mod in zip(names[i + 1:], mods[i + 1:]):
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            if isinstance(mod, nn.Linear) != flattened:
                raise ValueError(f"layer {name}: a Linear must follow Flatten and a Conv2d must not")
            return ConvUnit(names[i], bn, node, name, flattened)
        if isinstance(mod, nn.Flatten):
            flattened = True
        elif not isinstance(mod, CHANNEL_PRESERVING):
            raise ValueError(f"layer {name}: {type(mod).__name__} is not supported between a conv and its consumer")
    return ConvUnit(names[i], bn, node, None, flattened)


def find_conv_units(model: nn.Sequential) -> list[ConvUnit]:
    """ConvUnits of every Conv2d of a flat nn.Sequential, in order. Raises ValueError for grouped convs or a
    non-Sequential model."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be a flat nn.Sequential, got {type(model).__name__}")
    names, mods = zip(*model.named_children()) if len(model) else ((), ())
    units = []
    for i, mod in enumerate(mods):
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1:
                raise ValueError(f"layer {names[i]}: groups must be 1, got {mod.groups}")
            units.append(_unit_at(list(names), list(mods), i))
    return units


def channel_units(model: nn.Sequential) -> list[ConvUnit]:
    """find_conv_units(model), refusing a model without one: a channel pruner would prune nothing (a Conv1d or
    linear-only net). Raises ValueError (one line, with the methods that do apply) or what find_conv_units raises."""
    units = find_conv_units(model)
    if not units:
        raise ValueError("model: has no Conv2d layer whose output channels a channel pruner could remove (Conv1d "
                         "and linear-only nets are not channel-pruned: use l1p or dsp, or a quantizer at ratio 0)")
    return units


@torch.no_grad()
def apply_channel_mask(model: nn.Sequential, units: list[ConvUnit], masks: dict[str, torch.Tensor]) -> None:
    """Zero, in place, the filters (and conv bias) and the BN gamma and beta of every channel whose mask is False.

    masks: conv name -> bool tensor (C_out,). The parameters stay trainable. With gamma = beta = 0 a masked
    channel feeds 0 to its neuron, which (threshold > 0, starting from V_reset = 0) never fires.
    """
    for unit in units:
        drop = ~masks[unit.conv]
        for p in masked_params(model, unit):
            p[drop.to(p.device)] = 0.0


def masked_params(model: nn.Module, unit: ConvUnit) -> list[torch.Tensor]:
    """The per-output-channel parameters a channel mask zeroes: conv weight (and bias), BN gamma and beta. A unit
    with several writer convs (`unit.writers`, e.g. workloads.compression.sca_resnet.ChannelUnit: a block's conv2
    and its 1x1 shortcut, both summed into one BN) gives the weight (and bias) of every writer."""
    params = []
    for name in getattr(unit, "writers", (unit.conv,)):
        conv = model.get_submodule(name)
        params += [conv.weight, conv.bias]
    if unit.bn is not None:
        bn = model.get_submodule(unit.bn)
        params += [bn.weight, bn.bias]
    return [p for p in params if p is not None]


def _copy_into(new: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Copy tensors (parameters or buffers by attribute name) into `new`, which has matching shapes."""
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(new, name).copy_(value)
    return new


def _step(mod: nn.Module) -> dict:
    """The step_mode keyword of a SpikingJelly layer (empty for a plain torch layer)."""
    return {"step_mode": mod.step_mode} if hasattr(mod, "step_mode") else {}


def slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor) -> nn.Conv2d:
    """A new conv of the same type keeping output channels out_idx and input channels in_idx (and train/eval mode)."""
    new = type(conv)(len(in_idx), len(out_idx), conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     1, conv.bias is not None, conv.padding_mode, **_step(conv)).to(conv.weight.device)
    tensors = {"weight": conv.weight[out_idx][:, in_idx]}
    if conv.bias is not None:
        tensors["bias"] = conv.bias[out_idx]
    return _copy_into(new, tensors).train(conv.training)


def slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    """A new BatchNorm2d of the same type keeping channels idx (affine parameters, running statistics and the
    train/eval mode)."""
    device = next(iter([*bn.parameters(), *bn.buffers()])).device
    idx = idx.to(device)
    new = type(bn)(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats, **_step(bn)).to(device)
    names = [n for n in ("weight", "bias", "running_mean", "running_var") if getattr(bn, n) is not None]
    new = _copy_into(new, {n: getattr(bn, n)[idx] for n in names})
    if bn.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def slice_linear_inputs(fc: nn.Linear, idx: torch.Tensor) -> nn.Linear:
    """A new Linear of the same type keeping input features idx (and train/eval mode)."""
    new = type(fc)(len(idx), fc.out_features, fc.bias is not None, **_step(fc)).to(fc.weight.device)
    tensors = {"weight": fc.weight[:, idx]}
    if fc.bias is not None:
        tensors["bias"] = fc.bias
    return _copy_into(new, tensors).train(fc.training)


def flat_feature_index(kept: torch.Tensor, n_channels: int, in_features: int) -> torch.Tensor:
    """Flattened-feature indices owned by the kept channels after a C-order Flatten of (C, H, W):
    channel c owns features c*H*W .. c*H*W + H*W - 1. Raises ValueError if in_features is not a multiple of C."""
    if in_features % n_channels:
        raise ValueError(f"in_features {in_features} is not a multiple of the {n_channels} channels before Flatten")
    hw = in_features // n_channels
    return (kept[:, None] * hw + torch.arange(hw, device=kept.device)[None, :]).reshape(-1)


def remove_channels(model: nn.Sequential, units: list[ConvUnit], masks: dict[str, torch.Tensor]) -> nn.Sequential:
    """A new, smaller dense Sequential without the masked channels: each conv loses its masked output channels,
    its BN their entries, and its consumer the matching input channels (or, after Flatten, the H*W input features
    each channel owns). Layer types are unchanged. Outputs equal those of the masked model (apply_channel_mask)
    because a masked channel carries exactly zero spikes. Weight parametrizations (fake quantizers, see
    workloads.compression.quant) are taken off, the latent weights sliced, and the same parametrization objects
    put back, so they must not hold per-channel state. Raises ValueError if a mask keeps no channel."""
    new = copy.deepcopy(model)
    saved = strip_parametrizations(new)
    _slice_units(new, units, masks)
    restore_parametrizations(new, saved)
    return new


def _slice_units(new: nn.Sequential, units: list[ConvUnit], masks: dict[str, torch.Tensor]) -> None:
    """remove_channels' in-place slicing of `new` (plain, unparametrized modules)."""
    for unit in units:
        mask = masks[unit.conv]
        if not bool(mask.any()):
            raise ValueError(f"layer {unit.conv}: a conv must keep at least one channel")
        kept = torch.nonzero(mask.cpu()).flatten()
        conv = new.get_submodule(unit.conv)
        setattr(new, unit.conv, slice_conv(conv, kept.to(conv.weight.device),
                                           torch.arange(conv.in_channels, device=conv.weight.device)))
        if unit.bn is not None:
            setattr(new, unit.bn, slice_bn(new.get_submodule(unit.bn), kept))
        if unit.consumer is None:
            continue
        nxt = new.get_submodule(unit.consumer)
        if unit.flattened:
            idx = flat_feature_index(kept, len(mask), nxt.in_features).to(nxt.weight.device)
            setattr(new, unit.consumer, slice_linear_inputs(nxt, idx))
        else:
            out_all = torch.arange(nxt.out_channels, device=nxt.weight.device)
            setattr(new, unit.consumer, slice_conv(nxt, out_all, kept.to(nxt.weight.device)))


def strip_parametrizations(model: nn.Module) -> dict[str, dict[str, list[nn.Module]]]:
    """Remove every torch.nn.utils.parametrize parametrization of `model` in place, keeping the latent (original)
    tensors as plain parameters; returns {module name: {tensor name: [parametrization modules]}} for
    `restore_parametrizations`."""
    saved: dict[str, dict[str, list[nn.Module]]] = {}
    for name, mod in list(model.named_modules()):
        if not parametrize.is_parametrized(mod):
            continue
        saved[name] = {t: list(plist) for t, plist in mod.parametrizations.items()}
        for t in saved[name]:
            parametrize.remove_parametrizations(mod, t, leave_parametrized=False)
    return saved


def restore_parametrizations(model: nn.Module, saved: dict[str, dict[str, list[nn.Module]]]) -> None:
    """Register again, in order, the parametrizations `strip_parametrizations` returned (modules found by name)."""
    for name, tensors in saved.items():
        mod = model.get_submodule(name)
        for t, plist in tensors.items():
            for p in plist:
                parametrize.register_parametrization(mod, t, p)


def latent_weight(module: nn.Module) -> torch.Tensor:
    """The trained (latent) weight of a layer: the original tensor under a parametrization, else .weight."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def model_size_bits(model: nn.Module, weight_bits: dict[str, int]) -> int:
    """Model size in bits as QP-SNN reports it (Wei et al., ICLR 2025): the weight of every module named in
    weight_bits x its bits + every other parameter x 32 (biases, BN, full-precision layers)."""
    bits_of = {}
    for name, bits in weight_bits.items():
        prefix = f"{name}." if name else ""
        bits_of[prefix + "weight"] = bits_of[prefix + "parametrizations.weight.original"] = int(bits)
    return int(sum(p.numel() * bits_of.get(n, 32) for n, p in model.named_parameters()))


#: a config field's annotation -> (accepted types, what the message calls them); bool is refused where not named
_FIELD_TYPES = {"int": ((int,), "an integer"), "float": ((int, float), "a finite number"),
                "bool": ((bool,), "true or false"), "str": ((str,), "a string")}


#: one range check of `check_fields`: ok, or (ok, the accepted values as text, e.g. "0 <= q < 1")
Check = bool | tuple[bool, str]


def one_of(choices: Iterable[str]) -> str:
    """The accepted-values text of a choice field, e.g. one_of(SPATIAL) -> "one of sum, mean" (order kept); pass
    the constant the check itself uses, so the message never drifts from it."""
    return "one of " + ", ".join(map(str, choices))


def check_fields(obj: object, checks: Callable[[], dict[str, Check]] | dict[str, Check]) -> None:
    """Raise ValueError naming the first field of a config dataclass `obj` whose value is not of its annotated
    type (int, float (finite), bool or str; None where the annotation is Optional) or whose check fails.
    checks: {field: (ok, accepted)} (or {field: ok}, which omits the accepted text), or a function giving it,
    called once the types hold (so a range check never compares a string or a float epoch count). A failed check
    reads "<Config>.<field> out of range: <value> (accepted: <accepted>)", e.g. "SCAConfig.q out of range: 5.0
    (accepted: 0 <= q < 1)"; use `one_of` for choice fields."""
    for f in fields(obj):
        kind = str(f.type).removeprefix("Optional[").removesuffix("]")
        value = getattr(obj, f.name)
        if kind not in _FIELD_TYPES or (value is None and str(f.type).startswith("Optional[")):
            continue
        types, what = _FIELD_TYPES[kind]
        bad = not isinstance(value, types) or (isinstance(value, bool) and kind != "bool")
        if not bad and kind == "float" and not math.isfinite(value):
            bad = True
        if bad:
            raise ValueError(f"{type(obj).__name__}.{f.name} must be {what}, got {value!r}")
    for name, check in (checks() if callable(checks) else checks).items():
        ok, accepted = check if isinstance(check, tuple) else (check, None)
        if not ok:
            hint = f" (accepted: {accepted})" if accepted else ""
            raise ValueError(f"{type(obj).__name__}.{name} out of range: {getattr(obj, name)!r}{hint}")


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train_cfg: TrainConfig, epochs: int, lr: float,
             optimizer: str, generator: torch.Generator, progress: bool, phase: str = "finetune",
             after_backward: Optional[Callable[[], None]] = None, objective: Optional[Objective] = None) -> list[dict]:
    """Train `model` (on x's device) for `epochs` with workloads.train.run_epoch: optimizer (a key of
    workloads.train.OPTIMIZERS) at `lr` with a per-step cosine schedule to 0; batch size, T and encoding from
    train_cfg. after_backward: gradient hook (L1 term, mask); objective: batch loss (None: cross-entropy, see
    workloads.train.run_epoch). Returns one dict per epoch with "phase"/"epoch"."""
    if epochs == 0:
        return []
    cfg = replace(train_cfg, epochs=epochs, lr=lr, optimizer=optimizer, lr_schedule="cosine")
    opt = make_optimizer(model.parameters(), cfg)
    sched = make_scheduler(opt, cfg, epochs * steps_per_epoch(len(y), cfg.batch_size))
    return [{"phase": phase, "epoch": e, **run_epoch(model, x, y, cfg, opt, generator, sched, after_backward,
                                                      progress=progress, desc=f"{phase} {e}", objective=objective)}
            for e in range(epochs)]
