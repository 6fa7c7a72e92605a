"""SCA on spiking ResNets: channel units of the pre-activation rule (hand-listed), importance from the deciding
neuron, physical removal equal to the masked model with the parameter count by hand, and the end-to-end prune that
lowers and simulates."""
import copy
from collections import OrderedDict

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import hwmodels
from hwmodels.mapping.connectivity import synaptic_events
from workloads.compression import compress, sca_prune_resnet
from workloads.compression.base import apply_channel_mask
from workloads.compression.sca import GammaGradMeter, ImportanceRecorder, SCAConfig
from workloads.compression.sca_resnet import ChannelUnit, find_resnet_units, physical_kept, remove_resnet_channels
from workloads.encoding import encode
from workloads.lowering import lower
from workloads.models import NeuronSpec, build_model, count_parameters
from workloads.models.blocks import conv_bn_sn
from workloads.models.resnet import BasicBlock, PreActBlock, SpikingResNet, conv_bn, pool_fc_head
from workloads.train import TrainConfig, evaluate, train

CPU = torch.device("cpu")
L1, L2 = "stages.layer1", "stages.layer2"


def resnet_stages(block, widths_depths, c_in, sn):
    """Stage i: blocks of block type at (width, depth); the first block of stage 2 has stride 2."""
    stages = OrderedDict()
    for i, (width, depth) in enumerate(widths_depths):
        stages[f"layer{i + 1}"] = nn.Sequential(*[block(c_in if j == 0 else width, width, 2 if i and not j else 1, sn)
                                                  for j in range(depth)])
        c_in = width
    return nn.Sequential(stages)


def _init(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights large enough for spikes to flow; non-trivial BN statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 3.0 / m.weight[0].numel() ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2 + 0.3)
    return model


def preact_tiny(kind: str = "LIF", seed: int = 2, theta: float = 0.3, w=(4, 8), init: bool = True):
    """Pre-activation ResNet on 1x8x8: stem 1->w0, layer1 2 blocks at w0, layer2 2 blocks at w1 (first: stride 2,
    1x1 shortcut), head BN-SN-pool-Linear(w1, 10); neurons of threshold theta (low: spikes flow at init). init:
    `_init`'s large weights, else torch's default initialisation under torch.manual_seed(seed)."""
    sn = NeuronSpec(kind, 2.0, theta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(layer.BatchNorm2d(w[1], step_mode="m"), sn(), *pool_fc_head(w[1], 10))
        net = SpikingResNet(nn.Sequential(conv_bn(1, w[0], 3, 1)), resnet_stages(PreActBlock, [(w[0], 2), (w[1], 2)], w[0], sn),
                            head)
    return _init(net, seed) if init else net


def resnet19_tiny(seed: int = 1, theta: float = 0.3, w=(4, 8), init: bool = True) -> SpikingResNet:
    """ResNet19's post-activation blocks on 1x8x8: stem conv-BN-LIF 1->w0, layer1 2 blocks at w0, layer2 1 block
    at w1 (stride 2, 1x1 conv + BN shortcut), head pool-Linear(w1, 10); LIF threshold theta; init as preact_tiny."""
    sn = NeuronSpec("LIF", 2.0, theta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SpikingResNet(nn.Sequential(*conv_bn_sn(1, w[0], sn)),
                            resnet_stages(BasicBlock, [(w[0], 2), (w[1], 1)], w[0], sn), nn.Sequential(*pool_fc_head(w[1], 10)))
    return _init(net, seed) if init else net


def preact_tiny_params(s1, a, b, c, d, s2) -> int:
    """Parameters of preact_tiny with stream widths s1 (stage 1), s2 (stage 2) and block-internal widths a, b, c, d
    (conv1 outputs of blocks 1.0, 1.1, 2.0, 2.1): conv k x k = 9 * c_in * c_out, BN 2 per channel."""
    stem = 9 * 1 * s1
    block = lambda c_in, mid, c_out: 2 * c_in + 9 * c_in * mid + 2 * mid + 9 * mid * c_out
    head = 2 * s2 + 10 * s2 + 10
    return stem + block(s1, a, s1) + block(s1, b, s1) + block(s1, c, s2) + s1 * s2 + block(s2, d, s2) + head


def _unit(conv, bn, node, readers, segment, writers=None):
    return ChannelUnit(conv, writers or (conv,), bn, node, tuple((r, False) for r in readers), segment)


def test_preact_resnet18_units_follow_the_rule():
    model = build_model("preact_resnet18", (3, 8, 8), 10, seed=0)
    units = find_resnet_units(model)
    b10, b11, b20, b21 = f"{L1}.0", f"{L1}.1", f"{L2}.0", f"{L2}.1"
    assert units[:8] == [
        _unit("stem.0", f"{b10}.bn1", f"{b10}.sn1", [f"{b10}.conv1"], "stem.0"),  # first block's BN1/SN1 -> stem
        _unit(f"{b10}.conv1", f"{b10}.bn2", f"{b10}.sn2", [f"{b10}.conv2"], f"{b10}.conv1"),  # own BN2/SN2 -> conv1
        _unit(f"{b10}.conv2", f"{b11}.bn1", f"{b11}.sn1", [f"{b11}.conv1"], "stem.0"),  # next BN1/SN1 -> conv2
        _unit(f"{b11}.conv1", f"{b11}.bn2", f"{b11}.sn2", [f"{b11}.conv2"], f"{b11}.conv1"),
        # layer2.0's sn1 spikes feed its conv1 and its 1x1 shortcut
        _unit(f"{b11}.conv2", f"{b20}.bn1", f"{b20}.sn1", [f"{b20}.conv1", f"{b20}.shortcut"], "stem.0"),
        _unit(f"{b20}.conv1", f"{b20}.bn2", f"{b20}.sn2", [f"{b20}.conv2"], f"{b20}.conv1"),
        # conv2 and the shortcut are summed into layer2.1's BN1: one unit, a new stream segment
        _unit(f"{b20}.conv2", f"{b21}.bn1", f"{b21}.sn1", [f"{b21}.conv1"], f"{b20}.conv2",
              writers=(f"{b20}.conv2", f"{b20}.shortcut")),
        _unit(f"{b21}.conv1", f"{b21}.bn2", f"{b21}.sn2", [f"{b21}.conv2"], f"{b21}.conv1"),
    ]
    assert units[-1] == ChannelUnit("stages.layer4.1.conv2", ("stages.layer4.1.conv2",), "head.0", "head.1",
                                    (("head.4", True),), "stages.layer4.0.conv2")  # final BN/SN -> last conv2
    # every conv writes exactly one unit; 64 (stem) + per block 2 x width over widths 64..512 at depth 2
    writers = [w for u in units for w in u.writers]
    assert sorted(writers) == sorted(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert len(units) == 17 and sum(model.get_submodule(u.conv).out_channels for u in units) == 64 + 2 * 2 * 960


def test_resnet19_prunes_only_block_internal_conv1():
    model = build_model("resnet19", (3, 8, 8), 10, seed=0)
    units = find_resnet_units(model)
    names = [f"stages.layer{s}.{b}" for s, depth in ((1, 3), (2, 3), (3, 2)) for b in range(depth)]
    assert units == [_unit(f"{n}.conv1", f"{n}.bn1", f"{n}.sn1", [f"{n}.conv2"], f"{n}.conv1") for n in names]
    assert sum(model.get_submodule(u.conv).out_channels for u in units) == 3 * 128 + 3 * 256 + 2 * 512


def _if_potentials(x: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """IF neuron by hand (V_reset 0, hard reset): H[t] = V[t-1] + X[t], V[t] = H[t] (1 - S[t])."""
    v, hs = torch.zeros_like(x[0]), []
    for xt, st in zip(x, spikes):
        h = v + xt
        hs.append(h)
        v = h * (1 - st)
    return torch.stack(hs)


def test_importance_and_gamma_gradient_come_from_the_deciding_bn_and_neuron():
    model = preact_tiny("IF", theta=1.0).train()
    units = find_resnet_units(model)
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, neuron.BaseNode):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: seen.__setitem__(name, (args[0].detach(), out.detach()))))
    x = encode(torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2, 2)
    with ImportanceRecorder(model, units) as rec:
        model(x).sum().backward()
    for h in handles:
        h.remove()
    meter = GammaGradMeter(model, units)
    meter.accumulate()
    expected = {}
    for name, (inp, out) in seen.items():
        h = _if_potentials(inp, out)
        assert torch.equal(out, (h >= 1.0).float())  # the hand replay reproduces the node's spikes
        expected[name] = h.abs().sum((3, 4)).sum((0, 1)).double() / (2 * 3)  # L1 over H x W, mean over T*N
    for u in units:
        torch.testing.assert_close(rec.scores()[u.conv], expected[u.node], rtol=1e-6, atol=1e-9)
        assert torch.equal(meter.scores()[u.conv], model.get_submodule(u.bn).weight.grad.abs().double())
    # conv2 of block 1.0 is judged by block 1.1's sn1, not by its own block's sn2
    assert not torch.allclose(rec.scores()[f"{L1}.0.conv2"], expected[f"{L1}.0.sn2"])
    assert rec.scores()[f"{L2}.1.conv2"].shape == (8,) and units[-1].node == "head.1"


# masked channel indices per unit of preact_tiny: stage-1 stream channel 0 masked by its three units (removed),
# channels 1 and 3 by one unit each (kept, zero); stage-2 stream channel 3 masked by both units (removed), 5 and 6
# by one each (kept, zero); internal units lose 2, 1, 3 and 2 channels.
MASKED = {"stem.0": [0], f"{L1}.0.conv2": [0, 1], f"{L1}.1.conv2": [0, 3],
          f"{L1}.0.conv1": [1, 3], f"{L1}.1.conv1": [0], f"{L2}.0.conv1": [0, 4, 7], f"{L2}.1.conv1": [2, 5],
          f"{L2}.0.conv2": [3, 5], f"{L2}.1.conv2": [3, 6]}


def _masked_preact():
    model = preact_tiny()
    units = find_resnet_units(model)
    masks = {u.conv: torch.tensor([k not in MASKED[u.conv] for k in range(model.get_submodule(u.conv).out_channels)])
             for u in units}
    apply_channel_mask(model, units, masks)
    return model, units, masks


def _run(model, x):
    functional.reset_net(model)
    with torch.no_grad():
        out = model(x)
    functional.reset_net(model)
    return out


def test_physical_removal_keeps_outputs_identical_and_counts_parameters_by_hand():
    masked, units, masks = _masked_preact()
    assert count_parameters(masked) == preact_tiny_params(4, 4, 4, 8, 8, 8) == 2854
    small, hold = remove_resnet_channels(masked, units, masks)
    widths = {u.conv: small.get_submodule(u.conv).out_channels for u in units}
    assert widths == {"stem.0": 3, f"{L1}.0.conv2": 3, f"{L1}.1.conv2": 3, f"{L1}.0.conv1": 2, f"{L1}.1.conv1": 3,
                      f"{L2}.0.conv1": 5, f"{L2}.1.conv1": 6, f"{L2}.0.conv2": 7, f"{L2}.1.conv2": 7}
    assert small.get_submodule(f"{L2}.0.shortcut").weight.shape == (7, 3, 1, 1)
    assert small.head[0].num_features == 7 and small.head[4].in_features == 7
    # 27 + (6+54+4+54) + (6+81+6+81) + (6+135+10+315+21) + (14+378+12+378) + (14+80) = 1682
    assert count_parameters(small) == preact_tiny_params(3, 2, 3, 5, 6, 7) == 1682
    # stage-1 channel 1 (old index 1 -> new 0) is masked by layer1.0.conv2's unit only: zero filter, zero gamma and
    # beta of layer1.1.bn1, zero input weights of layer1.1.conv1; stage-2 channel 6 (-> 5) by the head's unit
    b11 = small.stages.layer1[1]
    assert small.stages.layer1[0].conv2.weight[0].abs().sum() == 0 and b11.bn1.weight[0] == b11.bn1.bias[0] == 0
    assert b11.conv1.weight[:, 0].abs().sum() == 0 and b11.conv1.weight[:, 1:].abs().sum() > 0
    assert small.head[4].weight[:, 5].abs().sum() == 0 and small.head[0].weight[5] == 0
    x = encode(torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2, 3)
    rates = []
    hooks = [m.register_forward_hook(lambda mod, a, out: rates.append(float(out.mean())))
             for m in masked.modules() if isinstance(m, neuron.BaseNode)]
    _run(masked.eval(), x)
    [h.remove() for h in hooks]
    assert min(rates) > 0.005  # spikes flow through every neuron layer
    for mode in ("eval", "train"):  # train: batch statistics per channel must not change either
        getattr(masked, mode)(), getattr(small, mode)()
        torch.testing.assert_close(_run(small, x), _run(masked, x), rtol=0, atol=1e-5)
    physical = physical_kept(units, masks)
    assert physical["stem.0"].tolist() == [1, 2, 3] and physical[f"{L2}.1.conv2"].tolist() == [0, 1, 2, 4, 5, 6, 7]


def test_hold_zeroes_the_gradients_of_masked_channels_kept_physically():
    masked, units, masks = _masked_preact()
    small, hold = remove_resnet_channels(masked.train(), units, masks)
    small(encode(torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2, 2)).sum().backward()
    # stage-2 channel 5 (new index 4) is masked by layer2.0.conv2's unit only: its writers still get gradients
    # through the identity path to the head, which reads the channel
    b20, b21 = small.stages.layer2
    before = {n: p.grad.clone() for n, p in small.named_parameters()}
    assert b20.conv2.weight.grad[4].abs().sum() > 0 and b20.shortcut.weight.grad[4].abs().sum() > 0
    hold()
    assert b20.conv2.weight.grad[4].abs().sum() == b20.shortcut.weight.grad[4].abs().sum() == 0
    assert b21.bn1.weight.grad[4] == b21.bn1.bias.grad[4] == b21.conv1.weight.grad[:, 4].abs().sum() == 0
    keep = [0, 1, 2, 3, 5, 6]
    assert torch.equal(b20.conv2.weight.grad[keep], before["stages.layer2.0.conv2.weight"][keep])
    assert torch.equal(b21.bn1.weight.grad[keep], before["stages.layer2.1.bn1.weight"][keep])
    assert torch.equal(small.stem[0].weight.grad, before["stem.0.weight"])  # stage 1: only old channels 1 and 3


def test_resnet19_removal_is_exact_and_leaves_the_stream_convs_dense():
    model = resnet19_tiny()
    units = find_resnet_units(model)
    masks = {u.conv: torch.arange(model.get_submodule(u.conv).out_channels) % 3 != 1 for u in units}
    apply_channel_mask(model, units, masks)
    small, _ = remove_resnet_channels(model, units, masks)
    assert [small.get_submodule(u.conv).out_channels for u in units] == [3, 3, 5]  # of 4, 4, 8
    assert small.stages.layer1[0].conv2.weight.shape == (4, 3, 3, 3) and small.stem[0].out_channels == 4
    # 4-wide blocks: 9*4*3 + 2*3 + 9*3*4 + 2*4 = 230 instead of 9*16 + 8 + 9*16 + 8 = 304; the 8-wide one (conv1,
    # bn1, conv2, bn2, 1x1 shortcut conv + BN): 180 + 10 + 360 + 16 + 32 + 16 = 614 instead of 288+16+576+16+32+16
    assert count_parameters(model) - count_parameters(small) == 2 * (304 - 230) + (944 - 614) == 478
    x = encode(torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * 2, 3)
    for mode in ("eval", "train"):
        getattr(model, mode)(), getattr(small, mode)()
        torch.testing.assert_close(_run(small, x), _run(model, x), rtol=0, atol=1e-5)


def test_dispatch_by_model_type_and_errors(digits_ds):
    same, info = compress("sca", preact_tiny(), digits_ds, 0.0, progress=False, device=CPU)
    assert info.params_after == 2854 and info.channels_after["stem.0"] == 4 and len(info.kept_channels) == 9
    with pytest.raises(ValueError, match="SCA supports"):
        compress("sca", build_model("spikformer", (1, 8, 8), 10, seed=0, depth=1, dim=16, heads=2), digits_ds, 0.5)
    with pytest.raises(ValueError, match="SpikingResNet"):
        sca_prune_resnet(nn.Sequential(nn.Conv2d(1, 2, 3)), digits_ds, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("make, n_all, n_kept, n_regrown", [
    (preact_tiny, 104, 52, 10),  # 8 x 5 + 16 x 4 channels; 0.5 * 104 = 52 kept; 52 - round(0.4 * 104 = 41.6)
    (resnet19_tiny, 32, 16, 3),  # conv1 channels 8 + 8 + 16; 16 kept; 16 - round(12.8)
])
def test_sca_end_to_end_lowers_and_simulates(make, n_all, n_kept, n_regrown, digits_ds):
    train_cfg = TrainConfig(n_timesteps=2, batch_size=64, epochs=3, lr=2e-2, num_threads=1)  # robust to a busy CPU
    model = make(theta=0.5, w=(8, 16), init=False)
    train(model, digits_ds, train_cfg, seed=0, device=CPU, progress=False)
    snapshot = copy.deepcopy(model.state_dict())
    # spatial "mean": with the paper's sum, 4x4 stage-2 maps lose the global ranking to 8x8 stage-1 maps
    cfg = SCAConfig(epochs=2, finetune_epochs=1, lr=1e-2, spatial="mean")
    pruned, info = compress("sca", model, digits_ds, 0.5, cfg, train_cfg=train_cfg, device=CPU, progress=False)
    assert all(torch.equal(snapshot[k], model.state_dict()[k]) for k in snapshot)  # input untouched
    units = find_resnet_units(model)
    assert sum(info.channels_before.values()) == n_all and sum(map(len, info.kept_channels.values())) == n_kept
    assert [h["phase"] for h in info.history] == ["prune", "prune", "finetune"]
    assert [h["regrown"] for h in info.history[:2]] == [n_regrown, 0]
    assert info.params_after == count_parameters(pruned) < info.params_before
    dead = {}
    for u in units:  # after fine-tuning, channels the rule masked are either gone or still exactly zero
        kept = torch.tensor(info.kept_channels[u.conv])
        in_segment = set().union(*(info.kept_channels[v.conv] for v in units if v.segment == u.segment))
        physical = torch.tensor(sorted(in_segment))  # a channel stays when some unit of its stream keeps it
        assert info.channels_after[u.conv] == len(physical) >= len(kept)
        dead[u.conv] = torch.nonzero(~torch.isin(physical, kept)).flatten()
        if make is resnet19_tiny:
            assert len(dead[u.conv]) == 0  # block-internal units only: every masked channel removed
        for w in u.writers:
            assert pruned.get_submodule(w).weight[dead[u.conv]].abs().sum() == 0
        assert pruned.get_submodule(u.bn).weight[dead[u.conv]].abs().sum() == 0
    assert evaluate(pruned, digits_ds.x_test, digits_ds.y_test, train_cfg, CPU) > 0.4
    x = encode(digits_ds.x_test[:4], 2)
    graph, trace = lower(pruned, x, compression=info)
    last = units[-1]
    pop = next(p for p, tags in graph.metadata["layers"]["populations"].items()
               if tags and tags[0].startswith(f"{last.node}:"))
    assert graph.populations[pop].shape[0] == info.channels_after[last.conv]
    spikes = trace.to_dense(pop, graph.populations[pop].shape)  # (N, T, C, H, W)
    assert spikes[:, :, dead[last.conv]].sum() == 0 and spikes.sum() > 0  # masked channels never spike
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("generic-45nm"))
    assert sim.energy_j > 0 and sim.latency_s > 0
    assert sim.synops * trace.n_samples == pytest.approx(sum(synaptic_events(graph, trace, "structural").values()))


def test_full_preact_resnet18_removal_equals_masked_model():
    model = _init(build_model("preact_resnet18", (3, 8, 8), 10, seed=0, v_threshold=0.3), seed=5).eval()
    units = find_resnet_units(model)
    g = torch.Generator().manual_seed(0)
    masks = {u.conv: torch.rand(model.get_submodule(u.conv).out_channels, generator=g) < 0.6 for u in units}
    apply_channel_mask(model, units, masks)
    small, _ = remove_resnet_channels(model, units, masks)
    assert not any(m.training for m in small.modules())  # sliced layers keep the eval mode of those they replace
    for u, k in physical_kept(units, masks).items():  # every writer, BN and reader follows its segment's channels
        unit = next(v for v in units if v.conv == u)
        assert all(small.get_submodule(w).out_channels == len(k) for w in unit.writers)
        assert small.get_submodule(unit.bn).num_features == len(k)
    head_spikes = []
    small.head[1].register_forward_hook(lambda mod, a, out: head_spikes.append(float(out.sum())))
    x = encode(torch.rand(2, 3, 8, 8, generator=g), 2)
    torch.testing.assert_close(_run(small, x), _run(model, x), rtol=0, atol=1e-5)
    assert head_spikes[0] > 0 and count_parameters(small) < count_parameters(model)
