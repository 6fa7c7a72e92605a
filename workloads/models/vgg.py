"""Spiking VGG-9/11/16 as flat nn.Sequential chains (conv-BN-neuron stages, max-pools, a classifier head)."""
from __future__ import annotations

from typing import Callable, Sequence, Union

from spikingjelly.activation_based import layer
from torch import nn

from workloads.models.blocks import NeuronSpec, check_spatial, conv_bn_sn, linear_bn_sn, pool

LayerPlan = Sequence[Union[int, str]]
#: conv widths, "M" = MaxPool2d(2). VGG-9: Kim & Panda (BNTT, Front. Neurosci. 2021) with max-pools as in the SNN
#: pruning code of Shi et al. (ICLR 2024); VGG-11 and VGG-16: Simonyan & Zisserman 2015 configurations A and D.
LAYER_PLANS: dict[str, LayerPlan] = {
    "vgg9": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def _head_sca(c: int, hw: tuple[int, int], n_classes: int, sn: NeuronSpec) -> list[nn.Module]:
    """SCA (Li et al., ICML 2024) classifier: Flatten, [Linear(c*h*w, 512)-BN1d-SN], [Linear(512, 512)-BN1d-SN],
    Linear(512, n_classes)."""
    return [layer.Flatten(step_mode="m"), *linear_bn_sn(c * hw[0] * hw[1], 512, sn), *linear_bn_sn(512, 512, sn),
            layer.Linear(512, n_classes, step_mode="m")]


def _head_qp(c: int, hw: tuple[int, int], n_classes: int, sn: NeuronSpec) -> list[nn.Module]:
    """QP-SNN (Wei et al., ICLR 2025) classifier: global average pool as AvgPool2d(kernel = the final h x w; a
    fixed-kernel pool that lowering and SCA's channel walk both accept), Flatten, Linear(c, n_classes)."""
    return [layer.AvgPool2d(hw, hw, step_mode="m"), layer.Flatten(step_mode="m"),
            layer.Linear(c, n_classes, step_mode="m")]


def _head_fc1024(c: int, hw: tuple[int, int], n_classes: int, sn: NeuronSpec) -> list[nn.Module]:
    """VGG-9 (BNTT) classifier: Flatten, Linear(c*h*w, 1024)-SN, Linear(1024, n_classes)."""
    return [layer.Flatten(step_mode="m"), layer.Linear(c * hw[0] * hw[1], 1024, step_mode="m"), sn(),
            layer.Linear(1024, n_classes, step_mode="m")]


HEADS: dict[str, Callable[..., list[nn.Module]]] = {"sca": _head_sca, "qp": _head_qp, "fc1024": _head_fc1024}


def vgg(name: str, cfg: LayerPlan, head: str, in_shape: tuple[int, int, int], n_classes: int,
        sn: NeuronSpec) -> nn.Sequential:
    """Conv stages of `cfg` (3x3 conv, no bias, BN, neuron; "M" max-pool 2) then classifier `head` (HEADS).

    H and W must be multiples of 2^(number of pools). Raises ValueError for an unknown head or a bad in_shape.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
    n_pools = sum(1 for v in cfg if v == "M")
    check_spatial(name, in_shape, 2 ** n_pools)
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(pool("M"))
        else:
            layers += conv_bn_sn(c, int(v), sn)
            c = int(v)
    return nn.Sequential(*layers, *HEADS[head](c, (h >> n_pools, w >> n_pools), n_classes, sn))


def vgg9(in_shape, n_classes: int, sn: NeuronSpec, *, head: str = "fc1024") -> nn.Sequential:
    """VGG-9: 64C3-64C3-MP2-128C3-128C3-MP2-256C3x3-MP2 + head (default FC1024-SN-FC). Neither SCA nor QP-SNN
    publishes a VGG-9; this is the SNN-pruning VGG-9 (see LAYER_PLANS). 3x32x32, 10 classes, fc1024 head:
    convs 1,734,336 + BN 2,304 + FC 4,195,328 + 10,250 = 5,942,218 parameters."""
    return vgg("vgg9", LAYER_PLANS["vgg9"], head, in_shape, n_classes, sn)


def vgg11(in_shape, n_classes: int, sn: NeuronSpec, *, head: str = "qp") -> nn.Sequential:
    """VGG-11 (configuration A) with the QP-SNN head by default: 8 conv-BN-SN, 5 max-pools, global average pool,
    Linear(512, n). No exact VGG-11 spec is given by SCA or QP-SNN; this is our choice. 3x32x32, 10 classes:
    9,228,362 parameters."""
    return vgg("vgg11", LAYER_PLANS["vgg11"], head, in_shape, n_classes, sn)


def vgg16_sca(in_shape, n_classes: int, sn: NeuronSpec, *, head: str = "sca") -> nn.Sequential:
    """VGG-16 of SCA (Li et al., ICML 2024): 13 conv-BN-SN + Linear(512,512)-BN-SN x2 + Linear(512, n).
    3x32x32, 10 classes: 15,251,402 parameters (METHODS.md: about 15.25M)."""
    return vgg("vgg16_sca", LAYER_PLANS["vgg16"], head, in_shape, n_classes, sn)


def vgg16_qp(in_shape, n_classes: int, sn: NeuronSpec, *, head: str = "qp") -> nn.Sequential:
    """VGG-16 of QP-SNN (Wei et al., ICLR 2025): the same 13 conv-BN-SN, average pool, Linear(512, n).
    3x32x32, 10 classes: 14,724,042 parameters (METHODS.md: 14.72M)."""
    return vgg("vgg16_qp", LAYER_PLANS["vgg16"], head, in_shape, n_classes, sn)
