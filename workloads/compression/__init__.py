"""Compression methods for SpikingJelly models: a registry of methods and one dispatcher, `compress`.

Every method has the signature (model, dataset, ratio, cfg, train_cfg, seed, device, progress) and returns
(compressed model, CompressionResult); the input model is left unchanged.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from workloads.compression.base import CompressionResult, check_ratio
from workloads.compression.sca import SCAConfig, sca_prune
from workloads.data import Dataset
from workloads.train import TrainConfig

METHODS: dict[str, Callable[..., tuple[nn.Module, CompressionResult]]] = {"sca": sca_prune}
CONFIGS: dict[str, type] = {"sca": SCAConfig}


def compress(method: str, model: nn.Module, dataset: Dataset, ratio: float, cfg=None, seed: int = 0,
             train_cfg: Optional[TrainConfig] = None, device: Optional[torch.device] = None,
             progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """Compress `model` with `method` (a key of METHODS) to remove `ratio` in [0, 1) of its prunable units.

    cfg: the method's config (CONFIGS[method]; None -> its defaults); train_cfg: batch size, T and encoding
    (None -> TrainConfig()). Raises ValueError for an unknown method or a ratio outside [0, 1).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    check_ratio(ratio)
    return METHODS[method](model, dataset, ratio, cfg, train_cfg, seed, device=device, progress=progress)


__all__ = ["METHODS", "CONFIGS", "CompressionResult", "SCAConfig", "compress", "sca_prune"]
