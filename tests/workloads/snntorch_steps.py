"""Shared by the NIR tests: spikes of chosen layers of an snnTorch network run step by step (the reference side of
the spike-for-spike comparisons)."""
import numpy as np
import torch
from torch import nn


def snntorch_spikes(net: nn.Module, x: torch.Tensor, idx: tuple[int, ...] = (1, 3)) -> dict[int, np.ndarray]:
    """Spikes (T, N, n) of net[i] for i in idx, run over x (T, N, ...) step by step from reset state (each hooked
    layer's reset_hidden first; a layer returning (spikes, state) gives its spikes)."""
    rec = {i: [] for i in idx}
    hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: rec[i].append(
        (o[0] if isinstance(o, tuple) else o).detach().clone())) for i in idx]
    with torch.no_grad():
        for i in idx:
            net[i].reset_hidden()
        for t in range(x.shape[0]):
            net(x[t])
    for h in hooks:
        h.remove()
    return {i: torch.stack(v).numpy() for i, v in rec.items()}
