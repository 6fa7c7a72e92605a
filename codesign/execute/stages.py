"""Stages of a design point, each a plain function of the config: name checks (preset, dataset, model, method),
device, dataset, model, training and compression settings, encoded test inputs, and the early check that the
network fits the chip. codesign.execute.evaluate chains them with lowering, mapping and simulation (one
evaluation path).
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pydantic

import torch

import hwmodels
from codesign.config.run import FLOAT32_MAX, ConfigError, RunConfig, quote
from hwmodels.chip.presets import preset_kind
from workloads import compression, data, encoding, lowering, models, neurons, train

#: test samples lowered for the before-training fit check (enough to build every population)
FIT_CHECK_SAMPLES = 2


def _check_one(field: str, value: str, accepted) -> None:
    accepted = list(accepted)
    if value not in accepted:
        raise ConfigError(f"{field}: '{value}' is not one of {', '.join(accepted)}")


def check_preset(preset: str) -> None:
    """`hardware.preset` names a shipped preset, or a chip file / `sanafe:PATH` that loads (relative paths: to the
    working directory). Raises ConfigError naming `hardware.preset`: listing the presets for an unknown name, or
    naming the file and the YAML key for a chip file that is missing or bad."""
    kind = preset_kind(preset)
    if kind == "unknown":
        raise ConfigError(f"hardware.preset: {quote(preset)} is not one of {', '.join(hwmodels.list_presets())} "
                          "(or a chip file path ending .yaml or .yml, or sanafe:PATH)")
    if kind != "shipped":
        try:
            hwmodels.load_preset(preset)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"hardware.preset: {exc}") from None


def check_names(cfg: RunConfig) -> None:
    """Every registry name in the config exists. Raises ConfigError naming the field and accepted names."""
    _check_one("data.dataset", cfg.data.dataset, data.DATASETS)
    _check_one("data.encoding", cfg.data.encoding, encoding.ENCODERS)
    dataset_options(cfg)
    _check_one("model.name", cfg.model.name, models.MODELS)
    _check_one("model.neuron", cfg.model.neuron, neurons.NEURONS)
    check_model_options(cfg)
    _check_one("compression.method", cfg.compression.method, compression.METHODS)
    check_method_ratios(cfg)
    check_preset(cfg.hardware.preset)
    _check_one("hardware.placement", cfg.hardware.placement, hwmodels.PLACEMENTS)
    method_config(cfg)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU. Raises ConfigError for 'cuda' without a GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    if name == "auto":
        return train.default_device()
    return torch.device(name)


def dataset_options(cfg: RunConfig) -> dict:
    """The dataset's options from `data.options`, plus n_frames = T for event datasets that take it.

    Raises ConfigError naming `data.options.<key>` for an option the dataset does not accept, and for an n_frames
    other than data.n_timesteps.
    """
    accepted = data.dataset_options(cfg.data.dataset)
    for key in cfg.data.options:
        if key not in accepted:
            raise ConfigError(f"data.options: unknown key '{key}' for dataset '{cfg.data.dataset}'; accepted keys: "
                              f"{', '.join(accepted) or '(none)'}")
    opts = dict(cfg.data.options)
    if "n_frames" in accepted:
        opts.setdefault("n_frames", cfg.data.n_timesteps)
        if opts["n_frames"] != cfg.data.n_timesteps:  # known before any event file is read
            raise ConfigError(f"data.options.n_frames: {quote(opts['n_frames'])} differs from data.n_timesteps "
                              f"{cfg.data.n_timesteps}; a sample's frames are its timesteps (leave n_frames out)")
    return opts


def make_dataset(cfg: RunConfig) -> data.Dataset:
    """Load the configured dataset with the run seed (fixed, seeded split). Raises ConfigError when its files are
    missing (the message names the expected path and format)."""
    try:
        return data.load_dataset(cfg.data.dataset, seed=cfg.seed, root=cfg.data.root, **dataset_options(cfg))
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None


def check_method_ratios(cfg: RunConfig) -> None:
    """A method that accepts only some ratios (workloads.compression.FIXED_RATIOS, e.g. dense: 0) is given only
    those. Raises ConfigError naming `compression.ratios` and the accepted values."""
    fixed = compression.FIXED_RATIOS.get(cfg.compression.method)
    bad = [r for r in cfg.compression.ratios if fixed is not None and r not in fixed]
    if bad:
        raise ConfigError(f"compression.ratios: method '{cfg.compression.method}' accepts only "
                          f"{', '.join(map(str, fixed))}, got {', '.join(map(str, bad))}")


def check_model_options(cfg: RunConfig) -> None:
    """`model.options` are options of `model.name` and `model.neuron_options` options of make_neuron. Raises
    ConfigError naming `model.options.<key>` / `model.neuron_options` with the accepted keys or the bad value."""
    accepted = models.model_options(cfg.model.name)
    for key in cfg.model.options:
        if key not in accepted:
            raise ConfigError(f"model.options: unknown key {quote(key)} for model '{cfg.model.name}'; accepted keys: "
                              f"{', '.join(sorted(accepted)) or '(none)'}")
    known = [f.name for f in dataclasses.fields(neurons.NeuronOptions)]
    for key in cfg.model.neuron_options:
        if key not in known:
            raise ConfigError(f"model.neuron_options: unknown key {quote(key)}; accepted keys: {', '.join(known)}")
    try:
        models.NeuronSpec(cfg.model.neuron, cfg.model.tau, cfg.model.v_threshold,
                          dict(cfg.model.neuron_options)).check()
    except (TypeError, ValueError) as exc:
        text = str(exc)
        field = next((f for f in ("tau", "v_threshold", "neuron") if text.startswith(f"{f} ")), "neuron_options")
        raise ConfigError(f"model.{field}: {text}") from None


def make_model(cfg: RunConfig, dataset: data.Dataset) -> torch.nn.Module:
    """Build the configured architecture with its options, its initial weights seeded by the run seed. Raises
    ConfigError naming `model` when the builder refuses the options for this dataset's input shape."""
    try:
        return models.build_model(cfg.model.name, dataset.in_shape, dataset.n_classes, neuron=cfg.model.neuron,
                                  tau=cfg.model.tau, v_threshold=cfg.model.v_threshold, seed=cfg.seed,
                                  neuron_options=dict(cfg.model.neuron_options), **cfg.model.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from None


def train_config(cfg: RunConfig) -> train.TrainConfig:
    """workloads' TrainConfig from the run config (batch size, T and encoding also drive fine-tuning)."""
    t = cfg.train
    return train.TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer,
                             momentum=t.momentum, weight_decay=t.weight_decay, lr_schedule=t.lr_schedule,
                             n_timesteps=cfg.data.n_timesteps, encoding=cfg.data.encoding)


#: the most epochs any compression.params.*epochs key accepts (the same bound as train.epochs)
MAX_EPOCHS = 10000


def method_config(cfg: RunConfig):
    """The compression method's own config object from `compression.params`.

    Raises ConfigError naming `compression.params.<key>` for an unknown key or a bad value.
    """
    cls = compression.CONFIGS[cfg.compression.method]
    accepted = [f.name for f in dataclasses.fields(cls)]
    for key in cfg.compression.params:
        if key not in accepted:
            raise ConfigError(f"compression.params: unknown key '{key}' for method "
                              f"'{cfg.compression.method}'; accepted keys: {', '.join(accepted) or '(none)'}")
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for key, value in cfg.compression.params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"compression.params.{key}: {value} is not a finite number")
        if isinstance(value, bool) and "bool" not in kinds[key]:
            raise ConfigError(f"compression.params.{key}: {value} is true/false; {key} is not a boolean")
        if key == "layer_ratios" and value is not None:
            _check_layer_ratios(value)
        if key.endswith("epochs") and isinstance(value, int) and not 0 <= value <= MAX_EPOCHS:
            raise ConfigError(f"compression.params.{key}: {quote(value)} is not a number of epochs in "
                              f"0..{MAX_EPOCHS}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 31:
            raise ConfigError(f"compression.params.{key}: {quote(value)} is out of range (|value| < 2**31)")
    try:
        out = pydantic.TypeAdapter(cls).validate_python(dict(cfg.compression.params))
    except pydantic.ValidationError as err:
        e = err.errors()[0]
        field = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not field:
            raise ConfigError(f"compression.params ({cfg.compression.method}): {msg}") from None
        raise ConfigError(f"compression.params.{field}: {msg} (got {quote(e.get('input'))})") from None
    for key in cfg.compression.params:  # as read (a YAML "1e39" is text, which pydantic makes a float)
        value = getattr(out, key)
        if isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            raise ConfigError(f"compression.params.{key}: {value} is not finite in float32 (|value| <= "
                              f"{FLOAT32_MAX:.4g}); torch computes in float32")
    return out


def _check_layer_ratios(value) -> None:
    """ConfigError unless compression.params.layer_ratios is {layer name: ratio in [0, 1)} (the names are checked
    against the model's convs when it is pruned)."""
    if not isinstance(value, dict):
        raise ConfigError(f"compression.params.layer_ratios: {quote(value)} must map conv names to ratios")
    for name, ratio in value.items():
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ConfigError(f"compression.params.layer_ratios: {quote(name)}: {quote(ratio)} is not a ratio in "
                              "[0, 1)")


def check_n_samples(dataset: data.Dataset, cfg: RunConfig, n: int | None = None) -> None:
    """Raise ConfigError naming hardware.n_samples when `n` (default cfg.hardware.n_samples) exceeds the dataset's
    test samples: a run never simulates fewer samples than its report claims."""
    n = cfg.hardware.n_samples if n is None else n
    if n > len(dataset.y_test):
        raise ConfigError(f"hardware.n_samples: {n} is more than the {len(dataset.y_test)} test samples of "
                          f"{cfg.data.dataset}; set hardware.n_samples <= {len(dataset.y_test)}")


def hardware_samples(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (int64, (n,)) of the `n` test samples a run lowers and simulates: the classes in turn (the first
    sample of each class in label order, then the second of each, ...; a class that runs out is skipped), each
    class's samples in test-split order. Deterministic and class-balanced whatever the split's order: test
    splits sorted by label (mnist5k's, the DVS sets' folders) made the first 100 samples all zeros, so every
    hardware number described one digit."""
    y = torch.as_tensor(labels).flatten().long()
    if not len(y):
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(y, stable=True)  # class-major, test order within a class
    counts = torch.bincount(y - y.min())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(y)) - torch.repeat_interleave(starts, counts)  # rank of each sorted sample in its class
    turn = torch.argsort(rank * (len(counts) + 1) + (y[order] - y.min()), stable=True)  # k-th of every class, then k+1
    return order[turn][:n]


def encoded_test_inputs(dataset: data.Dataset, cfg: RunConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `n` test samples of hardware_samples (class-balanced) encoded over T (seeded Poisson draws), shape
    (T, n, C, H, W), and their labels."""
    check_n_samples(dataset, cfg, n)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    idx = hardware_samples(dataset.y_test, n)
    x = dataset.x_test[idx]
    return encoding.encode(x, cfg.data.n_timesteps, cfg.data.encoding, generator=gen), dataset.y_test[idx]


def check_data_fits(dataset: data.Dataset, cfg: RunConfig) -> None:
    """ConfigError naming data.encoding / data.n_timesteps (the run config's keys) when they do not fit the
    dataset (workloads.train.check_dataset: event frames need "events" and T = their frame count)."""
    try:
        train.check_dataset(dataset, train_config(cfg))
    except ValueError as exc:
        message = str(exc).replace("TrainConfig.encoding", "data.encoding")
        raise ConfigError(message.replace("TrainConfig.n_timesteps", "data.n_timesteps")) from None


def check_fits(model, dataset, cfg: RunConfig, chip, device) -> None:
    """Lower the untrained model on a couple of samples (at most hardware.n_samples) and map it, so a network that
    cannot fit the chip fails before training (raises hwmodels.MappingError naming the population and the
    shortfall); first check that the compression method can compress this model (compression.check_model).

    Weights are fitted as hardware.weight_fit says, except that "error" is checked as "quantize" for methods
    that quantize (the untrained float weights say nothing about the trained quantized model, only its bits per
    weight matter here); a method whose weights stay float (compression.FLOAT_METHODS) is checked with "error"
    itself, which refuses them unless weight_bits is 32. Raises ConfigError naming compression or
    hardware.weight_fit.
    """
    method, params = cfg.compression.method, method_config(cfg)
    try:
        for ratio in cfg.compression.ratios:
            compression.check_model(method, model, ratio, params)
    except ValueError as exc:
        raise ConfigError(f"compression: method {quote(method)}: {exc}") from None
    x, _ = encoded_test_inputs(dataset, cfg, min(FIT_CHECK_SAMPLES, cfg.hardware.n_samples))
    fit = cfg.hardware.weight_fit
    if fit == "error" and method not in compression.FLOAT_METHODS:
        fit = "quantize"
    try:
        graph, _ = lowering.lower(copy.deepcopy(model), x, weight_bits=cfg.hardware.weight_bits, weight_fit=fit,
                                  device=device)
    except ValueError as exc:
        if not str(exc).startswith("weight_fit:"):
            raise
        raise ConfigError(f"hardware.weight_fit: 'error' refuses the float weights method {quote(method)} keeps "
                          f"({str(exc).removeprefix('weight_fit: ')}); use quantize or widen") from None
    hwmodels.map_network(graph, chip, placement=cfg.hardware.placement)
