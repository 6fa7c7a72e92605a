"""Sweep specification (YAML, validated): a base run config plus axes; shared by grid sweeps and searches.

Axis keys are dotted RunConfig paths. Three shorthands: `compression.ratio` sets the single ratio of a design
point; `compression.params.<name>` sets one method parameter; `hardware.overrides.<dotted preset key>` sets one
chip override (e.g. `hardware.overrides.core.synapse_memory_bits`).
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from codesign.config.run import (NON_RESULT_FIELDS, ConfigError, RunConfig, one_line_error, apply_sets,
                                 default_config_text, parse_tree, quote, check_folder_path, current_key, read_tree,
                                 rename_old_keys, set_dotted)
from hwmodels.npzfile import quote_path

DICT_FIELDS = ("compression.params.", "hardware.overrides.")

#: the most local dask worker processes `execution.workers` may ask for (each is a process with its own scratch
#: folder; for more, start a dask cluster and pass --scheduler)
MAX_WORKERS = 256

#: storage URL examples for error messages
STORAGE_EXAMPLES = "e.g. sqlite:////abs/path/study.db or postgresql://user@host/db"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Section):
    """A numeric search range: float (or int when `step` is an int and bounds are ints), optionally log-scaled."""

    low: float
    high: float
    step: float | None = None
    log: bool = False
    integer: bool = False


def _space_axis(value: Any) -> Any:
    """A `search.space` value: a list of choices passes; a mapping is validated as a Range here, so its error
    names the bad key (pydantic's union would report its failed list branch, 'Input should be a valid list')."""
    if isinstance(value, dict):
        accepted = ", ".join(Range.model_fields)
        unknown = [key for key in value if key not in Range.model_fields]
        if unknown:
            raise ValueError(f"unknown key {quote(str(unknown[0]))} in a range; accepted keys here: {accepted}")
        missing = [key for key in ("low", "high") if key not in value]
        if missing:
            raise ValueError(f"a range needs {' and '.join(missing)}; accepted keys here: {accepted}")
        try:
            return Range.model_validate(value)
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: {msg}" if where else msg) from None
    elif not isinstance(value, (list, Range)):
        raise ValueError("give a list of choices or a range {low, high[, step, log, integer]}")
    return value


def check_storage_url(url: str) -> str:
    """`url` when it is a database URL sqlalchemy (so optuna) can open: it parses, names a known dialect, and that
    dialect's database driver (DBAPI module) imports. Raises ValueError otherwise; connects to nothing."""
    import sqlalchemy.engine
    import sqlalchemy.exc
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError, TypeError):
        raise ValueError(f"not a database URL; {STORAGE_EXAMPLES}") from None
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise ValueError(f"unknown database or driver {parsed.drivername!r} (sqlalchemy has no such dialect); "
                         f"{STORAGE_EXAMPLES}") from None
    except ImportError as exc:  # a third-party dialect whose package fails to import
        raise ValueError(f"the sqlalchemy dialect of {parsed.drivername!r} cannot be imported "
                         f"({exc.name or str(exc).splitlines()[0]}); {STORAGE_EXAMPLES}") from None
    load = getattr(dialect, "import_dbapi", None) or getattr(dialect, "dbapi", None)
    try:
        if callable(load):
            load()
    except ImportError as exc:
        module = exc.name or str(exc).splitlines()[0]
        raise ValueError(f"the database driver of {parsed.drivername!r} is not installed (no module "
                         f"{module!r}); install it or use a SQLite file, e.g. sqlite:////abs/path/study.db") from None
    return url


class ExecutionConfig(_Section):
    """Where design points run: a local dask cluster (default: one worker process per core), a running dask
    scheduler, or this process (workers 0)."""

    workers: int | None = Field(None, ge=0, le=MAX_WORKERS,
                                description="None: local dask cluster with one worker per core; N: N local worker "
                                            f"processes (at most {MAX_WORKERS}); 0: serial in this process")
    scheduler: str | None = Field(None, description="address of a running dask scheduler, e.g. tcp://host:8786")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads: None = torch's default "
                                      "when serial, 1 per dask worker process")

    @field_validator("workers", mode="before")
    @classmethod
    def _at_most_max_workers(cls, workers: Any) -> Any:
        """More than MAX_WORKERS local processes is refused with the accepted values (before the local cluster
        would start them and their scratch folders), and so is a boolean."""
        if isinstance(workers, bool):  # pydantic would take true as 1
            raise ValueError(f"must be an integer 0..{MAX_WORKERS} or unset, not true/false")
        if isinstance(workers, int) and workers > MAX_WORKERS:
            raise ValueError(f"at most {MAX_WORKERS} local worker processes (0: serial in this process; unset: one "
                             "per core); for more, start a dask cluster and pass --scheduler")
        return workers


class SearchConfig(_Section):
    """optuna multi-objective search over `space` (codesign search)."""

    n_trials: int = Field(30, ge=1)
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    seed: int = Field(0, ge=0)
    objectives: dict[str, Literal["max", "min"]] = Field(
        default_factory=lambda: {"accuracy": "max", "energy_j": "min", "latency_s": "min"})
    min_accuracy: float | None = Field(None, ge=0.0, le=1.0, description="constraint: accuracy (the float "
                                        "model's) >= this")
    max_chips: int | None = Field(None, ge=1, description="constraint: the network fits on this many chips")
    space: dict[str, Annotated[list[Any] | Range, BeforeValidator(_space_axis)]] = Field(
        default_factory=dict, description="axis -> choices (list) or a numeric range")
    storage: str | None = Field(None, description="optuna RDB URL whose database driver is installed; default "
                                                  "sqlite:///<run>/study.db")
    population_size: int = Field(10, ge=2, description="NSGA-II population size")

    @field_validator("storage")
    @classmethod
    def _storage(cls, url: str | None) -> str | None:
        """A database URL whose sqlalchemy dialect and driver load (check_storage_url)."""
        return None if url is None else check_storage_url(url)


class SweepSpec(_Section):
    """A sweep: base config (inline mapping, a YAML path, or None for the embedded default) and its axes."""

    base: dict[str, Any] | str | None = None
    run_name: str | None = None
    output_dir: str = "reports"
    cache_dir: str = ".cache/codesign"
    axes: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        default_factory=dict, description="dotted key -> values (grid product), or a list of such grids (their "
                                          "union, e.g. one grid per method with its own parameters)")
    execution: ExecutionConfig = ExecutionConfig()
    search: SearchConfig = SearchConfig()

    @field_validator("output_dir", "cache_dir")
    @classmethod
    def _folder_path(cls, path: str) -> str:
        """A folder path without a NUL byte."""
        return check_folder_path(path)

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes):
        if isinstance(axes, list) and not axes:
            raise ValueError("an empty list of grids; give a mapping of axes or at least one grid")
        for grid in (axes if isinstance(axes, list) else [axes]):
            for key, values in grid.items():
                if not values:
                    raise ValueError(f"axis '{key}' has no values")
            check_axis_fields(list(grid))
        return axes

    @property
    def grids(self) -> list[dict[str, list[Any]]]:
        """The axes as a list of grids (one grid when `axes` is a mapping)."""
        return self.axes if isinstance(self.axes, list) else [self.axes]

    @property
    def axis_names(self) -> list[str]:
        """Every axis name over all grids, in first-seen order."""
        return list(dict.fromkeys(k for g in self.grids for k in g))


def load_spec(path: str | Path | None, sets: list[str] | None = None, kind: str = "sweep") -> SweepSpec:
    """Load and validate a sweep or search spec (None: the default config as base with no axes); `kind` ("sweep"
    or "search") starts its error messages.

    Raises ConfigError with a one-line message naming the field.
    """
    tree: dict = {}
    if path is not None:
        tree = read_tree(path, kind)
        check_no_file_scheduler(tree, path, kind)
        if isinstance(tree.get("base"), str):
            tree["base"] = str((Path(path).parent / tree["base"]).resolve())
    apply_sets(tree, sets)
    try:
        return SweepSpec.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(one_line_error(err, SweepSpec).replace("config:", f"{kind}:", 1)) from None


def check_no_file_scheduler(tree: dict, path: str | Path, kind: str = "sweep") -> None:
    """ConfigError when the spec file `path` (its tree) names a dask scheduler: a client loads the pickles its
    scheduler sends back, so a shared spec naming one would run that scheduler's code here. Only the command line
    names one (--scheduler, or --set execution.scheduler=...)."""
    execution = tree.get("execution")
    if isinstance(execution, dict) and execution.get("scheduler") is not None:
        raise ConfigError(f"{kind}: execution.scheduler: {quote_path(path)} names a dask scheduler, which a spec file "
                          "may not (a scheduler's replies are unpickled here); pass --scheduler URL instead")


def axis_field(key: str) -> str:
    """The config field an axis sets: compression.ratio -> compression.ratios, a renamed key -> its current name
    (hardware.model -> hardware.latency_model), anything else itself (shorthands of DICT_FIELDS are paths)."""
    return "compression.ratios" if key == "compression.ratio" else current_key(key)


def check_axis_fields(keys: list[str]) -> None:
    """ValueError (one line, naming the axes) when two axes of one grid set the same field or one inside the
    other (hardware.overrides and hardware.overrides.core.neurons_per_core; compression.ratio and
    compression.ratios; hardware.model and hardware.latency_model): the later would silently replace the earlier
    while the rows were labelled with both. Also when an axis sets a field that is the run's, not the point's
    (NON_RESULT_FIELDS: points that differ only there are one point)."""
    fields = [axis_field(k) for k in keys]
    for key, field in zip(keys, fields):
        if field.split(".")[0] in NON_RESULT_FIELDS:
            raise ValueError(f"axis '{key}': {', '.join(sorted(NON_RESULT_FIELDS))} say where and how a run works, not "
                             "what a design point is; set it once (in base or with --set), not as an axis")
    for i, (a, fa) in enumerate(zip(keys, fields)):
        for b, fb in zip(keys[i + 1:], fields[i + 1:]):
            if fa == fb or fa.startswith(fb + ".") or fb.startswith(fa + "."):
                raise ValueError(f"axes '{a}' and '{b}' set the same field ({fa if len(fa) <= len(fb) else fb}); "
                                 "give one of them")


def base_tree(spec: SweepSpec) -> dict:
    """The base run config as a plain dict (defaults not yet applied)."""
    if spec.base is None:
        return parse_tree(default_config_text(), "default.yaml")
    if isinstance(spec.base, str):
        return read_tree(spec.base, "sweep.base")
    return rename_old_keys(copy.deepcopy(spec.base))


def validated_base(spec: SweepSpec) -> RunConfig:
    """The base run config, validated. Raises ConfigError ('sweep: base.<field>: ...') naming the bad field."""
    tree = base_tree(spec)
    tree.setdefault("output_dir", spec.output_dir)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(one_line_error(err).replace("config: ", "sweep: base.", 1)) from None


def apply_axis(tree: dict, key: str, value: Any) -> None:
    """Set one axis value in a run-config tree, expanding the shorthands of the module docstring."""
    if key == "compression.ratio":
        set_dotted(tree, "compression.ratios", [value])
        return
    for prefix in DICT_FIELDS:
        if key.startswith(prefix):
            section, field = prefix.rstrip(".").split(".")
            node = tree.setdefault(section, {})
            node = node.setdefault(field, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"config: {section}.{field} must be a mapping to take the axis {quote(key)}")
            node[key[len(prefix):]] = value
            return
    set_dotted(tree, key, value)


def point_config(spec: SweepSpec, values: dict[str, Any]) -> RunConfig:
    """The RunConfig of one design point: base + axis values, validated; run/output/cache from the spec.

    Raises ConfigError naming the axis field when a value is invalid.
    """
    tree = base_tree(spec)
    for key, value in values.items():
        apply_axis(tree, key, value)
    tree["output_dir"] = spec.output_dir
    try:
        cfg = RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(f"{one_line_error(err)} (at axis values {quote(values)})") from None
    return cfg


def grid_points(spec: SweepSpec, base_ratios: bool = True) -> list[tuple[dict, RunConfig]]:
    """Every design point of the grid(s): (axis values, RunConfig with one ratio), duplicates removed.

    A grid without a ratio axis gets the base config's `compression.ratios` as one more axis when base_ratios.
    """
    out, seen = [], set()
    for grid in spec.grids:
        axes = dict(grid)
        if base_ratios and "compression.ratio" not in axes:
            ratios = validated_base(spec).compression.ratios
            axes = {"compression.ratio": ratios, **axes}
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            values = dict(zip(keys, combo))
            cfg = point_config(spec, values)
            dump = cfg.model_dump_json()
            if dump not in seen:
                seen.add(dump)
                out.append((values, cfg))
    return out
