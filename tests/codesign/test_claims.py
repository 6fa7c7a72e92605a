"""Claim verdicts on hand-made results: pairing by params / ratio / medians, PASS, FAIL, UNDECIDED; shipped file."""
import json
import subprocess
import sys
from importlib import resources

import pandas as pd
import pytest

from codesign.claims import Claim, ClaimsFile, load_claims, validate, verdict
from codesign.config import ConfigError

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
    assert v["verdict"] == "FAIL" and v["reason"] == "1 of 2 pairs fail"
    assert verdict(DF, _claim(tolerance=0.01))["verdict"] == "UNDECIDED"  # no pair within 1 %


def test_ratio_pairs_factor_margin_and_ties():
    c = _claim(metric="cores_used", a={"method": "qp", "bits": 4}, b={"method": "qp", "bits": 8}, match="ratio")
    assert verdict(DF, c)["verdict"] == "FAIL"  # 5 < 5 is false: a tie fails a strict relation
    assert verdict(DF, c.model_copy(update={"relation": "<="}))["verdict"] == "PASS"
    assert verdict(DF, c.model_copy(update={"margin": 0.1}))["verdict"] == "UNDECIDED"
    med = _claim(match="none", relation="<=", factor=0.8)  # median sca 0.75 <= 0.8 x median l1p 1.2 = 0.96
    v = verdict(DF, med)
    assert v["verdict"] == "PASS" and v["pairs"][0]["ratio_a_to_b"] == pytest.approx(0.75 / 1.2)


def test_missing_metric_or_group_is_undecided():
    assert verdict(DF, _claim(metric="energy_j"))["verdict"] == "UNDECIDED"
    assert verdict(DF, _claim(b={"method": "dsp"}))["verdict"] == "UNDECIDED"
    assert verdict(DF, _claim(b={"nope": 1}))["verdict"] == "UNDECIDED"


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
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "claims.json").read_text())[0]["verdict"] == "FAIL"
    missing = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "results.csv' does not exist" in missing.stderr
