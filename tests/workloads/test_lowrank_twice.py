"""A low-rank (DSP) layer whose output a pre-activation ResNet folds into two blocks' BatchNorms lowers to one
"<base>_a" projection per BatchNorm (the second named "<base>_a_2"), both from the same relay."""
import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads import compression as C
from workloads import lower
from workloads.data import load_dataset
from workloads.encoding import encode
from workloads.models.blocks import NeuronSpec
from workloads.models.resnet import PreActBlock, SpikingResNet, conv_bn, pool_fc_head, resnet_stages
from workloads.train import TrainConfig


def _small_preact(n_classes: int) -> SpikingResNet:
    """preact_resnet18's structure at widths 8/16 and depths 2/1 (a few thousand weights, fast to compress)."""
    torch.manual_seed(0)
    sn = NeuronSpec("LIF", 2.0, 1.0, {})
    stages = resnet_stages(PreActBlock, 8, (8, 16), (2, 1), sn)
    head = nn.Sequential(layer.BatchNorm2d(16, step_mode="m"), sn(), *pool_fc_head(16, n_classes))
    return SpikingResNet(nn.Sequential(conv_bn(1, 8, 3, 1)), stages, head).eval()


def test_a_low_rank_conv_folded_into_two_batchnorms_lowers_with_distinct_names():
    ds = load_dataset("digits", seed=0)
    model = _small_preact(ds.n_classes)
    x = encode(ds.x_test[:2], 1, "direct")
    dense, _ = lower(model, x, weight_fit="quantize")
    small, info = C.compress("dsp", model, ds, 0.5, C.DSPConfig(finetune_epochs=0),
                             train_cfg=TrainConfig(n_timesteps=1), progress=False)
    graph, trace = lower(small, x, weight_fit="quantize", compression=info)
    names = [p.name for p in graph.projections]
    assert len(names) == len(set(names))
    a, a2 = (next(p for p in graph.projections if p.name == n) for n in ("conv3_a", "conv3_a_2"))
    assert a.source == a2.source == "conv3_relay" and a.target != a2.target
    assert a.weight.shape == a2.weight.shape
    # every dense projection but the input layer's and the classifier's became a low-rank pair (or its copy)
    assert len(graph.projections) > len(dense.projections) and trace.n_samples == 2
