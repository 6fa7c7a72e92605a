"""Report writer: figures exist (energy and latency with CI error bars), tables carry the right unit conversions,
the HTML is self-contained, and results of older runs (four energy components, no CIs) still report."""
import base64
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from codesign.reporting.units import point_outcome
from codesign.reporting.figures import energy_figure, hardware_figure, line_figure, pareto_figure, ci_errors, energy_components, result_figures
from codesign.reporting.report import (ENERGY_TABLE, LATENCY_TABLE, derived_tables, display_table, markdown_table,
                             rebuild_report, result_figures, write_report)
from hwmodels.energy.costs import ENERGY_COMPONENTS


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
    assert shown["energy / inf. (\u00b5J)"].tolist() == [3.0, 1.5]
    assert shown["latency / inf. (\u00b5s)"].tolist() == [20.0, 12.0]
    assert shown["accuracy (%)"].tolist() == [97.5, 96.0]
    assert "accuracy on chip (%)" not in display_table(df.drop(columns="accuracy_hw"))
    # the chip's accuracy, which weight-bit sweeps and searches rank on, is shown beside the float model's
    chip = display_table(df.assign(accuracy_hw=[0.5, 0.25]))
    assert chip["accuracy on chip (%)"].tolist() == [50.0, 25.0]
    assert list(chip.columns).index("accuracy on chip (%)") == list(chip.columns).index("accuracy (%)") + 1
    row = df.assign(accuracy_hw=[0.5, 0.25]).iloc[1].to_dict()
    assert point_outcome(row) == "accuracy 96.00% (on chip 25.00%), energy 1.500 \u00b5J, latency 12.00 \u00b5s"
    plain = point_outcome(df.drop(columns="accuracy_hw").iloc[1].to_dict())
    assert plain == "accuracy 96.00%, energy 1.500 \u00b5J, latency 12.00 \u00b5s"


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
    fig = line_figure(df, "latency_s", 1e6, "us", "Latency")
    (bars,) = _bars(fig.axes[0])
    assert bars == pytest.approx(np.array([[15.0, 22.0], [10.0, 13.0]]))  # the CI bounds in us
    plt.close(fig)
    fig = energy_figure(df)
    (bars,) = _bars(fig.axes[0])
    assert bars == pytest.approx(np.array([[2.5, 3.25], [1.4, 1.55]]))  # around the stacked total, uJ
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 2 * 6 and sum(heights) == pytest.approx(4.5)
    plt.close(fig)
    fig = pareto_figure(df.assign(pareto=[True, False]))
    bars = np.concatenate(_bars(fig.axes[0]))  # horizontal: energy CI of each point, front and not
    assert bars[np.argsort(bars[:, 0])] == pytest.approx(np.array([[1.4, 1.55], [2.5, 3.25]]))
    plt.close(fig)
    fig = line_figure(_old_table(), "latency_s", 1e6, "us", "Latency")  # no CI columns: no bars
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


def _cells(line: str) -> list[str]:
    """Cells of a markdown table row, split on the pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_labels_with_pipes_and_markup_stay_one_cell(tmp_path):
    labels = ["sca | bits=4 | preset=loihi", "a[red]|<b>x</b>"]
    df = _table().assign(series=labels, point_id=["p0", "p1"])
    write_report(tmp_path, df, "seed: 0\n", ["one line"], title="t")
    md = (tmp_path / "report.md").read_text().splitlines()
    head = md.index("## Results") + 2
    header, rows = _cells(md[head]), [_cells(ln) for ln in md[head + 2:head + 4]]
    assert all(len(r) == len(header) for r in rows)
    assert [r[0] for r in rows] == ["sca \\| bits=4 \\| preset=loihi", "a[red]\\|<b>x</b>"]
    page = (tmp_path / "report.html").read_text()
    assert "<td>sca | bits=4 | preset=loihi</td>" in page and "<td>a[red]|&lt;b&gt;x&lt;/b&gt;</td>" in page
    assert "<b>x</b>" not in page


def _texts(fig) -> list[str]:
    """Every text of a figure: titles, axis labels, tick labels, annotations."""
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_text()]


def test_pareto_points_are_labelled_and_units_use_micro():
    df = _table().assign(pareto=[True, True])
    fig = pareto_figure(df)
    texts = _texts(fig)
    assert "r=0" in texts and "r=0.5" in texts
    assert fig.axes[0].get_xlabel() == "energy per inference (\u00b5J)"
    plt.close(fig)
    fig = pareto_figure(df.assign(series=["sca | preset=loihi", "sca | preset=speck"]))
    assert {"sca | preset=loihi, r=0", "sca | preset=speck, r=0.5"} <= set(_texts(fig))
    plt.close(fig)
    many = pd.concat([df] * 3, ignore_index=True).assign(ratio=[0.0, 0.5, 0.1, 0.6, 0.2, 0.7],
                                                         energy_j=[6e-6, 1e-6, 5e-6, 2e-6, 4e-6, 3e-6])
    fig = pareto_figure(many)  # more front points than fit beside them: numbered in energy order, with a key
    texts = _texts(fig)
    assert {"1", "2", "6"} <= set(texts) and "1: r=0.5\n2: r=0.6\n3: r=0.7\n4: r=0.2\n5: r=0.1\n6: r=0" in texts
    plt.close(fig)
    fig = energy_figure(df)
    assert fig.axes[0].get_ylabel() == "energy per inference (\u00b5J)"
    plt.close(fig)


def _hardware_table() -> pd.DataFrame:
    """Four points: two presets x two neurons_per_core values, at ratio 0.5 (a sweep's axis columns)."""
    base = _table().iloc[[1, 1, 1, 1]].reset_index(drop=True)
    return base.assign(**{"hardware.preset": ["loihi", "loihi", "speck", "speck"],
                          "hardware.overrides.core.neurons_per_core": [256, 512, 256, 512],
                          "compression.params.bits": [np.nan] * 4, "energy_j": [1e-6, 2e-6, 3e-6, 4e-6],
                          "latency_s": [1e-5, 2e-5, 3e-5, 4e-5], "accuracy": [0.9, 0.91, 0.92, 0.93]})


def test_metrics_against_each_swept_hardware_parameter(tmp_path):
    df = _hardware_table()
    names = [f.name for f in result_figures(df)]
    assert names[-2:] == ["hw-hardware.preset", "hw-hardware.overrides.core.neurons_per_core"]
    fig = hardware_figure(df, "hardware.overrides.core.neurons_per_core")
    assert [ax.get_ylabel() for ax in fig.axes] == ["energy per inference (\u00b5J)", "latency per inference "
                                                    "(\u00b5s)", "accuracy (%)"]
    assert {ax.get_xlabel() for ax in fig.axes} == {"hardware.overrides.core.neurons_per_core"}
    # one curve per preset, x = neurons per core, y in µJ
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"sca, r=0.5, preset=loihi", "sca, r=0.5, preset=speck"}
    assert lines["sca, r=0.5, preset=speck"].get_xydata().tolist() == [[256, 3.0], [512, 4.0]]
    plt.close(fig)
    fig = hardware_figure(df, "hardware.preset")  # names on the x axis
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["loihi", "speck"]
    plt.close(fig)
    # an axis only some grids have (NaN elsewhere) names its curves with '-' for the rows without it
    mixed = df.assign(**{"compression.params.bits": [4, np.nan, 4, np.nan]})
    fig = hardware_figure(mixed, "hardware.preset")
    assert {ln.get_label() for ln in fig.axes[2].get_lines()} == {
        "sca, r=0.5, neurons_per_core=256, bits=4.0", "sca, r=0.5, neurons_per_core=512, bits=-"}
    plt.close(fig)
    write_report(tmp_path, df.assign(point_id=["a", "b", "c", "d"]), "", ["s"], title="hw")
    for name in ("hw-hardware.preset", "hw-hardware.overrides.core.neurons_per_core"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"figures/{name}.png" in (tmp_path / "report.md").read_text()


_META = '{"title": "t", "summary": [], "tables": {}, "config_file": "c.yaml"}'


@pytest.mark.parametrize("meta, needle", [
    (_META.replace('"c.yaml"', '"../../outside.txt"'), "config_file: String should match pattern"),
    (_META.replace("{}", '{"x": "../../outside.csv"}'), "tables.x: String should match pattern"),
    (_META.replace("{}", "3"), "tables: Input should be a valid dictionary"),
    (_META.replace("[]", '"text"'), "summary: Input should be a valid list"),
    ("{}", "title: Field required"),
    ("[1, 2]", "the file: Input should be a valid dictionary"),
    ("{'bad json", "is not JSON"),
])
def test_a_crafted_report_meta_is_one_line_and_reads_nothing_outside(tmp_path, meta, needle):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "outside.txt").write_text("SECRET")
    write_report(run, _table(), "seed: 0\n", ["one line"], title="t")
    (run / "report_meta.json").write_text(meta)
    with pytest.raises(ValueError, match=re.escape(needle)) as err:
        rebuild_report(run)
    assert "\n" not in str(err.value) and "report_meta.json" in str(err.value)
    assert "SECRET" not in (run / "report.md").read_text()


@pytest.mark.parametrize("name, content", [("provenance.json", "{nope"), ("claims.json", "{nope"),
                                           ("claims.json", "[1, 2]")])
def test_damaged_side_files_are_one_line_naming_them(tmp_path, name, content):
    write_report(tmp_path, _table(), "seed: 0\n", ["one line"], title="t")
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=re.escape(name)) as err:
        rebuild_report(tmp_path)
    assert "\n" not in str(err.value)


def test_a_run_where_no_point_fitted_draws_its_figures_without_warnings():
    # every figure's legend had nothing to show: matplotlib printed "No artists with labels found" three times
    import warnings
    df = _table().assign(point_id=["p0", "p1"], error="network does not fit chip 'x'")
    df[[c for c in df.columns if c.startswith(("energy", "latency", "accuracy_hw", "synops"))]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = result_figures(df)
    assert len(figures) == 4


def test_a_front_chosen_on_the_chips_accuracy_is_plotted_on_it():
    from codesign.reporting.pareto import PARETO_ON, front_accuracy
    df = _table().assign(pareto=[True, True], accuracy_hw=[0.5, 0.4])
    assert front_accuracy(df) == "accuracy"  # no record: the float model's
    chip = df.assign(**{PARETO_ON: "accuracy_hw,energy_j,latency_s"})
    assert front_accuracy(chip) == "accuracy_hw"
    ys = sorted(y for line in pareto_figure(chip).axes[0].lines for y in line.get_ydata())
    assert set(np.round(ys, 6)) == {40.0, 50.0}  # the chip accuracies, not the float ones (97.5, 96)
    assert pareto_figure(chip).axes[0].get_ylabel().startswith("accuracy on")


def test_a_sweep_over_weight_bits_chooses_its_front_on_the_chips_accuracy():
    from codesign.config.sweep import load_spec
    from codesign.execute.sweep import sweep_front_accuracy
    df = pd.DataFrame({"accuracy": [0.9, 0.9], "accuracy_hw": [0.9, 0.2]})  # 2-bit weights lose on the chip only
    assert sweep_front_accuracy(load_spec(None, ["axes={hardware.weight_bits: [2, 8]}"]), df) == "accuracy_hw"
    assert sweep_front_accuracy(load_spec(None, ["axes={compression.ratio: [0.5]}"]), df) == "accuracy"


def test_boolean_cells_read_yes_and_no():
    from codesign.reporting.report import format_value
    assert [format_value(v) for v in (True, False, np.bool_(True), 1, 1234.5, 0.5)] == \
        ["yes", "no", "yes", "1", "1,234", "0.5"]
