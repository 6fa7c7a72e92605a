"""One trial of `codesign search`: ask the study for parameter values, build the design point, evaluate it (or
reuse an identical stored point), store the row and tell the study its objectives and constraints; and settling
trials a killed process left running. Shared by the serial and the dask trial loops (codesign.execute.search_loop).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import optuna

from codesign.config.run import RunConfig
from codesign.execute.evaluate import evaluate_point, stage_keys
from codesign.config.sweep import Range, SweepSpec, point_config
from codesign.store.results import ResultStore
from codesign.execute.sweep import series_label
from codesign.reporting.units import point_outcome


def suggest(trial: optuna.Trial, key: str, dist) -> object:
    """One parameter value from a list (categorical) or a Range."""
    if isinstance(dist, Range):
        if dist.integer:
            return trial.suggest_int(key, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log)
        return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(key, dist)


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


def recover(study: optuna.Study, log) -> None:
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
    values = {k: suggest(trial, k, d) for k, d in spec.search.space.items()}
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
    log(f"trial {asked.trial.number}: {asked.values} -> {point_outcome(stored)}")


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
