"""Config loading: the embedded default validates, and bad input gives one-line errors naming the field."""
import pytest
import yaml

from codesign.config.run import ConfigError, RunConfig, dump_config, load_config, validate_config


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


def test_a_set_that_changes_the_method_drops_the_old_methods_params(tmp_path):
    assert "epochs" in load_config().compression.params  # the default config's SCA parameters
    cfg = load_config(sets=["compression.method=magnitude_channel"])
    assert cfg.compression.method == "magnitude_channel" and cfg.compression.params == {}
    kept = load_config(sets=["compression.method=magnitude_channel", "compression.params.finetune_epochs=2"])
    assert kept.compression.params == {"finetune_epochs": 2}
    same = load_config(sets=["compression.method=sca"])  # the same method keeps its parameters
    assert same.compression.params == load_config().compression.params
    given = load_config(sets=["compression.params.q=0.2", "compression.method=magnitude_channel"])
    assert given.compression.params == {"q": 0.2}  # a params override is kept whatever its place in the list


@pytest.mark.parametrize("sets, expected", [
    (["train.epochz=3"], "config: unknown key 'train.epochz'; accepted keys here: epochs, batch_size"),
    (["bogus=1"], "config: unknown key 'bogus'; accepted keys here: run_name, output_dir"),
    (["compression.ratios=[0.5, 1.0]"], "config: compression.ratios: 1.0 is outside [0, 1)"),
    (["compression.ratios=[-0.1]"], "config: compression.ratios: -0.1 is outside [0, 1)"),
    (["compression.ratios=[0.5, 0, 0.5]"], "config: compression.ratios: 0.5 is listed twice; each ratio is one"),
    (["train.lr=1e300"], "config: train.lr: Input should be less than or equal to 3402823466385288"),
    (["model.v_threshold=1e39"], "config: model.v_threshold: Input should be less than or equal to 34028234"),
    (["hardware.model=foo"], "config: hardware.latency_model: Input should be 'des' or 'analytic'"),
    (["data.n_timesteps=0"], "config: data.n_timesteps: Input should be greater than or equal to 1"),
    (["hardware.weight_fit=round"],
     "config: hardware.weight_fit: Input should be 'quantize', 'widen' or 'error' (got 'round')"),
    (["nosep"], "--set: 'nosep' must look like section.key=value"),
    (["train.epochs=true"], "config: train.epochs: a boolean is not a number (got True)"),  # pydantic read 1
    (["hardware.n_samples=false"], "config: hardware.n_samples: a boolean is not a number (got False)"),
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
    assert set(tree["hardware"]) == {"preset", "overrides", "placement", "latency_model", "semantics", "multicast",
                                     "n_samples", "weight_bits", "weight_fit"}
    assert tree["hardware"]["weight_fit"] == "quantize"


def test_training_defaults_are_the_workloads_ones():
    """codesign's train/data sections take their defaults from workloads.train_config.TrainConfig (declared once),
    and importing the config does not import torch."""
    import subprocess
    import sys
    from codesign.config.run import DataConfig, TrainingConfig
    from workloads.train_config import TrainConfig
    ours, theirs = TrainingConfig().model_dump(), TrainConfig()
    assert ours and all(v == getattr(theirs, k) for k, v in ours.items())
    assert (DataConfig().encoding, DataConfig().n_timesteps) == (theirs.encoding, theirs.n_timesteps)
    code = "import sys, codesign.config.run; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_old_key_hardware_model_is_read_as_latency_model(tmp_path):
    """hardware.model was renamed hardware.latency_model ("model" is the network section): the old key still
    works in a config file, a --set item (also over a file that uses the old key), a sweep axis and an inline sweep
    base; a tree with both names is refused in one line."""
    from codesign.config.sweep import load_spec, point_config
    old = tmp_path / "old.yaml"
    old.write_text("hardware:\n  model: analytic\n")
    assert load_config(old).hardware.latency_model == "analytic"
    assert load_config(old, ["hardware.model=des"]).hardware.latency_model == "des"
    assert load_config(None, ["hardware.model=analytic"]).hardware.latency_model == "analytic"
    spec = load_spec(None, ["base={hardware: {model: analytic}}", "axes={hardware.model: [des]}"])
    assert point_config(spec, {"hardware.model": "des"}).hardware.latency_model == "des"
    with pytest.raises(ConfigError, match="hardware.model is the old name of hardware.latency_model"):
        validate_config({"hardware": {"model": "des", "latency_model": "analytic"}})


@pytest.mark.parametrize("sets, expected", [
    (["model.name=spikformer", "model.options.depht=2"],
     "model.options: unknown key 'depht' for model 'spikformer'; accepted keys: attn_scale, attn_threshold, depth"),
    (["model.options.depth=2"], "model.options: unknown key 'depth' for model 'mnist_conv'; accepted keys: (none)"),
    (["model.neuron_options.bitz=4"],
     "model.neuron_options: unknown key 'bitz'; accepted keys: ternary, reset, bits, shape"),
    (["model.neuron=LIF", "model.neuron_options.bits=4"], "model.neuron_options: "),  # a QLIF option on LIF
    (["model.neuron_options.ternary='false'"],  # a quoted string: bool('false') turned ternary spikes on
     "model.neuron_options: ternary must be true or false, got 'false'"),
    (["model.tau=1"], "model.tau: tau must be a finite number > 1 for LIF, got 1.0"),  # was named neuron_options
    (["compression.method=dense", "compression.ratios=[0]", "compression.params={q: 1}"],
     "compression.params: unknown key 'q' for method 'dense'; accepted keys: (none)"),
    (["data.dataset=dvs_gesture", "data.encoding=events", "data.n_timesteps=8", "data.options.n_frames=16"],
     "data.options.n_frames: 16 differs from data.n_timesteps 8"),  # found before any event file is read
])
def test_model_options_are_checked_by_name(sets, expected):
    from codesign.execute.stages import check_names

    with pytest.raises(ConfigError) as info:
        check_names(load_config(sets=sets))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_model_options_reach_the_builder():
    """model.options and model.neuron_options build the architecture they name: a Spikformer of depth 1, dim 32
    and 2 heads has the count of its docstring formula; ternary neurons fire -1."""
    import torch
    from codesign.execute.stages import make_model
    from workloads.datasets.base import Dataset

    cfg = load_config(sets=["model.name=spikformer", "model.options={depth: 1, dim: 32, heads: 2, pool_after: [0, 1]}",
                            "model.neuron_options={ternary: true}"])
    x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)
    ds = Dataset("toy", x, y, x, y, 10, (1, 8, 8))
    model = make_model(cfg, ds)
    d, h, c, n = 32, 128, 1, 10
    tokenizer = 9 * (c * d // 8 + d * d // 32 + d * d // 8 + d * d // 2 + d * d) + 2 * (d // 8 + d // 4 + d // 2 + 2 * d)
    block = 4 * d * d + 4 * d + 8 * d + 2 * d * h + h + d + 2 * h + 2 * d
    assert sum(p.numel() for p in model.parameters()) == tokenizer + block + d * n + n
    assert len(model.blocks) == 1 and model.blocks[0].attn.attn.heads == 2
    assert type(model.blocks[0].mlp.fc1.sn).__name__ == "TernaryLIFNode"


def test_the_dense_method_takes_only_ratio_zero():
    from codesign.execute.stages import check_names

    with pytest.raises(ConfigError) as info:
        check_names(load_config(sets=["compression.method=dense"]))  # default ratios 0, 0.25, 0.5, 0.75
    assert str(info.value) == "compression.ratios: method 'dense' accepts only 0.0, got 0.25, 0.5, 0.75"
    check_names(load_config(sets=["compression.method=dense", "compression.ratios=[0]", "compression.params={}"]))


def test_a_folder_given_as_a_config_is_named_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="config: '.*' is a folder; give a YAML file"):
        load_config(tmp_path)


def test_unknown_keys_of_sweep_specs_and_claims_files_list_their_own_accepted_keys(tmp_path):
    from codesign.claims.verdicts import load_claims
    from codesign.config.sweep import load_spec
    spec = tmp_path / "s.yaml"
    spec.write_text("bogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert str(err.value) == ("sweep: unknown key 'bogus'; accepted keys here: base, run_name, output_dir, "
                              "cache_dir, axes, execution, search")
    claims = tmp_path / "c.yaml"
    claims.write_text("claims:\n- {id: x, text: t, metric: m, relation: '<', a: {}, b: {}, bogus: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_claims(claims)
    assert str(err.value).startswith("claims: unknown key 'claims.0.bogus'; accepted keys here: id, text, source, "
                                     "metric, relation, factor, a, b, match")


@pytest.mark.parametrize("key", ["output_dir", "cache_dir"])
def test_a_folder_path_with_a_nul_byte_is_named_in_one_line(tmp_path, key):
    # the OS refuses a NUL byte with "embedded null byte", which names no field; a spec's folders too
    from codesign.config.sweep import load_spec
    path = tmp_path / "c.yaml"
    path.write_text(f'{key}: "rep\\0x"\n')
    with pytest.raises(ConfigError,
                       match=rf"^config: {key}: holds a NUL byte; give a folder path \(got 'rep\\x00x'\)$"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"^sweep: {key}: holds a NUL byte"):
        load_spec(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_nested_chip_overrides_in_a_run_config(tmp_path):
    """hardware.overrides written nested (--set hardware.overrides.core.neurons_per_core=512, or a YAML mapping
    in a config file) give the chip the dotted form gives; before, the run refused them as 'override key core'."""
    from codesign.execute.evaluate import load_chip
    by_set = load_config(None, ["hardware.overrides.core.neurons_per_core=512"])
    path = tmp_path / "c.yaml"
    path.write_text("hardware:\n  overrides:\n    core: {neurons_per_core: 512}\n    router.buffer_depth: 4\n")
    by_file = load_config(path, [])
    dotted = load_config(None, ['hardware.overrides={"core.neurons_per_core": 512, "router.buffer_depth": 4}'])
    assert load_chip(by_set).core.neurons_per_core == 512 and load_chip(by_set).router.buffer_depth is None
    assert load_chip(by_file) == load_chip(dotted) and load_chip(by_file).router.buffer_depth == 4
