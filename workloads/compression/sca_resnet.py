"""SCA on spiking ResNets (workloads.models.resnet): the channel units the rule of Li et al. (ICML 2024) defines in
residual blocks, the SCA schedule of workloads.compression.sca over them, and physical removal where it is exact.

Rule (METHODS.md/SCA): the BN and spiking neuron right after a conv decide that conv's output channels; in
pre-activation blocks a block's BN1/SN1 decide the previous block's Conv2 (and its 1x1 shortcut, summed into the
same BN) and BN2/SN2 decide its own Conv1; the stem conv is decided by the first block's BN1/SN1 and the last
Conv2 by the head's final BN/SN. In post-activation blocks (ResNet19) the rule applies cleanly to conv1 only
(bn1/sn1 read nothing else). conv2 and the 1x1 shortcut are summed before sn2, whose potential measures the sum,
not the conv; the stem's conv-BN-SN decides its own spikes, but they are the stage-1 stream that every block's sn2
re-creates, so masking it could only zero weights, never remove a neuron. These stream convs stay dense, unranked.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from workloads.compression.base import (CHANNEL_PRESERVING, CompressionResult, check_ratio, find_conv_units,
                                        flat_feature_index, latent_weight, restore_parametrizations, slice_bn,
                                        slice_conv, slice_linear_inputs, strip_parametrizations)
from workloads.compression.sca import SCAConfig, run_schedule
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.models.resnet import BasicBlock, PreActBlock, SpikingResNet
from workloads.train import TrainConfig, default_device


@dataclass(frozen=True)
class ChannelUnit:
    """A set of channels decided by one BN + spiking neuron, by module name in the model.

    conv: the unit's key (its first writer); writers: the convs whose output channels the unit decides (filters
    zeroed when masked); bn, node: the BatchNorm2d whose gamma/beta are zeroed and the neuron whose membrane
    potential gives the importance; readers: (name, flattened) of the Conv2d/Linear layers fed by the node's
    spikes (their input channels follow; flattened: a Flatten lies before a Linear); segment: units sharing one
    channel space (a residual stream between projections) have the same segment; a block-internal unit is its
    own segment. A channel can be removed physically only when every unit of its segment masks it.
    """

    conv: str
    writers: tuple[str, ...]
    bn: str
    node: str
    readers: tuple[tuple[str, bool], ...]
    segment: str


@dataclass
class _Walk:
    """State of the unit search along stem -> blocks -> head: found units; writers of the residual-stream current
    no BN/SN has read yet (pre-activation) or None (the stream carries spikes); the stream's segment."""

    units: list[ChannelUnit] = field(default_factory=list)
    pending: Optional[tuple[str, ...]] = None
    segment: str = ""


def _preact(walk: _Walk, block: PreActBlock, name: str) -> None:
    """BN1/SN1 close the stream unit of the previous writers; BN2/SN2 decide conv1; conv2 (+ shortcut) write."""
    if walk.pending is None:
        raise ValueError(f"block {name}: a pre-activation block must read a current (a conv output), got spikes")
    shortcut = (f"{name}.shortcut",) if block.projection else ()
    readers = tuple((r, False) for r in (f"{name}.conv1",) + shortcut)
    walk.units.append(ChannelUnit(walk.pending[0], walk.pending, f"{name}.bn1", f"{name}.sn1", readers, walk.segment))
    walk.units.append(ChannelUnit(f"{name}.conv1", (f"{name}.conv1",), f"{name}.bn2", f"{name}.sn2",
                                  ((f"{name}.conv2", False),), f"{name}.conv1"))
    walk.pending = (f"{name}.conv2",) + shortcut
    if block.projection:  # the old stream ends here: the shortcut reads sn1's spikes, not x
        walk.segment = f"{name}.conv2"


def _basic(walk: _Walk, block: BasicBlock, name: str) -> None:
    """Post-activation: bn1/sn1 decide conv1 (read by conv2); conv2, the shortcut and sn2 are the stream."""
    if walk.pending is not None:
        raise ValueError(f"block {name}: a post-activation block must read spikes, got a pending current")
    walk.units.append(ChannelUnit(f"{name}.conv1", (f"{name}.conv1",), f"{name}.bn1", f"{name}.sn1",
                                  ((f"{name}.conv2", False),), f"{name}.conv1"))


#: block type -> rule(walk, block, module name) adding the block's channel units
BLOCK_RULES: dict[type, Callable[[_Walk, nn.Module, str], None]] = {PreActBlock: _preact, BasicBlock: _basic}


def _stem(walk: _Walk, stem: nn.Sequential) -> None:
    """Conv-BN-SN units inside the stem are plain units; a last conv without BN/SN starts the pre-activation stream
    (its BN/SN are the first block's); a last conv-BN-SN (ResNet19) emits the spike stream and stays dense."""
    for u in find_conv_units(stem):
        name = f"stem.{u.conv}"
        if u.consumer is not None:
            if u.bn is None or u.node is None:
                raise ValueError(f"layer {name}: SCA needs a BatchNorm2d and a spiking neuron after every conv")
            walk.units.append(ChannelUnit(name, (name,), f"stem.{u.bn}", f"stem.{u.node}",
                                          ((f"stem.{u.consumer}", u.flattened),), name))
        elif u.bn is None and u.node is None:
            walk.pending, walk.segment = (name,), name
        elif u.bn is None or u.node is None:
            raise ValueError(f"layer {name}: the stem must end in a conv alone or in conv-BN-neuron")


def _head(walk: _Walk, head: nn.Sequential) -> None:
    """A pending stream is decided by the head's leading BN + neuron, read by the next Conv2d/Linear."""
    if walk.pending is None:
        return
    names, mods = zip(*head.named_children())
    if len(mods) < 3 or not isinstance(mods[0], nn.BatchNorm2d) or not isinstance(mods[1], BaseNode):
        raise ValueError("head: after pre-activation blocks the head must start with BatchNorm2d, a spiking neuron "
                         "and a weight layer")
    flattened = False
    for name, mod in zip(names[2:], mods[2:]):
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            readers = ((f"head.{name}", flattened),)
            walk.units.append(ChannelUnit(walk.pending[0], walk.pending, f"head.{names[0]}", f"head.{names[1]}",
                                          readers, walk.segment))
            return
        flattened = flattened or isinstance(mod, nn.Flatten)
        if not isinstance(mod, CHANNEL_PRESERVING + (nn.Flatten,)):
            raise ValueError(f"layer head.{name}: {type(mod).__name__} is not supported between the head's neuron "
                             "and its weight layer")
    raise ValueError("head: no Conv2d or Linear reads the final neuron")


def find_resnet_units(model: SpikingResNet) -> list[ChannelUnit]:
    """ChannelUnits of a spiking ResNet in forward order (stem, blocks by BLOCK_RULES, head). Raises ValueError for
    another model type, an unknown block type, a block order the rules cannot follow, or a writer/reader that is
    not a plain ungrouped Conv2d / Linear."""
    if not isinstance(model, SpikingResNet):
        raise ValueError(f"model must be a workloads.models.resnet.SpikingResNet, got {type(model).__name__}")
    walk = _Walk()
    _stem(walk, model.stem)
    for stage_name, stage in model.stages.named_children():
        for block_name, block in stage.named_children():
            rule = BLOCK_RULES.get(type(block))
            if rule is None:
                raise ValueError(f"block stages.{stage_name}.{block_name}: {type(block).__name__} is not one of "
                                 f"{[t.__name__ for t in BLOCK_RULES]}")
            rule(walk, block, f"stages.{stage_name}.{block_name}")
    _head(walk, model.head)
    for unit in walk.units:
        _check_unit(model, unit)
    return walk.units


def _check_unit(model: nn.Module, unit: ChannelUnit) -> None:
    """ValueError unless the unit's writers are ungrouped Conv2d, its readers ungrouped Conv2d/Linear, its bn a
    BatchNorm2d and its node a spiking neuron (e.g. a DSP low-rank layer cannot be sliced here)."""
    convs = [model.get_submodule(w) for w in unit.writers]
    readers = [model.get_submodule(r) for r, _ in unit.readers]
    if not all(isinstance(c, nn.Conv2d) for c in convs):
        raise ValueError(f"unit {unit.conv}: writers {unit.writers} must be Conv2d")
    if any(c.groups != 1 for c in convs) or any(getattr(r, "groups", 1) != 1 for r in readers):
        raise ValueError(f"unit {unit.conv}: grouped convs are not supported")
    if not all(isinstance(r, (nn.Conv2d, nn.Linear)) for r in readers):
        raise ValueError(f"unit {unit.conv}: readers {unit.readers} must be Conv2d or Linear")
    if not isinstance(model.get_submodule(unit.bn), nn.BatchNorm2d):
        raise ValueError(f"unit {unit.conv}: {unit.bn} must be a BatchNorm2d")
    if not isinstance(model.get_submodule(unit.node), BaseNode):
        raise ValueError(f"unit {unit.conv}: {unit.node} must be a spiking neuron")


def physical_kept(units: list[ChannelUnit], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """unit.conv -> sorted indices (int64, CPU) of the channels kept physically: those some unit of the segment
    keeps (the OR of the segment's masks). Raises ValueError if a segment keeps no channel."""
    by_segment: dict[str, torch.Tensor] = {}
    for u in units:
        m = masks[u.conv].cpu().bool()
        by_segment[u.segment] = m if u.segment not in by_segment else by_segment[u.segment] | m
    for seg, m in by_segment.items():
        if not bool(m.any()):
            raise ValueError(f"segment {seg}: must keep at least one channel")
    return {u.conv: torch.nonzero(by_segment[u.segment]).flatten() for u in units}


def _slice_plan(model: nn.Module, units: list[ChannelUnit], kept: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    """New module per sliced name: writers lose output channels, BNs entries, readers input channels."""
    out, inp, bns = {}, {}, {}
    for u in units:
        k = kept[u.conv]
        out.update({w: k for w in u.writers})
        bns[u.bn] = k
        inp.update({r: (k, flat, model.get_submodule(u.writers[0]).out_channels) for r, flat in u.readers})
    new = {name: slice_bn(model.get_submodule(name), k) for name, k in bns.items()}
    for name in set(out) | set(inp):
        mod = model.get_submodule(name)
        dev = mod.weight.device
        if isinstance(mod, nn.Linear):
            k, flat, c = inp[name]
            idx = flat_feature_index(k, c, mod.in_features) if flat else k
            new[name] = slice_linear_inputs(mod, idx.to(dev))
            continue
        o = out.get(name, torch.arange(mod.out_channels))
        i = inp[name][0] if name in inp else torch.arange(mod.in_channels)
        new[name] = slice_conv(mod, o.to(dev), i.to(dev))
    return new


def _held_entries(units: list[ChannelUnit], masks: dict[str, torch.Tensor],
                  kept: dict[str, torch.Tensor]) -> list[tuple[str, str, int, object]]:
    """(module, tensor, dim, indices) of the reduced model that a masked-but-kept channel pins at zero: writer
    filters and biases, BN gamma/beta, and the readers' input weights of the channel (it never spikes). Indices
    are channel positions in the reduced model, or ("flat", channels, C) for a Linear after Flatten."""
    entries = []
    for u in units:
        k = kept[u.conv]
        local = torch.nonzero(~masks[u.conv].cpu().bool()[k]).flatten()
        if not len(local):
            continue
        entries += [(w, t, 0, local) for w in u.writers for t in ("weight", "bias")]
        entries += [(u.bn, "weight", 0, local), (u.bn, "bias", 0, local)]
        for r, flat in u.readers:
            entries.append((r, "weight", 1, ("flat", local, len(k)) if flat else local))
    return entries


def _resolve(model: nn.Module, entries) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    """(parameter, dim, index on its device) of every held entry that exists (layers without bias skip it)."""
    out = []
    for name, tensor, dim, idx in entries:
        mod = model.get_submodule(name)
        p = latent_weight(mod) if tensor == "weight" else getattr(mod, tensor)
        if p is None:
            continue
        if isinstance(idx, tuple):  # channels of a Linear after Flatten: their H*W features
            idx = flat_feature_index(idx[1], idx[2], p.shape[1])
        out.append((p, dim, idx.to(p.device)))
    return out


def remove_resnet_channels(model: nn.Module, units: list[ChannelUnit],
                           masks: dict[str, torch.Tensor]) -> tuple[nn.Module, Callable[[], None]]:
    """A smaller copy of a masked ResNet and a gradient hook. Physically removed: the channels every unit of their
    segment masks (block-internal channels: exactly the masked ones; residual-stream channels: only when masked by
    every conv2/shortcut/stem unit writing the stream and so by every BN1 reading it), from the writers' filters,
    the BNs and the readers' input channels. A masked channel kept physically (another unit of its stream keeps
    it) keeps its zero filters and BN gamma/beta, and its readers' input weights are zeroed too (exact: the
    channel never spikes), so lowering sees zero synapses. Outputs equal those of the masked model. The hook,
    called after backward, zeroes the gradients of those pinned entries so fine-tuning keeps them at zero.
    Parametrizations are taken off for slicing and put back (base.remove_channels). Raises ValueError if a segment
    keeps no channel."""
    kept = physical_kept(units, masks)
    new = copy.deepcopy(model)
    saved = strip_parametrizations(new)
    for name, module in _slice_plan(new, units, kept).items():
        new.set_submodule(name, module)
    restore_parametrizations(new, saved)
    pinned = _resolve(new, _held_entries(units, masks, kept))
    with torch.no_grad():
        for p, dim, idx in pinned:
            p.index_fill_(dim, idx, 0.0)

    @torch.no_grad()
    def hold() -> None:
        for p, dim, idx in pinned:
            if p.grad is not None:
                p.grad.index_fill_(dim, idx, 0.0)

    return new, hold


def sca_prune_resnet(model: SpikingResNet, dataset: Dataset, ratio: float, cfg: Optional[SCAConfig] = None,
                     train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
                     progress: bool = True) -> tuple[SpikingResNet, CompressionResult]:
    """SCA-prune a trained spiking ResNet: the schedule of `workloads.compression.sca.sca_prune` (global ranking of
    all units' channels by the mean L1 norm of the deciding neuron's membrane potential before reset, regrowth by
    |dL/dgamma| of the deciding BN, L1 term on every conv, masks zeroing writer filters and BN gamma/beta) over the
    units of `find_resnet_units`, then `remove_resnet_channels` and fine-tuning with the pinned entries held at 0.
    ratio p is the fraction of the units' channels masked (ResNet19: of the conv1 channels only). The BN of a
    masked stream unit still reads what earlier writers of its stream put there (identity shortcuts), so its
    |dL/dgamma| is generally not zero and regrowth there follows the gradient; a masked block-internal channel (or
    the first unit of a stream) has zero BN input, gradient 0, and regrows only by ties, as in sca_prune.

    Result: kept_channels[unit.conv] = channels the rule keeps (original indices); channels_before/after = the
    unit's first writer's output width before and after physical removal (after >= kept when a masked stream
    channel is kept with zero weights); notes count both. The input model is not modified; ratio 0 returns an
    unchanged deep copy. Raises ValueError for a ratio outside [0, 1) or a model find_resnet_units rejects.
    """
    start = time.perf_counter()
    p, cfg, train_cfg = check_ratio(ratio), cfg or SCAConfig(), train_cfg or TrainConfig()
    device = device or default_device()
    work = copy.deepcopy(model).to(device)
    units = find_resnet_units(work)
    before = {u.conv: work.get_submodule(u.conv).out_channels for u in units}
    params_before = count_parameters(work)
    if p == 0.0:
        return work, CompressionResult("sca", 0.0, params_before, params_before,
                                       {n: list(range(c)) for n, c in before.items()}, before, dict(before), [],
                                       "ratio 0: unchanged deep copy", time.perf_counter() - start)
    pruned, masks, history = run_schedule(work, units, remove_resnet_channels, dataset, p, cfg, train_cfg, seed,
                                          device, progress)
    kept = {n: torch.nonzero(m.cpu()).flatten().tolist() for n, m in masks.items()}
    after = {u.conv: pruned.get_submodule(u.conv).out_channels for u in units}
    n_kept, n_phys, n_all = sum(map(len, kept.values())), sum(after.values()), sum(before.values())
    notes = (f"SCA (ResNet rule) p={p} q={cfg.q} lambda={cfg.l1_lambda}: {n_kept}/{n_all} unit channels kept by "
             f"the rule, {n_phys} kept physically ({n_phys - n_kept} masked residual-stream channels kept with zero "
             f"weights), {cfg.epochs} prune/regrow epochs + {cfg.finetune_epochs} fine-tune epochs")
    return pruned, CompressionResult("sca", p, params_before, count_parameters(pruned), kept, before, after, history,
                                     notes, time.perf_counter() - start)
