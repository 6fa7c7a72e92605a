"""Run configuration: one pydantic model per section, loaded from YAML and validated with one-line errors.

Every field is declared once here, with its type, bound and description; the resolved config is written
beside every result (`config.resolved.yaml`).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hwmodels.npzfile import quote_path
from hwmodels.trace import MAX_WEIGHT_BITS
from hwmodels.yaml_strict import error_line, strict_load
from workloads.train_config import LR_SCHEDULES, OPTIMIZER_NAMES, train_defaults


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the field and the accepted values."""


#: defaults of the training fields (workloads.train_config.TrainConfig declares them once)
TRAIN = train_defaults()
#: user values quoted in messages are cut to this many characters
QUOTE_CHARS = 80
#: a YAML document may expand (aliases counted at every use) to at most this many values
YAML_MAX_VALUES = 100_000
#: largest YAML file read as a config, sweep spec or claims file
YAML_MAX_BYTES = 1_000_000
#: the largest finite float32 (IEEE 754 binary32: (2 - 2^-23) x 2^127): the network and torch's optimizers hold
#: thresholds and learning rates in float32, where a larger value overflows to inf
FLOAT32_MAX = 3.4028234663852886e38


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """repr(value) cut to `limit` characters (with '...') for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value, info):
        """A YAML true/false where a number is wanted is refused (pydantic would read it as 1/0: epochs: true)."""
        kind = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and kind in (int, float, int | None, float | None):
            raise ValueError("a boolean is not a number")
        return value


class DataConfig(_Section):
    """Dataset and input encoding."""

    dataset: str = Field("mnist5k", description="dataset name (workloads.data.DATASETS): mnist5k, digits, "
                                                "mnist_dvs_emu (shipped); cifar10, cifar100, dvs_gesture, dvs_cifar10 "
                                                "(local files under root)")
    encoding: str = Field(TRAIN["encoding"], description="input encoder (workloads.encoding.ENCODERS): direct, poisson, "
                                                "ternary, tae; events for event datasets")
    n_timesteps: int = Field(TRAIN["n_timesteps"], ge=1, le=1000, description="algorithmic timesteps T per sample (event datasets: "
                                                           "frames per sample)")
    root: str | None = Field(None, description="folder of local dataset files (default $CODESIGN_DATA_DIR or ./data)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="dataset options (workloads.data.dataset_options), e.g. n_train, "
                                                "n_test, size, binary")


class ModelConfig(_Section):
    """Network architecture (a name in workloads.models.MODELS)."""

    name: str = Field("mnist_conv", description="architecture name in the workloads model registry")
    neuron: str = Field("LIF", description="spiking neuron model (workloads.neurons: IF, LIF, PLIF, sLIF, QLIF)")
    tau: float = Field(2.0, ge=1.0, description="LIF membrane time constant in timesteps")
    v_threshold: float = Field(1.0, gt=0.0, le=FLOAT32_MAX, description="firing threshold (finite in float32, "
                                                                        "the dtype the network runs in)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the architecture's own options (workloads.models.model_options), "
                                                "e.g. depth, dim, heads, pool_after of a spiking transformer")
    neuron_options: dict[str, Any] = Field(default_factory=dict,
                                           description="neuron options of workloads.neurons.make_neuron: ternary, "
                                                       "reset, bits (QLIF), shape (sLIF)")


class TrainingConfig(_Section):
    """Dense training with a surrogate gradient: the `train` section, turned into workloads.train.TrainConfig by
    codesign.execute.stages.train_config."""

    epochs: int = Field(TRAIN["epochs"], ge=0, le=10000)
    batch_size: int = Field(TRAIN["batch_size"], ge=1, le=1_000_000)
    lr: float = Field(TRAIN["lr"], gt=0.0, le=FLOAT32_MAX, description="learning rate (finite in float32: torch's "
                                                                     "optimizers hold it as a float)")
    optimizer: Literal[OPTIMIZER_NAMES] = TRAIN["optimizer"]
    momentum: float = Field(TRAIN["momentum"], ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(TRAIN["weight_decay"], ge=0.0)
    lr_schedule: Literal[LR_SCHEDULES] = TRAIN["lr_schedule"]


class CompressionConfig(_Section):
    """Compression method, the ratios to sweep, and the method's own parameters."""

    method: str = Field("sca", description="compression method in workloads.compression.METHODS")
    ratios: list[float] = Field([0.0, 0.25, 0.5, 0.75], min_length=1,
                                description="compression ratios in [0, 1) (SCA: fraction of conv channels removed)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="the method's config fields (SCA: epochs, finetune_epochs, q, "
                                               "l1_lambda, lr, optimizer, finetune_lr, spatial)")

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, ratios: list[float]) -> list[float]:
        for r in ratios:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"{r} is outside [0, 1)")
        twice = sorted({r for r in ratios if ratios.count(r) > 1})
        if twice:
            raise ValueError(f"{twice[0]} is listed twice; each ratio is one design point")
        return ratios


class HardwareConfig(_Section):
    """Chip preset, overrides, mapping and simulation."""

    preset: str = Field("loihi", description="chip preset name (codesign presets list), a chip file in the preset "
                                             "schema (a path ending .yaml or .yml, relative to the working "
                                             "directory; codesign presets derive writes one) or sanafe:PATH")
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="dotted preset overrides, e.g. core.synapse_memory_bits: 65536")
    placement: str = Field("in_order", description="placement of cores on the mesh")
    latency_model: Literal["des", "analytic"] = Field(
        "des", description="latency model of the simulator (hwmodels.simulate's model): discrete-event or "
                           "analytic; the old key hardware.model is still read (RENAMED)")
    semantics: Literal["pipelined", "layer_serial"] = Field("pipelined", description="timestep semantics: "
                                                            "layer-pipelined (as on Loihi) or layer-serial")
    multicast: bool = Field(False, description="send a spike as one multicast message along an XY tree")
    n_samples: int = Field(100, ge=1, description="test samples lowered to event traces and simulated: the classes in "
                                               "turn (codesign.execute.stages.hardware_samples)")
    weight_bits: int = Field(8, ge=1, le=MAX_WEIGHT_BITS, description="bits per stored weight on the chip (layers a "
                             "compression method quantizes keep their own bits); 1..32 as lowering accepts")
    weight_fit: Literal["quantize", "widen", "error"] = Field(
        "quantize", description="weights that do not fit weight_bits (workloads.lowering.lower's weight_fit): "
                                "quantize (per output channel, before the spikes are recorded, so the trace is the "
                                "b-bit model's), widen (store the bits they need: 32 for float weights) or error")


class RunConfig(_Section):
    """A whole `codesign run`: data -> model -> train -> compress -> lower -> map -> simulate -> report."""

    run_name: str | None = Field(None, description="folder name under output_dir; default: <method>-<time>")
    output_dir: str = Field("reports", description="where run folders are written")
    cache_dir: str = Field(".cache/codesign", description="cache of trained/compressed models and traces")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every RNG of the run (numpy and torch)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainingConfig = TrainingConfig()
    compression: CompressionConfig = CompressionConfig()
    hardware: HardwareConfig = HardwareConfig()

    @field_validator("output_dir", "cache_dir")
    @classmethod
    def _folder_path(cls, path: str) -> str:
        """A folder path without a NUL byte (the OS refuses one with an error that names no field)."""
        return check_folder_path(path)


def check_folder_path(path: str) -> str:
    """`path` unchanged; ValueError when it holds a NUL byte, which no file system accepts."""
    if "\x00" in path:
        raise ValueError("holds a NUL byte; give a folder path")
    return path


def _accepted_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """Field names accepted at the path `loc` (a tuple of keys from the root, list indices after a list field) of
    the model `root`."""
    cls, i = root, 0
    while i < len(loc):
        ann = getattr(cls.model_fields.get(str(loc[i])), "annotation", None)
        if get_origin(ann) is list and get_args(ann):  # a list of models: its item type, past the index
            ann, i = get_args(ann)[0], i + 1
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        cls, i = ann, i + 1
    return list(cls.model_fields)


#: pydantic writes the member type of a union into an error's location, e.g. ('base', 'dict[str,any]')
_TYPE_TAG = re.compile(r"(str|int|float|bool|none|[a-z-]+\[.*\])")


def _is_type_tag(part) -> bool:
    """True for a location part that names a union member's type rather than a config key."""
    return isinstance(part, str) and _TYPE_TAG.fullmatch(part) is not None


def one_line_error(err: ValidationError, root: type[BaseModel] | None = None) -> str:
    """The first validation error of model `root` (None: RunConfig) as `config: <dotted.path>: <problem>` or, for
    an unknown key, `config: unknown key '<dotted.path>'; accepted keys here: ...`."""
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if not _is_type_tag(p))
    path = ".".join(str(p) for p in loc) or "<root>"
    if e["type"] == "extra_forbidden":
        accepted = ", ".join(_accepted_keys(loc[:-1], root or RunConfig))
        return f"config: unknown key '{path}'; accepted keys here: {accepted}"
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if loc and loc[-1] == "storage" and isinstance(got, str):  # a database URL may hold a password
        got = shown_url(got)
    return f"config: {path}: {msg} (got {quote(got)})"


def shown_url(url: str) -> str:
    """A database URL as messages show it: its password replaced by *** (sqlalchemy's render_as_string); a URL
    that does not parse is shown as given."""
    import sqlalchemy.engine
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # any parse failure: nothing to hide that sqlalchemy could find
        return url


#: old dotted key -> its current name (configs, --set items, sweep axes and resolved configs of old runs still
#: use the old one)
RENAMED = {"hardware.model": "hardware.latency_model"}


#: fields of a run config that say where and how a run works, not what a design point is (left out of point ids)
NON_RESULT_FIELDS = {"run_name", "output_dir", "cache_dir", "device"}


def current_key(dotted: str) -> str:
    """`dotted` with a renamed key (RENAMED) replaced by its current name."""
    for old, new in RENAMED.items():
        if dotted == old or dotted.startswith(old + "."):
            return new + dotted[len(old):]
    return dotted


def rename_old_keys(tree: dict) -> dict:
    """Move every RENAMED key of a config tree to its current name, in place; returns the tree. Raises
    ConfigError when a tree gives both names."""
    for old, new in RENAMED.items():
        *path, last = old.split(".")
        node = tree
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            if new.split(".")[-1] in node:
                raise ConfigError(f"config: {old} is the old name of {new}; give only one of them")
            node[new.split(".")[-1]] = node.pop(last)
    return tree


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set tree['a']['b'] = value for dotted = 'a.b' (a RENAMED key under its current name), creating sub-dicts
    as needed."""
    keys = current_key(dotted).split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config: {quote(dotted)}: {quote(key)} is not a section")
    node[keys[-1]] = value


def default_config_text() -> str:
    """The embedded default config (package data codesign/configs/default.yaml) as YAML text."""
    return resources.files("codesign").joinpath("configs/default.yaml").read_text()


def read_tree(path: str | Path, what: str = "config") -> dict:
    """A YAML file as a dict. Raises ConfigError ('<what>: ...') for a missing, unreadable, oversized (more than
    YAML_MAX_BYTES) or non-UTF-8 file, bad YAML or a non-mapping."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what}: {quote_path(p)} is a folder; give a YAML file")
    if not p.is_file():
        raise ConfigError(f"{what}: file {quote_path(p)} does not exist")
    if p.stat().st_size > YAML_MAX_BYTES:
        raise ConfigError(f"{what}: {quote_path(p)} is {p.stat().st_size:,} bytes; at most {YAML_MAX_BYTES:,}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0][:QUOTE_CHARS]
        raise ConfigError(f"{what}: cannot read {quote_path(p)}: {reason}") from None
    return parse_tree(text, str(p), what)


def _count_values(node: Any, budget: int) -> int:
    """Values in a loaded YAML tree, counting a shared (aliased) node at every use; stops past `budget`."""
    count, stack = 0, [node]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def safe_yaml(text: str, name: str, what: str = "config") -> Any:
    """yaml.safe_load of `text` (hwmodels.yaml_strict: a key given twice in one mapping refused), refusing
    documents that expand (YAML aliases) to more than YAML_MAX_VALUES values (a "billion laughs" bomb) or recursive
    aliases. Raises ConfigError naming `what` and `name`."""
    try:
        tree = strict_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {quote_path(name)} is not valid YAML: {error_line(exc)[:200]}") from None
    except RecursionError:
        raise ConfigError(f"{what}: {quote_path(name)} nests too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{what}: {quote_path(name)} holds a value YAML cannot read: {str(exc)[:120]}") from None
    if _count_values(tree, YAML_MAX_VALUES) > YAML_MAX_VALUES:
        raise ConfigError(f"{what}: {quote_path(name)} expands to more than {YAML_MAX_VALUES:,} values (YAML aliases); "
                          "write the values out or use fewer aliases")
    return tree


def parse_tree(text: str, name: str, what: str = "config") -> dict:
    """YAML text as a dict (empty text -> {}), renamed keys under their current names (rename_old_keys). Raises
    ConfigError for bad YAML, an alias bomb or a non-mapping."""
    tree = safe_yaml(text, name, what) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{what}: {quote_path(name)} must hold a mapping of sections, got {type(tree).__name__}")
    return rename_old_keys(tree)


def apply_sets(tree: dict, sets: list[str] | None) -> dict:
    """Apply command-line overrides "dotted.key=yaml_value" to `tree` in place; returns it.

    An override that changes a compression method ("compression.method", also under a prefix such as a sweep's
    "base.") first drops the parameters the tree gives the old method (another method's: SCA's `epochs` is no
    key of magnitude pruning); the new method runs with its defaults and the params overrides given with it.
    Raises ConfigError for an item without '='.
    """
    parsed = []
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: {quote(item)} must look like section.key=value")
        parsed.append((current_key(key.strip()), safe_yaml(raw, item, "--set")))
    for key, value in parsed:
        if key == "compression.method" or key.endswith(".compression.method"):
            _drop_old_params(tree, key[:-len(".method")], value)
    for key, value in parsed:
        set_dotted(tree, key, value)
    return tree


def _drop_old_params(tree: dict, section: str, method: Any) -> None:
    """Remove the params of the dotted `section` ("compression" or "<prefix>.compression") of `tree` when its
    method is not `method`."""
    node = tree
    for part in section.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get("method") != method:
        node.pop("params", None)


def load_config(path: str | Path | None = None, sets: list[str] | None = None) -> RunConfig:
    """Load and validate a run config.

    path: YAML file, or None for the embedded default. sets: overrides "dotted.key=yaml_value" applied on top.
    Raises ConfigError (one line naming the field and accepted values) on a missing file, bad YAML, an
    unknown key or an out-of-range value.
    """
    tree = parse_tree(default_config_text(), "default.yaml") if path is None else read_tree(path)
    apply_sets(tree, sets)
    return validate_config(tree)


def validate_config(tree: dict) -> RunConfig:
    """A config tree validated into a RunConfig (absent sections and fields take their defaults). Raises
    ConfigError (one line naming the field and accepted values)."""
    try:
        return RunConfig.model_validate(rename_old_keys(tree))
    except ValidationError as err:
        raise ConfigError(one_line_error(err)) from None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every field, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
