"""Pruning methods: magnitude_channel keeps the largest-L1 filters (numpy cross-check), random keeps the same counts
(seeded), L1P reaches the exact sparsity globally and per matrix and keeps it through fine-tuning, DSP has the
rank and parameter count of its ratio and starts from the best rank-r approximation (numpy SVD)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workloads.compression import CONFIGS, METHODS, compose, compress
from workloads.compression.dsp import DSPConfig, LowRankConv2d, LowRankLinear, dsp, factorize, rank_for
from workloads.compression.l1p import L1PConfig, l1p, magnitude_masks
from workloads.compression.magnitude import ChannelPruneConfig, magnitude_channel
from workloads.compression.random_prune import random_channels
from workloads.models import count_parameters
from workloads.train import TrainConfig

T = 4
FAST = TrainConfig(epochs=1, n_timesteps=T)
NO_FT = ChannelPruneConfig(finetune_epochs=0)



def test_registry_has_every_method_and_a_config_for_each():
    assert set(METHODS) == {"sca", "magnitude_channel", "random", "l1p", "dsp", "qp_snn", "q_snn", "binary",
                            "qt_snn", "bestformer", "dense"}
    assert set(CONFIGS) == set(METHODS)
    with pytest.raises(ValueError, match="method must be one of"):
        compress("obd", nn.Sequential(), None, 0.5)


# ------------------------------------------------------------------------------------------------ channels

def test_magnitude_channel_keeps_the_largest_l1_filters(trained, small_ds):
    small, info = magnitude_channel(trained, small_ds, 0.3, NO_FT, FAST, progress=False)
    for name, c in (("0", 16), ("4", 32)):
        norms = np.abs(trained.get_submodule(name).weight.detach().numpy()).sum(axis=(1, 2, 3))
        n_keep = c - int(np.floor(0.3 * c + 0.5))
        assert info.kept_channels[name] == sorted(np.argsort(-norms, kind="stable")[:n_keep].tolist())
        assert small.get_submodule(name).out_channels == n_keep == info.channels_after[name]
    assert small[9].in_features == info.channels_after["4"] * 2 * 2
    assert info.params_after == count_parameters(small) < info.params_before
    assert torch.equal(small[0].weight, trained[0].weight[info.kept_channels["0"]])  # no fine-tuning: sliced


def test_random_keeps_the_same_counts_seeded(trained, small_ds):
    _, mag = magnitude_channel(trained, small_ds, 0.5, NO_FT, FAST, progress=False)
    _, a = random_channels(trained, small_ds, 0.5, NO_FT, FAST, seed=1, progress=False)
    _, b = random_channels(trained, small_ds, 0.5, NO_FT, FAST, seed=1, progress=False)
    _, c = random_channels(trained, small_ds, 0.5, NO_FT, FAST, seed=2, progress=False)
    assert a.channels_after == mag.channels_after == {"0": 8, "4": 16}
    assert a.kept_channels == b.kept_channels != c.kept_channels
    assert a.kept_channels != mag.kept_channels


def test_per_layer_ratios_override_the_global_ratio(trained, small_ds, caplog):
    cfg = ChannelPruneConfig(finetune_epochs=0, layer_ratios={"0": 0.25, "4": 0.75})
    _, info = magnitude_channel(trained, small_ds, 0.5, cfg, FAST, progress=False)
    assert info.channels_after == {"0": 16 - 4, "4": 32 - 24}
    _, rnd = random_channels(trained, small_ds, 0.5, cfg, FAST, seed=3, progress=False)
    assert rnd.channels_after == info.channels_after
    with pytest.raises(ValueError, match="layer_ratios: '9' is not one of the convs"):
        magnitude_channel(trained, small_ds, 0.5, ChannelPruneConfig(layer_ratios={"9": 0.5}), FAST, progress=False)
    with caplog.at_level("WARNING", logger="workloads.compression"):  # 0.01 x 16 and x 32 round to 0 channels
        magnitude_channel(trained, small_ds, 0.01, NO_FT, FAST, progress=False)
    assert any("magnitude_channel: ratio 0.01 removes no conv channel" in r.getMessage() for r in caplog.records)
    _, zero = magnitude_channel(trained, small_ds, 0.0, cfg, FAST, progress=False)  # overrides apply at ratio 0
    assert zero.channels_after == {"0": 12, "4": 8}  # (was an unchanged copy: the overrides were dropped)
    for bad, shown in ((None, "None"), (1.0, "1.0"), ("0.5", "'0.5'")):
        with pytest.raises(ValueError, match=f"layer_ratios: '4': {shown} is not a ratio in"):
            magnitude_channel(trained, small_ds, 0.5, ChannelPruneConfig(layer_ratios={"4": bad}), FAST,
                              progress=False)


def test_channel_methods_at_ratio_zero_return_an_unchanged_copy(trained, small_ds):
    small, info = magnitude_channel(trained, small_ds, 0.0, None, FAST, progress=False)
    assert small is not trained and info.params_after == info.params_before
    assert all(torch.equal(p, q) for p, q in zip(small.parameters(), trained.parameters()))
    with pytest.raises(ValueError, match="ratio"):
        random_channels(trained, small_ds, 1.0, None, FAST, progress=False)
    for bad in ("0.5", None, True):
        with pytest.raises(ValueError, match=f"ratio must be a number in \\[0, 1\\), got {bad!r}"):
            compress("magnitude_channel", trained, small_ds, bad)
    with pytest.raises(ValueError, match="model: 0.weight is float64; compress float32 models"):
        compress("magnitude_channel", copy.deepcopy(trained).double(), small_ds, 0.5)
    with pytest.raises(ValueError, match="cfg: compose\\('q_snn', 'magnitude_channel'\\) takes a ComposeConfig"):
        compose("q_snn", "magnitude_channel")(trained, small_ds, 0.5, CONFIGS["q_snn"]())


def test_dense_method_is_the_unchanged_model_and_refuses_other_ratios(trained, small_ds):
    small, info = compress("dense", trained, small_ds, 0.0, progress=False)
    assert small is not trained and info.params_after == info.params_before == sum(p.numel() for p in
                                                                                   trained.parameters())
    assert all(torch.equal(p, q) for p, q in zip(small.parameters(), trained.parameters()))
    assert info.weight_bits == {} and info.size_bits == 32 * info.params_before
    with pytest.raises(ValueError, match="the dense method removes nothing; only 0 is accepted, got 0.5"):
        compress("dense", trained, small_ds, 0.5, progress=False)


# ------------------------------------------------------------------------------------------------ L1P

def test_magnitude_masks_by_hand():
    w = {"a": torch.tensor([0.1, -0.5, 0.3]), "b": torch.tensor([0.2, 0.05])}
    glob = magnitude_masks(w, 0.6, "global")  # 3 of 5 smallest: 0.05, 0.1, 0.2
    assert glob["a"].tolist() == [False, True, True] and glob["b"].tolist() == [False, False]
    per = magnitude_masks(w, 0.6, "per_matrix")  # a: round(1.8) = 2 -> 0.1, 0.3; b: round(1.2) = 1 -> 0.05
    assert per["a"].tolist() == [False, True, False] and per["b"].tolist() == [True, False]


@pytest.mark.parametrize("scope", ["global", "per_matrix"])
def test_l1p_exact_sparsity_kept_through_finetuning(trained, small_ds, scope):
    cfg = L1PConfig(scope=scope, l1_epochs=1, finetune_epochs=1)
    small, info = l1p(trained, small_ds, 0.7, cfg, FAST, progress=False)
    layers = {"0": 144, "4": 4608, "9": 1280}
    zeros = {n: int((small.get_submodule(n).weight == 0).sum()) for n in layers}
    if scope == "global":
        assert sum(zeros.values()) == int(np.floor(0.7 * sum(layers.values()) + 0.5))
    else:
        assert zeros == {n: int(np.floor(0.7 * size + 0.5)) for n, size in layers.items()}
    assert info.storage == {n: "sparse" for n in layers}
    assert info.params_after == info.params_before - sum(zeros.values())
    assert (small[4].weight != 0).any() and not torch.equal(small[4].weight, trained[4].weight)  # fine-tuned
    assert (small[1].weight != 0).all()  # BN untouched


def test_l1p_says_when_its_global_threshold_empties_a_layer(trained, small_ds, caplog):
    with torch.no_grad():  # conv1's weights far below the others: a global threshold takes all of them
        small_first = copy.deepcopy(trained)
        small_first[0].weight.mul_(1e-6)
    with caplog.at_level("WARNING", logger="workloads.compression"):
        small, info = l1p(small_first, small_ds, 0.1, L1PConfig(l1_epochs=0, finetune_epochs=0), FAST, progress=False)
    assert not small[0].weight.any() and "layers ['0'] have no weight left" in info.notes
    assert any("zeroes every weight of layers ['0']" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ DSP

def test_rank_for_by_hand():
    assert rank_for(0.5, 10, 128) == 4  # floor(0.5 * 1280 / 138) = floor(4.64)
    assert rank_for(0.5, 32, 144) == 13  # floor(2304 / 176) = floor(13.09)
    assert rank_for(0.99, 10, 10) == 1  # floor(0.05) = 0 -> 1


def test_factorize_is_the_best_rank_r_approximation_and_conv_stays_exact():
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(20, 12)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(12, 20, generator=g))
        conv.weight.copy_(torch.randn(7, 5, 3, 3, generator=g))
    for mod, r in ((fc, 3), (conv, 4)):
        low = factorize(mod, r)
        w = mod.weight.detach().numpy().reshape(len(mod.weight), -1).astype(np.float64)
        s = np.linalg.svd(w, compute_uv=False)
        a = low.second.weight.detach().reshape(len(w), r).double()
        b = low.first.weight.detach().reshape(r, -1).double()
        assert np.linalg.matrix_rank((a @ b).numpy()) == r == low.rank
        assert float((((a @ b).numpy() - w) ** 2).sum()) == pytest.approx(float((s[r:] ** 2).sum()), rel=1e-5)
    x = torch.randn(2, 5, 9, 9, generator=g)
    w_r = (low.second.weight.reshape(7, 4) @ low.first.weight.reshape(4, -1)).reshape(7, 5, 3, 3)
    torch.testing.assert_close(low(x), F.conv2d(x, w_r, conv.bias, stride=2, padding=1), rtol=1e-5, atol=1e-5)


def test_dsp_rank_and_parameter_count(trained, small_ds, caplog):
    small, info = dsp(trained, small_ds, 0.5, DSPConfig(targets="all", finetune_epochs=1), FAST, progress=False)
    assert info.ranks == {"0": 2, "4": 13, "9": 4}  # 0: floor(0.5 * 144 / 25) = 2
    assert isinstance(small[4], LowRankConv2d) and isinstance(small[9], LowRankLinear)
    assert small[4].first.weight.shape == (13, 16, 3, 3) and small[4].second.weight.shape == (32, 13, 1, 1)
    assert small[9].first.weight.shape == (4, 128) and small[9].second.weight.shape == (10, 4)
    # dense 144 + 4608 + 1280 weights -> 2 * (9 + 16) + 13 * (144 + 32) + 4 * (128 + 10); biases/BN unchanged
    assert info.params_before - info.params_after == (144 + 4608 + 1280) - (50 + 2288 + 552)
    assert info.params_after == count_parameters(small)
    init, hidden = dsp(trained, small_ds, 0.5, DSPConfig(finetune_epochs=0), FAST, progress=False)
    assert hidden.ranks == {"4": 13} and type(init[9]) is type(trained[9])  # default: first and last kept
    a, b = factorize(trained[4], 13).second.weight, factorize(trained[4], 13).first.weight
    torch.testing.assert_close(init[4].second.weight, a)  # no fine-tuning: the SVD factors
    assert not torch.allclose(small[4].second.weight, a) and not torch.allclose(small[4].first.weight, b)
    with caplog.at_level("WARNING", logger="workloads.compression"):
        _, lin = dsp(trained, small_ds, 0.5, DSPConfig(targets="linear", finetune_epochs=0), FAST, progress=False)
    assert lin.ranks == {}  # mnist_conv's only Linear is the classifier: said, as the ratio asked for more
    assert any("dsp: ratio 0.5 factorizes no layer (targets 'linear'" in r.getMessage() for r in caplog.records)
    again, twice = dsp(small, small_ds, 0.5, DSPConfig(targets="all", finetune_epochs=0), FAST, progress=False)
    assert twice.ranks == {} and isinstance(again[4].first, nn.Conv2d)  # factors are not factorized again


def test_a_ratio_for_the_last_conv_of_a_method_that_spares_it_is_refused():
    from types import SimpleNamespace

    from workloads.compression.compose import layer_ratios
    units = [SimpleNamespace(conv="0"), SimpleNamespace(conv="4")]
    assert layer_ratios(units, 0.5, {"0": 0.25, "4": 0.0}, skip_last=True) == {"0": 0.25, "4": 0.0}
    assert layer_ratios(units, 0.5, {"4": 0.75}) == {"0": 0.5, "4": 0.75}  # a method that prunes the last conv
    with pytest.raises(ValueError, match=r"layer_ratios: '4' is the last conv, which this method never prunes"):
        layer_ratios(units, 0.0, {"4": 0.5}, skip_last=True)  # QP-SNN used to drop it, warning about rounding
