"""Compression methods for SpikingJelly models: a registry of methods and one dispatcher, `compress`.

Every method has the signature (model, dataset, ratio, cfg, train_cfg, seed, device, progress) and returns
(compressed model, CompressionResult); the input model is left unchanged. QUANTIZERS and PRUNERS name the stages
`compose(quantizer, pruner)` chains (quantize, then prune channels, then fine-tune).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from workloads.compression.base import CompressionResult, channel_units, check_ratio, model_size_bits
from workloads.compression.bestformer import BestformerConfig, bestformer
from workloads.compression.binary import BinaryAttention, BinaryConfig, binary, binary_stage
from workloads.compression.compose import ComposeConfig, FineTuneConfig, compose_with, layer_ratios
from workloads.compression.dense import DenseConfig, dense
from workloads.compression.dsp import DSPConfig, LowRankConv2d, LowRankLinear, dsp
from workloads.compression.l1p import L1PConfig, l1p
from workloads.compression.magnitude import ChannelPruneConfig, l1_filter_masks, magnitude_channel
from workloads.compression.q_snn import QSNNConfig, q_snn, qsnn_stage
from workloads.compression.qp_snn import QPSNNConfig, qp_snn, rescaw_stage, svs_masks
from workloads.compression.qt_snn import QTSNNConfig, qt_snn, qtsnn_stage
from workloads.compression.random_prune import random_channels, random_masks
from workloads.compression.sca import SCAConfig, sca_prune
from workloads.compression.sca_resnet import ChannelUnit, find_resnet_units, sca_prune_resnet
from workloads.data import Dataset
from workloads.models import check_float32
from workloads.models.resnet import SpikingResNet
from workloads.train import TrainConfig

#: model type -> SCA implementation for it (first isinstance match): spiking ResNets, flat Sequential chains
SCA_PATHS: dict[type, Callable[..., tuple[nn.Module, CompressionResult]]] = {
    SpikingResNet: sca_prune_resnet, nn.Sequential: sca_prune,
}


def sca(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[SCAConfig] = None,
        train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
        progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """SCA (Li et al., ICML 2024) on any model SCA_PATHS covers: `sca_prune` for flat conv Sequentials,
    `sca_prune_resnet` for spiking ResNets (pre-activation rule). Same arguments and result as those. Raises
    ValueError for another model type (or what the chosen path raises)."""
    for kind, path in SCA_PATHS.items():
        if isinstance(model, kind):
            return path(model, dataset, ratio, cfg, train_cfg, seed, device=device, progress=progress)
    raise ValueError(f"model: SCA supports {[t.__name__ for t in SCA_PATHS]}, got {type(model).__name__}")


METHODS: dict[str, Callable[..., tuple[nn.Module, CompressionResult]]] = {
    "sca": sca, "magnitude_channel": magnitude_channel, "random": random_channels, "l1p": l1p, "dsp": dsp,
    "qp_snn": qp_snn, "q_snn": q_snn, "binary": binary, "bestformer": bestformer, "qt_snn": qt_snn, "dense": dense,
}
CONFIGS: dict[str, type] = {
    "sca": SCAConfig, "magnitude_channel": ChannelPruneConfig, "random": ChannelPruneConfig, "l1p": L1PConfig,
    "dsp": DSPConfig, "qp_snn": QPSNNConfig, "q_snn": QSNNConfig, "binary": BinaryConfig,
    "bestformer": BestformerConfig, "qt_snn": QTSNNConfig, "dense": DenseConfig,
}
#: methods that accept only some ratios (any other raises ValueError): name -> the accepted ratios
FIXED_RATIOS: dict[str, tuple[float, ...]] = {"dense": (0.0,)}
#: name -> (quantizer stage fn(model, cfg, train_cfg) -> QuantStage, its config class), for `compose`
QUANTIZERS: dict[str, tuple[Callable, type]] = {
    "qp_snn": (rescaw_stage, QPSNNConfig), "q_snn": (qsnn_stage, QSNNConfig), "binary": (binary_stage, BinaryConfig),
    "qt_snn": (qtsnn_stage, QTSNNConfig),
}
#: name -> (channel pruner fn(model, units, counts, ctx) -> keep-masks, the config of its fine-tuning), for `compose`
PRUNERS: dict[str, tuple[Callable, type]] = {
    "magnitude_channel": (l1_filter_masks, ChannelPruneConfig), "random": (random_masks, ChannelPruneConfig),
    "svs": (svs_masks, QPSNNConfig),
}


#: methods whose ratio removes conv channels (base.channel_units: Conv2d channels of a flat Sequential)
CHANNEL_PRUNING = ("sca", "magnitude_channel", "random", "qp_snn", "q_snn", "binary", "qt_snn")
#: methods that never prune the last conv (it feeds the classifier; qp_snn.qp_snn passes skip_last): a
#: layer_ratios entry > 0 for it is refused (compose.layer_ratios)
SPARES_LAST_CONV = ("qp_snn",)
#: methods whose compressed weights stay float (they prune channels or weights, or factorise; the others quantize)
FLOAT_METHODS = ("dense", "sca", "magnitude_channel", "random", "l1p", "dsp")


def check_model(method: str, model: nn.Module, ratio: float, cfg=None) -> None:
    """Checks, made before any training, that `method` at `ratio` can compress `model` with its config `cfg`
    (None: its defaults). Raises ValueError naming the model's type for SCA on a model SCA_PATHS does not cover,
    and, for the channel pruners magnitude_channel and random at a ratio > 0 (or with layer_ratios), for a model
    that is not a flat
    Sequential of convs (base.channel_units: a Conv1d net has none) or a cfg.layer_ratios key that names none of
    its convs (compose.layer_ratios, which lists them); for the other CHANNEL_PRUNING methods at a ratio > 0, for a
    model without Conv2d channels to prune (spiking ResNets take SCA's own path)."""
    if method == "sca" and not isinstance(model, tuple(SCA_PATHS)):
        raise ValueError(f"model: SCA supports {[t.__name__ for t in SCA_PATHS]}, got {type(model).__name__}")
    overrides = getattr(cfg, "layer_ratios", None) or {}
    if method in ("magnitude_channel", "random") and (ratio > 0 or overrides):
        layer_ratios(channel_units(model), ratio, overrides)
    elif method in CHANNEL_PRUNING and ratio > 0 and not isinstance(model, SpikingResNet):
        channel_units(model)


def compose(quantizer: str, pruner: str) -> Callable[..., tuple[nn.Module, CompressionResult]]:
    """compose_with(quantizer, pruner, QUANTIZERS, PRUNERS) (workloads.compression.compose): quantize with the
    registered quantizer, then prune channels with the registered pruner, then fine-tune. Raises ValueError for
    unknown names."""
    return compose_with(quantizer, pruner, QUANTIZERS, PRUNERS)


def compress(method: str, model: nn.Module, dataset: Dataset, ratio: float, cfg=None, seed: int = 0,
             train_cfg: Optional[TrainConfig] = None, device: Optional[torch.device] = None,
             progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """Compress `model` with `method` (a key of METHODS) at `ratio` in [0, 1) (what the ratio removes is the
    method's: channels, weights, rank; see each method's docstring).

    cfg: the method's config (CONFIGS[method]; None -> its defaults); train_cfg: batch size, T and encoding
    (None -> TrainConfig()). Raises ValueError for an unknown method, a ratio outside [0, 1), a model with a
    parameter that is not float32, or a cfg that is not the method's config class.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    check_ratio(ratio)
    if cfg is not None and method in CONFIGS and not isinstance(cfg, CONFIGS[method]):
        raise ValueError(f"cfg: method {method!r} takes a {CONFIGS[method].__name__}, got a {type(cfg).__name__}")
    check_float32(model, "compress")  # methods train and rebuild layers in float32
    small, info = METHODS[method](model, dataset, ratio, cfg, train_cfg, seed, device=device, progress=progress)
    if not info.size_bits:  # methods that do not fill it (sca)
        info.size_bits = model_size_bits(small, info.weight_bits)
    return small, info


__all__ = ["METHODS", "CONFIGS", "QUANTIZERS", "PRUNERS", "FLOAT_METHODS", "CompressionResult", "compress",
           "compose", "check_model",
           "SCAConfig", "sca", "sca_prune", "sca_prune_resnet", "find_resnet_units", "ChannelUnit", "SCA_PATHS",
           "ChannelPruneConfig", "magnitude_channel", "random_channels", "L1PConfig", "l1p",
           "DSPConfig", "dsp", "LowRankLinear", "LowRankConv2d", "QPSNNConfig", "qp_snn", "QSNNConfig", "q_snn",
           "BinaryConfig", "binary", "BinaryAttention", "ComposeConfig", "FineTuneConfig",
           "BestformerConfig", "bestformer", "QTSNNConfig", "qt_snn", "DenseConfig", "dense", "FIXED_RATIOS"]
