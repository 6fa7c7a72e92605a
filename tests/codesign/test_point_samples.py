"""Per-sample tables kept for every point (points/<id>/samples.csv), claims judged on them through the CLI (exit
status 1 on a FAIL), older run folders without them, and hardware.weight_fit reaching the lowered stage."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import hwmodels
from codesign.store.cache import StageCache, config_key
from codesign.config.run import load_config
from codesign.execute.evaluate import LOWERED_VERSION, model_row, stage_keys
from codesign.reporting.hwfigures import PointDetails, load_samples
from codesign.reporting.report import write_report
from hwmodels.energy.costs import ENERGY_COMPONENTS
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

LABELS = np.array([0, 1, 2, 1, 0, 2])


def _network(rng, channels: int) -> NetworkGraph:
    pops = [Population("in", (1, 6, 6), NeuronModel("input")),
            Population("h", (channels, 6, 6), NeuronModel("LIF", tau=2.0)),
            Population("o", (3,), NeuronModel("IF", threshold=float("inf")))]
    projs = [Projection("c", "in", "h", "conv", rng.normal(size=(channels, 1, 3, 3)), padding=(1, 1)),
             Projection("f", "h", "o", "dense", rng.normal(size=(3, channels * 36)))]
    return NetworkGraph(pops, projs)


def _inputs(channels: int) -> tuple[NetworkGraph, EventTrace]:
    """A conv net with `channels` hidden channels and 6 samples of its spikes (the same input spikes and labels
    for every `channels`)."""
    rng = np.random.default_rng(0)
    spikes = {"in": np.random.default_rng(1).random((6, 3, 1, 6, 6)) < 0.3,
              "h": rng.random((6, 3, channels, 6, 6)) < 0.2, "o": np.zeros((6, 3, 3))}
    return _network(rng, channels), EventTrace.from_dense(spikes, labels=LABELS)


def _sim(channels: int) -> hwmodels.SimResult:
    """The DES result of `_inputs(channels)` on Loihi with 40 neurons per core (spread over several cores)."""
    return hwmodels.simulate(*_inputs(channels), hwmodels.load_preset("loihi", {"core.neurons_per_core": 40}))


def _run_folder(tmp_path) -> pd.DataFrame:
    """A run folder of two simulated points: 'big' (8 channels) and 'small' (2), with their details."""
    rows = []
    for pid, channels in (("big", 8), ("small", 2)):
        sim = _sim(channels)
        PointDetails.from_sim(sim).save(tmp_path / "points" / pid)
        rows.append({"point_id": pid, "method": "m", "ratio": 0.0 if pid == "big" else 0.75, "accuracy": 0.9,
                     "params": channels, **sim.as_row(seed=0)})
    df = pd.DataFrame(rows)
    write_report(tmp_path, df, "seed: 0\n", ["two points"], title="samples")
    return df


def test_point_details_keep_the_samples_and_older_folders_load(tmp_path):
    sim = _sim(4)
    PointDetails.from_sim(sim).save(tmp_path / "p")
    back = load_samples(tmp_path / "p")
    assert list(back.index) == list(range(6)) and back["label"].tolist() == LABELS.tolist()
    pd.testing.assert_frame_equal(back, sim.samples, check_dtype=False, check_exact=False, rtol=1e-12)
    assert back["energy_j"].mean() == pytest.approx(sim.energy_j, rel=1e-12)
    (tmp_path / "p" / "samples.csv").unlink()  # a point folder of an older run
    assert load_samples(tmp_path / "p") is None and PointDetails.load(tmp_path / "p").samples.empty


CLAIMS = """claims:
  - {id: smaller-saves, text: t, metric: energy_j, relation: "<=", factor: 0.9, a: {ratio: 0.75}, b: {ratio: 0.0},
     match: none}
  - {id: smaller-saves-half, text: t, metric: synops, relation: "<=", factor: 0.01, a: {ratio: 0.75},
     b: {ratio: 0.0}, match: none}
"""


def test_validate_judges_on_the_samples_and_exits_1_on_a_fail(tmp_path):
    df = _run_folder(tmp_path)
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS)
    proc = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # the second claim fails
    out = json.loads((tmp_path / "claims.json").read_text())
    energy, synops = out[0]["pairs"][0], out[1]["pairs"][0]
    # the ratio of the sample means is the ratio of the results rows; same inputs and labels: paired
    big, small = df.set_index("point_id").loc["big"], df.set_index("point_id").loc["small"]
    assert energy["ratio"] == pytest.approx(small["energy_j"] / big["energy_j"], rel=1e-9)
    assert (energy["n_a"], energy["n_b"], energy["paired"], energy["values"]) == (6, 6, True, "samples")
    assert energy["ci_low"] <= energy["ratio"] <= energy["ci_high"] < 0.9 and out[0]["verdict"] == "PASS"
    assert synops["ratio"] == pytest.approx(small["synops"] / big["synops"]) and out[1]["verdict"] == "FAIL"
    assert "## Claims" in (tmp_path / "report.md").read_text()
    # an older run folder without samples.csv: judged on the results values, report still rebuilt
    for pid in ("big", "small"):
        (tmp_path / "points" / pid / "samples.csv").unlink()
    claims.write_text(CLAIMS.split("  - {id: smaller-saves-half")[0])
    old = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert old.returncode == 0, old.stderr
    (pair,) = json.loads((tmp_path / "claims.json").read_text())[0]["pairs"]
    assert (pair["values"], pair["n_a"], pair["ci_low"], pair["ci_high"]) == \
        ("points", 1, pytest.approx(energy["ratio"]), pytest.approx(energy["ratio"]))
    report = subprocess.run([sys.executable, "-m", "codesign", "report", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr


@pytest.mark.parametrize("keep", [2, 0])  # rows cut from the file; 0: the header line alone
def test_validate_refuses_a_samples_file_with_fewer_rows_than_the_point_simulated(tmp_path, keep):
    _run_folder(tmp_path)
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS)
    path = tmp_path / "points" / "small" / "samples.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1 + keep]) + "\n")
    proc = subprocess.run([sys.executable, "-m", "codesign", "validate", str(claims), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"points/small/samples.csv holds {keep} samples but results.csv gives the point " \
        f"n_samples {len(lines) - 1}" in errors[0], proc.stderr


def test_weight_fit_is_part_of_the_lowered_key_and_reaches_lower(tmp_path):
    cfg = load_config(sets=["data.dataset=digits", "compression.ratios=[0.0]", "hardware.n_samples=3",
                            f"cache_dir={tmp_path}"])
    widen = cfg.model_copy(update={"hardware": cfg.hardware.model_copy(update={"weight_fit": "widen"})})
    keys, wkeys = stage_keys(cfg), stage_keys(widen)
    assert keys.lowered == config_key("lowered", LOWERED_VERSION, keys.compressed, 3, 8, "quantize")
    assert LOWERED_VERSION == 3 and wkeys.compressed == keys.compressed and wkeys.lowered != keys.lowered
    # a compressed stage holding the untrained float model, lowered for real under both policies
    from codesign.execute.stages import make_dataset, make_model
    from workloads import checkpoint, compression, models
    dataset = make_dataset(cfg)
    model = make_model(cfg, dataset)
    n = models.count_parameters(model)

    def make(folder):
        checkpoint.save(model, folder / "model.pt", extra={"accuracy": 0.1})
        info = compression.CompressionResult("sca", 0.0, n, n)
        (folder / "result.json").write_text(json.dumps(dataclasses.asdict(info)))
    StageCache(tmp_path).get_or_make("compressed", keys.compressed, make)
    for point, stored in ((cfg, 8), (widen, 32)):
        _, low = model_row(point, StageCache(tmp_path))
        fit = NetworkGraph.load(low / "graph.npz").metadata["weight_fit"]
        weights = [e for e in fit.values() if e["needed"] > 1]  # conv / dense layers (pooling needs 1 bit)
        assert weights and {(e["policy"], e["stored"]) for e in weights} == {(point.hardware.weight_fit, stored)}


def test_simulate_cli_prints_the_six_components(tmp_path):
    from codesign.reporting.units import si
    graph, trace = _inputs(4)
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    proc = subprocess.run([sys.executable, "-m", "codesign", "simulate", str(tmp_path / "g.npz"),
                           str(tmp_path / "t.npz"), "--set", "core.neurons_per_core=40"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sim = _sim(4)
    rows = [[c.strip() for c in ln.strip().strip("│").split("│")] for ln in proc.stdout.splitlines()]
    split = {r[0]: r[1:] for r in rows if len(r) == 3}  # the component | energy | % of total table
    for comp in ENERGY_COMPONENTS:
        joules = sim.energy_breakdown_j[comp]
        assert split[comp] == [si(joules, "J"), f"{100 * joules / sim.energy_j:.1f}"]
    assert split["total"] == [si(sim.energy_j, "J"), "100.0"]
    assert f"{sim.energy_j:.4g}" in proc.stdout and "energy_j_ci_low" in proc.stdout


@pytest.mark.parametrize("content", [bytes([0x83, 0x8d, 0xff, 0x00]) * 64, b"a,b\n1,2\n", b'x\n"unclosed\n',
                                     b"garbage,,,\\n\\x00\\x01\n"])  # the last: pandas raises TypeError
def test_a_samples_file_that_is_not_a_table_is_one_line_naming_it(tmp_path, content):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "samples.csv").write_bytes(content)
    with pytest.raises(ValueError, match=r"samples\.csv' is not a samples table") as err:
        load_samples(tmp_path / "p")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("table", ["samples", "cores"])
def test_point_details_name_a_table_that_is_not_csv(tmp_path, table):
    PointDetails.from_sim(_sim(4)).save(tmp_path / "p")
    (tmp_path / "p" / f"{table}.csv").write_bytes(bytes([0x41, 0xcf, 0x28, 0x0a]) * 50)
    with pytest.raises(ValueError, match=rf"{table}\.csv' is not a {table} table") as err:
        PointDetails.load(tmp_path / "p")
    assert "\n" not in str(err.value)
