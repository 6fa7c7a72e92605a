"""Threshold-adaptive ternary encoding (TAE) of QT-SNN: an analog signal becomes a sparse train of {-1, 0, +1}
spikes from a base that tracks the signal and a firing threshold that adapts to the signal's amplitude.

Source: S. Wang, D. Zhang, A. Belatreche, Y. Xiao, H. Qing, W. Wei, M. Zhang, Y. Yang, "Ternary Spike-based
Neuromorphic Signal Processing System", arXiv 2407.05310 (2024); Neural Networks 187:107333 (2025).

What the paper says (the abstract, arxiv.org/html/2407.05310v1): TAE "can efficiently encode time-varying analog
signals into sparse ternary spike trains"; QT-SNN is "compatible with ternary spike trains from the TAE method".
What a published summary of its Algorithm 2 says (themoonlight.io review of the paper): TAE is compared with the
Moving-Window and Step-Forward encoders; it keeps a base value aligned with the current signal state and a
variable threshold, "adjusting as the signal amplitude changes"; when the signal rises above or falls below the
base by the threshold a +1 / -1 spike is emitted and the threshold is adjusted; a fixed threshold would either
lose information (too large) or make the reconstructed signal fluctuate (too small). A later benchmark (Larroza
et al., arXiv 2503.11206) finds TAE has the lowest firing rate and best reconstruction of the three encoders.

The paper's own equations (its Algorithm 2) were not available here. The rule below is OUR reconstruction in the
Step-Forward family the paper starts from, with an adaptive-delta-modulation threshold (Jayant, "Adaptive delta
modulation with a one-bit memory", Bell Syst. Tech. J. 49(3), 1970), for every neuron independently:

    start:     B = 0,  theta[0] = theta0 = alpha * max|x| over the sample (the threshold follows its amplitude)
    step t:    d = x[t] - B
               S[t] = +1 if d >= theta[t] and d != 0;  -1 if d <= -theta[t] and d != 0;  else 0
               B <- B + 2 * theta[t] * S[t]                     (the base steps toward the signal)
               theta[t+1] = 2 * theta[t]  if S[t] != 0 and S[t] == S[t-1]   (signal outruns the base)
                            theta[t] / 2  otherwise                         (finer steps near the signal)

Decoding is B itself: x_hat[t] = sum_{k <= t} 2 theta[k] S[k]. For a static input held over T steps and
alpha >= 1/2, |x - x_hat[t]| <= theta[t] = theta0 / 2^t (a signed-digit successive approximation, the threshold
never grows, zeros never fire): on images the code is sparse, with -1 spikes where the base overshoots.
Assumed (not from the paper): theta0 from the per-sample max|x|, the factor 2 steps, alpha = 1/2, B starting at 0.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

#: default alpha: theta0 = alpha * max|x| per sample; 1/2 makes 2 * theta0 cover the sample's range
DEFAULT_ALPHA = 0.5


class TAEResult(NamedTuple):
    """Output of `tae_sequence`, each (L, N, *) like the signal: spikes in {-1, 0, 1}, the threshold theta[t] each
    step used, and the base B after each step (the decoded signal)."""

    spikes: torch.Tensor
    thresholds: torch.Tensor
    bases: torch.Tensor


def initial_threshold(x: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """theta0 = alpha * max|x| over each sample of x (N, *): shape (N, 1, ..., 1), same dtype (0 for an all-zero
    sample, which then never fires). Raises ValueError for alpha <= 0 or x without a sample axis."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if x.dim() < 1:
        raise ValueError(f"x must have a sample axis (N, ...), got shape {tuple(x.shape)}")
    peak = x.detach().abs().reshape(len(x), -1).amax(1) if x.numel() else x.new_zeros(len(x))
    return (alpha * peak).reshape(-1, *([1] * (x.dim() - 1)))


def tae_sequence(signal: torch.Tensor, theta0: torch.Tensor) -> TAEResult:
    """Encode a time-varying signal (L, N, *) with TAE (the module docstring's rule, our reconstruction of
    QT-SNN's Algorithm 2): L steps, every neuron independently, thresholds starting at theta0 (broadcastable to
    (N, *), >= 0). Deterministic and gradient-free (the signal is data). Raises ValueError for a signal with no
    step axis or a negative theta0."""
    if signal.dim() < 2:
        raise ValueError(f"signal must be (L, N, ...), got shape {tuple(signal.shape)}")
    if bool((theta0 < 0).any()):
        raise ValueError("theta0 must be >= 0")
    signal = signal.detach()
    base = torch.zeros_like(signal[0])
    theta = torch.as_tensor(theta0, dtype=signal.dtype, device=signal.device).expand_as(base).clone()
    prev = torch.zeros_like(base)
    spikes, thresholds, bases = [], [], []
    for x in signal:
        d = x - base
        s = ((d >= theta) & (d != 0)).to(x.dtype) - ((d <= -theta) & (d != 0)).to(x.dtype)
        thresholds.append(theta)
        base = base + 2.0 * theta * s
        theta = torch.where((s != 0) & (s == prev), 2.0 * theta, 0.5 * theta)
        prev = s
        spikes.append(s)
        bases.append(base)
    return TAEResult(torch.stack(spikes), torch.stack(thresholds), torch.stack(bases))


def encode_tae(x: torch.Tensor, n_timesteps: int, generator: Optional[torch.Generator] = None,
               alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """TAE of static inputs x (N, ...) held for n_timesteps steps: (T, N, ...) spikes in {-1, 0, 1}, same dtype and
    device as x (QT-SNN's threshold-adaptive encoding, arXiv 2407.05310; rule and assumptions in the module
    docstring): theta0 = alpha * max|x| per sample, so scaling a sample scales its thresholds and leaves its spikes
    unchanged. Deterministic; `generator` is unused. Raises ValueError for n_timesteps < 1 or alpha <= 0."""
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}")
    held = x.detach().unsqueeze(0).expand(n_timesteps, *x.shape)
    return tae_sequence(held, initial_threshold(x, alpha)).spikes
