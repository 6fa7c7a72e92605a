"""Run folders (issue 12): safe names, one owner at a time, resume only with the same config, no half-written or
mode-0600 outputs, leftovers cleaned; and config input that used to crash or hang (alias bombs, unnamed fields)."""
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from codesign.config.run import ConfigError, load_config, parse_tree, quote
from codesign.store.runfolder import (INCOMPLETE_NAME, changed_keys, check_folder, check_run_name, clean_leftovers,
                                own_run_folder)
from codesign.execute.stages import method_config
from codesign.store.results import ResultStore


@pytest.mark.parametrize("name", ["../escaped", "/abs/path", "a/b", "..", ".hidden", "x" * 300, "a b", "", "-x"])
def test_unsafe_run_names_are_refused_with_one_line(name):
    with pytest.raises(ConfigError, match="run_name") as err:
        check_run_name(name)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_run_name_outside_output_dir_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="run_name"):
        check_folder(str(tmp_path / "out"), "../escaped", False, "c.yaml", {})
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out").exists()


def test_second_owner_is_refused_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / "run1"
    with own_run_folder(out, False, "c.yaml", "a: 1\n"):
        assert (out / INCOMPLETE_NAME).exists()
        with pytest.raises(ConfigError, match="already exists"):
            with own_run_folder(out, False, "c.yaml", "a: 1\n"):
                pass
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()}"):
            with own_run_folder(out, True, "c.yaml", "a: 1\n"):
                pass
        with pytest.raises(ConfigError, match="in use by pid"):
            check_folder(str(tmp_path), "run1", True, "c.yaml", {"a": 1})
        with pytest.raises(ConfigError, match=r"^run_name: .* is in use by pid \d+ .*\(a run working there now\)"):
            check_folder(str(tmp_path), "run1", False, "c.yaml", {"a": 1})  # not "incomplete ... pass --resume"
    assert not (out / INCOMPLETE_NAME).exists()
    # released: a resume with the same config is accepted
    assert check_folder(str(tmp_path), "run1", True, "c.yaml", {"a": 1}) == out


HOLD = """
import sys, time
from pathlib import Path
from codesign.store.runfolder import own_run_folder
with own_run_folder(Path(sys.argv[1]), False, "c.yaml", "a: 1\\n"):
    print("owned", flush=True)
    time.sleep(30)
"""


def test_a_killed_owner_releases_the_folder_and_marks_it_incomplete(tmp_path):
    out = tmp_path / "run1"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "owned"
        with pytest.raises(ConfigError, match=f"in use by pid {proc.pid}"):
            check_folder(str(tmp_path), "run1", True, "c.yaml", {"a": 1})
    finally:
        proc.kill()
        proc.wait()
    # the kernel dropped the lock with the process: no stale lock; a plain rerun says how to resume
    with pytest.raises(ConfigError, match="incomplete.*--resume"):
        check_folder(str(tmp_path), "run1", False, "c.yaml", {"a": 1})
    with own_run_folder(check_folder(str(tmp_path), "run1", True, "c.yaml", {"a": 1}), True, "c.yaml", "a: 1\n"):
        pass
    assert not (out / INCOMPLETE_NAME).exists()


def test_failure_inside_the_block_keeps_the_folder_incomplete(tmp_path):
    out = tmp_path / "run1"
    with pytest.raises(RuntimeError):
        with own_run_folder(out, False, "c.yaml", "a: 1\n"):
            raise RuntimeError("disk full")
    assert (out / INCOMPLETE_NAME).exists() and (out / "c.yaml").read_text() == "a: 1\n"


def test_resume_with_a_changed_config_names_the_changed_keys(tmp_path):
    with own_run_folder(tmp_path / "r", False, "c.yaml", yaml.safe_dump({"hardware": {"preset": "loihi"},
                                                                        "execution": {"workers": 2}})):
        pass
    new = {"hardware": {"preset": "truenorth"}, "execution": {"workers": 0}}
    with pytest.raises(ConfigError, match=r"differs .* in hardware\.preset;"):
        check_folder(str(tmp_path), "r", True, "c.yaml", new, ignore=("execution.",))
    assert changed_keys({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1, "c": [1, 2]}, "d": 0}) == ["a.c", "d"]


def test_leftover_temp_files_are_cleaned_and_results_are_world_readable(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    for name in ("results.parquet12ab.tmp", ".results.csv.x.tmp", "keep.csv"):
        (out / name).write_text("x")
    removed = clean_leftovers(out)
    assert sorted(p.name for p in removed) == [".results.csv.x.tmp", "results.parquet12ab.tmp"]
    store = ResultStore(out, ["a"])
    store.append({"point_id": "p1", "a": 1.0})
    old = os.umask(0o022)
    try:
        store.write_snapshots()
    finally:
        os.umask(old)
    for name in ("results.csv", "results.parquet"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644


def test_yaml_alias_bomb_is_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    assert len(bomb) < 700
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_tree(bomb, "bomb.yaml")
    assert time.perf_counter() - start < 5
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_tree("a: &a [*a]\n", "recursive.yaml")
    assert parse_tree("a: &x {b: 1}\nc: *x\n", "ok.yaml") == {"a": {"b": 1}, "c": {"b": 1}}


@pytest.mark.parametrize("override, field", [
    ("compression.params.epochs=abc", "compression.params.epochs"),
    ("compression.params.lr=.nan", "compression.params.lr"),
    ("train.lr=.nan", "train.lr"), ("train.lr=.inf", "train.lr"),
    ("hardware.overrides=[1,2]", "hardware.overrides"),
    ("compression.params.epochs=1000000000000000000000000000000", "compression.params.epochs"),
    ("compression.params.finetune_epochs=-1", "compression.params.finetune_epochs"),
    ("compression.params.lr=1e39", "compression.params.lr"),  # YAML text "1e39", a float beyond float32
    ("compression.params.finetune_lr=3.5e38", "compression.params.finetune_lr"),
    ("compression.params.epochs=true", "compression.params.epochs"),
])
def test_bad_values_name_their_field(override, field):
    with pytest.raises(ConfigError) as err:
        method_config(load_config(None, [override]))
    assert str(err.value).split(":")[0].endswith(field) or f"{field}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_messages_cut_long_user_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.encoding=" + "z" * 5000, "train.epochs=" + "9" * 5000])
    assert len(str(err.value)) < 300
    assert len(quote("y" * 1000)) == 80


def test_n_samples_beyond_the_test_set_is_an_error_not_a_silent_cap():
    from codesign.execute.stages import check_n_samples, make_dataset
    cfg = load_config(None, ["data.dataset=digits", "hardware.n_samples=100000"])
    with pytest.raises(ConfigError, match=r"hardware\.n_samples: 100000 is more than the \d+ test samples"):
        check_n_samples(make_dataset(cfg), cfg)


def test_search_storage_and_objectives_are_checked_before_the_folder(tmp_path):
    from codesign.execute.search import search
    from codesign.config.sweep import load_spec
    base = ["output_dir=" + str(tmp_path), "run_name=s", "search.space={compression.ratio: [0.0, 0.5]}",
            "base={data: {dataset: digits}}"]
    for bad, match in (("search.storage=bogus://x", "search.storage"),
                       ("search.objectives={energy_jj: min}", "search.objectives: 'energy_jj' is not a results")):
        with pytest.raises(ConfigError, match=match):
            search(load_spec(None, [*base, bad]))
        assert not (tmp_path / "s").exists()


def test_invalid_allocator_weights_are_refused():
    from codesign.execute.allocate import AllocatorConfig
    for kw in ({"energy_weight": float("nan")}, {"latency_weight": -1.0},
               {"energy_weight": 0.0, "latency_weight": 0.0}):
        with pytest.raises(ConfigError, match="weight"):
            AllocatorConfig(**kw)


def test_two_runs_started_together_store_each_point_once(tmp_path):
    args = [sys.executable, "-m", "codesign", "run", "--set", "run_name=conc", "--set", "data.dataset=digits",
            "--set", "train.epochs=0", "--set", "compression.ratios=[0.0]", "--set", "hardware.n_samples=4",
            "--set", "hardware.model=analytic", "--no-progress"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert len(loser.strip().splitlines()) == 1 and "run_name" in loser
    lines = (tmp_path / "reports" / "conc" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert not (tmp_path / "reports" / "conc" / INCOMPLETE_NAME).exists()


@pytest.mark.parametrize("sets, message", [
    (["base={train: {epochs: abc}}"], "sweep: base.train.epochs: Input should be a valid integer"),
    (["base=5"], "sweep: base: Input should be a valid dictionary (got 5)"),
    (["base={hardware: {overrides: [1, 2]}}"], "sweep: base.hardware.overrides: Input should be a valid dictionary"),
    (["base={hardware: 3}", "axes={hardware.overrides.core.x: [4]}"], "hardware"),
])
def test_invalid_sweep_base_is_one_line_naming_the_field(sets, message):
    from codesign.config.sweep import grid_points, load_spec
    with pytest.raises(ConfigError) as err:
        grid_points(load_spec(None, sets))
    assert message in str(err.value) and "\n" not in str(err.value) and "pydantic" not in str(err.value)


def test_results_log_lines_that_are_not_rows_are_refused_and_duplicates_kept_once(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"point_id": "a", "x": 1}\n{"point_id": "a", "x": 2}\n')
    assert [r["x"] for r in ResultStore(tmp_path).rows] == [1]
    for bad in ('[1, 2]\n', '{"x": 1}\n'):
        (tmp_path / "results.jsonl").write_text(bad)
        with pytest.raises(ValueError, match="line 1 is not a results row"):
            ResultStore(tmp_path)


def test_huge_seed_and_batch_size_are_refused_with_their_field():
    for override, field in (("seed=" + "9" * 30, "seed"), ("train.batch_size=" + "9" * 30, "train.batch_size")):
        with pytest.raises(ConfigError, match=f"config: {field}:"):
            load_config(None, [override])


@pytest.mark.parametrize("planted", [".codesign.lock", "results.jsonl", "points", "points/p1/samples.csv"])
def test_resume_refuses_a_folder_with_a_planted_symlink(tmp_path, planted):
    out, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    with own_run_folder(out, False, "c.yaml", "a: 1\n"):
        pass
    (out / "points" / "p1").mkdir(parents=True)
    link = out / planted
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    link.symlink_to(outside / "target")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        check_folder(str(tmp_path), "run", True, "c.yaml", {"a": 1})
    with pytest.raises(ConfigError, match="is a symbolic link"):
        with own_run_folder(out, True, "c.yaml", "a: 1\n"):
            pass
    assert list(outside.iterdir()) == []


def test_output_dir_that_is_a_file_or_under_a_file_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="output_dir: .*afile' exists and is not a folder"):
        check_folder(str(tmp_path / "afile"), "r", False, "c.yaml", {})
    with pytest.raises(ConfigError, match="output_dir: .* cannot be made: .*afile' is a file"):
        check_folder(str(tmp_path / "afile" / "sub"), "r", False, "c.yaml", {})


def _without_root_powers() -> list[str]:
    """argv prefix that runs a command without root's power over file modes (setpriv), or [] when not root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def test_read_only_output_dir_is_refused_before_anything_is_written(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    code = ("from codesign.store.runfolder import check_folder\n"
            f"check_folder({str(ro / 'new')!r}, 'r', False, 'c.yaml', {{}})")
    proc = subprocess.run([*_without_root_powers(), sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "output_dir: " in proc.stderr and "is not writable" in proc.stderr
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("ratios, needle", [
    ("{'4': 1.5}", "'4': 1.5 is not a ratio in [0, 1)"), ("{'0': abc}", "'0': 'abc' is not a ratio"),
    ("{'0': true}", "'0': True is not a ratio"), ("[0.5]", "[0.5] must map conv names to ratios"),
])
def test_layer_ratios_are_checked_before_training(ratios, needle):
    sets = ["compression.method=magnitude_channel", f"compression.params.layer_ratios={ratios}"]
    with pytest.raises(ConfigError) as err:
        method_config(load_config(None, sets))
    assert str(err.value).startswith("compression.params.layer_ratios: ") and needle in str(err.value)
    ok = method_config(load_config(None, [sets[0], "compression.params.layer_ratios={'0': 0.3}"]))
    assert ok.layer_ratios == {"0": 0.3}


def _half_then_fail(target, *args, **kwargs):
    """A writer that writes half a file to `target`, then fails (a kill or a full disk mid-write)."""
    Path(target).write_bytes(b"{half")
    raise OSError("disk full")


def test_provenance_point_tables_and_artifacts_are_never_left_half_written(tmp_path, monkeypatch):
    import pandas as pd
    from codesign.execute import run as run_mod
    from codesign.execute.evaluate import stage_keys
    from codesign.reporting.hwfigures import PointDetails
    from codesign.store.cache import StageCache
    from codesign.store.provenance import write_provenance
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: _half_then_fail(self))
    with pytest.raises(OSError, match="disk full"):
        write_provenance(tmp_path, 0)
    monkeypatch.undo()
    assert not (tmp_path / "provenance.json").exists()
    assert write_provenance(tmp_path, 0)["seed"] == 0  # a later start (or --resume) writes it whole
    empty = pd.DataFrame({"x": [1]})
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, target, **k: _half_then_fail(target))
    with pytest.raises(OSError, match="disk full"):
        PointDetails(empty, empty, empty, empty, empty).save(tmp_path / "points" / "p1")
    monkeypatch.undo()
    assert list((tmp_path / "points" / "p1").iterdir()) == []
    cfg = load_config(sets=[f"cache_dir={tmp_path / 'cache'}", "compression.ratios=[0.5]"])
    def whole_files(folder: Path) -> None:  # a verified entry (hashes recorded), so nothing is trained again
        for kind in ("graph", "trace"):
            (folder / f"{kind}.npz").write_bytes(b"whole file")
    StageCache(tmp_path / "cache").get_or_make("lowered", stage_keys(cfg).lowered, whole_files)
    monkeypatch.setattr(run_mod.shutil, "copyfile", lambda src, dst: _half_then_fail(dst))
    with pytest.raises(OSError, match="disk full"):
        run_mod.copy_artifacts([cfg], StageCache(tmp_path / "cache"), tmp_path)
    assert list((tmp_path / "artifacts").iterdir()) == []


@pytest.mark.parametrize("content, needle", [
    ("a: &a [*a]\n", "expands to more than 100,000 values"),
    ("data: " + "[" * 5000 + "]" * 5000 + "\n", "nests too deeply"),
    (b"data: \xff\n", "cannot read"),
    ("- 1\n", "must hold a mapping of sections, got list"),
])
def test_a_hostile_stored_config_is_refused_in_one_line_on_resume(tmp_path, content, needle):
    # the stored config of a shared run folder is read with the caps of any config (was a RecursionError)
    out = tmp_path / "out" / "r"
    out.mkdir(parents=True)
    (out / "config.resolved.yaml").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=needle) as err:
        check_folder(str(tmp_path / "out"), "r", True, "config.resolved.yaml", {})
    assert str(err.value).startswith("--resume: ") and "\n" not in str(err.value)


def test_resume_refuses_points_made_by_other_code(tmp_path, monkeypatch):
    """Finished points of other code (an upgrade or an edit of the chip model or the lowering between start and
    resume) would join the new rows under the same point ids: --resume refuses them in one line."""
    import json
    from codesign.store import provenance, runfolder
    from codesign.store.provenance import write_provenance
    with own_run_folder(tmp_path / "r", False, "c.yaml", "a: 1\n") as out:
        write_provenance(out, 0)
        (out / "results.jsonl").write_text('{"point_id": "p"}\n')
    assert json.loads((out / "provenance.json").read_text())["code_version"] == provenance.results_code_version()
    assert check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1}) == out  # same code: resumes
    monkeypatch.setattr(runfolder, "results_code_version", lambda: "0.1.0+000000000000")
    with pytest.raises(ConfigError, match=r"^--resume: .* was started by code '0.1.0\+[0-9a-f]{12}', this is code "
                                          r"'0.1.0\+000000000000'; its finished points would mix") as err:
        check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1})
    assert "\n" not in str(err.value)
    info = json.loads((out / "provenance.json").read_text())
    del info["code_version"]  # a folder of code from before the version was recorded
    (out / "provenance.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="was started by code whose version is not recorded"):
        check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1})
    (out / "results.jsonl").unlink()  # no finished point: nothing to mix, the folder takes this code
    assert check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1}) == out


def test_results_code_version_follows_the_chip_model_and_lowering_sources_only():
    from codesign.store.provenance import RESULT_SOURCES
    from codesign.store.cache import source_files
    names = {name for name, _ in source_files(RESULT_SOURCES)}
    assert {"hwmodels/simulate.py", "workloads/lowering/engine.py", "codesign/execute/evaluate.py"} <= names
    assert any(n.startswith("hwmodels/") and n.endswith(".yaml") for n in names)  # presets change results too
    assert not any(n.startswith(("codesign/reporting/", "codesign/cli/")) for n in names)


def test_hardware_samples_take_the_classes_in_turn_whatever_the_split_order():
    """mnist5k's test split is sorted by label: its first 100 samples were all zeros, so every energy, latency and
    on-chip accuracy of a run described the digit 0."""
    import torch
    from codesign.execute.stages import encoded_test_inputs, hardware_samples
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 5])
    assert hardware_samples(y, 10).tolist() == [0, 3, 5, 9, 1, 4, 6, 2, 7, 8]  # 0 1 2 5, 0 1 2, 0 2, 2
    assert hardware_samples(y, 3).tolist() == [0, 3, 5] and hardware_samples(y[:0], 0).tolist() == []
    cfg = load_config(None, ["hardware.n_samples=100"])
    from workloads.data import load_dataset
    ds = load_dataset("mnist5k", seed=cfg.seed)
    assert ds.y_test[:100].unique().tolist() == [0]  # the split's own order
    x, labels = encoded_test_inputs(ds, cfg, 100)
    assert torch.bincount(labels).tolist() == [10] * 10 and x.shape[1] == 100
    idx = hardware_samples(ds.y_test, 100)
    assert torch.equal(x[0], ds.x_test[idx]) and torch.equal(labels, ds.y_test[idx])  # direct encoding


def test_a_local_dataset_s_model_key_follows_the_folder_its_files_come_from(tmp_path, monkeypatch):
    """cifar10 read from $CODESIGN_DATA_DIR: another folder (same config) is another trained model; shipped sets
    ignore the root."""
    from codesign.execute.evaluate import stage_keys
    cfg = load_config(None, ["data.dataset=cifar10", "model.name=vgg11", "compression.ratios=[0.5]"])
    keys = []
    for folder in ("a", "b", "a"):
        monkeypatch.setenv("CODESIGN_DATA_DIR", str(tmp_path / folder))
        keys.append(stage_keys(cfg).dense)
    assert keys[0] != keys[1] and keys[0] == keys[2]
    shipped = load_config(None, ["compression.ratios=[0.5]"])
    monkeypatch.setenv("CODESIGN_DATA_DIR", str(tmp_path / "b"))
    other = stage_keys(shipped).dense
    monkeypatch.setenv("CODESIGN_DATA_DIR", str(tmp_path / "a"))
    assert stage_keys(shipped).dense == other


def test_a_bad_value_on_an_axis_names_the_axis_values():
    from codesign.config.sweep import grid_points, load_spec
    with pytest.raises(ConfigError) as err:
        grid_points(load_spec(None, ["axes={compression.ratio: [0.5, 1.5]}"]))
    assert str(err.value) == ("config: compression.ratios: 1.5 is outside [0, 1) (got [1.5]) (at axis values "
                              "{'compression.ratio': 1.5})")
