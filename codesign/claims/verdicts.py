"""Hardware-friendliness claims as data, and their verdicts on a run's results (`codesign validate`).

A claim says `a.metric / b.metric <relation> factor` for two groups of design points `a` and `b` (selected by
column values). Pairs (a, b) are matched by nearest parameter count (`match: params`, within `tolerance`), by
equal ratio (`match: ratio`), or the two groups are compared whole (`match: none`: the group means, over the pooled
per-sample values of all their points). Each pair is judged on the ratio of means mean(a) / mean(b) and its seeded
percentile-bootstrap confidence interval at `level` (default 95 %; hwmodels.stats.ratio_ci, codesign.claims.ratio):

- per-sample metrics (energy_j, energy_<component>_j, energy_dynamic_j, latency_s, synops, spikes, messages, hops,
  accuracy_hw) use the values of every simulated sample from the points' `points/<point_id>/samples.csv`; the
  two sides are resampled together (paired) when they were simulated on the same inputs (the same n_samples and
  the same label sequence), otherwise independently. A point without samples.csv (a run folder written before
  they were kept) falls back to its results value, held fixed;
- deterministic metrics (params, memory_bits, cores_used, model_bits, ...) are one number per point: the ratio
  has a zero-width interval.

A pair PASSes when its whole CI satisfies the relation (for `<=` with factor 0.6: ci_high <= 0.6), FAILs when its
whole CI violates it, and is UNDECIDED when the CI straddles the factor, a bound is NaN (e.g. mean(b) = 0), or a
bound lies within `margin` x factor of the factor (an extra band the simulator is not trusted to separate). With
margin 0 a zero-width tie follows the relation (a tie fails `<`, holds `<=`). The claim FAILs when any pair fails,
PASSes when every pair passes, and is UNDECIDED otherwise (also when no pair can be formed).

Several seeds: when the results have a `seed` column with more than one value, pairs are formed within each seed
only. With `pool_seeds: true` (the default) the pairs of the same comparison in every seed (same series, minus
its seed=<v> part, and ratio on both sides; for `match: none` the whole groups) are pooled into one pair whose
ratio is mean(a) / mean(b) over all seeds' values and whose bootstrap resamples (seed, sample) units (for a
deterministic metric: seeds), so seed-to-seed variation widens the interval; `pool_seeds: false` judges every
seed's pairs separately.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codesign.claims.ratio import SamplesOf, Side, compare, outcome, per_sample, pool, side
from codesign.config.run import ConfigError, one_line_error, read_tree
from codesign.reporting.hwfigures import load_samples
from codesign.store.results import SAFE_POINT_ID

VERDICTS = ("PASS", "FAIL", "UNDECIDED")


class Claim(BaseModel):
    """One declarative claim (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    text: str
    source: str = ""
    metric: str
    relation: Literal["<", "<=", ">", ">="]
    factor: float = Field(1.0, gt=0.0, allow_inf_nan=False)
    a: dict[str, Any]
    b: dict[str, Any]
    match: Literal["params", "ratio", "none"] = "params"
    tolerance: float = Field(0.15, ge=0.0, allow_inf_nan=False,
                             description="largest relative params gap of a 'params' pair")
    margin: float = Field(0.0, ge=0.0, allow_inf_nan=False,
                          description="relative band around the factor in which a CI bound leaves a pair undecided")
    level: float = Field(0.95, gt=0.0, lt=1.0, description="confidence level of the bootstrap CI of each ratio")
    seed: int = Field(0, ge=0, description="seed of the bootstrap resampling")
    pool_seeds: bool = Field(True, description="with several seeds in the results, pool each comparison's pairs "
                                               "over the seeds into one ratio (else judge every seed's pairs)")


class ClaimsFile(BaseModel):
    """A YAML file of claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    claims: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "ClaimsFile":
        """Claim ids name the verdicts in claims.json and the report: each must be used once."""
        ids = [c.id for c in self.claims]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"claim ids must be unique; repeated: {', '.join(repeated)[:200]}")
        return self


def load_claims(path: str | Path) -> ClaimsFile:
    """Load and validate a claims file. Raises ConfigError (one line naming the field)."""
    try:
        return ClaimsFile.model_validate(read_tree(path, "claims"))
    except ValidationError as err:
        raise ConfigError(one_line_error(err, ClaimsFile).replace("config:", "claims:", 1)) from None


def point_samples(run_dir: str | Path) -> SamplesOf:
    """point_id -> that point's samples table under run_dir/points/<point_id>/samples.csv (None when missing or
    when the id is not a plain folder name, so a crafted results.csv cannot read outside the run folder), each
    file read once."""
    seen: dict[str, pd.DataFrame | None] = {}

    def get(point_id: str) -> pd.DataFrame | None:
        if point_id not in seen:
            safe = isinstance(point_id, str) and SAFE_POINT_ID.fullmatch(point_id) is not None
            seen[point_id] = load_samples(Path(run_dir) / "points" / point_id) if safe else None
        return seen[point_id]
    return get


def select(df: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list value means any of them; null matches an empty cell; a
    quoted number matches a numeric column's number). Missing column -> no rows.
    A wanted value that is itself a list or mapping (a list-valued axis such as model.options.pool_after: [[0]]
    means the value [0]) matches the column's text, as results.csv stores it ("[0]")."""
    mask = pd.Series(True, index=df.index)
    for col, want in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        values = want if isinstance(want, list) else [want]
        if any(isinstance(v, (list, dict)) for v in values):
            mask &= df[col].astype(str).isin([str(v) for v in values])
        else:
            numeric = pd.api.types.is_numeric_dtype(df[col])
            values = [_number_or_text(v) if numeric else v for v in values]
            hit = df[col].isin([v for v in values if v is not None])
            mask &= hit | df[col].isna() if None in values else hit  # null matches an empty (NaN) cell
    return df[mask]


def _number_or_text(value: Any) -> Any:
    """A selector value for a numeric column: a string holding a number (YAML '0.5' quoted) as that number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def pairs(a: pd.DataFrame, b: pd.DataFrame, claim: Claim) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Pairs (rows of a, rows of b): one row each by nearest params within tolerance or by equal ratio; the two
    whole groups for match 'none'."""
    if a.empty or b.empty:
        return []
    if claim.match == "none":
        return [(a, b)]
    out = []
    for i in range(len(a)):
        ra = a.iloc[[i]]
        if claim.match == "ratio":
            same = b[np.isclose(b["ratio"], ra["ratio"].iloc[0])]
            out += [(ra, same.iloc[[j]]) for j in range(len(same))]
            continue
        gap = (b["params"] - ra["params"].iloc[0]).abs() / max(ra["params"].iloc[0], 1)
        if gap.min() <= claim.tolerance:
            out.append((ra, b.loc[[gap.idxmin()]]))
    return out


def seed_groups(df: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """(seed, rows of that seed) for every seed when the results have a `seed` column with several values,
    else [(the single seed or None, df)]. Rows without a seed (a sweep grid without the seed axis, in folders
    written before sweeps recorded the base seed there) join every seed's rows instead of none."""
    seeds = sorted(df["seed"].dropna().unique().tolist()) if "seed" in df.columns else []
    if len(seeds) <= 1:
        return [(seeds[0] if seeds else None, df)]
    unseeded = df["seed"].isna()
    return [(s, df[(df["seed"] == s) | unseeded]) for s in seeds]


def _design(rows: pd.DataFrame) -> tuple:
    """What the rows are apart from their seed: (series without its 'seed=<v>' part, or method; ratio) of each."""
    def one(row: pd.Series) -> tuple[str, str]:
        series = str(row.get("series", row.get("method", "")))
        series = " | ".join(p for p in series.split(" | ") if not p.startswith("seed="))
        return series, f"{float(row.get('ratio', np.nan)):g}"
    return tuple(sorted(one(r) for _, r in rows.iterrows()))


def _comparisons(df: pd.DataFrame, claim: Claim, samples: SamplesOf | None) -> list[tuple[list, Side, Side]]:
    """(seeds, side a, side b) of every pair to judge: per seed, or pooled over the seeds (module docstring)."""
    groups = seed_groups(df)
    keyed: dict[tuple, list[tuple[Any, Side, Side]]] = {}
    for seed, part in groups:
        seen: dict[tuple, int] = {}
        for ra, rb in pairs(select(part, claim.a), select(part, claim.b), claim):
            key = ("groups",) if claim.match == "none" else (_design(ra), _design(rb))
            seen[key] = seen.get(key, -1) + 1
            pooled_key = (key, seen[key]) if claim.pool_seeds and len(groups) > 1 else (seed, key, seen[key])
            keyed.setdefault(pooled_key, []).append((seed, side(ra, claim.metric, seed, samples),
                                                     side(rb, claim.metric, seed, samples)))
    return [([s for s, _, _ in g if s is not None], pool([a for _, a, _ in g]), pool([b for _, _, b in g]))
            for g in keyed.values()]


def _pair_row(seeds: list, a: Side, b: Side, claim: Claim) -> dict:
    """One judged pair: its points, parameters, seeds, the ratio with its CI and the outcome."""
    c = compare(a, b, claim.level, claim.seed)
    return {"a_point": " ".join(a.points) or "group", "b_point": " ".join(b.points) or "group",
            "a_params": a.params, "b_params": b.params, "seeds": seeds, **c,
            "outcome": outcome(c["ci_low"], c["ci_high"], claim.relation, claim.factor, claim.margin)}


def _overall(rows: list[dict], claim: Claim) -> tuple[str, str]:
    """(verdict, reason) of the claim from its judged pairs."""
    if not rows:
        return "UNDECIDED", "no design points match both groups (check a/b selectors and the tolerance)"
    n, level = len(rows), f"{100 * claim.level:g} % CI"
    pairs_n = f"{n} pair{'s' if n != 1 else ''}"
    fails = sum(r["outcome"] == "FAIL" for r in rows)
    open_ = [r for r in rows if r["outcome"] == "UNDECIDED"]
    if fails:
        v, reason = "FAIL", f"{fails} of {pairs_n} fail{'s' if n == 1 else ''} over the whole {level}"
    elif open_:
        v, reason = "UNDECIDED", f"{len(open_)} of {pairs_n} undecided: " + _open_reason(open_, claim, level)
    else:
        v, reason = "PASS", f"{'all ' if n > 1 else ''}{pairs_n} hold{'s' if n == 1 else ''} over the whole {level}"
    fallback = sum(r["values"] != "samples" for r in rows)
    if fallback and per_sample(claim.metric):
        reason += f"; {fallback} of {pairs_n} on results values (a point has no samples.csv)"
    return v, reason


def _open_reason(open_: list[dict], claim: Claim, level: str) -> str:
    """Why the undecided pairs are: a CI across (or ending within the margin of) the factor, or no finite ratio."""
    single = sum(bool(r.get("one_sample")) for r in open_)
    no_ratio = sum(bool(np.isnan([r["ci_low"], r["ci_high"]]).any()) and not r.get("one_sample") for r in open_)
    parts = [f"{len(open_) - no_ratio - single} with a {level} across {claim.factor:g}"
             + (f" or ending within {claim.margin:g} x {claim.factor:g} of it" if claim.margin else "")]
    parts += [f"{no_ratio} without a finite ratio (mean of b is 0 or NaN)"] if no_ratio else []
    parts += [f"{single} with one simulated sample on a side (no interval; simulate 2 or more samples)"] \
        if single else []
    return ", ".join(p for p in parts if not p.startswith("0 "))


def verdict(df: pd.DataFrame, claim: Claim, samples: SamplesOf | None = None) -> dict:
    """The claim's verdict on the results `df`, with the numbers and design points behind it.

    samples: point_id -> its samples table (`point_samples(run_dir)`); None judges on the results values only.
    """
    head = {"id": claim.id, "text": claim.text, "source": claim.source, "metric": claim.metric,
            "relation": f"a / b {claim.relation} {claim.factor:g}"}
    if claim.metric not in df.columns:
        return {**head, "verdict": "UNDECIDED", "reason": f"no column {claim.metric!r}", "pairs": []}
    rows = [_pair_row(seeds, a, b, claim) for seeds, a, b in _comparisons(df, claim, samples)]
    v, reason = _overall(rows, claim)
    if not rows:  # a selector on a column the results do not have selects nothing: name it
        missing = [(g, col) for g, where in (("a", claim.a), ("b", claim.b)) for col in where if col not in df]
        if missing:
            reason = f"no column {missing[0][1]!r} in the results for selector '{missing[0][0]}.{missing[0][1]}'"
    return {**head, "verdict": v, "reason": reason, "pairs": rows}


def check_metrics(df: pd.DataFrame, claims: ClaimsFile) -> None:
    """Refuse a claim whose metric is not a numeric column of the results (a typo would otherwise judge as
    UNDECIDED and exit 0), or whose match column (params, ratio) is missing. Raises ValueError: one line naming
    the claim, the metric and the accepted columns."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    for claim in claims.claims:
        if claim.match != "none" and claim.match not in numeric:
            raise ValueError(f"claims: claim '{claim.id[:80]}': match '{claim.match}' needs the numeric column "
                             f"'{claim.match}', which results.csv lacks (or holds text in)")
        if claim.metric not in numeric:
            shown = ", ".join(numeric)
            raise ValueError(f"claims: claim '{claim.id[:80]}': metric '{claim.metric[:80]}' is not a numeric column "
                             f"of results.csv; accepted: {shown[:400]}{'...' if len(shown) > 400 else ''}")


def validate(df: pd.DataFrame, claims: ClaimsFile, samples: SamplesOf | None = None) -> list[dict]:
    """Verdicts of every claim, in file order (samples: as for `verdict`)."""
    return [verdict(df, c, samples) for c in claims.claims]


def _ci_span(pair_rows: list[dict]) -> str:
    """'[lowest ci_low, highest ci_high]' over the pairs ('' for verdicts written before CIs were kept)."""
    if not pair_rows or "ci_low" not in pair_rows[0]:
        return ""
    low = np.array([p["ci_low"] for p in pair_rows], float)
    high = np.array([p["ci_high"] for p in pair_rows], float)
    ok = ~np.isnan(low) & ~np.isnan(high)  # an infinite bound is shown as inf
    if not ok.any():
        return "[nan, nan]"
    return f"[{low[ok].min():.3g}, {high[ok].max():.3g}]" + ("" if ok.all() else " and NaN")


def results_digest(results: pd.DataFrame) -> str:
    """A short digest of the design points a set of verdicts was judged on (the sorted point_id values of the
    results table; "" without that column), recorded in claims.json so a report rebuilt after more points landed
    (a resumed sweep) can say its verdicts are stale."""
    if "point_id" not in results.columns:
        return ""
    ids = "\n".join(sorted(results["point_id"].astype(str)))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def verdict_table(results: list[dict]) -> pd.DataFrame:
    """One line per claim for reports: id, verdict, pairs, median a/b ratio over the pairs, the span of their
    confidence intervals, reason, text (also reads claims.json of older runs, whose pairs have no CI)."""
    def median_ratio(r: dict) -> float:
        v = np.array([p.get("ratio", p.get("ratio_a_to_b", np.nan)) for p in r["pairs"]], float)
        return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else np.nan
    return pd.DataFrame([{"claim": r["id"], "verdict": r["verdict"], "pairs": len(r["pairs"]),
                          "ratio a/b": median_ratio(r),
                          "CI (all pairs)": _ci_span(r["pairs"]), "reason": r["reason"], "text": r["text"]}
                         for r in results])
