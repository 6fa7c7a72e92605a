"""The `codesign run` pipeline: config -> data -> train -> compress at each ratio -> lower -> map -> simulate.

`run` validates everything (names, preset, overrides, and that the untrained network fits the chip) before it
creates the run folder, so bad input leaves nothing behind; then each ratio is one design point, evaluated with
cached stages and stored the moment it finishes (a killed run resumes with `--resume`).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from codesign.store.cache import StageCache, check_cache_dir
from codesign.config.run import ConfigError, RunConfig, dump_config
from codesign.execute.evaluate import load_chip, model_row, stage_keys
from codesign.execute.executor import run_points
from codesign.reporting.report import write_report
from codesign.store.runfolder import check_folder, own_run_folder, resume_hint
from codesign.config.sweep import ExecutionConfig
from codesign.execute.stages import (check_data_fits, check_fits, check_n_samples, check_names, make_dataset,
                                     make_model, resolve_device)
from codesign.reporting.pareto import pareto_mask
from codesign.reporting.units import plural
from codesign.store.provenance import write_provenance
from codesign.store.results import ResultStore, atomic_write

#: the run's config, stored when its folder is created and compared on --resume
CONFIG_FILE = "config.resolved.yaml"
#: results.csv columns that every run writes first, in this order
LEAD_COLUMNS = ["method", "ratio", "accuracy", "params", "synops", "energy_j", "latency_s"]


@dataclass
class RunResult:
    """Outcome of one run: the results table (one row per design point) and the run folder."""

    table: pd.DataFrame
    run_dir: Path
    seconds: float
    summary: list[str] = field(default_factory=list)


def default_name(prefix: str) -> str:
    """'<prefix>-<UTC timestamp>' (YYYYmmdd-HHMMSS): the folder of a run, sweep, search or allocation whose
    run_name is not set."""
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


def run_name(cfg: RunConfig) -> str:
    """The run folder name: cfg.run_name, or '<method>-<dataset>-<UTC timestamp>'."""
    return cfg.run_name or default_name(f"{cfg.compression.method}-{cfg.data.dataset}")


def run_folder(output_dir: str, name: str, resume: bool, config_file: str = "config.resolved.yaml",
               config_tree: dict | None = None, ignore: tuple[str, ...] = ()) -> Path:
    """The run folder `<output_dir>/<name>`, checked but not created (codesign.store.runfolder.check_folder): raises
    ConfigError for an unsafe name, an existing folder without resume (or a missing one with resume), a resumed
    folder whose stored `config_file` differs from `config_tree` outside `ignore`, or one another process owns."""
    return check_folder(output_dir, name, resume, config_file, config_tree or {}, ignore)


def ratio_points(cfg: RunConfig) -> list[RunConfig]:
    """One design point per configured ratio."""
    return [cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"ratios": [r]})})
            for r in cfg.compression.ratios]


def summarize(df: pd.DataFrame, cfg: RunConfig, chip, seconds: float) -> list[str]:
    """Headline lines for the report: the setup and how the most compressed point compares with ratio 0."""
    lines = [f"{cfg.model.name} on {cfg.data.dataset}, T={cfg.data.n_timesteps}, {cfg.data.encoding} encoding; "
             f"{cfg.compression.method} at ratios {', '.join(f'{r:g}' for r in cfg.compression.ratios)}",
             f"chip preset {chip.name}: {chip.mesh_width}x{chip.mesh_height} tiles x {chip.cores_per_tile} cores; "
             f"{cfg.hardware.latency_model} simulation of {cfg.hardware.n_samples} test samples; run took {seconds:.0f} s"]
    base, last = df.loc[df["ratio"].idxmin()], df.loc[df["ratio"].idxmax()]
    if base["ratio"] != last["ratio"]:
        lines.append(f"ratio {last['ratio']:g} vs {base['ratio']:g}: energy x{last['energy_j'] / base['energy_j']:.3f}, "
                     f"latency x{last['latency_s'] / base['latency_s']:.3f}, params x{last['params'] / base['params']:.3f}, "
                     f"accuracy {100 * (last['accuracy'] - base['accuracy']):+.2f} points")
    return lines


def copy_artifacts(points: list[RunConfig], cache: StageCache, run_dir: Path) -> None:
    """Copy each point's lowered graph and trace from the cache to run_dir/artifacts/<method>-r<ratio>.*.npz, each
    file atomically. The lowered entry's files are checked against their hashes (StageCache.verify) and, when it
    is missing or damaged, made again (model_row, which also loads the compressed model: only then), so a resumed
    run whose points are all stored still gets its artifacts after the cache was cleared."""
    art = run_dir / "artifacts"
    art.mkdir(exist_ok=True)
    for cfg in points:
        src = _lowered_entry(cfg, cache)
        tag = f"{cfg.compression.method}-r{cfg.compression.ratios[0]:g}"
        for kind in ("graph", "trace"):
            atomic_write(art / f"{tag}.{kind}.npz", lambda tmp, f=src / f"{kind}.npz": shutil.copyfile(f, tmp))


def _lowered_entry(cfg: RunConfig, cache: StageCache) -> Path:
    """Folder of the point's verified lowered entry, made again by model_row when it is missing or damaged."""
    key = stage_keys(cfg).lowered
    try:
        cache.verify("lowered", key)
        return cache.path("lowered", key)
    except (ValueError, OSError):
        return model_row(cfg, cache)[1]


def run(cfg: RunConfig, progress: bool = True, log=print, resume: bool = False) -> RunResult:
    """Run every ratio of `cfg` and write `<output_dir>/<run>/`.

    Raises ConfigError for bad names or settings (a cache_dir that cannot be used included:
    codesign.store.cache.check_cache_dir) and hwmodels.MappingError when the network does not fit the chip; all before
    the run folder is created.
    """
    start = time.perf_counter()
    check_names(cfg)
    chip = load_chip(cfg)
    check_cache_dir(cfg.cache_dir)
    name = run_name(cfg)
    config_yaml = dump_config(cfg.model_copy(update={"run_name": name}))
    out = run_folder(cfg.output_dir, name, resume, CONFIG_FILE, yaml.safe_load(config_yaml))
    dataset = make_dataset(cfg)
    check_data_fits(dataset, cfg)
    check_n_samples(dataset, cfg)
    check_fits(make_model(cfg, dataset), dataset, cfg, chip, resolve_device(cfg.device))
    with own_run_folder(out, resume, CONFIG_FILE, config_yaml):
        df, summary = _run_points(cfg, chip, out, log, progress, start)
        write_report(out, df, config_yaml, summary, title=f"Co-design run: {out.name}")
    return RunResult(df, out, time.perf_counter() - start, summary)


def _run_points(cfg: RunConfig, chip, out: Path, log, progress: bool, start: float) -> tuple[pd.DataFrame, list[str]]:
    """Evaluate every ratio of `cfg` into the owned run folder `out`; the sorted table and its summary lines."""
    points = ratio_points(cfg)
    store = ResultStore(out, LEAD_COLUMNS)
    write_provenance(out, cfg.seed)

    def on_row(point: RunConfig, row: dict) -> None:
        log(f"{row['method']} at ratio {row['ratio']:g}: accuracy {row['accuracy']:.2%}, {row['params']:,} params, "
            f"{row['energy_j'] * 1e6:.3f} µJ, {row['latency_s'] * 1e6:.2f} µs per inference")

    log(f"{plural(len(points), 'design point')} {resume_hint(out)}; trained and compressed models are cached in "
        f"{cfg.cache_dir}")
    run_points(points, store, cfg.cache_dir, ExecutionConfig(workers=0), progress, log, on_row, chip=chip)
    copy_artifacts(points, StageCache(cfg.cache_dir), out)
    df = store.table().sort_values("ratio", kind="stable").reset_index(drop=True)
    df["pareto"] = pareto_mask(df, {"accuracy": "max", "energy_j": "min", "latency_s": "min"})
    return df, summarize(df, cfg, chip, time.perf_counter() - start)
