"""Report writer: figures exist, tables carry the right unit conversions, the HTML is self-contained."""
import base64
import re

import pandas as pd

from codesign.figures import energy_components
from codesign.report import display_table, markdown_table, write_report


def _table():
    return pd.DataFrame({
        "method": ["sca", "sca"], "ratio": [0.0, 0.5], "accuracy": [0.975, 0.96], "params": [25_000, 12_000],
        "synops": [1.5e5, 0.8e5], "energy_j": [3.0e-6, 1.5e-6], "latency_s": [2.0e-5, 1.2e-5],
        "energy_synapse_j": [2.0e-6, 1.0e-6], "energy_neuron_j": [0.5e-6, 0.3e-6],
        "energy_network_j": [0.5e-6, 0.2e-6], "energy_static_j": [0.0, 0.0]})


def test_energy_components_and_units():
    df = _table()
    assert energy_components(df) == ["synapse", "neuron", "network", "static"]
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
