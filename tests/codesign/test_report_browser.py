"""report.html renders offline in headless Chromium and shows every figure it lists (and they are real images)."""
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import hwmodels
from codesign.reporting.hwfigures import DETAIL_FIGURES, PointDetails, bottleneck_core, core_utilization
from codesign.reporting.report import rebuild_report, write_report
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_NETWORK = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _details(rng) -> PointDetails:
    pops = [Population("in", (1, 6, 6), NeuronModel("input")), Population("h", (4, 6, 6), NeuronModel("LIF", tau=2.0)),
            Population("o", (3,), NeuronModel("IF", threshold=float("inf")))]
    projs = [Projection("c", "in", "h", "conv", rng.normal(size=(4, 1, 3, 3)), padding=(1, 1)),
             Projection("f", "h", "o", "dense", rng.normal(size=(3, 144)))]
    graph = NetworkGraph(pops, projs)
    spikes = {"in": rng.random((3, 2, 1, 6, 6)) < 0.3, "h": rng.random((3, 2, 4, 6, 6)) < 0.2,
              "o": np.zeros((3, 2, 3))}
    trace = EventTrace.from_dense(spikes)
    chip = hwmodels.load_preset("loihi", {"core.neurons_per_core": 40})  # spread over several tiles: links carry load
    return PointDetails.from_sim(hwmodels.simulate(graph, trace, chip))


def _run_folder(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"point_id": ["p0", "p1"], "method": ["sca", "sca"], "ratio": [0.0, 0.5],
                       "accuracy": [0.97, 0.95], "params": [1000, 500], "synops": [10.0, 5.0],
                       "energy_j": [2e-6, 1e-6], "latency_s": [1e-5, 6e-6],
                       "energy_synapse_compute_j": [1.0e-6, 0.5e-6], "energy_synapse_memory_j": [0.5e-6, 0.2e-6],
                       "energy_neuron_compute_j": [0.3e-6, 0.2e-6], "energy_neuron_memory_j": [0.2e-6, 0.1e-6],
                       "energy_network_j": [0.0, 0.0], "energy_static_j": [0.0, 0.0],
                       "energy_j_ci_low": [1.8e-6, 0.9e-6], "energy_j_ci_high": [2.2e-6, 1.1e-6],
                       "latency_s_ci_low": [0.9e-5, 5e-6], "latency_s_ci_high": [1.1e-5, 7e-6],
                       "pareto": [True, True]})
    for pid in ("p0", "p1"):
        _details(rng).save(tmp_path / "points" / pid)
    write_report(tmp_path, df, "seed: 0\n", ["a summary line"], title="browser test")
    return df


def test_report_lists_result_and_hardware_figures(tmp_path):
    _run_folder(tmp_path)
    md = (tmp_path / "report.md").read_text()
    for name in ["pareto", "accuracy", "params", "energy", "latency"]:
        assert f"figures/{name}.png" in md
        assert (tmp_path / "figures" / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
    for name in DETAIL_FIGURES:
        assert f"figures/{name}-p0.png" in md and f"figures/{name}-p1.png" in md
    assert "## Provenance" in md and "## Hardware view: sca, ratio 0.5" in md
    assert (tmp_path / "figures" / "core_utilization-p0.png").read_bytes()[:4] == b"\x89PNG"
    before = (tmp_path / "report.html").read_text()
    (tmp_path / "report.html").unlink()
    rebuild_report(tmp_path)
    assert (tmp_path / "report.html").read_text() == before


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromedriver not installed (.ci/run installs them)")
def test_report_renders_every_figure_in_headless_chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    _run_folder(tmp_path)
    page = (tmp_path / "report.html").read_text()
    expected = page.count("<img ")
    assert expected == 5 + 2 * len(DETAIL_FIGURES)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in NO_NETWORK + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get((tmp_path / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        title = driver.title
    finally:
        driver.quit()
    assert title == "browser test"
    assert len(images) == expected
    assert all(done and w > 100 and h > 100 for _, done, w, h in images), images
    assert {alt for alt, *_ in images} >= {"Core occupancy of the mesh", "NoC link-load heatmap",
                                           "Per-layer SynOps and energy", "Latency per hardware timestep",
                                           "Energy per inference, stacked by component"}


def test_core_utilisation_marks_the_bottleneck_and_names_the_layers():
    cores = _details(np.random.default_rng(0)).cores
    worst = bottleneck_core(cores)
    assert worst == int(cores["busy_s"].idxmax()) and cores["population"].iloc[worst] == "h"
    fig, ax = plt.subplots()
    core_utilization(cores, ax)
    texts = [t.get_text() for t in ax.texts]
    assert {"in", "h", "o"} <= set(texts)  # every layer named over its cores
    util = 100 * cores["utilization"].iloc[worst]
    assert f"\u25bc bottleneck: core {cores['core'].iloc[worst]} (h), {util:.0f} % busy" in texts
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx((100 * cores["utilization"]).tolist())
    assert len({p.get_facecolor() for p in ax.patches}) == 3  # one colour per layer
    plt.close(fig)
    fig, ax = plt.subplots()  # an older run folder without busy times
    core_utilization(cores.drop(columns=["busy_s", "utilization"]), ax)
    assert [t.get_text() for t in ax.texts] == ["no per-core busy time in this run folder"]
    plt.close(fig)
