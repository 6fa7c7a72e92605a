"""Q-SNN (Wei et al., "Q-SNNs: Quantized Spiking Neural Networks", ACM MM 2024, arXiv 2406.13672): 1-bit hidden
weights, 8-bit first/last layers, b-bit quantized membrane potential (workloads.neurons.QLIFNode) and the
weight-spike dual-regulation loss, as specified in /work/shared/METHODS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from workloads.compression.base import Check, CompressionResult
from workloads.compression.compose import FineTuneConfig, QuantStage, quantize_then_prune
from workloads.compression.magnitude import l1_filter_masks
from workloads.compression.quant import SignQuant, UniformQuant, attach, edge_hidden_plan
from workloads.data import Dataset
from workloads.neurons import make_neuron
from workloads.train import TrainConfig


@dataclass(frozen=True)
class QSNNConfig(FineTuneConfig):
    """Q-SNN settings (ValueError names a field out of range): state_bits b in 2..16 of the membrane (default 8,
    the paper's); edge_bits in 2..16 of the first conv and last FC (8); rate_lambda >= 0 weight of the firing-rate
    term (5e-3) and target_rate in [0, 1] (0.5); tau > 1 of the QLIF neurons (2: decay 0.5 as in the paper);
    pre_epochs >= 0 quantization-aware epochs before the optional channel pruning; finetune_epochs (default 3),
    lr, optimizer as FineTuneConfig."""

    finetune_epochs: int = 3
    state_bits: int = 8
    edge_bits: int = 8
    rate_lambda: float = 5e-3
    target_rate: float = 0.5
    tau: float = 2.0
    pre_epochs: int = 0

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus the Q-SNN fields' ranges."""
        return {**super()._checks(), "state_bits": (2 <= self.state_bits <= 16, "2 <= state_bits <= 16"),
                "edge_bits": (2 <= self.edge_bits <= 16, "2 <= edge_bits <= 16"),
                "rate_lambda": (self.rate_lambda >= 0, "rate_lambda >= 0"),
                "target_rate": (0 <= self.target_rate <= 1, "0 <= target_rate <= 1"),
                "tau": (self.tau > 1, "tau > 1"), "pre_epochs": (self.pre_epochs >= 0, "pre_epochs >= 0")}


class FiringRateRegulariser:
    """Context manager adding the spike part of Q-SNN's dual regulation, lambda * mean over the L spiking layers
    of (r_l - target)^2, r_l the mean of layer l's spike tensor over batch, T and neurons, to the gradient.

    The term depends on the model only through the spike tensors S_l, so while active a forward hook on every
    spiking node registers a tensor hook adding d/dS_l = lambda * 2 (r_l - target) / (L * numel(S_l)) to S_l's
    gradient: the parameters receive exactly the gradient of CE + the term, with workloads.train.run_epoch left
    as is (its reported "loss" stays the CE). penalty(): mean of the term over the training forwards seen."""

    def __init__(self, model: nn.Module, rate_lambda: float, target_rate: float = 0.5):
        self.nodes = [m for m in model.modules() if isinstance(m, BaseNode)]
        self.rate_lambda, self.target_rate = float(rate_lambda), float(target_rate)
        self._handles: list = []
        self._sum, self._forwards = 0.0, 0

    def __enter__(self) -> "FiringRateRegulariser":
        self._handles = [n.register_forward_hook(self._hook) for n in self.nodes]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, args, out: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and out.requires_grad):
            return
        gap = float(out.detach().float().mean()) - self.target_rate
        coef = self.rate_lambda * 2.0 * gap / (len(self.nodes) * out.numel())
        out.register_hook(lambda g: g + coef)
        self._sum += self.rate_lambda * gap * gap / len(self.nodes)
        self._forwards += 1 / len(self.nodes)

    def penalty(self) -> float:
        """Mean value of the regularisation term per training forward (0 before any)."""
        return self._sum / self._forwards if self._forwards else 0.0


def swap_neurons(model: nn.Module, bits: int, tau: float, ternary: bool = False) -> dict[str, int]:
    """Replace, in place, every SpikingJelly node of `model` by a QLIF node (workloads.neurons, "QLIF": decay
    1 - 1/tau, the node's own v_threshold, hard reset, V <- Q_b(tanh V) after reset; spikes in {-1, 0, 1} when
    ternary, as QT-SNN's); returns {name: bits}. Nodes whose class sets `operator = True` (SNN-ViT's saccadic
    and coincidence neurons, workloads.models.snn_vit) compute an attention operator and are left as they are."""
    names = [n for n, m in model.named_modules() if isinstance(m, BaseNode) and not getattr(m, "operator", False)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        old = model.get_submodule(name)
        setattr(model.get_submodule(parent_name), child,
                make_neuron("QLIF", tau, float(old.v_threshold), bits=bits, ternary=ternary))
    return {n: int(bits) for n in names}


def qsnn_stage(model: nn.Module, cfg: QSNNConfig, train_cfg: TrainConfig) -> QuantStage:
    """In place: sign 1-bit weights with power-of-two scale on hidden layers, edge_bits uniform on the first and
    last weight layers, QLIF neurons with state_bits; the firing-rate regulariser for training."""
    bits = attach(model, edge_hidden_plan(model, lambda: SignQuant("pow2"), lambda: UniformQuant(cfg.edge_bits)))
    state = swap_neurons(model, cfg.state_bits, cfg.tau)
    return QuantStage(bits, state, lambda m: FiringRateRegulariser(m, cfg.rate_lambda, cfg.target_rate),
                      notes=f"Q-SNN: 1-bit hidden weights, {cfg.edge_bits}-bit first/last, {cfg.state_bits}-bit "
                            f"membrane in {len(state)} QLIF layers, rate lambda {cfg.rate_lambda}")


def q_snn(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[QSNNConfig] = None,
          train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
          progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """Q-SNN: hidden weight layers become 1-bit (per output channel standardise, sign, times
    2^round(log2 mean|W~|), identity straight-through), the first and last weight layers cfg.edge_bits-bit, every
    spiking node a QLIF with a cfg.state_bits membrane (after each reset u <- tanh(u), then b-bit uniform
    quantization scaled by max|u|, straight-through: workloads.neurons.quantize_state); fine-tune
    cfg.finetune_epochs with CE + rate_lambda * mean_l (r_l - 0.5)^2 (FiringRateRegulariser); bake the weights.

    ratio: Q-SNN itself does not prune. Our definition: ratio > 0 also removes round_half_up(ratio * C_out)
    channels of every conv by the L1 norm of their latent filters (magnitude_channel's rule), after quantization
    and before the fine-tuning (quantize, then prune; needs a flat Sequential); ratio 0 is plain Q-SNN.
    Result: weight_bits (1 hidden, edge_bits first/last), state_bits {node: b}, size_bits.
    Choices where the paper is open: 8-bit quantizer of the edge layers (quant.UniformQuant), STE form, QLIF
    thresholds kept from the replaced nodes, per-sample membrane scale (workloads.neurons.quantize_state).
    Raises ValueError for a ratio outside [0, 1).
    """
    cfg = cfg or QSNNConfig()
    return quantize_then_prune(model, dataset, ratio, "q_snn", cfg, train_cfg, seed, device, progress,
                               quantizer=qsnn_stage, pruner=l1_filter_masks, pre_epochs=cfg.pre_epochs)
