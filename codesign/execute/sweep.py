"""`codesign sweep`: a grid over the axes of a sweep spec, evaluated serially or on dask, resumable."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from codesign.store.cache import check_cache_dir
from codesign.config.run import ConfigError, RunConfig, quote
from codesign.execute.executor import check_scheduler, run_points
from codesign.reporting.pareto import CHIP_MODEL_AXES, PARETO_ON, pareto_mask
from codesign.execute.evaluate import load_chip, stage_keys
from codesign.execute.run import LEAD_COLUMNS, RunResult, default_name, run_folder
from codesign.reporting.report import write_report
from codesign.reporting.units import plural, point_outcome
from codesign.store.runfolder import own_run_folder, resume_hint
from codesign.config.sweep import SweepSpec, base_tree, grid_points
from codesign.execute.stages import (check_data_fits, check_method_ratios, check_n_samples, check_names,
                                     make_dataset)
from codesign.store.provenance import write_provenance
from codesign.store.results import ResultStore

#: spec keys a resumed sweep or search may change (where and how long it runs, not what a point is; run_name:
#: the folder resumed is the one it names, and folders started without one recorded null)
RESUME_FREE_KEYS = ("execution.", "search.n_trials", "run_name")


def series_label(values: dict, cfg: RunConfig) -> str:
    """Name of the curve a point belongs to: its method plus every non-ratio axis value."""
    parts = [cfg.compression.method]
    parts += [f"{k.split('.')[-1]}={v}" for k, v in values.items()
              if k not in ("compression.ratio", "compression.method")]
    return " | ".join(parts)


def _labels(values: dict, cfg: RunConfig, seeded: bool) -> dict:
    """The columns a point's row gets from its axis values (the ratio has its own column) and its series; when
    some grid sweeps the seed (`seeded`), a point of a grid without that axis records the base seed it ran."""
    out = {k: v for k, v in values.items() if k != "compression.ratio"}
    if seeded:
        out.setdefault("seed", cfg.seed)
    return {**out, "series": series_label(values, cfg)}


def validate_points(points: list[tuple[dict, RunConfig]]) -> None:
    """Names and chip of every point exist (before any work). Raises ConfigError naming the axis value."""
    seen, test_sizes = set(), {}
    for values, cfg in points:
        try:
            check_method_ratios(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (at axis values {quote(values)})") from None
        # every setting but the ratio (checked above for each point): points that differ only there share checks
        key = cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"ratios": [0.0]})}
                             ).model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        try:
            check_names(cfg)
            load_chip(cfg)
            _check_samples(cfg, test_sizes)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (at axis values {quote(values)})") from None


def resolved_spec_yaml(spec: SweepSpec) -> str:
    """The spec as YAML with its base config resolved inline (a base file edited later cannot change what a
    resumed run compares against)."""
    tree = spec.model_dump(mode="json")
    tree["base"] = base_tree(spec)
    return yaml.safe_dump(tree, sort_keys=False)


def _check_samples(cfg: RunConfig, test_sizes: dict) -> None:
    """hardware.n_samples fits the point's test set and data.encoding / n_timesteps fit the dataset (datasets loaded
    once per distinct data section and seed)."""
    key = (cfg.data.model_dump_json(), cfg.seed)
    if key not in test_sizes:
        test_sizes[key] = make_dataset(cfg)
    check_n_samples(test_sizes[key], cfg)
    check_data_fits(test_sizes[key], cfg)


def sweep_front_accuracy(spec: SweepSpec, df) -> str:
    """The accuracy a sweep's Pareto front is chosen on: accuracy_hw (the b-bit model on the chip's samples) when an
    axis changes only the model the chip runs (CHIP_MODEL_AXES: every weight_bits point has the float model's
    accuracy) and every point has it, else accuracy (the float model's, on the whole test split)."""
    hw = "accuracy_hw" in df and df["accuracy_hw"].notna().all()
    return "accuracy_hw" if hw and set(spec.axis_names) & set(CHIP_MODEL_AXES) else "accuracy"


def sweep(spec: SweepSpec, resume: bool = False, progress: bool = False, log=print,
          on_point=None) -> RunResult:
    """Evaluate every grid point of `spec` into `<output_dir>/<run_name>/` and write its report.

    on_point(points stored, total points) is called after each stored point (e.g. for a progress bar).

    Raises ConfigError (bad spec, axis values, a cache_dir that cannot be used (codesign.store.cache.check_cache_dir),
    or an existing run folder without resume) before any work and before the run folder is created.
    """
    start = time.perf_counter()
    points = grid_points(spec)
    check_cache_dir(spec.cache_dir)
    for values, cfg in points:  # (a search sets its ratio per trial; a sweep's points carry theirs)
        if len(cfg.compression.ratios) != 1:
            raise ConfigError(f"compression.ratios: a design point needs exactly one ratio, got "
                              f"{cfg.compression.ratios} (sweep ratios with the axis compression.ratio; at axis "
                              f"values {quote(values)})")
    validate_points(points)
    check_scheduler(spec.execution)
    name = spec.run_name or default_name("sweep")
    spec_yaml = resolved_spec_yaml(spec.model_copy(update={"run_name": name}))  # the folder's name on record
    out = run_folder(spec.output_dir, name, resume, "sweep.yaml", yaml.safe_load(spec_yaml), RESUME_FREE_KEYS)
    seeded = any("seed" in values for values, _ in points)
    labels = [_labels(values, cfg, seeded) for values, cfg in points]
    with own_run_folder(out, resume, "sweep.yaml", spec_yaml):
        store = ResultStore(out, LEAD_COLUMNS)
        write_provenance(out, points[0][1].seed)

        def on_row(cfg: RunConfig, row: dict) -> None:
            if on_point is not None:
                on_point(len(store.rows), len(points))
            log(f"[{len(store.rows)}/{len(points)}] {row.get('series', row['method'])} ratio {row['ratio']:g}: "
                f"{point_outcome(row)}")

        log(f"{plural(len(points), 'design point')} {resume_hint(out)}")
        run_points([c for _, c in points], store, spec.cache_dir, spec.execution, progress, log, on_row, labels)
        df = grid_order(store.table(), [cfg for _, cfg in points])
        accuracy = sweep_front_accuracy(spec, df)
        objectives = {accuracy: "max", "energy_j": "min", "latency_s": "min"}
        df["pareto"], df[PARETO_ON] = pareto_mask(df, objectives), ",".join(objectives)
        summary = [f"{len(df)} design points over axes: {', '.join(spec.axis_names) or 'ratio only'}",
                   f"{int(df['pareto'].sum())} on the {accuracy} / energy / latency Pareto front",
                   f"sweep took {time.perf_counter() - start:.0f} s"]
        write_report(out, df, "", summary, title=f"Sweep: {out.name}", config_file="sweep.yaml")
    return RunResult(df, Path(out), time.perf_counter() - start, summary)


def grid_order(df, cfgs: list[RunConfig]):
    """The results `df` with its rows in the order of the grid points `cfgs` (by point id), whatever order they
    finished in: a dask sweep stores rows as its workers finish them, and its results.csv and report (whose
    highlighted points follow row order) must equal the serial run's. Rows of no grid point go last."""
    if df.empty or "point_id" not in df.columns:
        return df
    order: dict[str, int] = {}
    for i, cfg in enumerate(cfgs):
        order.setdefault(stage_keys(cfg).point, i)
    rank = df["point_id"].map(order).fillna(len(order))
    return df.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
