"""Method configs check their fields' types before their ranges: one ValueError naming the field, never a
TypeError from a comparison or a silent truncation (bits 2.5 -> 2)."""
import math
from dataclasses import dataclass

import pytest

from workloads import compression as C
from workloads.compression.base import check_fields
from workloads.compression.bestformer import DISTILLATIONS, BestformerConfig
from workloads.compression.binary import BinaryConfig
from workloads.compression.dsp import TARGETS
from workloads.compression.l1p import LAYER_SETS
from workloads.compression.quant import SIGN_SCALES
from workloads.compression.sca import SPATIAL
from workloads.train import OPTIMIZERS


@pytest.mark.parametrize("make, needle", [
    (lambda: C.QPSNNConfig(bits="4"), "QPSNNConfig.bits must be an integer, got '4'"),
    (lambda: C.QPSNNConfig(bits=2.5), "QPSNNConfig.bits must be an integer, got 2.5"),
    (lambda: C.QPSNNConfig(bits=True), "QPSNNConfig.bits must be an integer, got True"),
    (lambda: C.SCAConfig(epochs=2.5), "SCAConfig.epochs must be an integer, got 2.5"),
    (lambda: C.SCAConfig(lr=None), "SCAConfig.lr must be a finite number, got None"),
    (lambda: C.SCAConfig(lr=math.inf), "SCAConfig.lr must be a finite number, got inf"),
    (lambda: C.ChannelPruneConfig(finetune_epochs=math.inf), "ChannelPruneConfig.finetune_epochs must be an integer"),
    (lambda: C.BinaryConfig(binary_attention="no"), "BinaryConfig.binary_attention must be true or false, got 'no'"),
    (lambda: C.SCAConfig(optimizer=3), "SCAConfig.optimizer must be a string, got 3"),
    (lambda: C.SCAConfig(q=1.5), "SCAConfig.q out of range: 1.5 (accepted: 0 <= q < 1)"),  # range checks follow
])
def test_a_field_of_the_wrong_type_is_one_value_error_naming_it(make, needle):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == needle or str(err.value).startswith(needle), str(err.value)


def test_valid_configs_and_optional_fields_pass_and_another_methods_config_is_refused():
    assert C.SCAConfig(lr=1, finetune_lr=None).lr == 1  # an int is a number; None where Optional
    assert C.QPSNNConfig(bits=4).bits == 4
    with pytest.raises(ValueError, match="cfg: method 'dsp' takes a DSPConfig, got a L1PConfig"):
        C.compress("dsp", None, None, 0.5, C.L1PConfig())


@pytest.mark.parametrize("make, message", [
    (lambda: C.SCAConfig(q=5.0), "SCAConfig.q out of range: 5.0 (accepted: 0 <= q < 1)"),
    (lambda: C.SCAConfig(lr=0.0), "SCAConfig.lr out of range: 0.0 (accepted: lr > 0)"),
    (lambda: C.SCAConfig(spatial="foo"), "SCAConfig.spatial out of range: 'foo' (accepted: one of sum, mean)"),
    (lambda: C.SCAConfig(finetune_lr=-1.0),
     "SCAConfig.finetune_lr out of range: -1.0 (accepted: finetune_lr > 0, or None for lr)"),
    (lambda: C.QPSNNConfig(bits=17), "QPSNNConfig.bits out of range: 17 (accepted: 1 <= bits <= 16)"),
    (lambda: C.QPSNNConfig(layer_ratios=[0.5]),
     "QPSNNConfig.layer_ratios out of range: [0.5] (accepted: a {conv name: ratio} mapping, or None)"),
    (lambda: C.L1PConfig(scope="local"), "L1PConfig.scope out of range: 'local' (accepted: one of global, per_matrix)"),
    (lambda: C.QSNNConfig(target_rate=2.0),
     "QSNNConfig.target_rate out of range: 2.0 (accepted: 0 <= target_rate <= 1)"),
    (lambda: C.ComposeConfig(pre_epochs=-1), "ComposeConfig.pre_epochs out of range: -1 (accepted: pre_epochs >= 0)"),
])
def test_a_field_out_of_range_is_one_line_naming_it_and_what_is_accepted(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


@pytest.mark.parametrize("make, field, choices", [
    (lambda: C.SCAConfig(spatial="x"), "SCAConfig.spatial", SPATIAL),
    (lambda: C.SCAConfig(optimizer="x"), "SCAConfig.optimizer", OPTIMIZERS),
    (lambda: C.BinaryConfig(scale="x"), "BinaryConfig.scale", SIGN_SCALES),
    (lambda: C.DSPConfig(targets="x"), "DSPConfig.targets", TARGETS),
    (lambda: C.L1PConfig(layers="x"), "L1PConfig.layers", LAYER_SETS),
    (lambda: BestformerConfig(distillation="x"), "BestformerConfig.distillation", DISTILLATIONS),
])
def test_a_choice_field_lists_the_names_of_the_constant_its_check_uses(make, field, choices):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == f"{field} out of range: 'x' (accepted: one of {', '.join(choices)})"


@pytest.mark.parametrize("cls", [C.FineTuneConfig, C.ChannelPruneConfig, C.QPSNNConfig, C.QSNNConfig, C.QTSNNConfig,
                                 C.L1PConfig, C.DSPConfig, BinaryConfig, BestformerConfig])
def test_every_range_check_of_a_method_config_states_its_accepted_values(cls):
    checks = cls()._checks()
    assert checks and all(isinstance(c, tuple) and c[0] is True and c[1] for c in checks.values()), checks


def test_a_plain_bool_check_still_works_without_accepted_text():
    @dataclass
    class Cfg:
        n: int = -1

    with pytest.raises(ValueError) as err:
        check_fields(Cfg(), {"n": False})
    assert str(err.value) == "Cfg.n out of range: -1"
    check_fields(Cfg(), {"n": True})
    check_fields(Cfg(), {"n": (True, "n >= 0")})
