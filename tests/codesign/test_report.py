"""Report writer: figures exist (energy and latency with CI error bars), tables carry the right unit conversions,
the HTML is self-contained, and results of older runs (four energy components, no CIs) still report."""
import base64
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from codesign.figures import _energy, _line, _pareto, ci_errors, energy_components
from codesign.report import (ENERGY_TABLE, LATENCY_TABLE, derived_tables, display_table, markdown_table,
                             write_report)
from hwmodels.energy import ENERGY_COMPONENTS


def _table():
    # components (uJ): 1.2 + 0.8 + 0.3 + 0.2 + 0.5 + 0 = 3.0 and 0.6 + 0.4 + 0.2 + 0.1 + 0.2 + 0 = 1.5
    return pd.DataFrame({
        "method": ["sca", "sca"], "ratio": [0.0, 0.5], "accuracy": [0.975, 0.96], "params": [25_000, 12_000],
        "synops": [1.5e5, 0.8e5], "energy_j": [3.0e-6, 1.5e-6], "energy_dynamic_j": [3.0e-6, 1.5e-6],
        "latency_s": [2.0e-5, 1.2e-5],
        "energy_synapse_compute_j": [1.2e-6, 0.6e-6], "energy_synapse_memory_j": [0.8e-6, 0.4e-6],
        "energy_neuron_compute_j": [0.3e-6, 0.2e-6], "energy_neuron_memory_j": [0.2e-6, 0.1e-6],
        "energy_network_j": [0.5e-6, 0.2e-6], "energy_static_j": [0.0, 0.0],
        "energy_j_ci_low": [2.5e-6, 1.4e-6], "energy_j_ci_high": [3.25e-6, 1.55e-6],
        "latency_s_ci_low": [1.5e-5, 1.0e-5], "latency_s_ci_high": [2.2e-5, 1.3e-5],
        "latency_p50_s": [1.9e-5, 1.1e-5], "latency_p95_s": [2.4e-5, 1.4e-5], "latency_p99_s": [2.6e-5, 1.5e-5],
        "accuracy_hw": [0.95, 0.9], "accuracy_hw_ci_low": [0.9, 0.8], "accuracy_hw_ci_high": [1.0, 0.95]})


def _old_table():
    """A results table of a run folder written before the six-way split and the CI columns."""
    return pd.DataFrame({
        "method": ["sca", "sca"], "ratio": [0.0, 0.5], "accuracy": [0.975, 0.96], "params": [25_000, 12_000],
        "synops": [1.5e5, 0.8e5], "energy_j": [3.0e-6, 1.5e-6], "latency_s": [2.0e-5, 1.2e-5],
        "energy_synapse_j": [2.0e-6, 1.0e-6], "energy_neuron_j": [0.5e-6, 0.3e-6],
        "energy_network_j": [0.5e-6, 0.2e-6], "energy_static_j": [0.0, 0.0]})


def test_energy_components_and_units():
    df = _table()
    # the six of hwmodels in their order; the total and energy_dynamic_j are not components
    assert energy_components(df) == list(ENERGY_COMPONENTS)
    assert energy_components(df[df.columns[::-1]]) == list(ENERGY_COMPONENTS)
    assert energy_components(_old_table()) == ["synapse", "neuron", "network", "static"]
    shown = display_table(df)
    assert shown["energy / inf. (uJ)"].tolist() == [3.0, 1.5]
    assert shown["latency / inf. (us)"].tolist() == [20.0, 12.0]
    assert shown["accuracy (%)"].tolist() == [97.5, 96.0]


def test_markdown_table_shape():
    md = markdown_table(display_table(_table())).splitlines()
    assert len(md) == 2 + 2
    assert md[0].count("|") == md[2].count("|")


def test_write_report_is_self_contained(tmp_path):
    write_report(tmp_path, _table(), "seed: 0\n", ["one line"], title="t")
    page = (tmp_path / "report.html").read_text()
    for name in ["accuracy", "params", "energy", "latency"]:
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(img)[:4] == b"\x89PNG" for img in images)
    # nothing is fetched from elsewhere: no external src/href and no scripts
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page
    md = (tmp_path / "report.md").read_text()
    assert "figures/energy.png" in md and "seed: 0" in md


def _bars(ax) -> list[np.ndarray]:
    """(low, high) y extents (x extents for horizontal bars) of the error bars of every errorbar container."""
    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer) and c.lines[2]:
            segs = c.lines[2][0].get_segments()
            out.append(np.array([[s[0][1], s[1][1]] if s[0][0] == s[1][0] else [s[0][0], s[1][0]] for s in segs]))
    return out


def test_energy_and_latency_figures_draw_the_ci_columns_as_error_bars():
    df = _table()
    assert ci_errors(df, "energy_j", 1e6) == pytest.approx(np.array([[0.5, 0.1], [0.25, 0.05]]))
    assert ci_errors(df, "accuracy") is None
    clipped = df.assign(energy_j_ci_low=[3.1e-6, 1.4e-6])  # an interval above the point: no bar below it
    assert ci_errors(clipped, "energy_j")[0, 0] == 0.0
    fig = _line(df, "latency_s", 1e6, "us", "Latency")
    (bars,) = _bars(fig.axes[0])
    assert bars == pytest.approx(np.array([[15.0, 22.0], [10.0, 13.0]]))  # the CI bounds in us
    plt.close(fig)
    fig = _energy(df)
    (bars,) = _bars(fig.axes[0])
    assert bars == pytest.approx(np.array([[2.5, 3.25], [1.4, 1.55]]))  # around the stacked total, uJ
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 2 * 6 and sum(heights) == pytest.approx(4.5)
    plt.close(fig)
    fig = _pareto(df.assign(pareto=[True, False]))
    bars = np.concatenate(_bars(fig.axes[0]))  # horizontal: energy CI of each point, front and not
    assert bars[np.argsort(bars[:, 0])] == pytest.approx(np.array([[1.4, 1.55], [2.5, 3.25]]))
    plt.close(fig)
    fig = _line(_old_table(), "latency_s", 1e6, "us", "Latency")  # no CI columns: no bars
    assert _bars(fig.axes[0]) == []
    plt.close(fig)


def test_energy_and_latency_tables_with_intervals():
    tables = derived_tables(_table())
    energy, latency = tables[ENERGY_TABLE], tables[LATENCY_TABLE]
    assert list(energy.columns) == ["method", "ratio", *ENERGY_COMPONENTS, "total", "total 95 % CI"]
    assert energy["synapse_compute"].tolist() == pytest.approx([1.2, 0.6])
    assert energy["total 95 % CI"].tolist() == ["[2.5, 3.25]", "[1.4, 1.55]"]
    assert latency["p95"].tolist() == pytest.approx([24.0, 14.0])
    assert latency["mean 95 % CI"].tolist() == ["[15, 22]", "[10, 13]"]
    assert latency["accuracy on chip 95 % CI"].tolist() == ["[90, 100]", "[80, 95]"]
    old = derived_tables(_old_table())  # an older run: its four components, no intervals or percentiles
    assert list(old) == [ENERGY_TABLE] and list(old[ENERGY_TABLE].columns) == \
        ["method", "ratio", "synapse", "neuron", "network", "static", "total"]


def test_old_results_still_report(tmp_path):
    write_report(tmp_path, _old_table(), "seed: 0\n", ["one line"], title="old")
    md = (tmp_path / "report.md").read_text()
    assert f"## {ENERGY_TABLE}" in md and LATENCY_TABLE not in md
    assert (tmp_path / "figures" / "energy.png").is_file()
