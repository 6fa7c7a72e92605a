"""`codesign search`: optuna multi-objective search (NSGA-II or TPE) with the simulator in the loop.

Objectives come from each design point's results row (default: accuracy up, energy and latency per inference
down); constraints (accuracy >= x, fits on N chips) are set on each trial (Trial.set_constraint), which both
samplers read. The study lives in an RDB (SQLite in the run folder by default) and every finished point is
stored durably, so a killed search resumes without losing or repeating a point: a trial that was running when the
process died is told its stored result if its point finished, else failed and re-enqueued with the same
parameters. Trials run serially or in parallel on dask (codesign.execute.search_loop, by the spec's `execution`
section, as sweeps do).
"""
from __future__ import annotations

import decimal
import math
import os
import time
from pathlib import Path

import numpy as np
import optuna
import yaml

from codesign.store.cache import check_cache_dir
from codesign.config.run import ConfigError, quote, shown_url
from hwmodels.npzfile import quote_path
from codesign.execute.executor import check_scheduler
from codesign.reporting.pareto import PARETO_ON, pareto_mask
from codesign.execute.run import LEAD_COLUMNS, RunResult, run_folder
from codesign.reporting.report import write_report
from codesign.config.sweep import Range, SweepSpec
from codesign.store.provenance import write_provenance
from codesign.store.runfolder import own_run_folder, resume_hint
from codesign.execute.search_loop import run_trials
from codesign.execute.search_trials import point_for, recover
from codesign.store.results import ResultStore, atomic_write
from codesign.execute.run import default_name
from codesign.execute.sweep import RESUME_FREE_KEYS, resolved_spec_yaml, validate_points
from codesign.reporting.units import plural

STUDY_NAME = "codesign"


def make_sampler(spec: SweepSpec, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """NSGA-II or TPE, seeded; both read the constraints each trial sets (Trial.set_constraint, optuna >= 5).
    trials_before: trials a resumed study already holds; the seed is search.seed + trials_before, so a resumed
    search does not draw its first trials again (with search.seed itself it repeated them: random startup
    trials come from the seeded generator). A resumed search is reproducible, not the same as an uninterrupted
    one."""
    s = spec.search
    seed = s.seed + trials_before
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=seed)
    # constant_liar: trials still running (parallel search) count as bad, so parallel asks spread out
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


#: value types optuna can store as categorical choices
CHOICE_TYPES = (type(None), bool, int, float, str)


def check_range(field: str, dist: Range) -> None:
    """A numeric range optuna can sample: finite bounds with low < high; a step > 0 that divides high - low (and
    whole numbers when `integer`); `log: true` only with low > 0 (>= 1 for integers) and without a step.
    Raises ConfigError naming `field` (e.g. search.space.compression.ratio) and what it accepts."""
    for name in ("low", "high", "step"):
        v = getattr(dist, name)
        if v is not None and not math.isfinite(v):
            raise ConfigError(f"{field}.{name}: {v} is not a finite number")
    if dist.low >= dist.high:
        raise ConfigError(f"{field}: low {dist.low:g} must be < high {dist.high:g}")
    if dist.integer:
        for name in ("low", "high", "step"):
            v = getattr(dist, name)
            if v is not None and not float(v).is_integer():
                raise ConfigError(f"{field}.{name}: {v:g} is not a whole number (integer: true needs whole low, "
                                  "high and step)")
    if dist.step is not None:
        if dist.step <= 0:
            raise ConfigError(f"{field}.step: {dist.step:g} must be > 0 (or leave step out for a continuous range)")
        if dist.log and not (dist.integer and dist.step == 1):
            raise ConfigError(f"{field}: step and log: true cannot be combined; use log: true without a step, or "
                              "a step with log: false")
        span = decimal.Decimal(str(dist.high)) - decimal.Decimal(str(dist.low))
        if span % decimal.Decimal(str(dist.step)) != 0:
            raise ConfigError(f"{field}.step: {dist.step:g} does not divide high - low = {float(span):g}; choose "
                              "high = low + a multiple of step")
    if dist.log and (dist.low < 1 if dist.integer else dist.low <= 0):
        need = ">= 1 (integer: true)" if dist.integer else "> 0"
        raise ConfigError(f"{field}: log: true needs low {need}, got low {dist.low:g}; raise low or set log: false")


def check_choices(field: str, choices: list) -> None:
    """A non-empty list of choices optuna can store (numbers, strings, booleans or null). Raises ConfigError
    naming `field` (e.g. search.space.compression.ratio) and the accepted values."""
    if not choices:
        raise ConfigError(f"{field}: no choices; give a non-empty list (e.g. [0.0, 0.5]) or a range "
                          "{low: 0, high: 0.9}")
    for c in choices:
        if not isinstance(c, CHOICE_TYPES):
            raise ConfigError(f"{field}: choice {quote(c)} is a {type(c).__name__}; choices must be numbers, "
                              "strings, booleans or null")
        if isinstance(c, float) and not math.isfinite(c):
            raise ConfigError(f"{field}: choice {c} is not a finite number")


def check_space(spec: SweepSpec) -> None:
    """`search.space` is non-empty, every axis is a valid list of choices or range (check_choices, check_range),
    and every choice and both ends of every range give a valid design point. Raises ConfigError naming
    search.space.<axis> before anything is created."""
    if not spec.search.space:
        raise ConfigError("search.space: empty; give at least one axis, e.g. compression.ratio: {low: 0, high: 0.9}")
    pts = []
    for key, dist in spec.search.space.items():
        field = f"search.space.{key}"
        if isinstance(dist, Range):
            check_range(field, dist)
            choices = [int(dist.low), int(dist.high)] if dist.integer else [dist.low, dist.high]
        else:
            check_choices(field, dist)
            choices = dist
        for c in choices:
            try:
                pts.append(({key: c}, point_for(spec, {key: c})))
            except ConfigError as exc:
                raise ConfigError(f"{field}: {quote(c)} gives an invalid design point: {exc}") from None
    validate_points(pts)


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
    # every check before the run folder is created (a failed start leaves nothing that blocks a retry)
    name = spec.run_name or default_name("search")
    check_objectives(spec)
    storage_url = check_storage(spec.search.storage, Path(spec.output_dir) / name)
    check_space(spec)
    check_scheduler(spec.execution)
    check_cache_dir(spec.cache_dir)
    spec_yaml = resolved_spec_yaml(spec.model_copy(update={"run_name": name}))  # the folder's name on record
    out = run_folder(spec.output_dir, name, resume, "search.yaml", yaml.safe_load(spec_yaml), RESUME_FREE_KEYS)
    storage = storage_url or f"sqlite:///{Path(out).resolve() / 'study.db'}"
    check_study_db(storage, spec, resume)
    with own_run_folder(out, resume, "search.yaml", spec_yaml):
        log(f"search of {spec.search.n_trials} trials {resume_hint(out)}")
        store = ResultStore(out, LEAD_COLUMNS)
        write_provenance(out, spec.search.seed)
        study = _open_study(spec, storage, resume)
        try:
            recover(study, log)
        except (optuna.exceptions.OptunaError, sqlalchemy_errors()) as exc:
            raise ConfigError(f"search.storage: cannot read the study in {quote(shown_url(storage))}: "
                              f"{_first_line(exc)}") from None
        run_trials(study, spec, store, log, on_trial)
        df = store.table()
        df["pareto"], df[PARETO_ON] = feasible_front(spec, df), ",".join(dict(spec.search.objectives))
        atomic_write(out / "pareto.csv", lambda p: df[df["pareto"]].to_csv(p, index=False))
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)  # >= n_trials after a resume
        summary = [f"{spec.search.sampler} search, {done} trials over {', '.join(spec.search.space)}",
                   f"{plural(int(df['pareto'].sum()), 'point')} on the feasible Pareto front "
                   f"({', '.join(f'{k} {v}' for k, v in spec.search.objectives.items())})",
                   f"search took {time.perf_counter() - start:.0f} s; study: {shown_url(storage)}"]
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
        raise ConfigError(f"search.storage: a study named {STUDY_NAME!r} already exists in "
                          f"{quote(shown_url(storage))}; pass --resume or use another storage") from None
    except (ValueError, RuntimeError, optuna.exceptions.OptunaError, sqlalchemy_errors()) as exc:
        raise ConfigError(f"search.storage: cannot open the study in {quote(shown_url(storage))}: "
                          f"{str(exc).splitlines()[0][:160]}") from None
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE if s == "max" else
                                  optuna.study.StudyDirection.MINIMIZE for s in spec.search.objectives.values()]:
        raise ConfigError(f"search.storage: the study in {quote(shown_url(storage))} has other objective directions")
    if resume and study.trials:
        study.sampler = make_sampler(spec, len(study.trials))
    return study


def sqlalchemy_errors() -> type[Exception]:
    """sqlalchemy's base error class (optuna's RDB storage raises it for a corrupted database)."""
    import sqlalchemy.exc
    return sqlalchemy.exc.SQLAlchemyError


def check_storage(url: str | None, run_dir: Path | None = None) -> str | None:
    """`search.storage`, an RDB URL whose database driver the spec's validator found installed (codesign.config.
    sweep.check_storage_url), when, for a SQLite file, whose folder exists and is
    writable, or is the run folder `run_dir` about to be created (None: the default SQLite file in the run
    folder). Raises ConfigError naming search.storage before any folder is created."""
    if url is None:
        return None
    db = sqlite_file(url)
    if db is not None:
        folder = db.parent
        if run_dir is not None and not folder.exists() and folder.resolve() == Path(run_dir).resolve():
            return url  # the run folder itself, made before the study is opened
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(f"search.storage: the folder {quote_path(folder)} of {quote(url)} {what}; create it "
                              "or give a SQLite file in an existing folder, e.g. sqlite:////abs/path/study.db")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"search.storage: the folder {quote_path(folder)} of {quote(url)} is not writable "
                              "(SQLite writes its journal beside the database); choose a writable folder")
    return url


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (relative paths are relative to the working folder, as for
    sqlalchemy); None for another database, an in-memory SQLite one or a `file:` URI."""
    import sqlalchemy.engine
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # not a URL at all: check_storage says so
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(parsed.database)


#: tables every optuna RDB study database has (optuna.storages._rdb.models; used when that module moves)
OPTUNA_TABLES = {"studies": ("study_id", "study_name"),
                 "study_directions": ("study_direction_id", "direction", "study_id", "objective"),
                 "trials": ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"),
                 "trial_params": ("param_id", "trial_id", "param_name", "param_value", "distribution_json"),
                 "trial_values": ("trial_value_id", "trial_id", "objective", "value", "value_type"),
                 "version_info": ("version_info_id", "schema_version", "library_version")}


def optuna_tables() -> dict[str, tuple[str, ...]]:
    """Table -> column names of optuna's RDB schema (from the installed optuna when it exposes its models)."""
    try:
        from optuna.storages._rdb import models
        return {name: tuple(c.name for c in t.columns) for name, t in models.BaseModel.metadata.tables.items()}
    except (ImportError, AttributeError):
        return dict(OPTUNA_TABLES)


def check_study_db(storage: str, spec: SweepSpec, resume: bool) -> None:
    """An existing SQLite file of `storage` is an optuna study database that this search can open: a readable,
    intact SQLite file (or an empty one) with optuna's tables and columns, without a study named STUDY_NAME
    unless `resume`, and with the spec's objective directions when it has one. Reads only (optuna would add its
    tables to a foreign database); other databases are checked when the study is opened. Raises ConfigError
    naming search.storage (the run folder's study.db by default) before the run folder is touched."""
    import sqlite3
    db = sqlite_file(storage)
    if db is None or not os.path.lexists(db):
        return
    where = f"search.storage: {quote_path(db)}"
    if db.is_dir():
        raise ConfigError(f"{where} is a folder, not a SQLite database file; remove it or set search.storage to "
                          "another file")
    if not db.is_file():
        raise ConfigError(f"{where} is not a regular file (a SQLite database file is needed)")
    if not os.access(db, os.R_OK | os.W_OK):
        raise ConfigError(f"{where} is not readable and writable; fix its permissions or use another file")
    not_optuna = f"{where} is not an optuna study database"
    try:
        # mode=rw: never creates a file; a journal left by a killed search is rolled back as optuna would
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ConfigError(f"{where}: cannot open it ({_first_line(exc)})") from None
    try:
        check = con.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise ConfigError(f"{not_optuna} (SQLite integrity check: {_first_line(check[0][0])}); restore it or "
                              "remove it to start a new study")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return  # an empty SQLite file: optuna creates its tables
        expected = optuna_tables()
        lacking = [t for t in ("studies", "trials") if t not in tables]
        if lacking:
            shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
            raise ConfigError(f"{not_optuna} (no table {lacking[0]}; its tables: {shown}); remove it or set "
                              "search.storage to another file")
        for table in sorted(tables & set(expected)):
            have = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
            missing = [c for c in expected[table] if c not in have]
            if missing:
                raise ConfigError(f"{not_optuna} (its table {table} lacks the column {missing[0]}); remove it or "
                                  "set search.storage to another file")
        row = con.execute("SELECT study_id FROM studies WHERE study_name = ?", (STUDY_NAME,)).fetchone()
        if row is None:
            return
        if not resume:
            raise ConfigError(f"search.storage: a study named {STUDY_NAME!r} already exists in {quote_path(db)}; "
                              "pass --resume or use another storage")
        if "study_directions" in tables:
            stored = [r[0] for r in con.execute(
                "SELECT direction FROM study_directions WHERE study_id = ? ORDER BY objective", row)]
            wanted = ["MAXIMIZE" if v == "max" else "MINIMIZE" for v in spec.search.objectives.values()]
            if stored and stored != wanted:
                raise ConfigError(f"search.storage: the study in {quote_path(db)} has the objective directions "
                                  f"{', '.join(d.lower() for d in stored)}, not "
                                  f"{', '.join(d.lower() for d in wanted)} of search.objectives")
    except sqlite3.Error as exc:
        raise ConfigError(f"{not_optuna} ({_first_line(exc)}); restore it or remove it to start a new study"
                          ) from None
    finally:
        con.close()


def _first_line(value: object, limit: int = 160) -> str:
    text = str(value).strip()
    return (text.splitlines() or [""])[0][:limit]


def objective_columns() -> set[str]:
    """Numeric columns every results row has (codesign.execute.evaluate + hwmodels.SimResult.as_row): accuracy is
    the compressed float model's on the test split, accuracy_hw the chip's (the b-bit model the hardware runs,
    hardware.weight_fit, on the simulated samples): the one to search weight bits with."""
    from hwmodels.energy.costs import ENERGY_COMPONENTS
    from hwmodels.result import CI_METRICS, PERCENTILES
    cols = {"accuracy", "accuracy_hw", "params", "synops", "energy_j", "latency_s", "energy_dynamic_j",
            "synops_structural", "synops_nonzero", "spikes", "messages", "hops", "cores_used", "tiles_used", "hardware_steps",
            "static_power_w", "memory_bits", "model_bits"}
    cols |= {f"energy_{c}_j" for c in ENERGY_COMPONENTS} | {f"latency_p{q}_s" for q in PERCENTILES}
    cols |= {f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high")}
    return cols


def check_objectives(spec: SweepSpec) -> None:
    """At least one objective, and every objective names a numeric column that every results row has. Raises
    ConfigError naming search.objectives and the accepted columns."""
    accepted = objective_columns()
    if not spec.search.objectives:
        raise ConfigError("search.objectives: empty; give at least one results column with max or min, e.g. "
                          f"{{accuracy: max, energy_j: min}}; accepted columns: {', '.join(sorted(accepted))}")
    for col in spec.search.objectives:
        if col not in accepted:
            raise ConfigError(f"search.objectives: {quote(col)} is not a results column; accepted: "
                              f"{', '.join(sorted(accepted))}")
