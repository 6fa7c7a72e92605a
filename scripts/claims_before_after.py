"""Before/after table of the shipped claims: the verdicts a run of the claims sweep got with the energy model
before issue 10 (four components, no memory or static energy, no CIs) and with the current one.

Usage (run folders of `codesign sweep codesign/configs/claims-sweep.yaml`):
    python scripts/claims_before_after.py BEFORE_RUN AFTER_RUN [--claims FILE] [--out reports/benchmarks]
BEFORE_RUN may hold claims.json from the `codesign validate` of its own code version (its verdicts are quoted as
"before (then)"); both runs are also judged by the current claims file and judge ("before (now)" judges the old
numbers with point values, as they have no per-sample tables). For energy claims, "moved by" lists, largest first,
how each energy group's term of the ratio changed between the runs: a / b = 1 + sum over groups of
(a_group - b_group) / b_total, so the listed changes add up to the change of the ratio (groups as the old run
had them: synapse = compute + memory, neuron = compute + memory, network, static; changes below 0.005 omitted).
Writes <out>/claims_before_after.md and .csv (atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.claims.verdicts import load_claims, point_samples, validate
from codesign.reporting.report import markdown_table

#: current component -> the group it belongs to in the old four-component breakdown
GROUPS = {"synapse_compute": "synapse", "synapse_memory": "synapse", "neuron_compute": "neuron",
          "neuron_memory": "neuron", "network": "network", "static": "static"}


def _grouped(row: pd.Series) -> dict[str, float]:
    """Energy per old-style group (J) of one results row, whichever breakdown it has."""
    out = {g: 0.0 for g in ("synapse", "neuron", "network", "static")}
    if "energy_synapse_compute_j" not in row.index:  # a run from before issue 10 has the groups themselves
        return {g: float(row.get(f"energy_{g}_j", 0.0) or 0.0) for g in out}
    for comp, group in GROUPS.items():
        out[group] += float(row.get(f"energy_{comp}_j", 0.0) or 0.0)
    return out


def _shares(df: pd.DataFrame, verdict: dict) -> dict[str, float] | None:
    """Mean over the claim's pairs of (a_group - b_group) / b_total per group; None without energy pairs."""
    if not verdict["metric"].startswith("energy") or not verdict["pairs"]:
        return None
    by_id = df.set_index("point_id")
    out = []
    for pair in verdict["pairs"]:
        a_ids, b_ids = pair["a_point"].split(), pair["b_point"].split()
        if not all(i in by_id.index for i in a_ids + b_ids):
            continue
        ga = pd.DataFrame([_grouped(by_id.loc[i]) for i in a_ids]).mean()
        gb = pd.DataFrame([_grouped(by_id.loc[i]) for i in b_ids]).mean()
        out.append((ga - gb) / gb.sum())
    return pd.DataFrame(out).mean().to_dict() if out else None


def _ratio(verdict: dict) -> float:
    v = [p.get("ratio", p.get("ratio_a_to_b", np.nan)) for p in verdict["pairs"]]
    v = np.array(v, float)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")


def _ci(verdict: dict) -> str:
    if not verdict["pairs"] or "ci_low" not in verdict["pairs"][0]:
        return ""
    lo = min(p["ci_low"] for p in verdict["pairs"])
    hi = max(p["ci_high"] for p in verdict["pairs"])
    return f"[{lo:.3g}, {hi:.3g}]"


def table(before: Path, after: Path, claims_path: Path) -> pd.DataFrame:
    """One row per claim of the current claims file (see the module docstring)."""
    claims = load_claims(claims_path)
    dfs = {k: pd.read_csv(p / "results.csv", dtype={"point_id": str}) for k, p in (("before", before), ("after", after))}
    now = {"before": validate(dfs["before"], claims, None), "after": validate(dfs["after"], claims, point_samples(after))}
    then_path = before / "claims.json"
    then = {v["id"]: v for v in json.loads(then_path.read_text())} if then_path.exists() else {}
    rows = []
    for vb, va in zip(now["before"], now["after"]):
        sb, sa = _shares(dfs["before"], vb), _shares(dfs["after"], va)
        moved = ""
        if sb and sa:
            delta = sorted(((sa[g] - sb[g], g) for g in sa), key=lambda d: -abs(d[0]))
            moved = ", ".join(f"{g} {d:+.3f}" for d, g in delta if abs(d) >= 0.005) or "none"
        old = then.get(va["id"])
        rows.append({"claim": va["id"], "metric": va["metric"], "relation": va["relation"],
                     "before (then)": old["verdict"] if old else "not in the file then",
                     "before (now)": vb["verdict"], "ratio before": _ratio(vb), "after": va["verdict"],
                     "ratio after": _ratio(va), "95 % CI after": _ci(va), "moved by": moved,
                     "after: reason": va["reason"]})
    return pd.DataFrame(rows)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main() -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--claims", type=Path, default=Path("codesign/claims/hardware_friendliness.yaml"))
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    ap.add_argument("--before-commit", default="", help="the commit BEFORE_RUN was made with (for the report)")
    args = ap.parse_args()
    for run in (args.before, args.after):
        if not (run / "results.csv").exists():
            raise SystemExit(f"error: {run}/results.csv does not exist (is it a run folder?)")
    df = table(args.before, args.after, args.claims)
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / "claims_before_after.csv", df.to_csv(index=False))
    made = f" at commit {args.before_commit}" if args.before_commit else ""
    md = ["# Claims before and after the energy model of issue 10", "",
          f"Before: `{args.before}`, the claims sweep (codesign/configs/claims-sweep.yaml) run with the code{made} "
          "(energy = synapse + neuron + network, no memory or static energy, one neuron cost per update in the "
          "window, verdicts on point values); 'before (then)' is the verdict its own `codesign validate` gave, "
          "'before (now)' the current judge on its numbers (point values: no per-sample tables then). After: "
          f"`{args.after}`, the same sweep (plus the generic-45nm points the quantization claims need) with the "
          "current energy model, judged on the 95 % CI of each ratio. 'moved by': how each energy group's term of "
          "a / b = 1 + sum over groups of (a_g - b_g) / b_total changed (largest first).", "",
          markdown_table(df.drop(columns=["after: reason"])), "",
          "Reasons (after):", ""] + [f"- {c}: {r}" for c, r in zip(df["claim"], df["after: reason"])]
    _atomic_write(args.out / "claims_before_after.md", "\n".join(md) + "\n")
    print(df.drop(columns=["after: reason"]).to_string(index=False))


if __name__ == "__main__":
    main()
