"""BESTformer (Cao et al., "Binary Event-Driven Spiking Transformer", IJCAI 2025, arXiv 2501.05904; code
github.com/CaoHLin/BESTFormer): a Spikformer whose blocks are reversible two-stream blocks, the architecture half of
the coupled information enhancement (CIE). Built full precision, it is the teacher when trained dense; the
"bestformer" compression method (workloads.compression.bestformer) binarizes a copy into the student.

From the authors' code (cifar/model.py; imagenet/model.py is the same but for its tokenizer and attention order):
- RevSpikingTransformer.forward(x0, x1): x2 = attn(x1) + (x0 + x1) / 2; x3 = mlp(x2) + (x1 + x2) / 2; returns
  (x2, x3). The first block gets x0 = None and computes x2 = attn(x1) + x1, which is the rule with x0 = x1.
- vit_snn.forward_features: x0 = None, x1 = patch_embed(x), then x0, x1 = blk(x0, x1) per block; both streams are
  averaged over tokens; forward returns (head(x0), head2(x1)) averaged over T, two Linear(D, n_classes) heads.
- cifar/train.py: the loss takes head (stream x2 of the last block) with cross-entropy and head2 (stream x3) with
  the distillation term (workloads.compression.bestformer); validate() scores (head + head2) / 2.
- Sizes: cifar10.yml / cifar100.yml depth 4, D 384, 8 heads, MLP ratio 4, T 4, 32x32 input, patch 4 (max-pools
  before the 4th and 5th tokenizer convs: 8x8 = 64 tokens); Q/K/V, proj and MLP without bias (IRConv1d/IRConv2d
  default bias=False). cifar/logs/cifar10.log line 3: "param count:9314884" for the binary student (its attention
  has a learnable lambda_attn (T, 1, heads, 1, 1) per block). imagenet.yml: depth 8, D 512, 8 heads, 224 px,
  patch 16 (a max-pool before each of tokenizer convs 2-5).

Ours, and why it differs:
- Blocks and tokenizer are Spikformer's (workloads.models.spikformer, post-activation: SSA and MLP end in a LIF,
  so the streams carry sums of spikes, graded 0, 0.5, 1, 1.5, ...); the authors build on Spikingformer
  (pre-activation: each branch starts with a LIF and ends in BatchNorm, so their streams carry BN currents, and
  their tokenizer is a 5-conv chain without the rpe residual: the same conv shapes, the same parameter count).
  The coupling equations, stream start and end and the two heads are theirs.
- Full precision: attention is Spikformer's SpikeAttention (no parameters); the binary student's BinaryAttention
  (workloads.compression.binary) adds their (T, heads) lambda, so the student has exactly the logged 9,314,884
  parameters and the CIFAR teacher 9,314,756 (see `bestformer`).
- The model outputs (head + head_kd) / 2 (their validate() output) as one (T, N, n) tensor, so the project's
  training, evaluation and lowering use it unchanged; `head_outputs` gives the two heads apart for distillation.
- The two couplings and the head average are parameter-free modules (Couple, Average), so the lowering maps each
  to projections of weight 1 and 0.5 (workloads.lowering.rules_reversible) instead of tensor arithmetic.
- The authors train with ordinary backpropagation (no recomputation of activations); `RevBlock.inverse` states the
  reversibility, it is not used in training.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from workloads.models.blocks import NeuronSpec
from workloads.models.spikformer import MLP, SSA, TokenMean, Tokenizer, check_sizes


class Couple(nn.Module):
    """y + (a + b) / 2, the coupling of a reversible block (no parameters): y, a, b tensors of one shape, e.g.
    (T, N, L, D) tokens -> the same shape. Source: RevSpikingTransformer.forward in the authors' cifar/model.py."""

    def forward(self, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """y + (a + b) / 2."""
        return y + (a + b) / 2


class Average(nn.Module):
    """(a + b) / 2 of two tensors of one shape (no parameters): BESTformer's output, the mean of its two heads'
    (T, N, n_classes) outputs (validate() in the authors' cifar/train.py)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(a + b) / 2."""
        return (a + b) / 2


class RevBlock(nn.Module):
    """Reversible two-stream block: (x0, x1) -> (x2, x3) with x2 = attn(x1) + (x0 + x1) / 2 (x2 = attn(x1) + x1
    when x0 is None, the first block) and x3 = mlp(x2) + (x1 + x2) / 2; streams are (T, N, L, D) tokens. attn, mlp:
    Spikformer's SSA and MLP (D -> D spikes)."""

    def __init__(self, attn: SSA, mlp: MLP):
        super().__init__()
        self.attn, self.mlp = attn, mlp
        self.couple_attn, self.couple_mlp = Couple(), Couple()

    def forward(self, x0: Optional[torch.Tensor], x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x2, x3) of the class docstring."""
        x2 = self.attn(x1) + x1 if x0 is None else self.couple_attn(self.attn(x1), x0, x1)
        return x2, self.couple_mlp(self.mlp(x2), x1, x2)

    def inverse(self, x2: torch.Tensor, x3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, x1) from the block's outputs (x2, x3): x1 = 2 (x3 - mlp(x2)) - x2, x0 = 2 (x2 - attn(x1)) - x1
        (x0 = x1 for a first block, whose rule is the general one with x0 = x1). mlp and attn are re-run from reset
        neuron states, as in a forward; exact up to float rounding (exact for spikes: every value is a sum of
        halves). Use eval mode: in train mode BatchNorm's batch statistics of the same input are the same, but
        its running statistics are updated again."""
        functional.reset_net(self.mlp)
        x1 = 2 * (x3 - self.mlp(x2)) - x2
        functional.reset_net(self.attn)
        x0 = 2 * (x2 - self.attn(x1)) - x1
        functional.reset_net(self)
        return x0, x1


class BESTformer(nn.Module):
    """tokenizer -> reversible blocks -> per stream TokenMean -> head (stream x2) and head_kd (stream x3) ->
    Average: (T, N, C, H, W) -> (T, N, n_classes). Streams start as x0 = None, x1 = tokenizer(x) and end as the
    last block's (x2, x3). `readouts` names the classifier layers (kept full precision by binarization)."""

    readouts = ("head", "head_kd")

    def __init__(self, tokenizer: Tokenizer, blocks: nn.ModuleList, dim: int, n_classes: int):
        super().__init__()
        self.tokenizer, self.blocks = tokenizer, blocks
        self.pool, self.pool_kd = TokenMean(), TokenMean()
        self.head = layer.Linear(dim, n_classes, step_mode="m")
        self.head_kd = layer.Linear(dim, n_classes, step_mode="m")
        self.average = Average()
        for m in self.modules():  # reference init (_init_weights): trunc_normal(std .02) Linear weights, zero biases
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's (x2, x3), each (T, N, L, D), for input x (T, N, C, H, W)."""
        x0, x1 = None, self.tokenizer(x)
        for block in self.blocks:
            x0, x1 = block(x0, x1)
        return x0, x1

    def head_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(head(mean over tokens of x2), head_kd(mean over tokens of x3)), each (T, N, n_classes): the
        cross-entropy and the distillation outputs of the authors' training."""
        x2, x3 = self.streams(x)
        return self.head(self.pool(x2)), self.head_kd(self.pool_kd(x3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(head + head_kd) / 2, (T, N, n_classes): the authors' evaluation output."""
        return self.average(*self.head_outputs(x))


def bestformer(in_shape, n_classes: int, sn: NeuronSpec, *, depth: int = 4, dim: int = 384, heads: int = 8,
               mlp_ratio: float = 4.0, pool_after: Sequence[int] = (2, 3), bias: bool = False,
               attn_scale: float = 0.125, attn_threshold: float = 0.5) -> BESTformer:
    """Configurable BESTformer; defaults = the authors' CIFAR model (cifar10.yml: depth 4, D 384, 8 heads, MLP 4D,
    max-pools after tokenizer convs 3 and 4: 32x32 -> 64 tokens; attention scale 0.125 and LIF threshold 0.5).
    bias: Linear bias in Q/K/V, proj and MLP (False, as the authors' IRConv layers).

    Parameters (h = mlp_ratio * D, bias off): tokenizer 9*(C*D/8 + D^2/32 + D^2/8 + D^2/2 + D^2) + 2*(D/8 + D/4 +
    D/2 + 2D); per block 4*D^2 + 8D (SSA) + 2*D*h + 2h + 2D (MLP); two heads 2*(D*n + n). 3x32x32, 10 classes:
    2,201,520 + 4 * 1,776,384 + 7,700 = 9,314,756; the binary student adds T*heads = 32 attention scales per block:
    9,314,884, the count in the authors' cifar/logs/cifar10.log. Raises ValueError for bad sizes
    (spikformer.check_sizes)."""
    check_sizes(depth, dim, heads, mlp_ratio, pool_after)
    hidden = int(dim * mlp_ratio)
    blocks = nn.ModuleList(RevBlock(SSA(dim, heads, sn, bias, attn_scale, attn_threshold, proj_bias=bias),
                                    MLP(dim, hidden, sn, bias=bias)) for _ in range(depth))
    return BESTformer(Tokenizer(in_shape[0], dim, sn, tuple(pool_after)), blocks, dim, n_classes)


def bestformer_mnist(in_shape, n_classes: int, sn: NeuronSpec, *, depth: int = 1, dim: int = 64,
                     heads: int = 4) -> BESTformer:
    """Small BESTformer for 1x28x28 MNIST: depth 1, D 64, 4 heads, MLP 256, no Linear bias in the blocks, max-pools
    after tokenizer convs 1-3 (28 -> 14 -> 7 -> 4: 16 tokens); as costly to train as mnist_conv (same CPU time per
    sample). 1x28x28, 10 classes: 113,100 parameters = tokenizer 9*(8 + 128 + 512 + 2048 + 4096) + 2*(8 + 16 + 32
    + 64 + 64) = 61,496 + block 4*4096 + 8*64 + 2*64*256 + 2*256 + 2*64 = 50,304 + heads 2*(640 + 10) = 1,300.
    Raises ValueError for bad sizes."""
    return bestformer(in_shape, n_classes, sn, depth=depth, dim=dim, heads=heads, pool_after=(0, 1, 2))
