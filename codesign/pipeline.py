"""The `codesign run` pipeline: config -> data -> train -> compress at each ratio -> lower -> map -> simulate.

Each stage is a plain function; `run` composes them and writes the run folder atomically (everything goes to
a staging folder that is renamed into place only when the whole run succeeded).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

import hwmodels
from codesign.config import ConfigError, RunConfig, dump_config
from codesign.report import write_report
from codesign.stages import (check_names, check_fits, compress_point, make_dataset, make_model,
                             resolve_device, simulate_point, train_dense)

#: results.csv columns that every run writes first, in this order
LEAD_COLUMNS = ["method", "ratio", "accuracy", "params", "synops", "energy_j", "latency_s"]


@dataclass
class RunResult:
    """Outcome of one run: the results table (one row per design point) and the run folder."""

    table: pd.DataFrame
    run_dir: Path
    seconds: float
    summary: list[str] = field(default_factory=list)


def run_name(cfg: RunConfig) -> str:
    """The run folder name: cfg.run_name, or '<method>-<dataset>-<UTC timestamp>'."""
    if cfg.run_name:
        return cfg.run_name
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.compression.method}-{cfg.data.dataset}-{stamp}"


def prepare(cfg: RunConfig) -> tuple[hwmodels.ChipSpec, Path]:
    """Validate every name and the chip before any work; return the chip and the final run folder.

    Raises ConfigError (unknown dataset/model/method/encoding/preset/placement, bad override, run folder
    already present).
    """
    check_names(cfg)
    try:
        chip = hwmodels.load_preset(cfg.hardware.preset, cfg.hardware.overrides)
    except ValueError as exc:
        raise ConfigError(f"hardware: {exc}") from None
    out = Path(cfg.output_dir) / run_name(cfg)
    if out.exists():
        raise ConfigError(f"run_name: '{out}' already exists; choose another run_name or remove it")
    return chip, out


def design_points(cfg: RunConfig, chip, device, staging: Path, progress: bool, log) -> list[dict]:
    """Train the dense model once, then compress, lower, map and simulate it at every configured ratio."""
    dataset = make_dataset(cfg)
    model = make_model(cfg, dataset)
    check_fits(model, dataset, cfg, chip, device)
    log(f"training the dense model ({cfg.train.epochs} epochs on {cfg.data.dataset})")
    model, dense_acc = train_dense(model, dataset, cfg, device, progress)
    log(f"dense test accuracy {dense_acc:.2%}")
    rows = []
    for ratio in cfg.compression.ratios:
        log(f"{cfg.compression.method} at ratio {ratio:g}")
        small, info = compress_point(model, dataset, cfg, ratio, device, progress)
        row = simulate_point(small, info, dataset, cfg, chip, device, staging / "artifacts")
        rows.append(row)
        log(f"  accuracy {row['accuracy']:.2%}, {row['params']:,} params, "
            f"{row['energy_j'] * 1e6:.3f} uJ, {row['latency_s'] * 1e6:.2f} us per inference")
    return rows


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with LEAD_COLUMNS first."""
    df = pd.DataFrame(rows)
    rest = [c for c in df.columns if c not in LEAD_COLUMNS]
    return df[LEAD_COLUMNS + rest]


def summarize(df: pd.DataFrame, cfg: RunConfig, chip, seconds: float) -> list[str]:
    """Headline lines for the report: the setup and how the most compressed point compares with ratio 0."""
    lines = [f"{cfg.model.name} on {cfg.data.dataset}, T={cfg.data.n_timesteps}, {cfg.data.encoding} encoding; "
             f"{cfg.compression.method} at ratios {', '.join(f'{r:g}' for r in cfg.compression.ratios)}",
             f"chip preset {chip.name}: {chip.mesh_width}x{chip.mesh_height} tiles x {chip.cores_per_tile} cores; "
             f"{cfg.hardware.model} simulation of {cfg.hardware.n_samples} test samples; run took {seconds:.0f} s"]
    base, last = df.loc[df["ratio"].idxmin()], df.loc[df["ratio"].idxmax()]
    if base["ratio"] != last["ratio"]:
        lines.append(f"ratio {last['ratio']:g} vs {base['ratio']:g}: energy x{last['energy_j'] / base['energy_j']:.3f}, "
                     f"latency x{last['latency_s'] / base['latency_s']:.3f}, params x{last['params'] / base['params']:.3f}, "
                     f"accuracy {100 * (last['accuracy'] - base['accuracy']):+.2f} points")
    return lines


def write_outputs(staging: Path, name: str, df: pd.DataFrame, cfg: RunConfig, summary: list[str]) -> None:
    """results.csv, config.resolved.yaml (with the run name filled in), report.md/html and figures."""
    df.to_csv(staging / "results.csv", index=False)
    config_yaml = dump_config(cfg.model_copy(update={"run_name": name}))
    (staging / "config.resolved.yaml").write_text(config_yaml)
    write_report(staging, df, config_yaml, summary, title=f"Co-design run: {name}")


def run(cfg: RunConfig, progress: bool = True, log=print) -> RunResult:
    """Run every design point of `cfg` and write `<output_dir>/<run>/` atomically.

    Raises ConfigError for bad names or settings (before any work is done) and hwmodels.MappingError when a
    network does not fit the chip; in every failure case nothing is left in the output folder.
    """
    start = time.perf_counter()
    chip, out = prepare(cfg)
    device = resolve_device(cfg.device)
    staging = out.parent / f".{out.name}.tmp-{int(time.time() * 1e3)}"
    staging.mkdir(parents=True)
    try:
        rows = design_points(cfg, chip, device, staging, progress, log)
        df = results_table(rows)
        summary = summarize(df, cfg, chip, time.perf_counter() - start)
        write_outputs(staging, out.name, df, cfg, summary)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return RunResult(df, out, time.perf_counter() - start, summary)
