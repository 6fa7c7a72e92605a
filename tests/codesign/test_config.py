"""Config loading: the embedded default validates, and bad input gives one-line errors naming the field."""
import pytest
import yaml

from codesign.config.run import ConfigError, RunConfig, dump_config, load_config


def test_default_config_loads_and_round_trips(tmp_path):
    cfg = load_config()
    assert cfg.compression.ratios == [0.0, 0.25, 0.5, 0.75]
    assert cfg.hardware.preset == "loihi"
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_sets_override_nested_keys():
    cfg = load_config(sets=["train.epochs=1", "compression.ratios=[0, 0.5]", "hardware.overrides={core.x: 1}"])
    assert cfg.train.epochs == 1
    assert cfg.compression.ratios == [0.0, 0.5]
    assert cfg.hardware.overrides == {"core.x": 1}


@pytest.mark.parametrize("sets, expected", [
    (["train.epochz=3"], "config: unknown key 'train.epochz'; accepted keys here: epochs, batch_size"),
    (["bogus=1"], "config: unknown key 'bogus'; accepted keys here: run_name, output_dir"),
    (["compression.ratios=[0.5, 1.0]"], "config: compression.ratios: 1.0 is outside [0, 1)"),
    (["compression.ratios=[-0.1]"], "config: compression.ratios: -0.1 is outside [0, 1)"),
    (["hardware.model=foo"], "config: hardware.model: Input should be 'des' or 'analytic'"),
    (["data.n_timesteps=0"], "config: data.n_timesteps: Input should be greater than or equal to 1"),
    (["hardware.weight_fit=round"],
     "config: hardware.weight_fit: Input should be 'quantize', 'widen' or 'error' (got 'round')"),
    (["nosep"], "--set: 'nosep' must look like section.key=value"),
])
def test_bad_values_give_one_line_errors(sets, expected):
    with pytest.raises(ConfigError) as info:
        load_config(sets=sets)
    msg = str(info.value)
    assert msg.startswith(expected)
    assert "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)


def test_every_field_is_documented_in_resolved_dump():
    tree = yaml.safe_load(dump_config(RunConfig()))
    assert set(tree) == set(RunConfig.model_fields)
    assert set(tree["hardware"]) == {"preset", "overrides", "placement", "model", "semantics", "multicast",
                                     "n_samples", "weight_bits", "weight_fit"}
    assert tree["hardware"]["weight_fit"] == "quantize"
