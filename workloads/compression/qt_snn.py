"""QT-SNN (Wang, Zhang, Belatreche, Xiao, Qing, Wei, Zhang, Yang, "Ternary Spike-based Neuromorphic Signal
Processing System", arXiv 2407.05310; Neural Networks 187:107333, 2025): a quantized SNN fed by the ternary
spikes of the threshold-adaptive encoding (workloads.tae, data encoding "tae"), with quantized synaptic weights
and quantized membrane potentials.

Paper facts used (abstract, arxiv.org/html/2407.05310v1): QT-SNN "quantifies both membrane potentials and synaptic
weights to reduce memory requirements while maintaining performance" and is "compatible with ternary spike trains
from the TAE method"; the system reports a 94 % reduced memory requirement and 7.5x energy saving on speech and
EEG tasks. A published summary (themoonlight.io review) calls the quantization "dual-scale" (weights and
membrane potentials). The paper's quantizer equations, bit widths and hyperparameters were not available here.

Our choices (assumed, named in QTSNNConfig): hidden weights `weight_bits`-bit symmetric uniform per output
channel (quant.UniformQuant; default 2 bits = levels {-s, 0, s}, i.e. ternary weights; 94 % is 1 - 2/32, the
saving of 2-bit over 32-bit storage) or 1-bit sign weights with Q-SNN's power-of-two scale (quant.SignQuant,
weight_bits 1); first conv and last FC `edge_bits`-bit (8, as Q-SNN); membrane potential quantized as in Q-SNN
(the same group's Q-SNN, Wei et al., ACM MM 2024: QLIF, V <- Q_b(tanh V) after each reset, b = state_bits,
default 8); hidden neurons binary by default (ternary_neurons: QLIF spikes in {-1, 0, 1}); the input's ternary
spikes come from the encoder, `data.encoding: tae`, which this method does not set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from workloads.compression.base import Check, CompressionResult
from workloads.compression.compose import FineTuneConfig, QuantStage, quantize_then_prune
from workloads.compression.magnitude import l1_filter_masks
from workloads.compression.q_snn import swap_neurons
from workloads.compression.quant import SignQuant, UniformQuant, attach, edge_hidden_plan
from workloads.data import Dataset
from workloads.train import TrainConfig


@dataclass(frozen=True)
class QTSNNConfig(FineTuneConfig):
    """QT-SNN settings (ValueError names a field out of range): weight_bits in 1..16 of the hidden weight layers
    (default 2: ternary weight levels; 1: sign weights with a power-of-two scale); edge_bits in 2..16 of the first
    conv and last FC (8); state_bits in 2..16 of the quantized membrane (8); tau > 1 of the QLIF neurons (2:
    decay 0.5); ternary_neurons: hidden QLIF neurons emit {-1, 0, 1} (default False: mnist_conv max-pools its
    spikes, and lowering refuses max-pooling signed spikes; True suits models that average-pool, e.g. sca_dvs);
    pre_epochs >= 0 quantization-aware epochs before the optional channel pruning; finetune_epochs (default 3),
    lr, optimizer as FineTuneConfig. Defaults are ours (the paper's were not available)."""

    finetune_epochs: int = 3
    weight_bits: int = 2
    edge_bits: int = 8
    state_bits: int = 8
    tau: float = 2.0
    ternary_neurons: bool = False
    pre_epochs: int = 0

    def _checks(self) -> dict[str, Check]:
        """FineTuneConfig's checks plus the QT-SNN fields' ranges (ternary_neurons is type-checked as a bool)."""
        return {**super()._checks(), "weight_bits": (1 <= self.weight_bits <= 16, "1 <= weight_bits <= 16"),
                "edge_bits": (2 <= self.edge_bits <= 16, "2 <= edge_bits <= 16"),
                "state_bits": (2 <= self.state_bits <= 16, "2 <= state_bits <= 16"),
                "tau": (self.tau > 1, "tau > 1"), "pre_epochs": (self.pre_epochs >= 0, "pre_epochs >= 0")}


def hidden_quantizer(bits: int) -> nn.Module:
    """The hidden-layer weight quantizer of QT-SNN here: SignQuant("pow2") for 1 bit, UniformQuant(bits) above."""
    return SignQuant("pow2") if bits == 1 else UniformQuant(bits)


def qtsnn_stage(model: nn.Module, cfg: QTSNNConfig, train_cfg: TrainConfig) -> QuantStage:
    """In place: cfg.weight_bits hidden weights, cfg.edge_bits first/last weights, QLIF neurons with a
    cfg.state_bits membrane (ternary when cfg.ternary_neurons); no regulariser. Returns what it set."""
    bits = attach(model, edge_hidden_plan(model, lambda: hidden_quantizer(cfg.weight_bits),
                                          lambda: UniformQuant(cfg.edge_bits)))
    state = swap_neurons(model, cfg.state_bits, cfg.tau, ternary=cfg.ternary_neurons)
    spikes = "ternary" if cfg.ternary_neurons else "binary"
    return QuantStage(bits, state, notes=f"QT-SNN: {cfg.weight_bits}-bit hidden weights, {cfg.edge_bits}-bit "
                                         f"first/last, {cfg.state_bits}-bit membrane in {len(state)} {spikes} "
                                         f"QLIF layers")


def qt_snn(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[QTSNNConfig] = None,
           train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
           progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """QT-SNN on a copy of `model`: hidden weight layers cfg.weight_bits-bit (qtsnn_stage), first and last
    cfg.edge_bits-bit, every spiking node a QLIF with a cfg.state_bits membrane (binary or, with
    cfg.ternary_neurons, ternary spikes), fine-tuned cfg.finetune_epochs with cross-entropy on the inputs of
    train_cfg.encoding (QT-SNN's are TAE's: set encoding "tae"), then baked.

    ratio: QT-SNN does not prune; as q_snn, ratio > 0 also removes round_half_up(ratio * C_out) channels of every
    conv by the L1 norm of their latent filters after quantization (our definition; flat Sequential needed);
    ratio 0 is plain QT-SNN. Result: weight_bits {layer: bits}, state_bits {node: bits}, size_bits.
    Raises ValueError for a ratio outside [0, 1) (or what the pruner raises for the model).
    """
    cfg = cfg or QTSNNConfig()
    return quantize_then_prune(model, dataset, ratio, "qt_snn", cfg, train_cfg, seed, device, progress,
                               quantizer=qtsnn_stage, pruner=l1_filter_masks, pre_epochs=cfg.pre_epochs)
