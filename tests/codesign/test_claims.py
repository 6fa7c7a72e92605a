"""Claim verdicts on hand-made results: pairing by params / ratio / group means, judged on the bootstrap CI of the
ratio (per-sample values, paired or not, pooled over seeds), PASS / FAIL / UNDECIDED; shipped file; the CLI."""
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from codesign.claims.ratio import outcome, per_sample, sample_values
from codesign.claims.verdicts import Claim, ClaimsFile, load_claims, validate, verdict, verdict_table
from codesign.config.run import ConfigError
from hwmodels.stats import ratio_ci

DF = pd.DataFrame({
    "point_id": ["s1", "s2", "u1", "u2", "q4", "q8"],
    "method": ["sca", "sca", "l1p", "l1p", "qp", "qp"],
    "ratio": [0.5, 0.7, 0.5, 0.8, 0.5, 0.5],
    "params": [1000, 500, 1050, 480, 900, 900],
    "latency_s": [1.0, 0.5, 2.0, 0.4, 1.0, 1.0],
    "cores_used": [10, 8, 12, 12, 5, 5],
    "bits": [8, 8, 8, 8, 4, 8],
})


def _claim(**kw):
    base = dict(id="c", text="t", metric="latency_s", relation="<", a={"method": "sca"}, b={"method": "l1p"})
    return Claim(**{**base, **kw})


def test_params_pairs_and_fail():
    # s1 (1000) pairs with u1 (1050): 1.0 < 2.0 holds; s2 (500) pairs with u2 (480): 0.5 < 0.4 fails
    v = verdict(DF, _claim(tolerance=0.1))
    assert [(p["a_point"], p["b_point"], p["outcome"]) for p in v["pairs"]] == [("s1", "u1", "PASS"),
                                                                               ("s2", "u2", "FAIL")]
    # no samples tables: the results values, one per point, give zero-width intervals
    assert [(p["ratio"], p["ci_low"], p["ci_high"], p["n_a"], p["paired"]) for p in v["pairs"]] == \
        [(0.5, 0.5, 0.5, 1, False), (1.25, 1.25, 1.25, 1, False)]
    assert v["verdict"] == "FAIL" and v["reason"].startswith("1 of 2 pairs fail over the whole 95 % CI")
    assert "on results values" in v["reason"]
    assert verdict(DF, _claim(tolerance=0.01))["verdict"] == "UNDECIDED"  # no pair within 1 %


def test_ratio_pairs_factor_margin_and_ties():
    c = _claim(metric="cores_used", a={"method": "qp", "bits": 4}, b={"method": "qp", "bits": 8}, match="ratio")
    assert verdict(DF, c)["verdict"] == "FAIL"  # 5 < 5 is false: a tie fails a strict relation
    assert verdict(DF, c.model_copy(update={"relation": "<="}))["verdict"] == "PASS"
    assert verdict(DF, c.model_copy(update={"margin": 0.1}))["verdict"] == "UNDECIDED"
    groups = _claim(match="none", relation="<=", factor=0.8)  # mean sca 0.75 / mean l1p 1.2 = 0.625 <= 0.8
    v = verdict(DF, groups)
    assert v["verdict"] == "PASS" and v["pairs"][0]["ratio"] == pytest.approx(0.75 / 1.2)
    assert v["pairs"][0]["a_point"] == "s1 s2" and v["pairs"][0]["ci_high"] == pytest.approx(0.75 / 1.2)


def test_missing_metric_or_group_is_undecided():
    assert verdict(DF, _claim(metric="energy_j"))["verdict"] == "UNDECIDED"
    assert verdict(DF, _claim(b={"method": "dsp"}))["verdict"] == "UNDECIDED"
    missing = verdict(DF, _claim(b={"method": "l1p", "nope": 1}))
    assert missing["verdict"] == "UNDECIDED"
    assert missing["reason"] == "no column 'nope' in the results for selector 'b.nope'"
    assert verdict(DF, _claim(b={"method": "dsp"}))["reason"].startswith("no design points match both groups")


@pytest.mark.parametrize("field", ["factor", "tolerance", "margin"])
def test_an_infinite_or_nan_claim_number_is_refused(field):
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"{field}\n  Input should be a finite number"):
            _claim(**{field: value})


def test_shipped_claims_file_loads_and_judges(tmp_path):
    path = resources.files("codesign").joinpath("claims/hardware_friendliness.yaml")
    claims = load_claims(str(path))
    assert len(claims.claims) >= 8 and all(c.source for c in claims.claims)
    out = validate(DF, claims)
    assert [r["id"] for r in out] == [c.id for c in claims.claims]
    assert {r["verdict"] for r in out} <= {"PASS", "FAIL", "UNDECIDED"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("claims:\n  - {id: x, text: t, metric: m, relation: '!=', a: {}, b: {}}\n")
    with pytest.raises(ConfigError, match="claims: claims.0.relation"):
        load_claims(bad)
    with pytest.raises(ValueError):
        ClaimsFile(claims=[])


def test_validate_cli_writes_verdicts(tmp_path):
    DF.to_csv(tmp_path / "results.csv", index=False)
    claims = tmp_path / "c.yaml"
    claims.write_text("claims:\n  - {id: lat, text: t, metric: latency_s, relation: '<', a: {method: sca}, "
                      "b: {method: l1p}, tolerance: 0.1}\n")
    proc = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # a claim fails: status 1, claims.json written first
    assert json.loads((tmp_path / "claims.json").read_text())[0]["verdict"] == "FAIL"
    assert "[0.5, 1.25]" in proc.stdout  # the CI span over the two pairs
    claims.write_text("claims:\n  - {id: lat, text: t, metric: latency_s, relation: '<', a: {point_id: s1}, "
                      "b: {method: l1p}, tolerance: 0.1}\n")
    passing = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert passing.returncode == 0, passing.stderr
    assert json.loads((tmp_path / "claims.json").read_text())[0]["verdict"] == "PASS"
    helped = subprocess.run([sys.executable, "-m", "codesign", "validate", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert "1 when at least one claim FAILs" in " ".join(helped.stdout.split())
    missing = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope' does not exist or is not a folder" in missing.stderr


# --- per-sample values: the verdict is the CI of the ratio ---------------------------------------------------------

def _samples(energy, labels):
    return pd.DataFrame({"energy_j": np.asarray(energy, float), "latency_s": np.ones(len(energy)),
                         "label": labels}).rename_axis("sample")


def _points(rows: dict[str, tuple]) -> tuple[pd.DataFrame, dict]:
    """Results rows and samples tables from {point_id: (method, seed, energies, labels)}."""
    df = pd.DataFrame([{"point_id": pid, "method": m, "ratio": 0.5, "seed": seed, "params": 100,
                        "energy_j": float(np.mean(e)), "cores_used": 10} for pid, (m, seed, e, _) in rows.items()])
    return df, {pid: _samples(e, lab) for pid, (_, _, e, lab) in rows.items()}


def _energy_claim(**kw):
    base = dict(id="e", text="t", metric="energy_j", relation="<=", factor=0.6, a={"method": "a"},
                b={"method": "b"}, match="ratio")
    return Claim(**{**base, **kw})


B = [1.0, 2.0, 3.0, 4.0]


def test_paired_samples_give_the_ratio_of_means_and_its_interval():
    # a = 0.5 b sample by sample on the same inputs: every paired resample has ratio 0.5 exactly
    df, tables = _points({"pa": ("a", 0, [0.5, 1.0, 1.5, 2.0], [3, 1, 4, 1]), "pb": ("b", 0, B, [3, 1, 4, 1])})
    v = verdict(df, _energy_claim(), tables.get)
    (p,) = v["pairs"]
    assert (p["ratio"], p["ci_low"], p["ci_high"], p["n_a"], p["n_b"], p["paired"], p["values"]) == \
        (0.5, 0.5, 0.5, 4, 4, True, "samples")
    assert v["verdict"] == "PASS" and v["reason"] == "1 pair holds over the whole 95 % CI"
    assert verdict(df, _energy_claim(factor=0.4), tables.get)["verdict"] == "FAIL"  # 0.5 > 0.4 over the whole CI
    assert verdict(df, _energy_claim(relation=">", factor=0.4), tables.get)["verdict"] == "PASS"
    # a bound within the margin of the factor: |0.5 - 0.52| <= 0.05 x 0.52
    assert verdict(df, _energy_claim(factor=0.52, margin=0.05), tables.get)["verdict"] == "UNDECIDED"
    # without samples tables (an older run folder): the results values, held fixed
    old = verdict(df, _energy_claim())
    assert old["pairs"][0]["values"] == "points" and old["pairs"][0]["n_a"] == 1 and old["verdict"] == "PASS"


def test_one_simulated_sample_gives_no_interval_and_leaves_the_claim_undecided():
    # 0.5 / 1.0 would pass < 0.6 on points, but one simulated input bounds nothing (results' CIs are NaN too)
    df, tables = _points({"pa": ("a", 0, [0.5], [3]), "pb": ("b", 0, [1.0], [3])})
    v = verdict(df, _energy_claim(), tables.get)
    (p,) = v["pairs"]
    assert p["ratio"] == 0.5 and np.isnan(p["ci_low"]) and np.isnan(p["ci_high"]) and p["one_sample"]
    assert v["verdict"] == "UNDECIDED"
    assert v["reason"] == "1 of 1 pair undecided: 1 with one simulated sample on a side (no interval; simulate 2 " \
        "or more samples)"
    # two seeds of one sample each pool into two values: an interval again
    df, tables = _points({"pa": ("a", 0, [0.5], [3]), "pb": ("b", 0, [1.0], [3]),
                          "qa": ("a", 1, [0.5], [3]), "qb": ("b", 1, [1.0], [3])})
    pooled = verdict(df, _energy_claim(), tables.get)
    assert not pooled["pairs"][0]["one_sample"] and pooled["verdict"] == "PASS"


def test_other_inputs_are_resampled_independently_and_can_leave_the_claim_undecided():
    a = [0.5, 1.0, 1.5, 2.0]
    df, tables = _points({"pa": ("a", 0, a, [0, 1, 2, 3]), "pb": ("b", 0, B, [3, 2, 1, 0])})
    (p,) = verdict(df, _energy_claim(), tables.get)["pairs"]
    expected = ratio_ci(np.array(a), np.array(B), paired=False, level=0.95, seed=0)
    assert not p["paired"] and (p["ratio"], p["ci_low"], p["ci_high"]) == pytest.approx(expected)
    assert p["ci_low"] < 0.6 < p["ci_high"]  # independent means spread the ratio across the factor
    assert verdict(df, _energy_claim(), tables.get)["verdict"] == "UNDECIDED"
    # another bootstrap seed or level gives another (seeded, reproducible) interval
    (q,) = verdict(df, _energy_claim(seed=5, level=0.5), tables.get)["pairs"]
    assert (q["ci_low"], q["ci_high"]) == pytest.approx(ratio_ci(np.array(a), np.array(B), False, 0.5, seed=5)[1:])
    # same labels but a different number of samples: not the same inputs either
    df, tables = _points({"pa": ("a", 0, a[:3], [0, 1, 2]), "pb": ("b", 0, B, [0, 1, 2, 3])})
    assert not verdict(df, _energy_claim(), tables.get)["pairs"][0]["paired"]


def test_seeds_pair_within_a_seed_and_pool_into_one_interval():
    # seed 0: a/b = 1/2; seed 1: a/b = 3/4 (same labels: paired); pooled ratio (1+1+3+3) / (2+2+4+4) = 2/3.
    # A paired resample of the 4 (seed, sample) units takes all 4 from seed 0 with probability 1/16 > 2.5 %
    # (ratio 1/2) and all from seed 1 likewise (3/4), so the 95 % interval is exactly [1/2, 3/4].
    df, tables = _points({"a0": ("a", 0, [1, 1], [0, 1]), "b0": ("b", 0, [2, 2], [0, 1]),
                          "a1": ("a", 1, [3, 3], [0, 1]), "b1": ("b", 1, [4, 4], [0, 1])})
    df["series"] = [f"{m} | seed={s}" for m, s in zip(df["method"], df["seed"])]
    v = verdict(df, _energy_claim(factor=0.8), tables.get)
    (p,) = v["pairs"]
    assert p["seeds"] == [0, 1] and p["a_point"] == "a0 a1" and p["paired"] and p["n_a"] == 4
    assert (p["ratio"], p["ci_low"], p["ci_high"]) == pytest.approx((2 / 3, 0.5, 0.75))
    assert v["verdict"] == "PASS"
    assert verdict(df, _energy_claim(factor=0.6), tables.get)["verdict"] == "UNDECIDED"  # 0.6 inside [0.5, 0.75]
    per_seed = verdict(df, _energy_claim(factor=0.6, pool_seeds=False), tables.get)
    assert [(p["seeds"], p["ratio"], p["outcome"]) for p in per_seed["pairs"]] == [([0], 0.5, "PASS"),
                                                                                  ([1], 0.75, "FAIL")]
    assert per_seed["verdict"] == "FAIL"
    # a deterministic metric: one value per seed, resampled by seed; cores a 10, 12 vs b 20, 20: pooled 22/40;
    # both resampled seeds 0 (probability 1/4): 10/20, both 1: 12/20
    df["cores_used"] = [10, 20, 12, 20]
    (c,) = verdict(df, _energy_claim(metric="cores_used", factor=0.7), tables.get)["pairs"]
    assert (c["ratio"], c["ci_low"], c["ci_high"], c["n_a"], c["paired"]) == pytest.approx((0.55, 0.5, 0.6, 2, True))
    (c0,) = verdict(df[df["seed"] == 0], _energy_claim(metric="cores_used"), tables.get)["pairs"]
    assert (c0["ratio"], c0["ci_low"], c0["ci_high"]) == (0.5, 0.5, 0.5)  # one seed: zero width


def test_a_row_without_a_seed_is_compared_within_every_seed():
    # a sweep grid without the seed axis left the seed cell empty: its rows were in no seed's group, and a claim
    # against them came out UNDECIDED "no design points match both groups" though they were in the table
    df, tables = _points({"a0": ("a", 0, [1, 1], [0, 1]), "a1": ("a", 1, [3, 3], [0, 1]),
                          "b": ("b", np.nan, [4, 4], [0, 1])})
    per_seed = verdict(df, _energy_claim(factor=0.6, pool_seeds=False, match="none"), tables.get)
    assert [(p["seeds"], p["ratio"], p["b_point"]) for p in per_seed["pairs"]] == [([0], 0.25, "b"),
                                                                                  ([1], 0.75, "b")]
    assert per_seed["verdict"] == "FAIL"


def test_groups_compare_means_of_pooled_samples():
    # match none: a pools [1, 1] and [3, 3] (mean 2), b [4, 4] (mean 4): ratio 0.5; 4 vs 2 values: independent.
    # b's resampled mean is always 4; a's is 1 + k/2 with k ~ Binomial(4, 1/2), k = 0 or 4 with probability
    # 1/16 each, so the 95 % interval is [1/4, 3/4].
    df, tables = _points({"a1": ("a", 0, [1, 1], [0, 1]), "a2": ("a", 0, [3, 3], [0, 1]),
                          "b1": ("b", 0, [4, 4], [0, 1])})
    (p,) = verdict(df, _energy_claim(match="none", factor=0.8), tables.get)["pairs"]
    assert (p["ratio"], p["ci_low"], p["ci_high"], p["n_a"], p["n_b"], p["paired"]) == \
        pytest.approx((0.5, 0.25, 0.75, 4, 2, False))


def test_outcome_rule_and_verdict_table():
    assert outcome(0.5, 0.59, "<=", 0.6, 0.0) == "PASS"
    assert outcome(0.61, 0.7, "<=", 0.6, 0.0) == "FAIL"
    assert outcome(0.5, 0.7, "<=", 0.6, 0.0) == "UNDECIDED"
    assert outcome(0.6, 0.6, "<", 0.6, 0.0) == "FAIL" and outcome(0.6, 0.6, "<=", 0.6, 0.0) == "PASS"
    assert outcome(0.5, 0.59, "<=", 0.6, 0.02) == "UNDECIDED"  # 0.59 within 2 % of 0.6
    assert outcome(1.5, 2.0, ">=", 1.2, 0.1) == "PASS" and outcome(float("nan"), 1.0, "<", 2.0, 0.0) == "UNDECIDED"
    inf = float("inf")  # resamples whose b mean is 0: an infinite bound is a bound, not a missing one
    assert outcome(2.0, inf, ">", 1.0, 0.0) == "PASS" and outcome(2.0, inf, "<", 1.0, 0.0) == "FAIL"
    assert outcome(0.5, inf, "<", 1.0, 0.0) == "UNDECIDED" and outcome(2.0, inf, ">", 1.0, 0.1) == "PASS"
    table = verdict_table(validate(DF, ClaimsFile(claims=[_claim(tolerance=0.1)])))
    assert table[["verdict", "pairs", "ratio a/b", "CI (all pairs)"]].iloc[0].tolist() == \
        ["FAIL", 2, pytest.approx(0.875), "[0.5, 1.25]"]
    old = [{"id": "x", "text": "t", "verdict": "PASS", "reason": "r", "pairs": [{"ratio_a_to_b": 0.4}]}]
    assert verdict_table(old)[["ratio a/b", "CI (all pairs)"]].iloc[0].tolist() == [0.4, ""]  # older claims.json


def test_which_metrics_are_per_sample_and_their_derived_values():
    assert per_sample("energy_j") and per_sample("energy_network_j") and per_sample("hops")
    assert not per_sample("memory_bits") and not per_sample("cores_used") and not per_sample("energy_j_ci_low")
    t = pd.DataFrame({"energy_j": [3.0, 5.0], "energy_static_j": [1.0, 2.0], "correct": [1.0, 0.0]})
    assert sample_values(t, "energy_dynamic_j").tolist() == [2.0, 3.0]  # total minus static, per sample
    assert sample_values(t, "accuracy_hw").tolist() == [1.0, 0.0]
    assert sample_values(t, "latency_s") is None and sample_values(None, "energy_j") is None


def test_validate_cli_refuses_unknown_metric(tmp_path):
    DF.to_csv(tmp_path / "results.csv", index=False)
    claims = tmp_path / "c.yaml"
    claims.write_text("claims:\n  - {id: typo, text: t, metric: latncy_s, relation: '<', a: {method: sca}, "
                      "b: {method: l1p}}\n")
    proc = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "claim 'typo': metric 'latncy_s' is not a numeric column" in proc.stderr
    assert "latency_s" in proc.stderr and not (tmp_path / "claims.json").exists()


def test_repeated_claim_ids_are_refused(tmp_path):
    bad = tmp_path / "dup.yaml"
    one = "{id: same, text: t, metric: latency_s, relation: '<', a: {method: sca}, b: {method: l1p}}"
    bad.write_text(f"claims:\n  - {one}\n  - {one}\n")
    with pytest.raises(ConfigError, match="claim ids must be unique; repeated: same"):
        load_claims(bad)


def test_select_matches_list_valued_axes_by_their_text():
    """A list-valued axis (model.options.pool_after) is stored as text in results.csv; a claim names one value
    as a one-element list of it."""
    from codesign.claims.verdicts import select

    df = pd.DataFrame({"model.options.pool_after": ["[0]", "[0, 1]", "[0]"], "method": ["dense"] * 3})
    assert select(df, {"model.options.pool_after": [[0]]}).index.tolist() == [0, 2]
    assert select(df, {"model.options.pool_after": [[0, 1]], "method": "dense"}).index.tolist() == [1]
    assert select(df, {"model.options.pool_after": [[0], [0, 1]]}).index.tolist() == [0, 1, 2]
    assert select(df, {"model.options.pool_after": [[1]]}).empty


def test_select_reads_a_quoted_number_as_the_number_and_null_as_an_empty_cell():
    """YAML `ratio: "0.5"` is a string; it matched nothing (an UNDECIDED claim). `error: null` selects the points
    without an error (an empty cell), which matched nothing either."""
    from codesign.claims.verdicts import select

    df = pd.DataFrame({"ratio": [0.0, 0.5, 0.5], "error": [None, "does not fit", None], "method": ["sca"] * 3})
    assert select(df, {"ratio": "0.5"}).index.tolist() == [1, 2]
    assert select(df, {"ratio": ["0", 0.5], "error": None}).index.tolist() == [0, 2]
    assert select(df, {"method": "0.5"}).empty  # a text column keeps text
