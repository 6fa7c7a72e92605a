"""`codesign search`: optuna multi-objective search (NSGA-II or TPE) with the simulator in the loop.

Objectives come from each design point's results row (default: accuracy up, energy and latency per inference
down); constraints (accuracy >= x, fits on N chips) are set on each trial (Trial.set_constraint), which both
samplers read. The study lives in an RDB (SQLite in the run folder by default) and every finished point is
stored durably, so a killed search resumes without losing or repeating a point: a trial that was running when the
process died is told its stored result if its point finished, else failed and re-enqueued with the same
parameters. Trials run serially or in parallel on dask (codesign.search_loop, by the spec's `execution`
section, as sweeps do).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import optuna
import yaml

from codesign.config import ConfigError, RunConfig, quote
from codesign.evaluate import evaluate_point, stage_keys
from codesign.executor import check_scheduler
from codesign.pareto import pareto_mask
from codesign.pipeline import LEAD_COLUMNS, RunResult, run_folder
from codesign.report import write_report
from codesign.spec import Range, SweepSpec, point_config
from codesign.provenance import write_provenance
from codesign.runfolder import own_run_folder
from codesign.store import ResultStore, atomic_write
from codesign.sweep import RESUME_FREE_KEYS, default_name, resolved_spec_yaml, series_label, validate_points

STUDY_NAME = "codesign"


def _suggest(trial: optuna.Trial, key: str, dist) -> object:
    """One parameter value from a list (categorical) or a Range."""
    if isinstance(dist, Range):
        if dist.integer:
            return trial.suggest_int(key, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log)
        return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(key, dist)


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """NSGA-II or TPE, seeded; both read the constraints each trial sets (Trial.set_constraint, optuna >= 5)."""
    s = spec.search
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=s.seed)
    # constant_liar: trials still running (parallel search) count as bad, so parallel asks spread out
    return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, constant_liar=True)


def point_for(spec: SweepSpec, values: dict) -> RunConfig:
    """The design point of a trial; a max_chips constraint becomes the chip override n_chips."""
    values = dict(values)
    if spec.search.max_chips is not None:
        values.setdefault("hardware.overrides.n_chips", spec.search.max_chips)
    return point_config(spec, values)


def objective_values(spec: SweepSpec, row: dict) -> list[float]:
    """The row's objectives in spec order (a point that does not fit gets inf for minimised objectives)."""
    out = []
    for col, sense in spec.search.objectives.items():
        v = row.get(col, np.nan)
        if v is None or not np.isfinite(v):
            v = -np.inf if sense == "max" else np.inf
        out.append(float(v))
    return out


def constraint_values(spec: SweepSpec, row: dict) -> dict[str, float]:
    """{"accuracy": min_accuracy - accuracy, "fits": 0 if the point fits else 1} (<= 0 satisfied)."""
    s = spec.search
    acc_gap = (s.min_accuracy - row["accuracy"]) if s.min_accuracy is not None else 0.0
    return {"accuracy": float(acc_gap), "fits": 0.0 if row.get("fits", True) else 1.0}


def _validate_space(spec: SweepSpec) -> None:
    """Every categorical choice and both ends of every range give a valid design point."""
    if not spec.search.space:
        raise ConfigError("search.space: empty; give at least one axis, e.g. compression.ratio: {low: 0, high: 0.9}")
    pts = []
    for key, dist in spec.search.space.items():
        choices = [dist.low, dist.high] if isinstance(dist, Range) else dist
        if isinstance(dist, Range) and dist.low >= dist.high:
            raise ConfigError(f"search.space.{key}: low {dist.low} must be < high {dist.high}")
        pts += [({key: c}, point_for(spec, {key: c})) for c in choices]
    validate_points(pts)


def _recover(study: optuna.Study, log) -> None:
    """Settle trials left RUNNING by a killed process: fail them and re-enqueue their parameters.

    A re-enqueued trial whose point had finished finds its row in the store and completes without evaluating
    it again (run_trial), so no finished point is lost or repeated.
    """
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
        log(f"resume: trial {t.number} was running when the search stopped; re-enqueued its parameters")


@dataclasses.dataclass
class Asked:
    """A trial asked from the study with its parameter values, design point and point id."""

    trial: optuna.Trial
    values: dict
    cfg: RunConfig
    point_id: str


def ask_point(study: optuna.Study, spec: SweepSpec) -> Asked:
    """Ask one trial and build its design point."""
    trial = study.ask()
    values = {k: _suggest(trial, k, d) for k, d in spec.search.space.items()}
    cfg = point_for(spec, values)
    pid = stage_keys(cfg).point
    trial.set_user_attr("point_id", pid)
    return Asked(trial, values, cfg, pid)


def store_row(asked: Asked, row: dict, store: ResultStore) -> dict:
    """Append the evaluated row of `asked` (with its axis values, series label and trial number) to `store`."""
    stored = {**asked.values, "series": series_label(asked.values, asked.cfg), "trial": asked.trial.number, **row}
    store.append(stored)
    return stored


def tell_point(study: optuna.Study, spec: SweepSpec, asked: Asked, stored: dict, log) -> None:
    """Set the trial's constraints from its stored row and tell the study its objective values."""
    for name, value in constraint_values(spec, stored).items():
        asked.trial.set_constraint(name, value)
    study.tell(asked.trial, objective_values(spec, stored))
    log(f"trial {asked.trial.number}: {asked.values} -> accuracy {stored['accuracy']:.2%}, "
        f"energy {stored.get('energy_j', float('nan')) * 1e6:.3f} uJ, "
        f"latency {stored.get('latency_s', float('nan')) * 1e6:.2f} us")


def run_trial(study: optuna.Study, spec: SweepSpec, store: ResultStore, log) -> dict:
    """Ask one trial, evaluate its point (or reuse the stored row of an identical point), tell the study."""
    asked = ask_point(study, spec)
    stored = {r["point_id"]: r for r in store.rows}.get(asked.point_id)
    if stored is None:
        row = evaluate_point(asked.cfg, spec.cache_dir, details_root=store.run_dir / "points")
        stored = store_row(asked, row, store)
    tell_point(study, spec, asked, stored, log)
    return stored


def complete_trials(study: optuna.Study) -> int:
    """Number of COMPLETE trials of the study."""
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def feasible_front(spec: SweepSpec, df) -> np.ndarray:
    """Pareto mask over the feasible rows (fits, and accuracy >= min_accuracy when set)."""
    ok = df["fits"].astype(bool) if "fits" in df.columns else np.ones(len(df), bool)
    if spec.search.min_accuracy is not None:
        ok &= df["accuracy"] >= spec.search.min_accuracy
    mask = np.zeros(len(df), bool)
    if ok.any():
        mask[np.flatnonzero(ok)] = pareto_mask(df[ok].reset_index(drop=True), dict(spec.search.objectives))
    return mask


def search(spec: SweepSpec, resume: bool = False, log=print, on_trial=None) -> RunResult:
    """Run (or resume) the search of `spec` and write `<output_dir>/<run>/` with results, front and report.
    on_trial(complete trials, n_trials) is called after each trial (e.g. for a progress bar)."""
    start = time.perf_counter()
    _validate_space(spec)
    check_objectives(spec)
    storage_url = check_storage(spec.search.storage)
    check_scheduler(spec.execution)
    spec_yaml = resolved_spec_yaml(spec)
    out = run_folder(spec.output_dir, spec.run_name or default_name("search"), resume, "search.yaml",
                     yaml.safe_load(spec_yaml), RESUME_FREE_KEYS)
    with own_run_folder(out, resume, "search.yaml", spec_yaml):
        store = ResultStore(out, LEAD_COLUMNS)
        write_provenance(out, spec.search.seed)
        storage = storage_url or f"sqlite:///{Path(out).resolve() / 'study.db'}"
        study = _open_study(spec, storage, resume)
        _recover(study, log)
        from codesign.search_loop import run_trials
        run_trials(study, spec, store, log, on_trial)
        df = store.table()
        df["pareto"] = feasible_front(spec, df)
        atomic_write(out / "pareto.csv", lambda p: df[df["pareto"]].to_csv(p, index=False))
        summary = [f"{spec.search.sampler} search, {spec.search.n_trials} trials over {', '.join(spec.search.space)}",
                   f"{int(df['pareto'].sum())} points on the feasible Pareto front "
                   f"({', '.join(f'{k} {v}' for k, v in spec.search.objectives.items())})",
                   f"search took {time.perf_counter() - start:.0f} s; study: {storage}"]
        write_report(out, df, "", summary, title=f"Search: {out.name}", config_file="search.yaml")
    return RunResult(df, Path(out), time.perf_counter() - start, summary)


def _open_study(spec: SweepSpec, storage: str, resume: bool) -> optuna.Study:
    """Create (or with resume, load) the study; a corrupted or foreign study DB is a ConfigError naming it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if s == "max" else "minimize" for s in spec.search.objectives.values()]
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=resume,
                                    directions=directions, sampler=make_sampler(spec))
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"search.storage: a study named {STUDY_NAME!r} already exists in {quote(storage)}; "
                          "pass --resume or use another storage") from None
    except (ValueError, RuntimeError, optuna.exceptions.OptunaError, sqlalchemy_errors()) as exc:
        raise ConfigError(f"search.storage: cannot open the study in {quote(storage)}: "
                          f"{str(exc).splitlines()[0][:160]}") from None
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE if s == "max" else
                                  optuna.study.StudyDirection.MINIMIZE for s in spec.search.objectives.values()]:
        raise ConfigError(f"search.storage: the study in {quote(storage)} has other objective directions")
    return study


def sqlalchemy_errors() -> type[Exception]:
    """sqlalchemy's base error class (optuna's RDB storage raises it for a corrupted database)."""
    import sqlalchemy.exc
    return sqlalchemy.exc.SQLAlchemyError


def check_storage(url: str | None) -> str | None:
    """`search.storage` when it is an RDB URL whose database driver is installed (None: the default SQLite file
    in the run folder). Raises ConfigError naming search.storage before any folder is created."""
    if url is None:
        return None
    import sqlalchemy.engine
    try:
        sqlalchemy.engine.make_url(url).get_dialect()
    except Exception as exc:  # sqlalchemy raises ArgumentError / NoSuchModuleError / ImportError
        raise ConfigError(f"search.storage: {quote(url)} is not a usable database URL ({type(exc).__name__}); "
                          "e.g. sqlite:////abs/path/study.db or postgresql://user@host/db") from None
    return url


def objective_columns() -> set[str]:
    """Numeric columns every results row has (codesign.evaluate + hwmodels.SimResult.as_row)."""
    from hwmodels.energy import ENERGY_COMPONENTS
    from hwmodels.result import CI_METRICS, PERCENTILES
    cols = {"accuracy", "params", "synops", "energy_j", "latency_s", "energy_dynamic_j", "synops_structural",
            "synops_nonzero", "spikes", "messages", "hops", "cores_used", "tiles_used", "hardware_steps",
            "static_power_w", "memory_bits", "model_bits"}
    cols |= {f"energy_{c}_j" for c in ENERGY_COMPONENTS} | {f"latency_p{q}_s" for q in PERCENTILES}
    cols |= {f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high")}
    return cols


def check_objectives(spec: SweepSpec) -> None:
    """Every objective names a numeric column that every results row has. Raises ConfigError naming
    search.objectives and the accepted columns."""
    accepted = objective_columns()
    for col in spec.search.objectives:
        if col not in accepted:
            raise ConfigError(f"search.objectives: {quote(col)} is not a results column; accepted: "
                              f"{', '.join(sorted(accepted))}")
