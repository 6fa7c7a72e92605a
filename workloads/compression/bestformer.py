"""BESTformer's full method (Cao et al., "Binary Event-Driven Spiking Transformer", IJCAI 2025, arXiv 2501.05904):
binary weights and binary attention (workloads.compression.binary) trained with the distillation half of the
coupled information enhancement (CIE) from the frozen full-precision model; the other half, the reversible
two-stream architecture, is workloads.models.bestformer.

From the authors' code (github.com/CaoHLin/BESTFormer, cifar/ and imagenet/ alike):
- Loss (losses.py, DeiT's DistillationLoss): (1 - alpha) * CE(outputs, labels) + alpha * distillation(outputs_kd,
  teacher), where outputs = head on stream x2 and outputs_kd = head2 on stream x3 (model.py: the model returns
  both); "soft": KL(log_softmax(s / tau) || log_softmax(t / tau)) summed, log_target=True, times tau^2 / s.numel()
  (N * n_classes); "hard": CE(s, argmax t). train.py defaults, not overridden by cifar10.yml, cifar100.yml or
  imagenet.yml, hence the released runs': --distillation-type hard, --distillation-alpha 0.5,
  --distillation-tau 1.0. Only the output logits are distilled (no intermediate layers).
- Teacher (train.py): torchvision vit_b_16 (IMAGENET1K_SWAG_E2E_V1 weights, head Linear(768, n_classes), loaded
  from their fine-tuned checkpoint model_best.pth-16.tar for CIFAR) on the input resized to 384 px, eval, no_grad.
- Binary weights (quantized_utils.py IRConv1d/IRConv2d): sign((W - mean W) / std W) per output channel, no scale
  (+-1), identity straight-through (BinaryQuantize.backward returns the gradient unchanged); the first tokenizer
  conv (a plain nn.Conv2d) and both heads (nn.Linear) stay full precision. Attention (model.py, CIFAR):
  LIF_1(Q K^T) (threshold 1, v_reset None), (A V) * 0.125 * lambda_attn[t, h], LIF (threshold 0.5), proj.
- Recipe (cifar10.yml): the student is trained from scratch, 400 epochs AdamW lr 5e-4, weight decay 0.06, batch
  128, cosine with 20 warm-up epochs, mixup 0.5, label smoothing 0.1, T 4.

Ours (assumptions and differences):
- Teacher: the input model (the project's dense stage trains it; for a BESTformer, the full-precision model of the
  same architecture), frozen (a deep copy in eval mode, no gradients) and fed the student's own encoded batch.
- Student: a deep copy of the teacher, binarized by binary.binary_stage (SignQuant with cfg.scale, default "l1":
  a per-channel positive scale, which every binarized layer's following BatchNorm absorbs, so it matches the
  authors' +-1 in function; BinaryAttention for SpikeAttention, whose map LIF is the project's hard-reset LIF),
  with every layer named in model.readouts (BESTformer's head and head_kd) kept full precision; then
  cfg.finetune_epochs of fine-tuning (Adam, cosine) on the distillation loss, then baked like `binary`.
- Loss: plain CE as the base criterion (no label smoothing or mixup). A model without head_outputs (any other
  model) gets both terms on its one output.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import nn
from torch.nn.utils import parametrize

from workloads.compression.base import Check, CompressionResult, one_of
from workloads.compression.binary import BinaryAttention, BinaryConfig, binary_stage
from workloads.compression.compose import QuantStage, quantize_then_prune
from workloads.compression.magnitude import l1_filter_masks
from workloads.data import Dataset
from workloads.train import Objective, TrainConfig, default_device


def soft_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """DeiT/BESTformer soft term: sum of KL(softmax(t / tau) || softmax(s / tau)) over the batch x tau^2 /
    student.numel() (N * n_classes, the authors' losses.py). student, teacher: logits (N, n_classes)."""
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="sum",
                  log_target=True)
    return kl * (t * t) / student.numel()


def hard_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """DeiT/BESTformer hard term: sample-mean CE(student, argmax of teacher); temperature unused. Logits
    (N, n_classes)."""
    return F.cross_entropy(student, teacher.argmax(dim=1))


#: distillation kind -> term(student logits, teacher logits, temperature)
DISTILLATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "hard": hard_distillation, "soft": soft_distillation,
}


@dataclass(frozen=True)
class BestformerConfig(BinaryConfig):
    """BESTformer settings (ValueError names a field out of range): distillation "hard" (default, the authors'
    runs) or "soft" (DISTILLATIONS); alpha in [0, 1], the weight of the distillation term (0.5); temperature > 0
    (1.0; "soft" only); finetune_epochs (3), lr, optimizer, scale, binary_attention as BinaryConfig."""

    distillation: str = "hard"
    alpha: float = 0.5
    temperature: float = 1.0

    def _checks(self) -> dict[str, Check]:
        """BinaryConfig's checks plus distillation (a key of DISTILLATIONS), alpha and temperature."""
        return {**super()._checks(),
                "distillation": (self.distillation in DISTILLATIONS, one_of(DISTILLATIONS)),
                "alpha": (0.0 <= self.alpha <= 1.0, "0 <= alpha <= 1"),
                "temperature": (self.temperature > 0, "temperature > 0")}


def distillation_loss(cls_logits: torch.Tensor, kd_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, cfg: BestformerConfig) -> torch.Tensor:
    """(1 - alpha) CE(cls_logits, labels) + alpha DISTILLATIONS[cfg.distillation](kd_logits, teacher_logits, tau):
    the authors' DistillationLoss. Logits (N, n_classes), labels (N,); a scalar tensor."""
    term = DISTILLATIONS[cfg.distillation](kd_logits, teacher_logits, cfg.temperature)
    return (1.0 - cfg.alpha) * F.cross_entropy(cls_logits, labels) + cfg.alpha * term


def frozen_teacher(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of `model` on `device` in eval mode with no parameter requiring gradients (the input model is
    left as it is)."""
    teacher = copy.deepcopy(model).to(device).eval()
    functional.reset_net(teacher)
    return teacher.requires_grad_(False)


def distillation_objective(teacher: nn.Module, cfg: BestformerConfig) -> Objective:
    """A workloads.train.Objective: the teacher's logits (mean over T of its output, no_grad, state reset after)
    on the student's encoded batch, the student's head outputs (model.head_outputs, mean over T: the CE head and
    the distillation head; the model's one output for both when it has none) and `distillation_loss`; logits
    returned for accuracy: the student's output ((cls + kd) / 2 for a BESTformer)."""
    def objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor):
        with torch.no_grad():
            target = teacher(inputs).mean(0)
        functional.reset_net(teacher)
        heads = getattr(model, "head_outputs", None)
        if heads is None:
            cls = kd = logits = model(inputs).mean(0)
        else:
            cls, kd = (out.mean(0) for out in heads(inputs))
            logits = (cls + kd) / 2
        return distillation_loss(cls, kd, target, labels, cfg), logits
    return objective


def bestformer_stage(model: nn.Module, cfg: BinaryConfig, train_cfg: TrainConfig) -> QuantStage:
    """binary.binary_stage (1-bit weights on every weight layer but the first and last, BinaryAttention), then
    every layer named in model.readouts (BESTformer's two heads) back to full precision, in place."""
    stage = binary_stage(model, cfg, train_cfg)
    readouts = [n for n in getattr(model, "readouts", ()) if stage.weight_bits.pop(n, None) is not None]
    for name in readouts:
        parametrize.remove_parametrizations(model.get_submodule(name), "weight", leave_parametrized=False)
    n_attn = sum(isinstance(m, BinaryAttention) for m in model.modules())
    stage.notes = (f"binary weights ({cfg.scale} scale) on {len(stage.weight_bits)} hidden layers, first layer and "
                   f"heads full precision; {n_attn} binary attention modules")
    return stage


def bestformer(model: nn.Module, dataset: Dataset, ratio: float, cfg: Optional[BestformerConfig] = None,
               train_cfg: Optional[TrainConfig] = None, seed: int = 0, device: Optional[torch.device] = None,
               progress: bool = True) -> tuple[nn.Module, CompressionResult]:
    """BESTformer: `model` is the trained full-precision teacher (unchanged); the student is a binarized copy
    (bestformer_stage) fine-tuned cfg.finetune_epochs on `distillation_objective` against the frozen teacher, then
    baked (module docstring). ratio: BESTformer does not prune; as `binary`, ratio > 0 also removes
    round_half_up(ratio * C_out) channels of every conv by latent L1 norm after binarization (needs a flat
    Sequential: a BESTformer raises ValueError), ratio 0 = binarization and distillation only.
    Result: weight_bits {layer: 1} for the binarized layers. Raises ValueError for a ratio outside [0, 1)."""
    cfg, device = cfg or BestformerConfig(), device or default_device()
    objective = distillation_objective(frozen_teacher(model, device), cfg)
    return quantize_then_prune(model, dataset, ratio, "bestformer", cfg, train_cfg, seed, device, progress,
                               quantizer=bestformer_stage, pruner=l1_filter_masks, objective=objective)
