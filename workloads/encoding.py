"""Input encoders: turn a static image batch into a (T, N, C, H, W) input sequence for a multi-step SNN."""
from __future__ import annotations

from typing import Callable, Optional

import torch


def encode_direct(x: torch.Tensor, n_timesteps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Direct (graded) encoding: the same analog frame x at every timestep, (N, ...) -> (T, N, ...).

    Returns an expanded view (no copy); `generator` is unused. Standard "direct input" of SNN training
    (e.g. Wu et al. 2019, Fang et al. 2021), where the first conv layer acts as the encoder.
    """
    return x.unsqueeze(0).expand(n_timesteps, *x.shape)


def encode_poisson(x: torch.Tensor, n_timesteps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Rate (Poisson/Bernoulli) encoding: spike[t] ~ Bernoulli(x) independently per timestep, (N, ...) -> (T, N, ...).

    x must lie in [0, 1] (the firing probability per timestep). Binary float output, same dtype/device as x.
    Reproducible when a seeded torch.Generator on x's device is passed.
    """
    probs = x.unsqueeze(0).expand(n_timesteps, *x.shape)
    return torch.bernoulli(probs, generator=generator)


ENCODERS: dict[str, Callable[..., torch.Tensor]] = {"direct": encode_direct, "poisson": encode_poisson}


def encode(x: torch.Tensor, n_timesteps: int, kind: str = "direct",
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Encode images x (N, C, H, W) into a (T, N, C, H, W) sequence with encoder `kind` (a key of ENCODERS).

    Raises ValueError for an unknown `kind` or n_timesteps < 1.
    """
    if kind not in ENCODERS:
        raise ValueError(f"encoding must be one of {sorted(ENCODERS)}, got {kind!r}")
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}")
    return ENCODERS[kind](x, n_timesteps, generator)
