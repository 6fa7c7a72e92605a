"""hwmodels.yaml_strict: a key given twice in one YAML mapping is refused wherever the project reads YAML (run
configs, chip files), where PyYAML's safe_load keeps the last value; merge keys still override."""
import pytest
import yaml

from codesign.config.run import ConfigError, safe_yaml
from hwmodels import load_preset
from hwmodels.yaml_strict import strict_load


def test_strict_load_reads_what_safe_load_reads_and_refuses_a_repeated_key():
    text = "a: 1\nb: {c: [1, 2], d: x}\nbase: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n"
    assert strict_load(text) == yaml.safe_load(text) and strict_load(text)["m"] == {"x": 3, "y": 2}
    for bad, key, line in [("seed: 1\nx: 2\nseed: 2\n", "seed", 3), ("a:\n  b: 1\n  b: 2\n", "b", 3),
                           ("- {k: 1, k: 1}\n", "k", 1)]:
        assert yaml.safe_load(bad) is not None  # PyYAML alone takes the last value
        with pytest.raises(yaml.YAMLError, match=f"key '{key}' appears twice in one mapping \\(line {line}\\)"):
            strict_load(bad)
    with pytest.raises(yaml.YAMLError):
        strict_load("!!python/object:os.system {}\n")  # still a SafeLoader


def test_configs_and_chip_files_refuse_a_repeated_key(tmp_path):
    with pytest.raises(ConfigError, match="config: 'c.yaml' is not valid YAML: key 'seed' appears twice"):
        safe_yaml("seed: 1\nseed: 2\n", "c.yaml")
    chip = tmp_path / "chip.yaml"
    chip.write_text("name: x\nname: y\n")
    with pytest.raises(ValueError, match="chip.yaml'?: not valid YAML: key 'name' appears twice in one mapping"):
        load_preset(str(chip))
