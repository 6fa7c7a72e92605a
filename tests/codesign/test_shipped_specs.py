"""Every shipped sweep spec loads and every one of its design points passes the checks a sweep makes before any
work (names, model options, method ratios, chip, samples); methods.yaml holds the seed methods."""
from importlib import resources

import pytest

from codesign.config.sweep import grid_points, load_spec
from codesign.execute.sweep import validate_points

CONFIGS = resources.files("codesign").joinpath("configs")


@pytest.mark.parametrize("name", ["methods.yaml", "claims-sweep.yaml", "search.yaml"])
def test_shipped_sweep_specs_validate_every_point(name):
    points = grid_points(load_spec(CONFIGS / name))
    assert points
    validate_points(points)


def test_methods_sweep_has_every_method_and_the_seed_architectures():
    from workloads.compression import METHODS

    points = grid_points(load_spec(CONFIGS / "methods.yaml"))
    assert {cfg.compression.method for _, cfg in points} == set(METHODS)
    seeds = {(cfg.model.name, cfg.compression.method, cfg.data.encoding, str(cfg.model.options.get("pool_after")))
             for _, cfg in points if cfg.model.name != "mnist_conv" or cfg.data.encoding != "direct"}
    assert seeds == {("mnist_conv", "dense", "tae", "None"), ("mnist_conv", "qt_snn", "tae", "None"),
                     ("snn_vit_mnist", "dense", "direct", "[0, 1, 2]"), ("snn_vit_mnist", "dense", "direct", "[0, 1]"),
                     ("bestformer_mnist", "dense", "direct", "None"), ("bestformer_mnist", "bestformer", "direct", "None")}
    assert len(points) == 22
