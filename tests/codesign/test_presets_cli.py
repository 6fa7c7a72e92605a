"""Chip files on the command line: `presets show PATH`, `presets derive` (round trip, provenance, no overwrite),
`hardware.preset` and `simulate --preset` given a path (relative to the working directory), a tiny run on a derived
chip, and point ids that follow the file's content."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import hwmodels
from codesign.store.cache import config_key
from codesign.cli.main import app
from codesign.config.run import ConfigError, load_config
from codesign.execute.evaluate import NON_RESULT_FIELDS, stage_keys
from codesign.execute.stages import check_names
from hwmodels.chip.presets import PRESET_DIR, default_leaves, preset_leaves, strip_sources

PROVENANCE = {"name", "description", "sources", "notes", "derived_from"}


def _invoke(*args):
    return CliRunner().invoke(app, list(args))


def _derive(*args):
    return _invoke("presets", "derive", *args)


def _bare_loihi(path) -> None:
    """loihi.yaml with every number bare (no leaves, no sources) at `path`."""
    raw = yaml.safe_load((PRESET_DIR / "loihi.yaml").read_text())
    tree = strip_sources({k: v for k, v in raw.items() if k != "sources"}, raw["sources"])
    path.write_text(yaml.safe_dump({**tree, "name": "bare"}, sort_keys=False))


def test_presets_list_and_show_a_name_still_work():
    listing = _invoke("presets", "list")
    assert listing.exit_code == 0 and listing.stdout.split() == hwmodels.list_presets()
    shown = _invoke("presets", "show", "loihi")
    assert shown.exit_code == 0 and "numbers without a source" not in shown.stdout
    assert any("core.synapse_memory_bits" in ln and "1048576" in ln and "davies2018" in ln
               for ln in shown.stdout.splitlines())


def test_presets_show_lists_the_values_left_at_chipspec_defaults(tmp_path):
    # speck sets no neuron access cost: the loaded chip charges 0 J there, which show used to leave unsaid
    shown = _invoke("presets", "show", "speck")
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("left at ChipSpec defaults"))
    assert "core.neuron_access_energy_j = 0.0" in line and "core.accumulator_bits = 0" in line
    assert "core.synop_energy_j.dense" not in line and "barrier_sync_s" not in line  # set by the file
    # every key listed is a number or None the file does not give, and equals the ChipSpec default
    rows = default_leaves("speck")
    given = [leaf["key"] for leaf in preset_leaves("speck")]
    defaults = hwmodels.ChipSpec.model_fields
    assert rows and all(r["key"] not in given for r in rows)
    top = {r["key"]: r["value"] for r in rows if "." not in r["key"]}
    assert top == {k: defaults[k].default for k in top} and top["n_chips"] == 1
    chip = _bare_loihi(tmp_path / "bare.yaml") or hwmodels.load_preset(str(tmp_path / "bare.yaml"))
    assert {r["key"] for r in default_leaves(str(tmp_path / "bare.yaml"), chip)} == \
        {r["key"] for r in default_leaves("loihi")}


def test_derive_show_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = _derive("loihi", "--set", "core.neurons_per_core=512", "--set", "router.buffer_depth=4",
                   "-o", "mychip.yaml")
    assert made.exit_code == 0, made.output
    assert "wrote mychip.yaml: chip mychip derived from loihi; changed: core.neurons_per_core 1024 -> 512, " \
           "router.buffer_depth None -> 4" in made.stdout
    expected = hwmodels.load_preset("loihi", {"core.neurons_per_core": 512, "router.buffer_depth": 4})
    chip = hwmodels.load_preset("mychip.yaml")
    assert chip.model_dump(exclude=PROVENANCE) == expected.model_dump(exclude=PROVENANCE)
    assert chip.name == "mychip" and chip.derived_from.preset == "loihi"
    raw = yaml.safe_load((tmp_path / "mychip.yaml").read_text())
    assert raw["derived_from"]["changed"] == {"core.neurons_per_core": {"from": 1024, "to": 512},
                                              "router.buffer_depth": {"from": None, "to": 4}}
    assert raw["core"]["neurons_per_core"]["source"] == "derived" and "derived" in raw["sources"]
    assert raw["core"]["synapse_memory_bits"] == yaml.safe_load((PRESET_DIR / "loihi.yaml").read_text())[
        "core"]["synapse_memory_bits"]  # unchanged values keep their leaf: value, source and note
    shown = _invoke("presets", "show", "mychip.yaml")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert any("core.neurons_per_core" in ln and "512" in ln and "derived" in ln for ln in lines)
    assert any(ln.startswith("- derived from loihi on ") and "core.neurons_per_core 1024 -> 512" in ln
               for ln in lines)
    assert any(ln.startswith("  derived: derived from loihi on ") for ln in lines)
    for leaf in preset_leaves("mychip.yaml"):
        assert any(leaf["key"] in ln and str(leaf["note"]) in ln for ln in lines), leaf
    assert "numbers without a source" not in shown.stdout


def test_derive_refuses_overwrite_unknown_keys_and_bad_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _derive("speck", "-o", "c.yaml", "--name", "my speck").exit_code == 0
    assert hwmodels.load_preset("c.yaml").name == "my speck"
    before = (tmp_path / "c.yaml").read_text()
    for args, needle in [
        (["loihi", "-o", "c.yaml"], "error: chip file 'c.yaml' exists; refusing to overwrite it (force it with "
                                    "--force)"),
        (["loihi", "--set", "core.neurons=1", "-o", "d.yaml"], "error: override key 'core.neurons' is not one of "
                                                               "name, description, mesh_width"),
        (["loihi", "--set", "core.neurons_per_core=-1", "-o", "d.yaml"], "error: ChipSpec.core.neurons_per_core: "
                                                                         "Input should be greater than 0"),
        (["nochip", "-o", "d.yaml"], "error: preset: 'nochip' is not one of generic-45nm"),
        (["loihi", "-o", "d.txt"], "error: chip file 'd.txt': must be a name ending .yaml or .yml"),
        (["loihi", "-o", ".yaml"], "error: chip file '.yaml': must be a name ending .yaml or .yml"),  # no name
    ]:
        result = _derive(*args)
        assert result.exit_code == 2, (args, result.output)
        (line,) = result.stderr.splitlines()
        assert line.startswith(needle), line
    assert (tmp_path / "c.yaml").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    forced = _derive("loihi", "--set", "core.neurons_per_core=8", "-o", "c.yaml", "--force")
    assert forced.exit_code == 0 and hwmodels.load_preset("c.yaml").core.neurons_per_core == 8


def test_show_a_file_lists_the_numbers_without_a_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _bare_loihi(tmp_path / "bare.yaml")
    shown = _invoke("presets", "show", "bare.yaml")
    assert shown.exit_code == 0, shown.output
    (line,) = [ln for ln in shown.stdout.splitlines() if ln.startswith("numbers without a source")]
    keys = [leaf["key"] for leaf in preset_leaves("loihi")]
    assert line == f"numbers without a source ({len(keys)}): {', '.join(keys)}"
    assert any("core.neurons_per_core" in ln and "(missing)" in ln for ln in shown.stdout.splitlines())
    missing = _invoke("presets", "show", "nope.yaml")
    assert missing.exit_code == 2
    assert missing.stderr.splitlines() == ["error: preset: chip file 'nope.yaml' does not exist"]


def test_hardware_preset_takes_a_path_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chips").mkdir()
    _bare_loihi(tmp_path / "chips" / "bare.yaml")
    check_names(load_config(sets=["hardware.preset=chips/bare.yaml"]))
    for preset, needle in [("nope.yaml", "hardware.preset: chip file 'nope.yaml' does not exist"),
                           ("chips", "hardware.preset: chip file 'chips' is a directory"),
                           ("nochip", "hardware.preset: 'nochip' is not one of generic-45nm, lemaire-45nm, loihi")]:
        with pytest.raises(ConfigError) as err:
            check_names(load_config(sets=[f"hardware.preset={preset}"]))
        assert str(err.value).startswith(needle) and "\n" not in str(err.value), str(err.value)


def test_point_ids_follow_the_chip_files_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = ["data.dataset=digits", "compression.ratios=[0.5]"]
    shipped = load_config(sets=sets)
    # a shipped preset's point id is the config's hash alone (ids of existing run folders are unchanged)
    tree = shipped.model_dump(mode="json", exclude=NON_RESULT_FIELDS)
    for key in ("options", "neuron_options"):  # fields added later, left out at their defaults (LATER_FIELDS)
        assert tree["model"].pop(key) == {}
    assert stage_keys(shipped).point == config_key("point", tree)
    opts = load_config(sets=[*sets, "model.neuron_options={ternary: true}"])
    assert stage_keys(opts).point != stage_keys(shipped).point
    assert _derive("loihi", "--set", "core.neurons_per_core=512", "-o", "mychip.yaml").exit_code == 0
    cfg = load_config(sets=[*sets, "hardware.preset=mychip.yaml"])
    first = stage_keys(cfg)
    assert stage_keys(cfg) == first and first.point != stage_keys(shipped).point
    assert _derive("loihi", "--set", "core.neurons_per_core=256", "-o", "mychip.yaml", "--force").exit_code == 0
    second = stage_keys(cfg)
    assert second.point != first.point  # same config text, other chip: another point, never resumed as the old
    assert (second.dense, second.compressed, second.lowered) == (first.dense, first.compressed, first.lowered)


def _saved_net(folder):
    """A two-layer net and 3 samples of its spikes saved as g.npz / t.npz."""
    from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
    rng = np.random.default_rng(0)
    graph = NetworkGraph([Population("in", (20,), NeuronModel("input")), Population("h", (30,)),
                          Population("o", (4,), NeuronModel("IF", threshold=float("inf")))],
                         [Projection("a", "in", "h", "dense", rng.normal(size=(30, 20))),
                          Projection("b", "h", "o", "dense", rng.normal(size=(4, 30)))])
    trace = EventTrace.from_dense({"in": rng.random((3, 2, 20)) < 0.3, "h": rng.random((3, 2, 30)) < 0.2,
                                   "o": np.zeros((3, 2, 4), bool)})
    graph.save(folder / "g.npz")
    trace.save(folder / "t.npz")


def test_simulate_takes_a_chip_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _saved_net(tmp_path)
    assert _derive("loihi", "--set", "core.neurons_per_core=8", "-o", "small.yaml").exit_code == 0
    by_file = _invoke("simulate", "g.npz", "t.npz", "--preset", "small.yaml", "--json")
    by_set = _invoke("simulate", "g.npz", "t.npz", "--preset", "loihi", "--set", "core.neurons_per_core=8", "--json")
    assert by_file.exit_code == 0 and by_set.exit_code == 0, (by_file.output, by_set.output)
    a, b = json.loads(by_file.stdout), json.loads(by_set.stdout)
    assert a["energy_j"] == b["energy_j"] and a["latency_s"] == b["latency_s"]
    missing = _invoke("simulate", "g.npz", "t.npz", "--preset", "nope.yaml")
    assert missing.exit_code == 2
    assert missing.stderr.splitlines() == ["error: --preset: chip file 'nope.yaml' does not exist"]


@pytest.mark.slow
def test_a_run_on_a_derived_chip_file(tmp_path):
    """A tiny `codesign run` on digits with hardware.preset a derived file: the row names the file, the chip is
    the file's (64 neurons per core needs more cores than Loihi's 1,024) and the summary names the chip."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")

    def codesign(*args):
        return subprocess.run([sys.executable, "-m", "codesign", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    made = codesign("presets", "derive", "loihi", "--set", "core.neurons_per_core=64", "-o", "mychip.yaml")
    assert made.returncode == 0, made.stderr
    proc = codesign("run", "--set", "hardware.preset=mychip.yaml", "--set", "run_name=chip", "--set",
                    "data.dataset=digits", "--set", "train.epochs=1", "--set", "compression.ratios=[0]",
                    "--set", "hardware.n_samples=10", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "reports" / "chip"
    (row,) = pd.read_csv(run / "results.csv").to_dict("records")
    assert row["preset"] == "mychip.yaml" and row["fits"]
    assert "chip preset mychip: 8x4 tiles x 4 cores" in proc.stdout
    graph = hwmodels.NetworkGraph.load(run / "artifacts" / "sca-r0.graph.npz")
    mine = hwmodels.map_network(graph, hwmodels.load_preset(str(tmp_path / "mychip.yaml")))
    assert row["cores_used"] == mine.cores_used > hwmodels.map_network(graph, hwmodels.load_preset("loihi")).cores_used
    assert yaml.safe_load((run / "config.resolved.yaml").read_text())["hardware"]["preset"] == "mychip.yaml"


def test_simulate_names_the_option_of_a_bad_preset_path_or_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _saved_net(tmp_path)
    for preset in ("../../../etc/passwd", "[red]x[/red]"):
        bad = _invoke("simulate", "g.npz", "t.npz", "--preset", preset)
        assert bad.exit_code == 2 and bad.stderr.splitlines()[0].startswith("error: --preset: chip file ")
        assert preset in bad.stderr
    unknown = _invoke("simulate", "g.npz", "t.npz", "--preset", "loihi", "--set", "core.nope=1")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: --set: override key 'core.nope' is not one")


@pytest.mark.parametrize("name, expected", [("", "error: preset: '' is not one of generic-45nm"),
                                            ("x/y.yaml", "error: preset: chip file 'x/y.yaml' does not exist")])
def test_presets_show_names_the_preset_of_a_bad_argument(tmp_path, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)
    out = _invoke("presets", "show", name)
    assert out.exit_code == 2 and out.stderr.startswith(expected) and len(out.stderr.splitlines()) == 1


def test_derive_into_a_folder_it_cannot_write_names_the_output_not_its_temporary_file(tmp_path, monkeypatch):
    # it said "--out: [Errno 30] Read-only file system: 'rofs/.x.yaml.4af9da0821b7.tmp'"
    import errno
    import hwmodels.chip.derive as derive

    def read_only(path, text, force):
        raise OSError(errno.EROFS, "Read-only file system", str(path.parent / f".{path.name}.4af9da0821b7.tmp"))
    monkeypatch.setattr(derive, "write_chip_file", read_only)
    monkeypatch.chdir(tmp_path)
    made = _derive("loihi", "-o", "x.yaml")
    assert made.exit_code != 0 and "error: --out: cannot write 'x.yaml': Read-only file system" in made.output
    assert ".tmp" not in made.output
