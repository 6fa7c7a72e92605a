"""Input encoders: turn a static image batch into a (T, N, C, H, W) input sequence for a multi-step SNN, or
pass event frames (N, T, C, H, W) of an event dataset through in time-major order."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from spikingjelly.activation_based import neuron

from workloads.tae import encode_tae


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

    Rule (ours, kept as is; QT-SNN's own threshold-adaptive encoding is "tae", workloads.tae): each sample is
    standardised, d = (x - mean) / std over its C*H*W values (population std; d = 0 when std = 0), and d drives
    a ternary IF neuron with threshold 1 and soft reset (SpikingJelly TernaryIFNode): U[t] = U[t-1] + d,
    S[t] = +1 if U[t] >= 1, -1 if U[t] <= -1, else 0, then U[t] -= S[t]. So the spike count over T carries sign
    and size of the deviation from the sample mean (|d| >= 1 fires every step). Deterministic; `generator` is
    unused.
    """
    flat = x.flatten(1)
    mean, std = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
    d = torch.where(std > 0, (flat - mean) / std.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(flat))
    node = neuron.TernaryIFNode(v_threshold=1.0, v_reset=None, step_mode="m")
    with torch.no_grad():
        return node(d.reshape(x.shape).unsqueeze(0).expand(n_timesteps, *x.shape).contiguous())


def encode_events(x: torch.Tensor, n_timesteps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Event frames as they are: (N, T, C, H, W) -> (T, N, C, H, W), a contiguous copy of x.transpose(0, 1).

    For event datasets (`workloads.data.Dataset.temporal`), whose frames already are the time steps; T must equal
    n_timesteps (checked in `encode`). Deterministic; `generator` is unused.
    """
    return x.transpose(0, 1).contiguous()


#: "tae": QT-SNN's threshold-adaptive ternary encoding (workloads.tae.encode_tae, Wang et al., arXiv 2407.05310)
ENCODERS: dict[str, Callable[..., torch.Tensor]] = {"direct": encode_direct, "poisson": encode_poisson,
                                                    "ternary": encode_ternary, "events": encode_events,
                                                    "tae": encode_tae}
#: encoders whose input already carries time, (N, T, C, H, W)
TEMPORAL_ENCODERS = frozenset({"events"})


def encode(x: torch.Tensor, n_timesteps: int, kind: str = "direct",
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Encode images x (N, C, H, W) into a (T, N, C, H, W) sequence with encoder `kind` (a key of ENCODERS);
    with kind "events", x is event frames (N, T, C, H, W) with T = n_timesteps, returned as (T, N, C, H, W).

    Raises ValueError for an unknown `kind`, n_timesteps that is not an integer >= 1, x that is not a floating
    tensor (poisson, ternary, tae: an integer image would wrap or be read unscaled; "direct" and "events" take
    counts too) or holds NaN or infinite values, "events" on x that is not 5-D with x.shape[1] == n_timesteps, a
    static encoder on 5-D x (event frames need "events"), or poisson probabilities outside [0, 1].
    """
    if kind not in ENCODERS:
        raise ValueError(f"encoding must be one of {sorted(ENCODERS)}, got {kind!r}")
    if isinstance(n_timesteps, bool) or not isinstance(n_timesteps, int) or n_timesteps < 1:
        raise ValueError(f"n_timesteps must be an integer >= 1, got {n_timesteps!r}")
    if kind in ("poisson", "ternary", "tae") and not x.is_floating_point():
        raise ValueError(f"encoding {kind!r} takes float images in [0, 1], got {x.dtype}; convert, e.g. "
                         "x.float() / 255")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"x: {int((~torch.isfinite(x)).sum())} values are NaN or infinite")
    if kind == "poisson" and x.numel() and not (0.0 <= float(x.min()) and float(x.max()) <= 1.0):
        raise ValueError(f"encoding 'poisson' takes probabilities in [0, 1], got {float(x.min()):g}.."
                         f"{float(x.max()):g}")
    if kind in TEMPORAL_ENCODERS and (x.dim() != 5 or x.shape[1] != n_timesteps):
        raise ValueError(f"encoding {kind!r} needs event frames (N, T={n_timesteps}, C, H, W), got shape "
                         f"{tuple(x.shape)}; set n_timesteps to the dataset's frame count")
    if kind not in TEMPORAL_ENCODERS and x.dim() == 5:
        raise ValueError(f"encoding {kind!r} needs static images (N, C, H, W), got shape {tuple(x.shape)}; "
                         f"event frames (N, T, C, H, W) need encoding 'events'")
    return ENCODERS[kind](x, n_timesteps, generator)
