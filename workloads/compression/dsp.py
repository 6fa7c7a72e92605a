"""DSP: structured low-rank compression from the truncated SVD (Sun, Cai et al., "Towards lightweight spiking
transformers: synapse pruning with synergistic learning-based compensation", arXiv 2508.01992): each weight matrix
W (out x in) becomes A B (A: out x r, B: r x in) with r set by the ratio, then the factors are fine-tuned.
On hardware a low-rank layer is two synaptic stages through r relay neurons (workloads.lowering)."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.compression.base import Check, CompressionResult, check_ratio, finetune, model_size_bits, one_of
from workloads.compression.compose import FineTuneConfig
from workloads.compression.quant import split_edges
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.train import TrainConfig, default_device, torch_threads

#: which layers DSP factorizes: name -> fn(name, module, edge names) -> bool (edge = first and last weight layer)
TARGETS = {
    "hidden": lambda name, mod, edge: isinstance(mod, (nn.Linear, nn.Conv2d)) and name not in edge,
    "linear": lambda name, mod, edge: isinstance(mod, nn.Linear) and name not in edge,
    "all": lambda name, mod, edge: isinstance(mod, (nn.Linear, nn.Conv2d)),
}


def _family(step_mode: Optional[str], name: str) -> tuple[type, dict]:
    """(layer class, extra kwargs): SpikingJelly layer.<name> with step_mode, or torch nn.<name> when None."""
    if step_mode is None:
        return getattr(nn, name), {}
    return getattr(layer, name), {"step_mode": step_mode}


class LowRankLinear(nn.Module):
    """y = second(first(x)): first = Linear(in, r, no bias) holds B, second = Linear(r, out, bias) holds A.
    Same input/output shapes as the Linear it replaces; r*(in + out) weights (+ out biases). step_mode: that of
    SpikingJelly layer.Linear sub-layers, or None for plain torch nn.Linear (as the replaced layer)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 step_mode: Optional[str] = "m"):
        super().__init__()
        cls, kw = _family(step_mode, "Linear")
        self.first = cls(in_features, rank, bias=False, **kw)
        self.second = cls(rank, out_features, bias=bias, **kw)

    @property
    def rank(self) -> int:
        return self.first.out_features

    @property
    def step_mode(self) -> Optional[str]:
        return getattr(self.first, "step_mode", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class LowRankConv2d(nn.Module):
    """y = second(first(x)): first = Conv2d(in, r, k, the original stride/padding/dilation, no bias) holds B
    reshaped to (r, in, kh, kw); second = 1x1 Conv2d(r, out, bias) holds A. Exact for W (out, in, kh, kw) seen
    as the matrix (out, in*kh*kw) = A B. r*(in*kh*kw + out) weights (+ out biases). Sub-layers of the family of
    `conv` (SpikingJelly layer.Conv2d with its step_mode, or torch nn.Conv2d). ValueError for groups != 1 or
    non-zero padding modes."""

    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"conv: groups must be 1 and padding_mode 'zeros', got {conv.groups}, "
                             f"{conv.padding_mode!r}")
        cls, kw = _family(getattr(conv, "step_mode", None), "Conv2d")
        self.first = cls(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                         bias=False, **kw)
        self.second = cls(rank, conv.out_channels, 1, bias=conv.bias is not None, **kw)

    @property
    def rank(self) -> int:
        return self.first.out_channels

    @property
    def step_mode(self) -> Optional[str]:
        return getattr(self.first, "step_mode", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def rank_for(ratio: float, n_out: int, n_in: int) -> int:
    """r = max(1, floor((1 - ratio) * n_out * n_in / (n_out + n_in))): the largest rank whose factors keep at most
    (1 - ratio) of the n_out x n_in weights, r*(n_out + n_in) <= (1 - ratio)*n_out*n_in (r = 1 if even that is
    over: the ratio is then not reached)."""
    return max(1, math.floor((1.0 - ratio) * n_out * n_in / (n_out + n_in) + 1e-9))


@torch.no_grad()
def svd_factors(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of a matrix w (out, in): A = U_r sqrt(S_r) (out, r), B = sqrt(S_r) V_r^T (r, in), the best
    rank-r approximation A B of w in Frobenius norm (Eckart-Young), split evenly between the factors (our
    choice). Computed in float64, returned in w's dtype."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(w.dtype), (root[:, None] * vh[:rank]).to(w.dtype)


@torch.no_grad()
def factorize(mod: nn.Module, rank: int) -> nn.Module:
    """The low-rank replacement of a Linear or Conv2d, initialised from its truncated SVD (bias copied).
    Raises ValueError for another type."""
    w = mod.weight.detach()
    if isinstance(mod, nn.Linear):
        new = LowRankLinear(mod.in_features, mod.out_features, rank, mod.bias is not None,
                            getattr(mod, "step_mode", None))
    elif isinstance(mod, nn.Conv2d):
        new = LowRankConv2d(mod, rank)
    else:
        raise ValueError(f"factorize: expects a Linear or Conv2d, got {type(mod).__name__}")
    a, b = svd_factors(w.reshape(len(w), -1), rank)
    new.to(w.device)
    new.first.weight.copy_(b.reshape(new.first.weight.shape))
    new.second.weight.copy_(a.reshape(new.second.weight.shape))
    if mod.bias is not None:
        new.second.bias.copy_(mod.bias)
    return new


@dataclass(frozen=True)
class DSPConfig(FineTuneConfig):
    """DSP settings (ValueError names a field out of range): targets, a key of TARGETS: "hidden" (default: every
    Linear and Conv2d but the first and the last weight layer of the model), "linear" (the hidden Linear layers:
    a Spikformer's block matrices) or "all" (every Linear and Conv2d, input conv and classifier included);
    finetune_epochs (2), lr, optimizer as FineTuneConfig."""

    targets: str = "hidden"

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus targets (a key of TARGETS)."""
        return {**super()._checks(), "targets": (self.targets in TARGETS, one_of(TARGETS))}


def target_layers(model: nn.Module, targets: str) -> dict[str, nn.Module]:
    """{name: module} DSP factorizes (TARGETS[targets]), in registration order; the factors of a layer that is
    already low-rank (DSP applied before) are not factorized again."""
    edge, _ = split_edges(model)
    low_rank = {n for n, m in model.named_modules() if isinstance(m, (LowRankConv2d, LowRankLinear))}
    return {n: m for n, m in model.named_modules()
            if TARGETS[targets](n, m, edge) and n.rpartition(".")[0] not in low_rank}


def dsp(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[DSPConfig] = None,
        train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
        progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """DSP (Sun, Cai et al. 2025): replace each target weight matrix W (out x in; a conv's W as out x
    (in*kh*kw)) by A B from its truncated SVD with r = rank_for(ratio, out, in), so the factors keep about
    (1 - ratio) of its weights, then fine-tune every parameter (factors included) cfg.finetune_epochs.

    Layers: the paper factorizes the transformer-block matrices, not the tokenizer or the head; the analogue on
    any model (cfg.targets "hidden", default) is every Conv2d and Linear but the first and the last weight layer
    (quant.split_edges, the same edge rule as the quantization methods); "linear" keeps the hidden Linear layers
    only, "all" takes every layer. A conv is factorized as its (out, in*kh*kw) matrix: a k x k conv to r
    channels followed by a 1x1 conv (exact for the reshaped matrix). A layer whose rank would not save weights
    (r >= min(out, in)) is left dense. Result: ranks {layer: r}; lowering makes each factorized layer two
    projections through a relay population of r neurons (per position for a conv). ratio 0 returns an
    unchanged deep copy. The input model is not modified. Raises ValueError for a ratio outside [0, 1).
    """
    start, p, cfg = time.perf_counter(), check_ratio(ratio), cfg or DSPConfig()
    train_cfg, device = train_cfg or TrainConfig(), device or default_device()
    work = copy.deepcopy(model).to(device)
    params_before = count_parameters(work)
    if p == 0.0:
        return work, CompressionResult("dsp", 0.0, params_before, params_before, notes="ratio 0: unchanged deep copy",
                                       size_bits=model_size_bits(work, {}), seconds=time.perf_counter() - start)
    ranks = {}
    for name, mod in target_layers(work, cfg.targets).items():
        n_out, n_in = mod.weight.shape[0], mod.weight[0].numel()
        r = rank_for(p, n_out, n_in)
        if r < min(n_out, n_in):
            parent, _, child = name.rpartition(".")
            setattr(work.get_submodule(parent), child, factorize(mod, r))
            ranks[name] = r
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch_threads(train_cfg.num_threads):
        history = finetune(work, x, y, train_cfg, cfg.finetune_epochs, cfg.lr, cfg.optimizer, generator, progress)
    notes = f"DSP: {len(ranks)} layers factorized, ranks {ranks}"
    if not ranks:
        logging.getLogger("workloads.compression").warning(
            "dsp: ratio %g factorizes no layer (targets %r: none of this model's layers, or none whose rank would "
            "save weights); the model is only fine-tuned", p, cfg.targets)
    return work, CompressionResult("dsp", p, params_before, count_parameters(work), history=history, notes=notes,
                                   seconds=time.perf_counter() - start, ranks=ranks,
                                   size_bits=model_size_bits(work, {}))
