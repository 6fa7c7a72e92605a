"""The default small workload: a two-stage conv SNN for MNIST-sized images (flat nn.Sequential)."""
from __future__ import annotations

from spikingjelly.activation_based import layer
from torch import nn

from workloads.models.blocks import NeuronSpec, check_spatial, conv_bn_sn, pool


def mnist_conv(in_shape: tuple[int, int, int], n_classes: int, sn: NeuronSpec) -> nn.Sequential:
    """16C3-BN-SN-MP2-32C3-BN-SN-MP2-FC(n_classes); no neuron after the last Linear (readout = mean over T).

    H and W must be divisible by 4. Linear in_features = 32 * (H/4) * (W/4) (1568 at 28x28, 128 at 8x8).
    Parameters at 1x28x28, 10 classes: 144 + 32 + 4608 + 64 + 15690 = 20,538.
    """
    c, h, w = in_shape
    check_spatial("mnist_conv", in_shape, 4)
    return nn.Sequential(*conv_bn_sn(c, 16, sn), pool("M"), *conv_bn_sn(16, 32, sn), pool("M"),
                         layer.Flatten(step_mode="m"), layer.Linear(32 * (h // 4) * (w // 4), n_classes, step_mode="m"))
