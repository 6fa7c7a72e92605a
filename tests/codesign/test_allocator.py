"""Hardware-aware allocator: probe curves, marginal scores and the greedy allocation by hand; the CLI end to end."""
import subprocess
import sys

import pandas as pd
import pytest

from codesign.allocator import AllocatorConfig, _curve, allocate, layer_score
from codesign.config import ConfigError, load_config
from codesign.allocator import check_method


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
    assert _curve(t, "a", "d_energy_frac", 0.0) == 0.0
    assert _curve(t, "a", "d_energy_frac", 0.375) == pytest.approx(0.6 * 0.375)
    # b's accuracy curve 0.8 r^2 through the probe points: last segment slope (0.45 - 0.2) / 0.25 = 1.0
    assert _curve(t, "b", "d_accuracy", 0.85) == pytest.approx(0.45 + 1.0 * 0.1)


def test_score_and_greedy_allocation_by_hand():
    t, cfg = _probe(), AllocatorConfig(step=0.25, max_ratio=0.75)
    # a at 0 -> 0.25: saving 0.6*.25 + 0.4*.25 + 0.2*.25 = 0.3, accuracy lost 0.0025 -> 0.3 / 0.0035
    assert layer_score(t, "a", 0.0, cfg) == pytest.approx(0.3 / (0.0025 + 1e-3))
    # b at 0 -> 0.25: saving (0.1 + 0.1 + 0.8) * .25 = 0.25, accuracy lost 0.05 -> 0.25 / 0.051
    assert layer_score(t, "b", 0.0, cfg) == pytest.approx(0.25 / 0.051)
    params = {"a": 100, "b": 400}  # parameters removed per unit ratio

    def params_of(ratios):
        return 1000 - sum(params[k] * v for k, v in ratios.items())

    # budget 850: a goes 0 -> 0.25 -> 0.5 -> 0.75 (removes 75), then b must take 0.25 (removes 100): 825 <= 850
    assert allocate(t, 850, params_of, cfg) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="cannot be reached"):
        allocate(t, 100, params_of, cfg)


def test_method_without_layer_ratios_is_refused():
    with pytest.raises(ConfigError, match="compression.method: 'sca' has no per-layer ratios; use one of"):
        check_method(load_config())


@pytest.mark.slow
def test_allocate_cli_on_digits(tmp_path):
    args = ["--set", "data.dataset=digits", "--set", "compression.method=magnitude_channel",
            "--set", "compression.params={}", "--set", "train.epochs=3", "--set", "hardware.n_samples=20",
            "--set", "run_name=al", "--ratio", "0.5"]
    proc = subprocess.run([sys.executable, "-m", "codesign", "allocate", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "reports" / "al"
    df = pd.read_csv(run / "results.csv")
    assert df["series"].tolist() == ["uniform", "hardware-aware"]
    assert df["params"].iloc[1] <= df["params"].iloc[0]
    probe = pd.read_csv(run / "allocation.csv", dtype={"layer": str})
    assert set(probe["layer"]) == {"0", "4"} and len(probe) == 6
    assert (probe["d_energy_frac"] > 0).all()  # pruning any conv alone saves energy on the chip
    assert "Per-layer probe" in (run / "report.md").read_text()
