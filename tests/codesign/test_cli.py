"""The `codesign` CLI as a user runs it: an end-to-end run on digits, and bad input that exits 2 cleanly."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from codesign.config import load_config
from hwmodels.energy import ENERGY_COMPONENTS

QUICK = ["--set", "data.dataset=digits", "--set", "train.epochs=3", "--set", "compression.ratios=[0,0.5]",
         "--set", "compression.params.epochs=1", "--set", "compression.params.finetune_epochs=1",
         "--set", "hardware.n_samples=20", "--no-progress"]


def _codesign(tmp_path, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "codesign", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_end_to_end_run_on_digits(tmp_path):
    proc = _codesign(tmp_path, "run", "--set", "run_name=e2e", *QUICK)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "reports" / "e2e"
    df = pd.read_csv(run / "results.csv")
    assert list(df.columns[:7]) == ["method", "ratio", "accuracy", "params", "synops", "energy_j", "latency_s"]
    assert df["ratio"].tolist() == [0.0, 0.5]
    assert df["accuracy"].min() > 0.5
    assert df["params"].iloc[1] < df["params"].iloc[0]
    # the six components add up to the total, and pruning half the channels saves synaptic events and energy
    parts = df[[f"energy_{c}_j" for c in ENERGY_COMPONENTS]].sum(axis=1)
    assert (abs(parts - df["energy_j"]) <= 1e-12 * df["energy_j"]).all()
    # bootstrap intervals and percentiles over the 20 samples, and the chip's own accuracy (quantized weights)
    assert ((df["energy_j_ci_low"] <= df["energy_j"]) & (df["energy_j"] <= df["energy_j_ci_high"])).all()
    assert (df["latency_p50_s"] <= df["latency_p99_s"]).all() and df["accuracy_hw"].between(0.5, 1.0).all()
    assert df["synops"].iloc[1] < df["synops"].iloc[0]
    assert df["energy_j"].iloc[1] < df["energy_j"].iloc[0]
    for name in ("config.resolved.yaml", "report.md", "report.html", "figures/energy.png", "figures/energy.svg",
                 "provenance.json", "results.parquet", "artifacts/sca-r0.graph.npz", "artifacts/sca-r0.5.trace.npz"):
        assert (run / name).is_file(), name
    # every point's hardware and per-sample tables are stored; the samples average to the results row
    for _, row in df.iterrows():
        for table in ("populations", "cores", "links", "steps", "samples"):
            assert (run / "points" / row["point_id"] / f"{table}.csv").is_file()
        samples = pd.read_csv(run / "points" / row["point_id"] / "samples.csv")
        assert len(samples) == 20 and samples["energy_j"].mean() == pytest.approx(row["energy_j"], rel=1e-9)
        assert samples["correct"].mean() == pytest.approx(row["accuracy_hw"])
    md = (run / "report.md").read_text()
    assert md.count("## Hardware view:") == 2 and "figures/core_map-" in md and "figures/link_load-" in md
    resolved = load_config(run / "config.resolved.yaml")
    assert resolved.run_name == "e2e" and resolved.data.dataset == "digits" and resolved.hardware.n_samples == 20
    assert (run / "report.md").read_text().startswith("# Co-design run: e2e\n")
    assert "SynOps" in proc.stdout and "(uJ)" in proc.stdout
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("args, expected", [
    (["--set", "train.epochz=1"], "config: unknown key 'train.epochz'; accepted keys here: epochs"),
    (["--set", "compression.ratios=[0.5,1.0]"], "config: compression.ratios: 1.0 is outside [0, 1)"),
    (["--set", "hardware.preset=nochip"], "hardware.preset: 'nochip' is not one of generic-45nm, lemaire-45nm, loihi"),
    (["--set", "data.dataset=cifar"], "data.dataset: 'cifar' is not one of mnist5k, digits"),
    (["--set", "compression.params.qq=1"], "compression.params: unknown key 'qq' for method 'sca'"),
    (["--set", "hardware.overrides={core.bogus: 1}"], "hardware: "),
    (["--set", "hardware.overrides={mesh_width: 1, mesh_height: 1}", *QUICK], "does not fit"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, expected):
    proc = _codesign(tmp_path, "run", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    reports = tmp_path / "reports"
    assert not reports.exists() or not any(reports.iterdir())


def test_missing_config_file_and_presets_commands(tmp_path):
    proc = _codesign(tmp_path, "run", "nope.yaml")
    assert proc.returncode == 2 and "config: file 'nope.yaml' does not exist" in proc.stderr
    listing = _codesign(tmp_path, "presets", "list")
    assert listing.returncode == 0 and "loihi" in listing.stdout.split()
    shown = _codesign(tmp_path, "presets", "show", "loihi")
    assert shown.returncode == 0
    assert any("core.synapse_memory_bits" in ln and "1048576" in ln for ln in shown.stdout.splitlines())
    bad = _codesign(tmp_path, "presets", "show", "nochip")
    assert bad.returncode == 2 and "nochip" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sweep", "search"])
def test_unreachable_scheduler_exits_2_before_writing_anything(tmp_path, command):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: {data: {dataset: digits}}\naxes: {compression.ratio: [0.0]}\n"
                    "search: {n_trials: 1, space: {compression.ratio: [0.0, 0.5]}}\n")
    proc = _codesign(tmp_path, command, str(spec), "--scheduler", "tcp://127.0.0.1:9")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "execution.scheduler: no dask scheduler answers at 'tcp://127.0.0.1:9'" in lines[0]
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
