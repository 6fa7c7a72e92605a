"""One evaluation path: run, sweep, search, allocate and `codesign simulate` all lower with lower_model, build the
chip once with load_chip and map and simulate with hardware_row, so every hardware key means the same in all."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from codesign.execute.allocate import AllocatorConfig, measure, run_allocator
from codesign.cli.main import app
from codesign.config.run import HardwareConfig, RunConfig, load_config
from codesign.execute.evaluate import LOWERING_KEYS, hardware_row, load_chip, lower_model, stage_keys
from codesign.execute.run import run
from codesign.execute.stages import make_dataset, make_model
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
from workloads import compression, models

#: spread the test net over 8 one-core tiles of a 2-wide mesh: placement, multicast and hops matter
SPREAD = {"core.neurons_per_core": 40, "cores_per_tile": 1, "mesh_width": 2}
#: per hardware key (every field of HardwareConfig but the lowering keys): another value, and row columns it
#: must change on the conv net below
CHANGES = {"preset": ("generic-45nm", {"preset", "chip", "energy_j", "static_power_w"}),
           "overrides": ({**SPREAD, "core.neurons_per_core": 30}, {"cores_used"}),
           "placement": ("snake", {"placement", "hops", "energy_network_j"}),
           "latency_model": ("analytic", {"model"}),
           "semantics": ("layer_serial", {"semantics", "hardware_steps", "latency_s"}),
           "multicast": (True, {"messages", "hops", "energy_network_j"})}


def _net() -> tuple[NetworkGraph, EventTrace]:
    """A conv net (36 -> 144 -> 3 neurons) and 4 samples of its spikes."""
    rng = np.random.default_rng(0)
    pops = [Population("in", (1, 6, 6), NeuronModel("input")), Population("h", (4, 6, 6), NeuronModel("LIF", tau=2.0)),
            Population("o", (3,), NeuronModel("IF", threshold=float("inf")))]
    projs = [Projection("c", "in", "h", "conv", rng.normal(size=(4, 1, 3, 3)), padding=(1, 1)),
             Projection("f", "h", "o", "dense", rng.normal(size=(3, 144)))]
    trace = EventTrace.from_dense({"in": rng.random((4, 2, 1, 6, 6)) < 0.3, "h": rng.random((4, 2, 4, 6, 6)) < 0.2,
                                   "o": np.zeros((4, 2, 3))})
    return NetworkGraph(pops, projs), trace


def _hw(cfg: RunConfig, **changes) -> RunConfig:
    return cfg.model_copy(update={"hardware": cfg.hardware.model_copy(update=changes)})


def _row(hardware: dict, graph, trace) -> dict:
    cfg = RunConfig.model_validate({"hardware": hardware})
    return hardware_row(cfg, graph, trace, load_chip(cfg))[0]


def test_every_hardware_key_changes_the_row():
    assert set(CHANGES) | set(LOWERING_KEYS) == set(HardwareConfig.model_fields)  # a new key needs a case here
    graph, trace = _net()
    base = _row({"overrides": SPREAD}, graph, trace)
    assert base["fits"] and base["cores_used"] == 6 and base["preset"] == "loihi"
    for key, (value, columns) in CHANGES.items():
        row = _row({"overrides": SPREAD, key: value}, graph, trace)
        changed = {c for c in base if row[c] != base[c]}
        assert columns <= changed, (key, columns - changed)


def test_lowering_keys_shape_the_lowered_artifacts():
    cfg = load_config(sets=["data.dataset=digits", "compression.ratios=[0.0]", "hardware.n_samples=3"])
    dataset = make_dataset(cfg)
    model = make_model(cfg, dataset)
    n = models.count_parameters(model)
    info = dataclasses.asdict(compression.CompressionResult("sca", 0.0, n, n))

    def stored_bits(point):
        graph, trace = lower_model(model, dataset, point, "cpu", info)
        fit = graph.metadata["weight_fit"].values()
        return trace.n_samples, {(e["policy"], e["stored"]) for e in fit if e["needed"] > 1}
    assert stored_bits(cfg) == (3, {("quantize", 8)})
    for key, value, expected in (("n_samples", 5, (5, {("quantize", 8)})),
                                 ("weight_bits", 4, (3, {("quantize", 4)})),
                                 ("weight_fit", "widen", (3, {("widen", 32)}))):
        point = _hw(cfg, **{key: value})
        assert stored_bits(point) == expected, key
        assert stage_keys(point).lowered != stage_keys(cfg).lowered, key


def test_the_allocator_measures_through_the_runs_evaluation():
    """measure (probes, candidates and the compared networks of `codesign allocate`) gives hardware_row's row of
    the same lowered model, semantics and multicast included."""
    cfg = load_config(sets=["data.dataset=digits", "hardware.n_samples=3", "hardware.model=analytic",
                            "hardware.overrides={core.neurons_per_core: 64}"])
    dataset = make_dataset(cfg)
    model = make_model(cfg, dataset)
    n = models.count_parameters(model)
    info = compression.CompressionResult("magnitude_channel", 0.0, n, n)
    rows = []
    for point in (cfg, _hw(cfg, semantics="layer_serial"), _hw(cfg, multicast=True)):
        chip = load_chip(point)
        m = measure(model, info, dataset, point, chip, "cpu")
        graph, trace = lower_model(model, dataset, point, "cpu", dataclasses.asdict(info))
        expected, _ = hardware_row(point, graph, trace, chip)
        assert {k: m[k] for k in expected} == expected
        assert m["params"] == n and m["model_bits"] == 32 * n and m["sim"].semantics == point.hardware.semantics
        rows.append(m)
    assert rows[1]["hardware_steps"] != rows[0]["hardware_steps"]
    assert rows[2]["messages"] < rows[0]["messages"]


def _simulate(folder, *args) -> dict:
    result = CliRunner().invoke(app, ["simulate", str(folder / "g.npz"), str(folder / "t.npz"),
                                      "--set", "core.neurons_per_core=40", "--set", "cores_per_tile=1",
                                      "--set", "mesh_width=2", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulate_set_takes_a_runs_hardware_keys(tmp_path):
    graph, trace = _net()
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    plain = _simulate(tmp_path)
    assert plain["energy_j"] == _row({"overrides": SPREAD}, graph, trace)["energy_j"]
    for sets, hardware in ((["--set", "multicast=true"], {"multicast": True}),
                           (["--set", "hardware.multicast=true", "--set", "semantics=layer_serial"],
                            {"multicast": True, "semantics": "layer_serial"}),
                           (["--set", "placement=snake"], {"placement": "snake"})):
        doc = _simulate(tmp_path, *sets)
        row = _row({"overrides": SPREAD, **hardware}, graph, trace)  # the row a run with these keys makes
        assert {k: doc["totals"][k] for k in ("energy_j", "latency_s", "messages", "hops", "semantics")} == \
            {k: row[k] for k in ("energy_j", "latency_s", "messages", "hops", "semantics")}, sets
        assert doc["energy_j"] != plain["energy_j"], sets
    refused = CliRunner().invoke(app, ["simulate", str(tmp_path / "g.npz"), str(tmp_path / "t.npz"),
                                       "--set", "n_samples=2"])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: --set: 'n_samples' shapes the lowered graph and trace")
    bad = CliRunner().invoke(app, ["simulate", str(tmp_path / "g.npz"), str(tmp_path / "t.npz"),
                                   "--set", "multicast=maybe"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: hardware.multicast: ")


def _results(folder) -> dict:
    (row,) = pd.read_csv(folder / "results.csv").head(1).to_dict("records")
    return row


@pytest.mark.slow
def test_allocator_and_run_give_the_same_row(tmp_path, monkeypatch):
    """The uniform network of `codesign allocate` at ratio 0.5 is the design point a `codesign run` of the same
    config makes at that ratio: the same row, with non-default semantics, multicast and placement."""
    for module in ("codesign.execute.run", "codesign.execute.allocate"):  # rows only: the reports have their own tests
        monkeypatch.setattr(f"{module}.write_report", lambda *args, **kwargs: None)
    sets = ["data.dataset=digits", "train.epochs=1", "compression.method=magnitude_channel",
            "compression.params={finetune_epochs: 1}", "compression.ratios=[0.5]", "hardware.n_samples=10",
            "hardware.overrides={core.neurons_per_core: 64}", "hardware.placement=snake",
            "hardware.semantics=layer_serial", "hardware.multicast=true", "device=cpu",
            f"output_dir={tmp_path / 'reports'}", f"cache_dir={tmp_path / 'cache'}"]
    cfg = load_config(sets=[*sets, "run_name=run"])
    quiet = lambda message: None  # noqa: E731
    ran = _results(run(cfg, progress=False, log=quiet).run_dir)
    acfg = AllocatorConfig(probe_ratios=(0.5,), lambdas=(0.0,), max_candidates=2, probe_samples=5)
    result, _ = run_allocator(load_config(sets=[*sets, "run_name=allocate"]), 0.5, acfg, log=quiet)
    allocated = _results(result.run_dir)
    assert allocated["series"] == "uniform"
    shared = set(ran) & set(allocated) - {"point_id"}
    assert {"accuracy", "params", "model_bits", "energy_j", "latency_s", "messages", "hops", "semantics",
            "placement", "preset", "fits", "memory_bits", "energy_j_ci_low"} <= shared
    differ = {k: (allocated[k], ran[k]) for k in shared
              if not (allocated[k] == ran[k] or (pd.isna(allocated[k]) and pd.isna(ran[k])))}
    assert not differ
    # and the keys matter: the same point with the default semantics and unicast is another row
    default = _results(run(load_config(sets=[*sets, "run_name=default", "hardware.semantics=pipelined",
                                             "hardware.multicast=false"]), progress=False, log=quiet).run_dir)
    assert default["accuracy"] == ran["accuracy"]
    assert default["messages"] > ran["messages"] and default["hardware_steps"] != ran["hardware_steps"]


def test_nested_and_dotted_overrides_of_one_chip_are_one_point():
    # {core: {neurons_per_core: 256}} (what --set stores) and {core.neurons_per_core: 256} (a sweep axis) were two
    # point ids: the sweep evaluated the point twice and counted it twice on its front
    nested = load_config(sets=["hardware.overrides.core.neurons_per_core=256", "compression.ratios=[0.5]"])
    assert nested.hardware.overrides == {"core": {"neurons_per_core": 256}}
    dotted = nested.model_copy(update={"hardware": nested.hardware.model_copy(
        update={"overrides": {"core.neurons_per_core": 256}})})
    other = dotted.model_copy(update={"hardware": nested.hardware.model_copy(
        update={"overrides": {"core.neurons_per_core": 512}})})
    assert stage_keys(nested).point == stage_keys(dotted).point != stage_keys(other).point


def test_sweep_rows_are_put_in_grid_order_whatever_order_they_finished_in():
    from codesign.execute.sweep import grid_order
    cfgs = [load_config(sets=[f"compression.ratios=[{r}]"]) for r in (0.0, 0.5, 0.25)]
    ids = [stage_keys(c).point for c in cfgs]
    finished = pd.DataFrame({"point_id": [ids[2], "elsewhere", ids[0], ids[1]], "x": [2, 9, 0, 1]})
    assert grid_order(finished, cfgs)["x"].tolist() == [0, 1, 2, 9]
