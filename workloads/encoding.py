"""Input encoders: turn a static image batch into a (T, N, C, H, W) input sequence for a multi-step SNN."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from spikingjelly.activation_based import neuron


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


def encode_ternary(x: torch.Tensor, n_timesteps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Ternary encoding, spikes in {-1, 0, 1} (ternary spikes as in QT-SNN, arXiv 2407.05310), (N, ...) -> (T, N, ...).

    Rule (ours; QT-SNN's adaptive threshold was not available): each sample is standardised,
    d = (x - mean) / std over its C*H*W values (population std; d = 0 when std = 0), and d drives a ternary IF
    neuron with threshold 1 and soft reset (SpikingJelly TernaryIFNode): U[t] = U[t-1] + d, S[t] = +1 if
    U[t] >= 1, -1 if U[t] <= -1, else 0, then U[t] -= S[t]. So the spike count over T carries sign and size of
    the deviation from the sample mean (|d| >= 1 fires every step). Deterministic; `generator` is unused.
    """
    flat = x.flatten(1)
    mean, std = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
    d = torch.where(std > 0, (flat - mean) / std.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(flat))
    node = neuron.TernaryIFNode(v_threshold=1.0, v_reset=None, step_mode="m")
    with torch.no_grad():
        return node(d.reshape(x.shape).unsqueeze(0).expand(n_timesteps, *x.shape).contiguous())


ENCODERS: dict[str, Callable[..., torch.Tensor]] = {"direct": encode_direct, "poisson": encode_poisson,
                                                    "ternary": encode_ternary}


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
