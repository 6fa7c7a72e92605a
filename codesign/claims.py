"""Hardware-friendliness claims as data, and their verdicts on a run's results (`codesign validate`).

A claim compares one metric between two groups of design points (`a` and `b`, selected by column values), paired
by nearest parameter count, by ratio, or not at all (`match: none` compares medians). It holds when
`a.metric <relation> factor * b.metric` for every pair (or for the medians). Verdicts:
PASS — every pair holds by more than `margin` (relative); FAIL — some pair fails by more than `margin`;
UNDECIDED — no pair could be formed, or some pair lies within a non-zero margin (the simulator cannot separate
them). With margin 0 a tie is judged by the relation itself (a tie fails "<" and holds "<=").
"""
from __future__ import annotations

import operator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codesign.config import ConfigError, _one_line, read_tree

RELATIONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
VERDICTS = ("PASS", "FAIL", "UNDECIDED")


class Claim(BaseModel):
    """One declarative claim (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    text: str
    source: str = ""
    metric: str
    relation: Literal["<", "<=", ">", ">="]
    factor: float = Field(1.0, gt=0.0)
    a: dict[str, Any]
    b: dict[str, Any]
    match: Literal["params", "ratio", "none"] = "params"
    tolerance: float = Field(0.15, ge=0.0, description="largest relative params gap of a 'params' pair")
    margin: float = Field(0.0, ge=0.0, description="relative difference below which a pair is undecided")


class ClaimsFile(BaseModel):
    """A YAML file of claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    claims: list[Claim] = Field(min_length=1)


def load_claims(path: str | Path) -> ClaimsFile:
    """Load and validate a claims file. Raises ConfigError (one line naming the field)."""
    try:
        return ClaimsFile.model_validate(read_tree(path, "claims"))
    except ValidationError as err:
        raise ConfigError(_one_line(err).replace("config:", "claims:", 1)) from None


def select(df: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list value means any of them). Missing column -> no rows."""
    mask = pd.Series(True, index=df.index)
    for col, want in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        values = want if isinstance(want, list) else [want]
        mask &= df[col].isin(values)
    return df[mask]


def pairs(a: pd.DataFrame, b: pd.DataFrame, claim: Claim) -> list[tuple[pd.Series, pd.Series]]:
    """Pairs (row of a, row of b): by nearest params within tolerance, by equal ratio, or the two medians."""
    if a.empty or b.empty:
        return []
    if claim.match == "none":
        med = lambda g: g.median(numeric_only=True)  # noqa: E731
        return [(med(a), med(b))]
    out = []
    for _, ra in a.iterrows():
        if claim.match == "ratio":
            same = b[np.isclose(b["ratio"], ra["ratio"])]
            out += [(ra, rb) for _, rb in same.iterrows()]
            continue
        gap = (b["params"] - ra["params"]).abs() / max(ra["params"], 1)
        if gap.min() <= claim.tolerance:
            out.append((ra, b.loc[gap.idxmin()]))
    return out


def _pair_outcome(va: float, vb: float, claim: Claim) -> str:
    rhs = claim.factor * vb
    if not (np.isfinite(va) and np.isfinite(rhs)):
        return "UNDECIDED"
    if claim.margin > 0 and abs(va - rhs) <= claim.margin * max(abs(rhs), 1e-300):
        return "UNDECIDED"
    return "PASS" if RELATIONS[claim.relation](va, rhs) else "FAIL"


def verdict(df: pd.DataFrame, claim: Claim) -> dict:
    """The claim's verdict on the results `df`, with the numbers and design points behind it."""
    if claim.metric not in df.columns:
        return {"id": claim.id, "text": claim.text, "verdict": "UNDECIDED", "reason": f"no column {claim.metric!r}",
                "pairs": []}
    ps = pairs(select(df, claim.a), select(df, claim.b), claim)
    rows = []
    for ra, rb in ps:
        va, vb = float(ra[claim.metric]), float(rb[claim.metric])
        rows.append({"a_point": ra.get("point_id", "median"), "b_point": rb.get("point_id", "median"),
                     "a_params": float(ra.get("params", np.nan)), "b_params": float(rb.get("params", np.nan)),
                     "a_value": va, "b_value": vb, "ratio_a_to_b": va / vb if vb else np.nan,
                     "outcome": _pair_outcome(va, vb, claim)})
    outcomes = {r["outcome"] for r in rows}
    if not rows:
        v, reason = "UNDECIDED", "no design points match both groups (check a/b selectors and the tolerance)"
    elif "FAIL" in outcomes:
        v, reason = "FAIL", f"{sum(r['outcome'] == 'FAIL' for r in rows)} of {len(rows)} pairs fail"
    elif "UNDECIDED" in outcomes:
        v, reason = "UNDECIDED", "some pairs lie within the margin"
    else:
        v, reason = "PASS", f"all {len(rows)} pairs hold"
    return {"id": claim.id, "text": claim.text, "source": claim.source, "metric": claim.metric,
            "relation": f"a {claim.relation} {claim.factor:g} x b", "verdict": v, "reason": reason, "pairs": rows}


def validate(df: pd.DataFrame, claims: ClaimsFile) -> list[dict]:
    """Verdicts of every claim, in file order."""
    return [verdict(df, c) for c in claims.claims]


def verdict_table(results: list[dict]) -> pd.DataFrame:
    """One line per claim for reports: id, verdict, pairs, median a/b ratio, reason."""
    return pd.DataFrame([{"claim": r["id"], "verdict": r["verdict"], "pairs": len(r["pairs"]),
                          "median a/b": float(np.median([p["ratio_a_to_b"] for p in r["pairs"]]))
                          if r["pairs"] else np.nan, "reason": r["reason"], "text": r["text"]} for r in results])
