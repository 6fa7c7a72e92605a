"""Seeded models for the lowering tests: weights large enough to make neurons fire, non-trivial BatchNorm statistics
to fold, and a wrapper that sends a Sequential through the torch.fx lowering engine."""
import torch
from torch import nn


def seeded_init(model: nn.Module, seed: int, gain: float = 3.0, bn_shift: float = 0.3) -> nn.Module:
    """Seeded weights (std gain / sqrt(fan-in)), biases and BatchNorm statistics and affine terms (BN bias
    N(bn_shift, 0.2)); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2 + bn_shift)
    return model.eval()


class Wrap(nn.Module):
    """A module with its own forward around a Sequential: lowered by the fx engine."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)
