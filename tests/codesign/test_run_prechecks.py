"""Settings that only the model reveals are refused before the run folder exists (exit 2 and nothing in reports/):
a compression method that cannot compress the model, a layer_ratios key naming no conv, weight_fit 'error' with a
method whose weights stay float; the fit check lowers no more samples than the run simulates."""
import dataclasses

import pytest

import hwmodels

from codesign.config.run import ConfigError, validate_config
from codesign.execute.run import run
from codesign.execute.stages import check_fits, make_dataset, make_model

BASE = {"data": {"dataset": "digits", "n_timesteps": 2}, "model": {"name": "mnist_conv"}, "train": {"epochs": 1},
        "hardware": {"n_samples": 4}}


def _cfg(tmp_path, **sections):
    raw = {**BASE, **sections, "output_dir": str(tmp_path / "reports"), "cache_dir": str(tmp_path / "cache"),
           "run_name": "r"}
    return validate_config(raw)


@pytest.mark.parametrize("sections, message", [
    ({"model": {"name": "snn_vit_mnist"}, "compression": {"method": "sca", "ratios": [0.0, 0.5]}},
     "compression: method 'sca': model: SCA supports ['SpikingResNet', 'Sequential'], got SNNViT"),
    ({"compression": {"method": "magnitude_channel", "ratios": [0.5], "params": {"layer_ratios": {"convX": 0.5}}}},
     "compression: method 'magnitude_channel': layer_ratios: 'convX' is not one of the convs ['0', '4']"),
    ({"data": {"dataset": "digits", "n_timesteps": 2, "encoding": "events"}},
     "data.encoding 'events' does not fit dataset 'digits'"),  # named as the run config names it
    ({"compression": {"method": "sca", "ratios": [0.0]}, "hardware": {"n_samples": 4, "weight_fit": "error"}},
     "hardware.weight_fit: 'error' refuses the float weights method 'sca' keeps (projection 'conv1' declares "
     "weight_bits 8 but its weights need 32 bits"),
])
def test_settings_the_model_refuses_stop_the_run_before_its_folder(tmp_path, sections, message):
    with pytest.raises(ConfigError) as err:
        run(_cfg(tmp_path, **sections), progress=False, log=lambda *a: None)
    assert str(err.value).startswith(message)
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_the_fit_check_lowers_at_most_the_samples_the_run_simulates(tmp_path):
    cfg = _cfg(tmp_path, hardware={"n_samples": 1})
    full = make_dataset(cfg)
    one = dataclasses.replace(full, x_test=full.x_test[:1], y_test=full.y_test[:1])  # a test set of one sample
    check_fits(make_model(cfg, one), one, cfg, hwmodels.load_preset("loihi"), "cpu")  # lowered 2 samples: refused
