"""Event-camera (DVS, 2 polarity channels) conv SNNs as flat nn.Sequential chains: the SCA 5Conv+1FC net and
VGGSNN."""
from __future__ import annotations

from spikingjelly.activation_based import layer
from torch import nn

from workloads.models.blocks import NeuronSpec, conv_bn_sn, pool


def _check_min(name: str, in_shape: tuple[int, int, int], minimum: int) -> None:
    if min(in_shape[1:]) < minimum:
        raise ValueError(f"in_shape H and W must be >= {minimum} for {name}, got {tuple(in_shape)}")


def sca_dvs(in_shape, n_classes: int, sn: NeuronSpec) -> nn.Sequential:
    """SCA's DVS-CIFAR10 net (Li et al., ICML 2024): 64C3-AP2-128C3-AP2-128C3-AP2-256C3-AP2-256C3-AP2-FC, each
    conv followed by BN and the neuron, pooling with AvgPool2d(2) (floor). Linear in_features 256*(H//32)*(W//32).
    H, W >= 32. At 2x32x32 and 2x48x48 (both pool to 1x1), 10 classes: convs 1,107,072 + BN 1,664 + FC 2,570
    = 1,111,306 parameters (METHODS.md)."""
    _check_min("sca_dvs", in_shape, 32)
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for width in (64, 128, 128, 256, 256):
        layers += [*conv_bn_sn(c, width, sn), pool("A")]
        c, h, w = width, h // 2, w // 2
    return nn.Sequential(*layers, layer.Flatten(step_mode="m"), layer.Linear(c * h * w, n_classes, step_mode="m"))


def vggsnn_dvs(in_shape, n_classes: int, sn: NeuronSpec) -> nn.Sequential:
    """VGGSNN for DVS (Deng et al., TET, ICLR 2022, as in METHODS.md): 64C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3
    -MP2-512C3-512C3-AP2, Flatten, Linear(512*(H//16)*(W//16), n). H, W >= 16. At 2x48x48 (T=10 in the paper),
    10 classes: convs 9,217,152 + BN 5,504 + Linear(4608, 10) 46,090 = 9,268,746 parameters (9.27M)."""
    _check_min("vggsnn_dvs", in_shape, 16)
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for stage, final_pool in (((64, 128), "M"), ((256, 256), "M"), ((512, 512), "M"), ((512, 512), "A")):
        for width in stage:
            layers += conv_bn_sn(c, width, sn)
            c = width
        layers.append(pool(final_pool))
        h, w = h // 2, w // 2
    return nn.Sequential(*layers, layer.Flatten(step_mode="m"), layer.Linear(c * h * w, n_classes, step_mode="m"))
