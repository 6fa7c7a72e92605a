"""The `codesign` CLI as a user runs it: an end-to-end run on digits, bad input that exits 2 cleanly, user values
printed as text (never Rich markup), whole tables when stdout is not a terminal, and `--version`."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from codesign.cli.main import PACKAGE, app
from codesign.config.run import load_config
from codesign.execute.run import RunResult
from hwmodels.energy.costs import ENERGY_COMPONENTS

QUICK = ["--set", "data.dataset=digits", "--set", "train.epochs=3", "--set", "compression.ratios=[0,0.5]",
         "--set", "compression.params.epochs=1", "--set", "compression.params.finetune_epochs=1",
         "--set", "hardware.n_samples=20", "--no-progress"]


def _codesign(tmp_path, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "codesign", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_end_to_end_run_on_digits(tmp_path):
    # brackets in the run name and the cache folder are text: printed as they are, not read as Rich markup
    proc = _codesign(tmp_path, "run", "--set", "run_name=e2e[red]", "--set", "cache_dir=.cache[/x]", *QUICK)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "reports" / "e2e[red]"
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
    assert resolved.run_name == "e2e[red]" and resolved.data.dataset == "digits" and resolved.hardware.n_samples == 20
    assert (run / "report.md").read_text().startswith("# Co-design run: e2e[red]\n")
    assert "SynOps" in proc.stdout and "(\u00b5J)" in proc.stdout
    assert "cached in .cache[/x]" in proc.stdout
    assert f"report: {Path('reports', 'e2e[red]', 'report.html')}" in proc.stdout.splitlines()
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr  # no tqdm bars in a captured log
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
    deep = tmp_path / ("long-folder-name-" * 6) / "my-config.yaml"  # a path longer than a message quotes
    proc = _codesign(tmp_path, "run", str(deep))
    assert proc.returncode == 2 and "file '..." in proc.stderr, proc.stderr
    assert "-long-folder-name-/my-config.yaml' does not exist" in proc.stderr, proc.stderr
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


LONG = "sca | bits=4 | preset=loihi | " + "neurons_per_core=" + "9" * 150  # wider than any terminal
TRICKY = "run [/x] and [red]"


def _result(run_dir: Path, label: str, summary: str) -> RunResult:
    """A RunResult of two design points whose series label is `label`."""
    table = pd.DataFrame({"point_id": ["a", "b"], "method": ["sca", "sca"], "series": [label, label],
                          "ratio": [0.0, 0.5], "accuracy": [0.9, 0.8], "params": [100, 50], "synops": [1e3, 5e2],
                          "energy_j": [3e-6, 1.5e-6], "latency_s": [2e-5, 1e-5], "pareto": [True, True]})
    return RunResult(table, run_dir, 1.0, [summary])


@pytest.fixture
def fake_pipelines(monkeypatch):
    """run, sweep and search replaced by fakes that log a line with markup-like text and return `_result`."""
    def fake(*args, log, **kwargs):
        log(f"log line with {TRICKY} in it")
        return _result(Path("reports") / "out[/x]" / "r[red]", f"{TRICKY} {LONG}", f"summary {TRICKY}")
    monkeypatch.setattr("codesign.execute.run.run", fake)
    monkeypatch.setattr("codesign.execute.sweep.sweep", fake)
    monkeypatch.setattr("codesign.execute.search.search", fake)


@pytest.mark.parametrize("command", ["run", "sweep", "search"])
def test_user_values_print_as_text_and_tables_whole_off_a_terminal(fake_pipelines, command):
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"log line with {TRICKY} in it" in lines  # the pipeline's log callback prints text
    assert f"- summary {TRICKY}" in lines
    assert f"report: {Path('reports', 'out[/x]', 'r[red]', 'report.html')}" in lines
    # the summary table: the whole label in one cell of one line, nothing cut or folded, no colour codes
    assert sum(f"{TRICKY} {LONG}" in ln for ln in lines) == 2
    assert "\u2026" not in result.stdout and "\x1b[" not in result.stdout


@pytest.mark.parametrize("command", ["run", "sweep", "search"])
def test_every_pipeline_takes_no_progress(fake_pipelines, command):
    result = CliRunner().invoke(app, [command, "--no-progress"])  # sweep and search had no such option
    assert result.exit_code == 0, result.output


def test_error_line_keeps_brackets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["report", "missing[/x]/r[red]"])
    assert result.exit_code == 2
    assert result.stderr.strip() == \
        f"error: report: '{Path('missing[/x]/r[red]/results.csv')}' does not exist (is 'missing[/x]/r[red]' a " \
        "run folder?)"
    # through the real pipeline, checked before any work: a run name and an output folder with brackets
    result = runner.invoke(app, ["run", "--set", "run_name=b[red]", "--set", "output_dir=out[/x]", "--resume"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --resume: '{Path('out[/x]', 'b[red]')}' does not exist"), line
    result = runner.invoke(app, ["run", "--set", "run_name=a[/x]b[red]"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: run_name: 'a[/x]b[red]' is not a folder name"), line
    result = runner.invoke(app, ["validate", "nope[red].yaml", "x"])
    assert result.exit_code == 2 and "nope[red].yaml" in result.stderr


def test_presets_show_prints_every_note_whole():
    from hwmodels.chip.presets import preset_leaves
    result = CliRunner().invoke(app, ["presets", "show", "loihi"])
    assert result.exit_code == 0, result.output
    for leaf in preset_leaves("loihi"):
        assert any(str(leaf["note"]) in ln and str(leaf["key"]) in ln for ln in result.stdout.splitlines()), leaf


def test_version():
    from importlib.metadata import version
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"codesign ({PACKAGE}) {version(PACKAGE)}\n"
    assert PACKAGE in (Path(__file__).parents[2] / "pyproject.toml").read_text()


def test_training_bars_stay_off_a_non_terminal(capsys):
    import dataclasses
    from workloads.data import load_dataset
    from workloads.models import build_model
    from workloads.train import TrainConfig, train
    ds = load_dataset("digits", seed=0)
    ds = dataclasses.replace(ds, x_train=ds.x_train[:64], y_train=ds.y_train[:64])
    model = build_model("mnist_conv", ds.in_shape, ds.n_classes, seed=0)
    train(model, ds, TrainConfig(epochs=2, batch_size=32, n_timesteps=2), seed=0, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.fixture(scope="module")
def saved_net(tmp_path_factory):
    """A small conv net and 4 samples of its spikes saved as g.npz / t.npz, with its DES result on Loihi at 40
    neurons per core (several cores)."""
    import numpy as np
    import hwmodels
    from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
    rng = np.random.default_rng(0)
    pops = [Population("in", (1, 6, 6), NeuronModel("input")), Population("h", (4, 6, 6), NeuronModel("LIF", tau=2.0)),
            Population("o", (3,), NeuronModel("IF", threshold=float("inf")))]
    projs = [Projection("c", "in", "h", "conv", rng.normal(size=(4, 1, 3, 3)), padding=(1, 1)),
             Projection("f", "h", "o", "dense", rng.normal(size=(3, 144)))]
    graph = NetworkGraph(pops, projs)
    trace = EventTrace.from_dense({"in": rng.random((4, 2, 1, 6, 6)) < 0.3, "h": rng.random((4, 2, 4, 6, 6)) < 0.2,
                                   "o": np.zeros((4, 2, 3))})
    folder = tmp_path_factory.mktemp("net")
    graph.save(folder / "g.npz")
    trace.save(folder / "t.npz")
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("loihi", {"core.neurons_per_core": 40}))
    return folder, sim


def _simulate(folder: Path, *args):
    return CliRunner().invoke(app, ["simulate", str(folder / "g.npz"), str(folder / "t.npz"),
                                    "--set", "core.neurons_per_core=40", *args])


def test_simulate_prints_si_prefixed_energies_and_latencies(saved_net):
    from codesign.reporting.units import si
    folder, sim = saved_net
    result = _simulate(folder)
    assert result.exit_code == 0, result.output
    cells = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
             for ln in result.stdout.splitlines() if ln.count("│") >= 3}
    # per layer: every energy with its own prefix, never rounded away to 0
    pops = sim.populations
    assert cells["h"][4] == si(pops.loc["h", "energy_j"], "J", 3) and cells["h"][4].endswith("nJ")
    assert cells["o"][4] == si(pops.loc["o", "energy_j"], "J", 3)
    assert cells["latency_s"][0] == si(sim.latency_s, "s") and cells["latency_s"][0].endswith("\u00b5s")
    assert cells["energy_j"][0] == si(sim.energy_j, "J") and cells["energy_j"][0].endswith("nJ")
    # by component: each with its own prefix too (13.5 pJ used to read 1.35e-05 under a µJ heading)
    for comp, joules in sim.energy_breakdown_j.items():
        assert cells[comp][0] == si(joules, "J"), comp
    assert cells["total"][0] == si(sim.energy_j, "J") and "uJ" not in result.stdout


def test_simulate_json_and_out_file(saved_net, tmp_path):
    import json
    folder, sim = saved_net
    out = tmp_path / "sim.json"
    result = _simulate(folder, "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout is one JSON object and nothing else
    assert json.loads(out.read_text()) == doc
    assert [p.name for p in tmp_path.iterdir()] == ["sim.json"]  # the temporary file was renamed, not left
    assert doc["units"] == {"energy": "J", "latency": "s", "power": "W"}
    assert doc["energy_j"] == pytest.approx(sim.energy_j) and doc["latency_s"] == pytest.approx(sim.latency_s)
    assert doc["energy_breakdown_j"] == pytest.approx(sim.energy_breakdown_j)
    assert sum(doc["energy_breakdown_j"].values()) == pytest.approx(doc["energy_j"])
    assert doc["totals"]["synops"] == pytest.approx(sim.synops) and doc["totals"]["chip"] == "loihi"
    layers = {rec["population"]: rec for rec in doc["populations"]}
    assert list(layers) == ["in", "h", "o"]
    assert layers["h"]["energy_j"] == pytest.approx(sim.populations.loc["h", "energy_j"])
    assert layers["h"]["cores"] == sim.populations.loc["h", "cores"]


def test_simulate_out_refuses_a_missing_folder(saved_net, tmp_path):
    folder, _ = saved_net
    target = tmp_path / "no" / "such" / "sim.json"
    result = _simulate(folder, "--out", str(target))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: --out: folder '{target.parent}' of '{target}' does not exist"]
    result = _simulate(folder, "--out", str(tmp_path))
    assert result.exit_code == 2 and result.stderr.startswith("error: --out: ") and len(result.stderr.splitlines()) == 1


def test_simulate_out_keeps_an_existing_file_unless_forced_and_never_replaces_a_device(saved_net, tmp_path):
    import json
    folder, _ = saved_net
    target = tmp_path / "sim.json"
    target.write_text("keep")
    result = _simulate(folder, "--out", str(target))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: --out: '{target}' exists; pass --force to overwrite it"]
    assert target.read_text() == "keep"
    result = _simulate(folder, "--json", "--out", str(target), "--force")
    assert result.exit_code == 0 and json.loads(target.read_text()) == json.loads(result.stdout)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # a special file, as /dev/full is: refused even with --force, left as it is
    result = _simulate(folder, "--out", str(fifo), "--force")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: --out: '{fifo}' exists and is not a regular file")
    assert fifo.is_fifo()
    for inside in (folder / "g.npz", folder / "t.npz"):  # the inputs are never replaced, even with --force
        result = _simulate(folder, "--out", str(inside), "--force")
        assert result.exit_code == 2 and "is (or is inside) an input of this simulation" in result.stderr
    dangling = tmp_path / "link.json"
    dangling.symlink_to(tmp_path / "nowhere.json")  # a link is never replaced, even one whose target is missing
    result = _simulate(folder, "--out", str(dangling), "--force")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: --out: '{dangling}' exists and is not a")
    assert dangling.is_symlink() and not (tmp_path / "nowhere.json").exists()


@pytest.mark.parametrize("args, expected", [
    (["sweep", "s.yaml", "--workers", "abc"], "error: Invalid value for '--workers': Input should be a valid "
                                              "integer, unable to parse string as an integer (see 'codesign sweep"),
    (["nope"], "error: No such command 'nope'. (see 'codesign --help')"),
    (["run", "--sett", "a"], "error: No such option: --sett (Possible options: --set) (see 'codesign run --help')"),
])
def test_usage_errors_are_one_line_with_exit_2(tmp_path, args, expected):
    proc = subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "COLUMNS": "60"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0] and proc.stderr.startswith(expected)
    assert list(tmp_path.iterdir()) == []


def test_plain_output_prints_control_characters_of_user_paths_and_names_as_escapes(tmp_path, monkeypatch):
    # a folder name from a shared archive must not set the terminal's title or clear the screen
    import codesign.reporting.report as report_mod
    from codesign.cli.cache import cache_app
    run_dir = tmp_path / "run\x1b]0;title\x07"
    monkeypatch.setattr(report_mod, "rebuild_report", lambda folder: Path(folder) / "report.html")
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    assert "run\\x1b]0;title\\x07/report.html" in result.output
    (tmp_path / "cache" / "st\x1b[2J").mkdir(parents=True)
    asked = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path / "cache"), "--stage", "st\x1b[2J"],
                               input="n\n", color=True)
    assert asked.exit_code == 1 and "stage st\\x1b[2J?" in asked.output and "\x1b" not in asked.output


def test_simulate_a_recurrent_graph_file(tmp_path):
    """A graph whose projections form a cycle (a lowered LinearRecurrentContainer, a NIR or Brian2 import) saved
    by RecurrentGraph.save simulates from the CLI as in Python (NetworkGraph.load refuses cycles; the CLI reads
    graphs with workloads.exchange.load_graph), and a feed-forward file still loads as a NetworkGraph."""
    import json

    import numpy as np

    import hwmodels
    from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
    from workloads.exchange import RecurrentGraph, load_graph
    rng = np.random.default_rng(1)
    pops = [Population("in", (6,), NeuronModel("input")), Population("h", (5,), NeuronModel("LIF", tau=2.0))]
    projs = [Projection("f", "in", "h", "dense", rng.normal(size=(5, 6))),
             Projection("rec1", "h", "h", "dense", rng.normal(size=(5, 5)))]
    graph = RecurrentGraph(pops, projs)
    trace = EventTrace.from_dense({"in": rng.random((4, 3, 6)) < 0.4, "h": rng.random((4, 3, 5)) < 0.3})
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="cycle"):
        NetworkGraph.load(tmp_path / "g.npz")
    loaded = load_graph(tmp_path / "g.npz")
    assert type(loaded) is RecurrentGraph and loaded.fingerprint() == graph.fingerprint()
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "g.npz"), str(tmp_path / "t.npz"), "--json"])
    assert result.exit_code == 0, result.output
    sim = hwmodels.simulate(graph, trace, hwmodels.load_preset("loihi"))
    assert json.loads(result.stdout)["energy_j"] == sim.energy_j
    NetworkGraph(pops, projs[:1]).save(tmp_path / "ff.npz")
    assert type(load_graph(tmp_path / "ff.npz")) is NetworkGraph
    (tmp_path / "bad.npz").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="bad.npz"):
        load_graph(tmp_path / "bad.npz")


def test_simulate_out_that_cannot_be_written_is_one_line_naming_out(saved_net, tmp_path, monkeypatch):
    """A write the file system refuses (read-only folder, full disk) is one line naming --out and the user's
    file, not the temporary file written beside it; nothing is left."""
    import errno

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / ".sim.json.abc.tmp"))
    folder, _ = saved_net
    monkeypatch.setattr("hwmodels.atomic.tempfile.mkstemp", refuse)
    result = _simulate(folder, "--json", "--out", str(tmp_path / "sim.json"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out: cannot write {str(tmp_path / 'sim.json')!r}: Operation not permitted"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, line", [
    (["--model", "foo"], "error: --model: 'foo' is not one of des, analytic"),
    (["--semantics", "bar"], "error: --semantics: 'bar' is not one of pipelined, layer_serial"),
    (["--placement", "foo"], "error: --placement: 'foo' is not one of in_order, snake, comm_aware"),
    (["--model", "analytic", "--set", "latency_model=des"],
     "error: --set: latency_model='des' contradicts --model 'analytic'; give one of them"),
    (["--placement", "snake", "--set", "placement=comm_aware"],
     "error: --set: placement='comm_aware' contradicts --placement 'snake'; give one of them"),
    (["--set", "semantics=layer_serial", "--semantics", "pipelined"],  # a flag typed at its default value counts
     "error: --set: semantics='layer_serial' contradicts --semantics 'pipelined'; give one of them")])
def test_simulate_names_the_flag_of_a_bad_or_contradicted_option(saved_net, args, line):
    """A bad --model / --semantics names the flag (not hardware.latency_model); a --set that changes what a flag
    gave is refused instead of silently winning."""
    folder, _ = saved_net
    result = _simulate(folder, *args)
    assert result.exit_code == 2 and result.stderr.strip() == line


def test_simulate_set_of_a_flag_s_field_alone_applies(saved_net):
    """--set latency_model=analytic without --model runs the analytic model (a run's hardware key)."""
    import json
    folder, _ = saved_net
    result = _simulate(folder, "--set", "latency_model=analytic", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "analytic"


def test_simulate_json_records_multicast_and_the_chip_overrides(saved_net):
    """Two runs that differ only in --set keys give JSON objects that say so (both used to read chip 'loihi')."""
    import json
    folder, _ = saved_net
    docs = [json.loads(_simulate(folder, "--set", f"multicast={m}", "--set", "core.neurons_per_core=4",
                                 "--json").stdout) for m in ("false", "true")]
    assert [(d["preset"], d["multicast"], d["overrides"]) for d in docs] == [
        ("loihi", False, {"core.neurons_per_core": 4}), ("loihi", True, {"core.neurons_per_core": 4})]
    assert docs[0]["totals"]["messages"] > docs[1]["totals"]["messages"]
