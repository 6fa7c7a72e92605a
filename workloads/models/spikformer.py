"""Spikformer (Zhou et al., ICLR 2023): spiking patch splitting (conv tokenizer + relative position conv) and
blocks of spiking self-attention (SSA) and MLP. Tokens are laid out (T, N, L, D).

Every learnable or spiking operation is a named submodule (LinearBNSN, SpikeAttention, TokenMean, ...); the only
operations outside submodules are residual additions, so a future tracer can lower each module by type. Layer
shapes follow the authors' code (github.com/ZK-Zhou/spikformer: cifar10/model.py and cifar10dvs/model.py);
the unused LayerNorms and DVS position embedding of that code are left out (they are not in the printed counts).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.models.blocks import NeuronSpec, conv_bn_sn


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the feature dimension D of tokens (T, N, L, D): statistics over T*N*L (as the reference's
    BatchNorm1d on (T*N, D, L)). 2*D parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class LinearBNSN(nn.Module):
    """Token-wise linear -> TokenBatchNorm -> neuron: (T, N, L, f_in) -> (T, N, L, f_out) spikes."""

    def __init__(self, f_in: int, f_out: int, sn: NeuronSpec, bias: bool = True):
        super().__init__()
        self.linear = layer.Linear(f_in, f_out, bias=bias, step_mode="m")
        self.bn, self.sn = TokenBatchNorm(f_out), sn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.bn(self.linear(x)))


class SpikeAttention(nn.Module):
    """Softmax-free multi-head attention on spikes: per head, (Q K^T) V * scale. q, k, v: (T, N, L, D) ->
    (T, N, L, D) currents (heads concatenated). No parameters."""

    def __init__(self, heads: int, scale: float):
        super().__init__()
        self.heads, self.scale = heads, scale

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        t, n, length, d = x.shape
        return x.reshape(t, n, length, self.heads, d // self.heads).transpose(2, 3)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(q), self._split(k), self._split(v)
        out = (q @ k.transpose(-2, -1)) @ v * self.scale
        return out.transpose(2, 3).reshape(*out.shape[:2], out.shape[3], -1)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale}"


class SSA(nn.Module):
    """Spiking self-attention: q, k, v = LinearBNSN(x); attn_sn(SpikeAttention(q, k, v)) (LIF threshold 0.5 in
    the paper); proj = LinearBNSN (biased unless proj_bias=False). (T, N, L, D) -> (T, N, L, D) spikes."""

    def __init__(self, dim: int, heads: int, sn: NeuronSpec, qkv_bias: bool, scale: float, attn_threshold: float,
                 proj_bias: bool = True):
        super().__init__()
        self.q, self.k, self.v = (LinearBNSN(dim, dim, sn, qkv_bias) for _ in range(3))
        self.attn, self.attn_sn = SpikeAttention(heads, scale), sn(attn_threshold)
        self.proj = LinearBNSN(dim, dim, sn, proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attn_sn(self.attn(self.q(x), self.k(x), self.v(x))))


class MLP(nn.Module):
    """fc1 = LinearBNSN(D, hidden), fc2 = LinearBNSN(hidden, D); both biased unless bias=False."""

    def __init__(self, dim: int, hidden: int, sn: NeuronSpec, bias: bool = True):
        super().__init__()
        self.fc1, self.fc2 = LinearBNSN(dim, hidden, sn, bias), LinearBNSN(hidden, dim, sn, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    """x = x + attn(x); x = x + mlp(x)."""

    def __init__(self, attn: SSA, mlp: MLP):
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class ToTokens(nn.Module):
    """(T, N, D, H, W) feature maps -> (T, N, H*W, D) tokens (row-major positions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(3).transpose(-1, -2)


class TokenMean(nn.Module):
    """Average over tokens: (T, N, L, D) -> (T, N, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(2)


class Tokenizer(nn.Module):
    """Spiking patch splitting: proj = flat chain of four conv-BN-SN (D/8, D/4, D/2, D) with MaxPool2d(3, 2, 1)
    after the convs listed in pool_after; rpe = conv-BN-SN (D -> D); tokens = ToTokens(proj + rpe(proj))."""

    def __init__(self, c_in: int, dim: int, sn: NeuronSpec, pool_after: Sequence[int]):
        super().__init__()
        chain, c = OrderedDict(), c_in
        for i, width in enumerate((dim // 8, dim // 4, dim // 2, dim)):
            for name, mod in zip(("conv", "bn", "sn"), conv_bn_sn(c, width, sn)):
                chain[f"{name}{i}"] = mod
            if i in pool_after:
                chain[f"pool{i}"] = layer.MaxPool2d(3, 2, 1, step_mode="m")
            c = width
        self.proj = nn.Sequential(chain)
        self.rpe = nn.Sequential(OrderedDict(zip(("conv", "bn", "sn"), conv_bn_sn(dim, dim, sn))))
        self.tokens = ToTokens()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.tokens(x + self.rpe(x))


class Spikformer(nn.Module):
    """tokenizer -> blocks -> TokenMean -> head Linear(D, n): (T, N, C, H, W) -> (T, N, n)."""

    def __init__(self, tokenizer: Tokenizer, blocks: nn.Sequential, dim: int, n_classes: int):
        super().__init__()
        self.tokenizer, self.blocks = tokenizer, blocks
        self.pool, self.head = TokenMean(), layer.Linear(dim, n_classes, step_mode="m")
        for m in self.modules():  # reference init: trunc_normal(std .02) Linear weights, zero biases
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.tokenizer(x))))


def check_sizes(depth: int, dim: int, heads: int, mlp_ratio: float, pool_after: Sequence[int]) -> None:
    """Raise ValueError unless depth, heads, mlp_ratio > 0, dim is a positive multiple of 8 and of heads, the MLP
    keeps a hidden unit (int(dim * mlp_ratio) >= 1), and pool_after holds tokenizer conv indices in 0..3 (the
    message names the values)."""
    if depth < 1 or heads < 1 or mlp_ratio <= 0:
        raise ValueError(f"depth, heads and mlp_ratio must be positive, got {depth}, {heads}, {mlp_ratio}")
    if dim < 8 or dim % 8 or dim % heads:
        raise ValueError(f"dim must be a positive multiple of 8 and of heads={heads}, got {dim}")
    if int(dim * mlp_ratio) < 1:
        raise ValueError(f"mlp_ratio {mlp_ratio} leaves the MLP of dim {dim} no hidden unit (int(dim * mlp_ratio) "
                         "must be >= 1)")
    if not set(pool_after) <= {0, 1, 2, 3}:
        raise ValueError(f"pool_after must hold tokenizer conv indices in 0..3, got {tuple(pool_after)}")


def spikformer(in_shape, n_classes: int, sn: NeuronSpec, *, depth: int = 4, dim: int = 384, heads: int = 12,
               mlp_ratio: float = 4.0, pool_after: Sequence[int] = (2, 3), qkv_bias: bool = True,
               attn_scale: float = 0.125, attn_threshold: float = 0.5) -> Spikformer:
    """Configurable Spikformer; defaults = Spikformer-4-384 for CIFAR (pools after the 3rd and 4th tokenizer
    convs: 32x32 -> 64 tokens). Attention scale 0.125 as in the paper (the authors' DVS code uses 0.25).
    Parameters (b = 1 with qkv_bias, h = hidden): tokenizer 9*(C*D/8 + D^2/32 + D^2/8 + D^2/2 + D^2)
    + 2*(D/8 + D/4 + D/2 + 2D); per block SSA 4*D^2 + (3b + 1)*D + 8D, MLP 2*D*h + h + D + 2h + 2D;
    head D*n + n. Raises ValueError for bad sizes."""
    check_sizes(depth, dim, heads, mlp_ratio, pool_after)
    hidden = int(dim * mlp_ratio)
    blocks = nn.Sequential(*(Block(SSA(dim, heads, sn, qkv_bias, attn_scale, attn_threshold), MLP(dim, hidden, sn))
                             for _ in range(depth)))
    return Spikformer(Tokenizer(in_shape[0], dim, sn, tuple(pool_after)), blocks, dim, n_classes)


def spikformer_4_384(in_shape, n_classes: int, sn: NeuronSpec) -> Spikformer:
    """Spikformer-4-384, CIFAR-10 (Zhou et al., ICLR 2023): depth 4, D 384, 12 heads, MLP 1536, biased Q/K/V.
    3x32x32, 10 classes: 9,324,730 parameters (paper: 9.32M)."""
    return spikformer(in_shape, n_classes, sn, depth=4, dim=384, heads=12)


def spikformer_2_256(in_shape, n_classes: int, sn: NeuronSpec) -> Spikformer:
    """Spikformer-2-256 for DVS (authors' cifar10dvs code): depth 2, D 256, 16 heads, max-pool after all four
    tokenizer convs (2x128x128 -> 64 tokens), Q/K/V without bias. 10 classes: 2,566,666 parameters at any input
    size (paper: 2.57M)."""
    return spikformer(in_shape, n_classes, sn, depth=2, dim=256, heads=16, pool_after=(0, 1, 2, 3), qkv_bias=False)
