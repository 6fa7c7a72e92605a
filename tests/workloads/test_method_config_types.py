"""Method configs check their fields' types before their ranges: one ValueError naming the field, never a
TypeError from a comparison or a silent truncation (bits 2.5 -> 2)."""
import math

import pytest

from workloads import compression as C


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
    (lambda: C.SCAConfig(q=1.5), "SCAConfig.q out of range: 1.5"),  # the range checks still follow
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
