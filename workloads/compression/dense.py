"""The uncompressed baseline as a method: the trained model itself, so a sweep or a claim can put any
architecture's full-precision point (e.g. BESTformer's teacher) beside its compressed ones."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from workloads.compression.base import CompressionResult, check_ratio, model_size_bits
from workloads.data import Dataset
from workloads.models import count_parameters
from workloads.train import TrainConfig


@dataclass(frozen=True)
class DenseConfig:
    """No settings: the dense method changes nothing."""


def dense(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[DenseConfig] = None,
          train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
          progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """An unchanged deep copy of `model` (full precision: no layer gets weight_bits, so lowering stores the
    hardware's weight_bits under its weight_fit policy), with params_before == params_after. Only ratio 0 is
    meaningful; any other ratio raises ValueError (so a sweep cannot label an unpruned model as pruned), as does
    a ratio outside [0, 1)."""
    start, p = time.perf_counter(), check_ratio(ratio)
    if p != 0.0:
        raise ValueError(f"ratio: the dense method removes nothing; only 0 is accepted, got {ratio!r}")
    work = copy.deepcopy(model)
    n = count_parameters(work)
    return work, CompressionResult("dense", 0.0, n, n, notes="dense: the trained model, unchanged",
                                   size_bits=model_size_bits(work, {}), seconds=time.perf_counter() - start)
