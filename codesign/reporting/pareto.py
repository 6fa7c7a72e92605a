"""Pareto fronts over results tables (maximise some columns, minimise others)."""
from __future__ import annotations

import numpy as np
import pandas as pd

SENSES = ("max", "min")
#: column of a results table naming the objectives its Pareto front was chosen on, comma-separated, so a report
#: drawn from the table later plots the accuracy the front used
PARETO_ON = "pareto_on"
#: sweep axes that change the model the chip runs but not the float model: a front over them is chosen on the
#: chip's accuracy (accuracy_hw), which they change, not on the float model's (accuracy), which they do not
CHIP_MODEL_AXES = ("hardware.weight_bits", "hardware.weight_fit")


def front_accuracy(df: pd.DataFrame) -> str:
    """The accuracy column the table's Pareto front was chosen on: 'accuracy_hw' when its PARETO_ON names it,
    else 'accuracy'."""
    named = str(df[PARETO_ON].dropna().iloc[0]) if PARETO_ON in df and df[PARETO_ON].notna().any() else ""
    return "accuracy_hw" if "accuracy_hw" in named.split(",") and "accuracy_hw" in df else "accuracy"


def pareto_mask(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """Boolean mask of the rows of `df` that no other row dominates.

    objectives: column -> "max" or "min". Row a dominates b when a is at least as good in every objective and
    strictly better in one. Rows with a NaN objective are never on the front. O(n^2) in rows, fine for sweeps.
    Raises ValueError for an unknown sense or a missing column.
    """
    for col, sense in objectives.items():
        if sense not in SENSES:
            raise ValueError(f"objectives.{col}: {sense!r} is not one of {', '.join(SENSES)}")
        if col not in df.columns:
            raise ValueError(f"objectives: column {col!r} is not in the results ({', '.join(df.columns)})")
    if df.empty:
        return np.zeros(0, bool)
    vals = np.stack([df[c].to_numpy(float) * (-1.0 if s == "max" else 1.0) for c, s in objectives.items()], axis=1)
    ok = ~np.isnan(vals).any(axis=1)
    mask = ok.copy()
    for i in np.flatnonzero(ok):
        others = vals[ok]
        dominated = np.all(others <= vals[i], axis=1) & np.any(others < vals[i], axis=1)
        mask[i] = not dominated.any()
    return mask
