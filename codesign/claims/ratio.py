"""The numbers behind a claim's verdict (codesign.claims.verdicts): the values of the claim's metric on each side of a
comparison (per sample, from the points' samples.csv, or one value per point), whether both sides were measured
on the same inputs, and the ratio of their means with a seeded percentile-bootstrap confidence interval
(hwmodels.stats.ratio_ci), judged against the claim's relation and factor.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hwmodels.stats import ratio_ci

RELATIONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: results columns that are means over the simulated samples (plus every energy_<component>_j): their values per
#: sample come from the point's samples table; every other metric is one deterministic number per point
SAMPLE_METRICS = ("energy_j", "energy_dynamic_j", "latency_s", "synops", "spikes", "messages", "hops",
                  "accuracy_hw")
#: samples table of a point (hwmodels.SimResult.samples as read back), or None when it has none
SamplesOf = Callable[[str], "pd.DataFrame | None"]


def per_sample(metric: str) -> bool:
    """True when `metric` is a mean over samples (SAMPLE_METRICS or an energy_<component>_j column)."""
    return metric in SAMPLE_METRICS or (metric.startswith("energy_") and metric.endswith("_j"))


def sample_values(table: pd.DataFrame | None, metric: str) -> np.ndarray | None:
    """Values of `metric` per sample (float (n_samples,)) from a samples table: its own column; accuracy_hw from
    `correct` (1.0 / 0.0); energy_dynamic_j as energy_j - energy_static_j. None when the table cannot give it."""
    if table is None or table.empty:
        return None
    if metric in table.columns:
        return table[metric].to_numpy(float)
    if metric == "accuracy_hw" and "correct" in table.columns:
        return table["correct"].to_numpy(float)
    if metric == "energy_dynamic_j" and {"energy_j", "energy_static_j"} <= set(table.columns):
        return (table["energy_j"] - table["energy_static_j"]).to_numpy(float)
    return None


@dataclass(frozen=True)
class Side:
    """One side of a comparison.

    values: float (n,), the metric per sample (from_samples) or one value per seed (the mean of the points'
    values). units: what each value was measured on, ((seed, label), ...) for samples with recorded labels,
    ((seed,), ...) for point values, None when unknown (samples without labels). points: point_ids behind it;
    params: mean parameter count of those points (NaN when the results have none).
    """

    values: np.ndarray
    units: tuple | None
    from_samples: bool
    points: tuple[str, ...]
    params: float


def _labels(table: pd.DataFrame) -> list | None:
    return table["label"].tolist() if "label" in table.columns else None


def side(rows: pd.DataFrame, metric: str, seed: Any, samples: SamplesOf | None) -> Side:
    """The Side of the design points `rows` (one seed): the pooled per-sample values of their samples tables when
    `metric` is per sample and every point has them, else the mean of the points' `metric` values."""
    pids = tuple(str(p) for p in rows["point_id"]) if "point_id" in rows.columns else ()
    params = float(rows["params"].mean()) if "params" in rows.columns else float("nan")
    tables = [samples(p) for p in pids] if samples is not None and per_sample(metric) else []
    _check_counts(rows, pids, tables)
    cols = [sample_values(t, metric) for t in tables]
    if tables and len(pids) == len(rows) and all(c is not None for c in cols):
        labels = [_labels(t) for t in tables]
        units = None if any(lab is None for lab in labels) else tuple((seed, x) for lab in labels for x in lab)
        return Side(np.concatenate(cols), units, True, pids, params)
    return Side(np.array([float(rows[metric].mean())]), ((seed,),), False, pids, params)


def _check_counts(rows: pd.DataFrame, pids: tuple[str, ...], tables: list) -> None:
    """Raise ValueError naming the file when a point's samples table does not hold the n_samples rows its results
    row says were simulated (a cut, emptied or edited points/<id>/samples.csv would otherwise be judged on the
    samples left in it)."""
    if not tables or "n_samples" not in rows.columns:
        return
    for pid, table, n in zip(pids, tables, rows["n_samples"].tolist()):
        n = pd.to_numeric(n, errors="coerce")
        if table is not None and np.isfinite(n) and len(table) != int(n):
            raise ValueError(f"points/{pid}/samples.csv holds {len(table)} sample{'s' if len(table) != 1 else ''} but "
                             f"results.csv gives the point n_samples {int(n)}: a cut or edited file; restore it "
                             "or re-run the point")


def pool(sides: Sequence[Side]) -> Side:
    """One Side from the Sides of several seeds: their values and units concatenated (units None when any is)."""
    units = None if any(s.units is None for s in sides) else tuple(u for s in sides for u in s.units)
    return Side(np.concatenate([s.values for s in sides]), units, all(s.from_samples for s in sides),
                tuple(p for s in sides for p in s.points), float(np.mean([s.params for s in sides])))


def paired(a: Side, b: Side) -> bool:
    """Both sides were measured on the same inputs: equal unit sequences (same seeds, same n_samples and the same
    label sequence) of more than one value."""
    return a.units is not None and a.units == b.units and len(a.values) > 1


def outcome(low: float, high: float, relation: str, factor: float, margin: float) -> str:
    """PASS when both CI bounds satisfy `ratio <relation> factor`, FAIL when both violate it, UNDECIDED when the
    interval straddles the factor, a bound is NaN, or a bound lies within margin x factor of the factor. An
    infinite bound (resamples whose b mean is 0) is compared as such: [2, inf] is above 1."""
    bounds = (low, high)
    if any(np.isnan(bounds)):
        return "UNDECIDED"
    if margin > 0 and any(abs(x - factor) <= margin * factor for x in bounds):
        return "UNDECIDED"
    holds = [RELATIONS[relation](x, factor) for x in bounds]
    return "PASS" if all(holds) else "FAIL" if not any(holds) else "UNDECIDED"


def compare(a: Side, b: Side, level: float, seed: int) -> dict:
    """mean(a) / mean(b) with its bootstrap CI at `level` (paired resampling when `paired(a, b)`, else
    independent; a one-value side of point values is held fixed, so two of them give a zero-width interval; a side
    of one simulated sample gives no interval, one_sample), and the numbers
    behind it: a_value, b_value (means), ratio, ci_low, ci_high, n_a, n_b, paired, values ('samples', 'points'
    or 'mixed'), one_sample. Raises ValueError for a level outside (0, 1)."""
    pair = paired(a, b)
    ratio, low, high = ratio_ci(a.values, b.values, pair, level, seed=seed)
    single = one_sample(a) or one_sample(b)
    if single:  # one measured input bounds nothing: no interval (results give NaN CIs for one sample too)
        low = high = float("nan")
    return {"a_value": float(np.mean(a.values)), "b_value": float(np.mean(b.values)), "ratio": ratio,
            "ci_low": low, "ci_high": high, "n_a": len(a.values), "n_b": len(b.values), "paired": pair,
            "values": _source(a, b), "one_sample": single}


def one_sample(s: Side) -> bool:
    """The side holds the values of a single simulated sample (per-sample values, one of them): its spread over
    inputs is unknown, so no confidence interval is given (UNDECIDED), as hwmodels.stats.mean_ci gives none."""
    return s.from_samples and len(s.values) < 2


def _source(a: Side, b: Side) -> str:
    """'samples' when both sides are per-sample values, 'points' when neither is, else 'mixed'."""
    both = (a.from_samples, b.from_samples)
    return "samples" if all(both) else "points" if not any(both) else "mixed"
