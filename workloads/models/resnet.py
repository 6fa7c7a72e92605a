"""Spiking residual networks: ResNet-19 (post-activation basic blocks) and a pre-activation ResNet-18.

Blocks are nn.Modules with explicitly named submodules (conv1, bn1, sn1, ..., shortcut); the only operation
outside submodules is the residual addition, so a tracer can lower each block as two paths joined by an add.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.models.blocks import NeuronSpec, conv_bn_sn


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> layer.Conv2d:
    return layer.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False, step_mode="m")


class BasicBlock(nn.Module):
    """Post-activation spiking basic block (Zheng et al., tdBN, AAAI 2021; used by Q-SNN, Wei et al. ACM MM 2024):
    out = sn2(bn2(conv2(sn1(bn1(conv1(x))))) + shortcut(x)), shortcut = 1x1 conv (stride) + BN when the shape
    changes, else identity. Input (T, N, c_in, H, W) -> (T, N, c_out, H/stride, W/stride) spikes."""

    def __init__(self, c_in: int, c_out: int, stride: int, sn: NeuronSpec):
        super().__init__()
        self.conv1, self.bn1, self.sn1 = conv_bn(c_in, c_out, 3, stride), layer.BatchNorm2d(c_out, step_mode="m"), sn()
        self.conv2, self.bn2 = conv_bn(c_out, c_out, 3, 1), layer.BatchNorm2d(c_out, step_mode="m")
        projection = stride != 1 or c_in != c_out
        self.shortcut = (nn.Sequential(conv_bn(c_in, c_out, 1, stride), layer.BatchNorm2d(c_out, step_mode="m"))
                         if projection else nn.Identity())
        self.sn2 = sn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        return self.sn2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation spiking basic block (He et al., "Identity mappings in deep residual networks", ECCV 2016;
    the layout SCA, Li et al. ICML 2024, prunes): s = sn1(bn1(x)); out = conv2(sn2(bn2(conv1(s)))) + shortcut,
    the shortcut being a 1x1 conv (stride, no BN) of s when the shape changes, else x itself. Outputs currents
    (not spikes); the next block's bn1/sn1 turns them into spikes."""

    def __init__(self, c_in: int, c_out: int, stride: int, sn: NeuronSpec):
        super().__init__()
        self.bn1, self.sn1 = layer.BatchNorm2d(c_in, step_mode="m"), sn()
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.bn2, self.sn2 = layer.BatchNorm2d(c_out, step_mode="m"), sn()
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.projection = stride != 1 or c_in != c_out
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if self.projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sn1(self.bn1(x))
        out = self.conv2(self.sn2(self.bn2(self.conv1(s))))
        return out + self.shortcut(s if self.projection else x)


class SpikingResNet(nn.Module):
    """stem -> stages (nn.Sequential "layer1", "layer2", ... of blocks) -> head; (T, N, C, H, W) -> (T, N, n)."""

    def __init__(self, stem: nn.Module, stages: nn.Sequential, head: nn.Sequential):
        super().__init__()
        self.stem, self.stages, self.head = stem, stages, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def resnet_stages(block: type, c_in: int, widths: Sequence[int], depths: Sequence[int], sn: NeuronSpec) -> nn.Sequential:
    """Stage i: depths[i] blocks of width widths[i]; the first block of every stage after the first has stride 2."""
    stages = OrderedDict()
    for i, (width, depth) in enumerate(zip(widths, depths)):
        blocks = [block(c_in if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, sn) for j in range(depth)]
        stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        c_in = width
    return nn.Sequential(stages)


def pool_fc_head(c: int, n_classes: int) -> list[nn.Module]:
    return [layer.AdaptiveAvgPool2d((1, 1), step_mode="m"), layer.Flatten(step_mode="m"),
            layer.Linear(c, n_classes, step_mode="m")]


def resnet19(in_shape, n_classes: int, sn: NeuronSpec) -> SpikingResNet:
    """ResNet-19 as in Q-SNN (Wei et al., ACM MM 2024) and tdBN: stem 128C3-BN-SN, BasicBlocks [3, 3, 2] at
    128/256/512 (stride 2 entering stages 2 and 3), global average pool, Linear(512, n). A single FC head (no
    FC-256 as in tdBN) is what gives the published 12.57M. 3x32x32, 10 classes: 12,569,226 parameters."""
    stem = nn.Sequential(*conv_bn_sn(in_shape[0], 128, sn))
    stages = resnet_stages(BasicBlock, 128, (128, 256, 512), (3, 3, 2), sn)
    return SpikingResNet(stem, stages, nn.Sequential(*pool_fc_head(512, n_classes)))


def preact_resnet18(in_shape, n_classes: int, sn: NeuronSpec) -> SpikingResNet:
    """Pre-activation ResNet-18 (He et al., ECCV 2016; CIFAR stem): stem 64C3 (no BN/SN: the first block's
    bn1/sn1 follow it), PreActBlocks [2, 2, 2, 2] at 64/128/256/512, final BN-SN, global average pool, Linear(512,
    n). SCA prunes pre-activation ResNets but its exact depth is not given in METHODS.md; ResNet-18 is our choice.
    3x32x32, 10 classes: 11,172,170 parameters."""
    stem = nn.Sequential(conv_bn(in_shape[0], 64, 3, 1))
    stages = resnet_stages(PreActBlock, 64, (64, 128, 256, 512), (2, 2, 2, 2), sn)
    head = nn.Sequential(layer.BatchNorm2d(512, step_mode="m"), sn(), *pool_fc_head(512, n_classes))
    return SpikingResNet(stem, stages, head)
