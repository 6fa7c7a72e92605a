"""Hardware-aware allocator: probe curves, marginal scores and the greedy allocation by hand; the CLI end to end."""
import subprocess
import sys

import pandas as pd
import pytest

from codesign.execute.allocate import AllocatorConfig, ratio_curve, allocate, candidates, layer_score, select
from codesign.config.run import ConfigError, load_config
from codesign.execute.allocate import check_method


def _probe():
    # layer "a": energy-heavy and accuracy-robust; layer "b": cheap on hardware, fragile
    rows = []
    for r in (0.25, 0.5, 0.75):
        rows.append({"layer": "a", "probe_ratio": r, "d_accuracy": 0.01 * r, "d_params_frac": 0.2 * r,
                     "d_energy_frac": 0.6 * r, "d_latency_frac": 0.4 * r})
        rows.append({"layer": "b", "probe_ratio": r, "d_accuracy": 0.2 * r * r * 4, "d_params_frac": 0.8 * r,
                     "d_energy_frac": 0.1 * r, "d_latency_frac": 0.1 * r})
    return pd.DataFrame(rows)


def test_curve_interpolates_and_extends_the_last_slope():
    t = _probe()
    assert ratio_curve(t, "a", "d_energy_frac", 0.0) == 0.0
    assert ratio_curve(t, "a", "d_energy_frac", 0.375) == pytest.approx(0.6 * 0.375)
    # b's accuracy curve 0.8 r^2 through the probe points: last segment slope (0.45 - 0.2) / 0.25 = 1.0
    assert ratio_curve(t, "b", "d_accuracy", 0.85) == pytest.approx(0.45 + 1.0 * 0.1)


def test_score_and_greedy_allocation_by_hand():
    t, cfg = _probe(), AllocatorConfig(step=0.25, max_ratio=0.75)
    # a at 0 -> 0.25: saving (0.6 + 0.4) * .25 = 0.25, params removed 0.2 * .25 = 0.05, accuracy lost 0.0025
    assert layer_score(t, "a", 0.0, cfg, lam=0.0) == pytest.approx(0.25 / 0.05)
    assert layer_score(t, "a", 0.0, cfg, lam=10.0) == pytest.approx((0.25 - 10 * 0.0025) / 0.05)
    # b at 0 -> 0.25: saving 0.05, params 0.2, accuracy lost 0.8 * .25^2 = 0.05
    assert layer_score(t, "b", 0.0, cfg, lam=10.0) == pytest.approx((0.05 - 10 * 0.05) / 0.2)
    params = {"a": 100, "b": 400}  # parameters removed per unit ratio

    def params_of(ratios):
        return 1000 - sum(params[k] * v for k, v in ratios.items())

    # budget 850: a goes 0 -> 0.25 -> 0.5 -> 0.75 (removes 75), then b must take 0.25 (removes 100): 825 <= 850
    assert allocate(t, 850, params_of, cfg, lam=0.0) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="cannot be reached"):
        allocate(t, 100, params_of, cfg)
    # candidates: uniform first, then distinct greedy allocations that all meet the budget; holding b at 0.5
    # leaves nothing for a to do (800 <= 850); holding a at 0.5 needs b at 0.25 (850), a at 0.25 needs b at 0.5
    cands = candidates(t, 0.5, 850, params_of, AllocatorConfig(step=0.25, max_ratio=0.75, lambdas=(0.0, 0.0)))
    assert cands[:2] == [{"a": 0.5, "b": 0.5}, {"a": 0.75, "b": 0.25}]
    assert {"a": 0.0, "b": 0.5} in cands and {"a": 0.5, "b": 0.25} in cands and {"a": 0.25, "b": 0.5} in cands
    assert len({tuple(c.items()) for c in cands}) == len(cands)
    assert all(params_of(c) <= 850 for c in cands[1:])


def test_selection_keeps_accuracy_within_tolerance():
    rows = pd.DataFrame({"accuracy": [0.95, 0.90, 0.948, 0.96], "energy_j": [10.0, 5.0, 8.0, 9.5],
                         "latency_s": [1.0, 1.0, 1.0, 1.0]})
    # row 1 is cheapest but loses 5 points; row 2 is within 0.5 points and cheaper than row 3
    assert select(rows, AllocatorConfig()) == 2
    assert select(rows, AllocatorConfig(accuracy_tolerance=0.1)) == 1
    assert select(rows.iloc[[0, 1]], AllocatorConfig()) == 0


def test_method_without_layer_ratios_is_refused():
    with pytest.raises(ConfigError, match="compression.method: 'sca' has no per-layer ratios; use one of"):
        check_method(load_config())


@pytest.mark.slow
def test_allocate_cli_on_digits(tmp_path):
    # the default config's SCA params are dropped with its method; the folder is named with a timestamp
    args = ["--set", "data.dataset=digits", "--set", "compression.method=magnitude_channel",
            "--set", "train.epochs=3", "--set", "hardware.n_samples=20", "--ratio", "0.5"]
    proc = subprocess.run([sys.executable, "-m", "codesign", "allocate", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "reports").iterdir()
    assert run.name.startswith("allocate-magnitude_channel-r0.5-2") and len(run.name) == 47, run.name
    df = pd.read_csv(run / "results.csv")
    assert df["series"].tolist() == ["uniform", "hardware-aware"]
    assert df["params"].iloc[1] <= df["params"].iloc[0]
    # both compared networks keep their per-sample table and the bootstrap interval of their energy
    for _, row in df.iterrows():
        samples = pd.read_csv(run / "points" / row["point_id"] / "samples.csv")
        assert len(samples) == 20 and samples["energy_j"].mean() == pytest.approx(row["energy_j"], rel=1e-9)
        assert row["energy_j_ci_low"] <= row["energy_j"] <= row["energy_j_ci_high"]
    probe = pd.read_csv(run / "allocation.csv", dtype={"layer": str})
    assert set(probe["layer"]) == {"0", "4"} and len(probe) == 6
    assert (probe["d_energy_frac"] > 0).all()  # pruning any conv alone saves energy on the chip
    assert "Per-layer probe" in (run / "report.md").read_text()
    cands = pd.read_csv(run / "candidates.csv")
    assert cands["candidate"].iloc[0] == "uniform" and cands["selected"].sum() == 1


def test_allocate_resume_of_a_missing_folder_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codesign", "allocate", "--set", "data.dataset=digits", "--set",
                           "compression.method=magnitude_channel", "--set", "run_name=gone", "--resume"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--resume: 'reports/gone' does not exist; set run_name to the run to continue" in proc.stderr
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_allocate_refuses_a_network_the_chip_cannot_hold_before_the_run_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codesign", "allocate", "--set", "data.dataset=digits", "--set",
                           "compression.method=magnitude_channel", "--set", "hardware.overrides.mesh_width=1",
                           "--set", "hardware.overrides.mesh_height=1", "--set", "hardware.overrides.cores_per_tile=1",
                           "--ratio", "0.5"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "does not fit" in proc.stderr, proc.stderr  # it left an .incomplete folder
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_the_allocator_probes_only_the_convs_a_method_prunes():
    """QP-SNN never prunes the last conv: probing it (a per-layer ratio there) is refused by the method, and was
    a flat, meaningless curve before."""
    from spikingjelly.activation_based import layer, neuron
    from torch import nn

    from codesign.execute.allocate import prunable_convs
    net = nn.Sequential(layer.Conv2d(1, 4, 3, step_mode="m"), neuron.IFNode(step_mode="m"),
                        layer.Conv2d(4, 8, 3, step_mode="m"), neuron.IFNode(step_mode="m"),
                        layer.Flatten(step_mode="m"), layer.Linear(8 * 4 * 4, 10, step_mode="m"))
    assert prunable_convs(net, "magnitude_channel") == ["0", "2"]
    assert prunable_convs(net, "qp_snn") == ["0"]
