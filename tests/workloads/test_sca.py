"""SCA pruning: membrane-potential replay, importance by hand, global ranking counts, regrowth, L1 term, exact
equivalence of physical channel removal, and the end-to-end prune on digits."""
import copy

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from workloads.compression import compress
from workloads.compression.base import (ConvUnit, apply_channel_mask, find_conv_units, flat_feature_index,
                                        remove_channels)
from workloads.compression.sca import (ImportanceRecorder, SCAConfig, add_l1_subgradient, channel_budget,
                                       regrow, sca_prune, select_top, zero_optimizer_state)
from workloads.encoding import encode
from workloads.models import build_model, count_parameters
from workloads.neurons import charge_sequence, make_neuron
from workloads.train import evaluate, train


@pytest.mark.parametrize("kind", ["IF", "LIF"])
def test_charge_replay_matches_spikingjelly_voltage(kind):
    node = make_neuron(kind, tau=2.0, v_threshold=1.0)
    node.store_v_seq = True
    x = torch.randn(6, 3, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * 1.5
    spikes = node(x)
    h, v = charge_sequence(node, x, spikes, 0.0)
    torch.testing.assert_close(v, node.v_seq, rtol=0, atol=1e-6)  # potential after reset, from SpikingJelly
    assert torch.equal(spikes, (h >= 1.0).float())  # H is the potential the spikes were decided on
    assert 0 < spikes.mean() < 1


def _tiny_unit(kind: str) -> nn.Sequential:
    """1x1 conv with weights (1, -0.5), identity BN (eval, eps 0), then an IF or LIF node."""
    model = nn.Sequential(layer.Conv2d(1, 2, 1, bias=False, step_mode="m"),
                          layer.BatchNorm2d(2, eps=0.0, step_mode="m"), make_neuron(kind, 2.0, 1.0))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -0.5]).reshape(2, 1, 1, 1))
    return model.eval()


@pytest.mark.parametrize("kind, expected", [
    # IF, pixel 0.4: H = 0.4, 0.8, 1.2 (spike) -> 2.4; pixel 1.2: H = 1.2 each step (spikes) -> 3.6; channel 0:
    # 6.0. Channel 1 gets -0.2 and -0.6: |H| = 0.2+0.4+0.6 + 0.6+1.2+1.8 = 4.8. Sample 2 is all zero: N*T = 2*3.
    ("IF", [6.0 / 6, 4.8 / 6]),
    # LIF tau 2: H = V + (X - V)/2. Pixel 0.4: 0.2, 0.3, 0.35; pixel 1.2: 0.6, 0.9, 1.05 -> 3.4 in channel 0;
    # channel 1: 0.1, 0.15, 0.175, 0.3, 0.45, 0.525 -> 1.7.
    ("LIF", [3.4 / 6, 1.7 / 6]),
])
def test_importance_is_mean_l1_of_membrane_potential_before_reset(kind, expected):
    model = _tiny_unit(kind)
    images = torch.tensor([[[[0.4, 1.2]]], [[[0.0, 0.0]]]])  # (N=2, C=1, H=1, W=2)
    units = find_conv_units(model)
    with ImportanceRecorder(model, units) as rec:
        model(encode(images, 3))
    torch.testing.assert_close(rec.scores()["0"], torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    functional.reset_net(model)
    with ImportanceRecorder(model, units, spatial="mean") as rec:  # divided by H*W = 2
        model(encode(images, 3))
    torch.testing.assert_close(rec.scores()["0"], torch.tensor(expected, dtype=torch.float64) / 2, rtol=1e-6, atol=0)


def test_channel_budget_by_hand():
    # N = 16 + 32 = 48 channels, 2 conv layers, q = 0.1
    assert channel_budget(0.25, 0.1, 48, 2) == (31, 36)  # (1-0.35)*48 = 31.2 -> 31; 0.75*48 = 36
    assert channel_budget(0.5, 0.1, 48, 2) == (19, 24)  # 19.2 -> 19; 24
    assert channel_budget(0.75, 0.1, 48, 2) == (7, 12)  # 7.2 -> 7; 12
    assert channel_budget(0.99, 0.1, 48, 2) == (2, 2)  # at least one channel per layer


def test_select_top_global_ranking_and_one_channel_per_layer():
    scores = {"a": torch.tensor([4.0, 0.5, 3.0, 2.0]), "b": torch.tensor([1.0, 2.5, 0.2])}
    masks = select_top(scores, 4)  # global order: a0 4.0, a2 3.0, b1 2.5, a3 2.0 | b0 1.0, a1 0.5, b2 0.2
    assert masks["a"].tolist() == [True, False, True, True] and masks["b"].tolist() == [False, True, False]
    low = {"a": torch.tensor([4.0, 3.5, 3.0, 2.0]), "b": torch.tensor([1.0, 1.5, 0.2])}
    masks = select_top(low, 3)  # top 3 all in a -> b's best (b1) replaces a's lowest kept (a2)
    assert masks["a"].tolist() == [True, True, False, False] and masks["b"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="n_keep"):
        select_top(low, 1)


def test_regrow_picks_largest_gamma_gradients_among_pruned():
    masks = {"a": torch.tensor([True, False, False, True]), "b": torch.tensor([False, True, False])}
    grads = {"a": torch.tensor([9.0, 5.0, 1.0, 9.0]), "b": torch.tensor([7.0, 0.0, 3.0])}
    imp = {"a": torch.zeros(4), "b": torch.zeros(3)}
    new = regrow(masks, grads, imp, 2)  # pruned: a1 5, a2 1, b0 7, b2 3 -> b0 and a1
    assert new["a"].tolist() == [True, True, False, True] and new["b"].tolist() == [True, True, False]
    assert masks["a"].tolist() == [True, False, False, True]  # input untouched
    ties = regrow(masks, {"a": torch.zeros(4), "b": torch.zeros(3)},
                  {"a": torch.tensor([0, 1.0, 2.0, 0]), "b": torch.tensor([0.5, 0, 3.0])}, 1)
    assert ties["b"].tolist() == [False, True, True]  # all gradients 0 -> larger importance (b2) wins


def test_l1_term_adds_exactly_lambda_sign_w():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.5, -2.0, 0.0, 0.25, -0.1, 0.0, 3.0, -7.0]).reshape(2, 1, 2, 2))
    grad = torch.tensor([0.1, 0.2, -0.3, 0.4, 0.0, 0.5, -0.6, 0.7]).reshape(2, 1, 2, 2)
    conv.weight.grad = grad.clone()
    add_l1_subgradient([conv], 3e-5)
    sign = torch.tensor([1.0, -1, 0, 1, -1, 0, 1, -1]).reshape(2, 1, 2, 2)
    assert torch.equal(conv.weight.grad, grad + 3e-5 * sign)
    conv.weight.grad = None
    add_l1_subgradient([conv], 0.5)
    assert torch.equal(conv.weight.grad, 0.5 * sign)


def test_flat_feature_index_is_c_order():
    # 4 channels of 2 features each (H*W = 2): channels 1 and 3 own features 2,3 and 6,7
    assert flat_feature_index(torch.tensor([1, 3]), 4, 8).tolist() == [2, 3, 6, 7]
    with pytest.raises(ValueError, match="multiple"):
        flat_feature_index(torch.tensor([0]), 3, 8)


def _random_masked_model(hw: int):
    gen = torch.Generator().manual_seed(1)
    model = build_model("mnist_conv", (1, hw, hw), 10, seed=3, v_threshold=0.3)  # low threshold: spikes flow
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for bn in (model[1], model[5]):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 1.0)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
    masks = {"0": torch.rand(16, generator=gen) < 0.5, "4": torch.rand(32, generator=gen) < 0.4}
    units = find_conv_units(model)
    apply_channel_mask(model, units, masks)
    return model, units, masks, torch.rand(7, 1, hw, hw, generator=gen) * 2


@pytest.mark.parametrize("hw", [8, 28])
def test_physical_removal_gives_identical_outputs(hw):
    masked, units, masks, x = _random_masked_model(hw)
    small = remove_channels(masked, units, masks)
    k1, k2 = int(masks["0"].sum()), int(masks["4"].sum())
    assert small[0].weight.shape == (k1, 1, 3, 3) and small[4].weight.shape == (k2, k1, 3, 3)
    assert small[1].num_features == k1 and small[5].num_features == k2
    assert small[9].in_features == k2 * (hw // 4) ** 2
    assert count_parameters(small) == 9 * k1 + 2 * k1 + 9 * k1 * k2 + 2 * k2 + 10 * k2 * (hw // 4) ** 2 + 10
    assert [type(a) for a in small] == [type(b) for b in masked]
    with torch.no_grad():  # spikes must flow through both conv units for the comparison to mean anything
        rates = [float(masked.eval()[:i](encode(x, 4)).mean()) for i in (3, 7)]
    functional.reset_net(masked)
    assert min(rates) > 0.01
    for mode in ("eval", "train"):  # train: BN batch statistics, per channel, must not change either
        getattr(masked, mode)(), getattr(small, mode)()
        out_masked, out_small = masked(encode(x, 4)), small(encode(x, 4))
        functional.reset_net(masked), functional.reset_net(small)
        torch.testing.assert_close(out_small, out_masked, rtol=0, atol=1e-5)


def test_zero_optimizer_state_clears_masked_channels_only():
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    units = find_conv_units(model)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model(torch.rand(2, 3, 1, 8, 8)).sum().backward()
    opt.step()
    masks = {"0": torch.arange(16) < 4, "4": torch.arange(32) >= 30}
    zero_optimizer_state(opt, model, units, masks)
    m1, v5 = opt.state[model[0].weight]["exp_avg"], opt.state[model[5].bias]["exp_avg_sq"]
    assert m1[4:].abs().sum() == 0 and m1[:4].abs().sum() > 0
    assert v5[:30].abs().sum() == 0 and v5[30:].abs().sum() > 0


def test_bad_ratio_and_method_raise(digits_ds):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    for ratio in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            compress("sca", model, digits_ds, ratio)
        with pytest.raises(ValueError, match="ratio"):
            sca_prune(model, digits_ds, ratio)
    with pytest.raises(ValueError, match="method.*sca"):
        compress("magic", model, digits_ds, 0.5)
    with pytest.raises(ValueError, match="SCAConfig.q"):
        SCAConfig(q=1.0)


def test_ratio_zero_returns_unchanged_copy(digits_ds):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    same, result = compress("sca", model, digits_ds, 0.0, device=torch.device("cpu"), progress=False)
    assert same is not model and all(torch.equal(a, b) for a, b in zip(same.parameters(), model.parameters()))
    assert result.params_before == result.params_after == 6138 and result.channels_after == {"0": 16, "4": 32}


@pytest.mark.slow
def test_sca_prune_end_to_end_on_digits(digits_ds, fast_train_cfg):
    cpu = torch.device("cpu")
    model = build_model("mnist_conv", digits_ds.in_shape, 10, seed=0)
    train(model, digits_ds, fast_train_cfg, seed=0, device=cpu, progress=False)
    snapshot = copy.deepcopy(model.state_dict())
    cfg = SCAConfig(epochs=2, finetune_epochs=1, lr=2e-3)
    pruned, result = sca_prune(model, digits_ds, 0.5, cfg, fast_train_cfg, seed=0, device=cpu, progress=False)
    assert all(torch.equal(snapshot[k], model.state_dict()[k]) for k in snapshot)  # input model untouched
    k1, k2 = result.channels_after["0"], result.channels_after["4"]
    assert k1 + k2 == 24 and k1 >= 1 and k2 >= 1  # round_half_up(0.5 * 48)
    assert result.kept_channels["0"] == sorted(result.kept_channels["0"]) and len(result.kept_channels["4"]) == k2
    assert result.params_after == count_parameters(pruned) == 11 * k1 + 9 * k1 * k2 + 2 * k2 + 40 * k2 + 10
    assert [h["phase"] for h in result.history] == ["prune", "prune", "finetune"]
    assert [h["regrown"] for h in result.history[:2]] == [5, 0]  # n_final 24 - n_top 19; none in the final mask
    assert evaluate(pruned, digits_ds.x_test, digits_ds.y_test, fast_train_cfg, cpu) > 0.7


def test_conv_units_of_the_default_model_and_unsupported_layouts():
    units = find_conv_units(build_model("mnist_conv", (1, 28, 28), 10))
    assert units == [ConvUnit("0", "1", "2", "4", False), ConvUnit("4", "5", "6", "9", True)]
    with pytest.raises(ValueError, match="groups"):
        find_conv_units(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)))
    with pytest.raises(ValueError, match="Upsample"):
        find_conv_units(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3)))
    with pytest.raises(ValueError, match="Sequential"):
        find_conv_units(nn.ModuleList([nn.Conv2d(1, 2, 3)]))
