"""Sweeps and searches as users run them: kill and resume, a real dask cluster against a serial run, search fronts."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from codesign.config.sweep import grid_points, load_spec
from codesign.execute.evaluate import stage_keys
from codesign.execute.sweep import sweep

BASE = {"data": {"dataset": "digits"}, "train": {"epochs": 2},
        "compression": {"method": "sca", "ratios": [0.0, 0.5], "params": {"epochs": 1, "finetune_epochs": 0}},
        "hardware": {"n_samples": 10}}


def _spec(tmp_path, name, axes, **extra):
    tree = {"base": BASE, "run_name": name, "output_dir": str(tmp_path / "reports"),
            "cache_dir": str(tmp_path / extra.pop("cache", "cache")), "axes": axes, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]


RESULT_COLUMNS = ["point_id", "accuracy", "params", "energy_j", "latency_s", "synops", "spikes", "cores_used",
                  "energy_j_ci_low", "energy_j_ci_high", "latency_p95_s", "accuracy_hw"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_rows", [0, 2])
def test_sigkill_and_resume_lose_and_repeat_nothing(tmp_path, kill_after_rows):
    axes = {"hardware.overrides.core.neurons_per_core": [256, 512, 1024]}
    path = _spec(tmp_path, "k", axes)
    cmd = [sys.executable, "-m", "codesign", "sweep", str(path)]
    run_dir = tmp_path / "reports" / "k"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    log = run_dir / "results.jsonl"
    while time.time() < deadline:  # kill once `kill_after_rows` points are stored (0: while training)
        n = len(log.read_text().splitlines()) if log.exists() else 0
        if n >= kill_after_rows and (kill_after_rows or run_dir.exists()):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(run_dir) if log.exists() else []
    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = _rows(run_dir)
    assert len(after) == 6 and len({r["point_id"] for r in after}) == 6
    assert after[:len(before)] == before  # finished points kept as they were, not re-run
    # results.jsonl logs rows as they finish (on dask, in any order); results.csv holds them in grid order
    grid = [stage_keys(cfg).point for _, cfg in grid_points(load_spec(path))]
    assert sorted(grid) == sorted(r["point_id"] for r in after)
    assert pd.read_csv(run_dir / "results.csv")["point_id"].tolist() == grid


@pytest.mark.slow
def test_local_dask_cluster_equals_serial_run(tmp_path):
    axes = {"hardware.overrides.core.neurons_per_core": [256, 1024], "hardware.model": ["des", "analytic"]}
    seen = []
    serial = sweep(load_spec(_spec(tmp_path, "serial", axes, cache="c1",
                                   execution={"workers": 0, "torch_threads": 1})), log=lambda _: None,
                   on_point=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 8) for i in range(1, 9)]
    dask = sweep(load_spec(_spec(tmp_path, "dask", axes, cache="c2", execution={"workers": 2})),
                 log=lambda _: None)
    # rows in grid order on both paths (dask stores them as they finish): the same results.csv order and report
    assert serial.table["point_id"].tolist() == dask.table["point_id"].tolist()
    csv = [pd.read_csv(tmp_path / "reports" / r / "results.csv")["point_id"].tolist() for r in ("serial", "dask")]
    assert csv[0] == csv[1] == serial.table["point_id"].tolist()
    a = serial.table.set_index("point_id").sort_index()
    b = dask.table.set_index("point_id").sort_index()
    assert len(a) == 8 and list(a.index) == list(b.index)
    cols = [c for c in RESULT_COLUMNS if c != "point_id"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    # every point's samples are kept on both paths, the same on both (the bootstrap is seeded by the run seed)
    for pid in a.index:
        one, two = (pd.read_csv(tmp_path / "reports" / r / "points" / pid / "samples.csv") for r in ("serial", "dask"))
        assert len(one) == 10
        pd.testing.assert_frame_equal(one, two)
    # both caches hold exactly one trained model: the dask run never trained the same model twice
    for c in ("c1", "c2"):
        assert len(list((tmp_path / c / "dense").iterdir())) == 1


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])  # serial in the process; two trials at a time on a dask cluster
def test_search_reports_a_front_and_resumes(tmp_path, workers):
    search_cfg = {"n_trials": 6, "sampler": "nsga2", "population_size": 4, "seed": 1,
                  "space": {"compression.ratio": [0.0, 0.5],
                            "hardware.overrides.core.neurons_per_core": [128, 256, 1024]}}
    path = _spec(tmp_path, "s", {}, search=search_cfg)
    cmd = [sys.executable, "-m", "codesign", "search", str(path), "--workers", workers]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "reports" / "s"
    rows = _rows(run_dir)
    assert 1 <= len(rows) <= 6 and len({r["point_id"] for r in rows}) == len(rows)
    for r in rows:  # every evaluated trial's point keeps its per-sample table
        assert len(pd.read_csv(run_dir / "points" / r["point_id"] / "samples.csv")) == 10
    front = pd.read_csv(run_dir / "pareto.csv")
    assert len(front) >= 1 and set(front["point_id"]) <= {r["point_id"] for r in rows}
    import optuna
    study = optuna.load_study(study_name="codesign", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 6
    # resuming a finished search with more trials continues the same study and store
    more = subprocess.run(cmd + ["--resume", "--set", "search.n_trials=8"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name="codesign", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 8
    again = _rows(run_dir)
    assert again[:len(rows)] == rows and len({r["point_id"] for r in again}) == len(again)
    fewer = subprocess.run(cmd + ["--resume", "--set", "search.n_trials=2"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)  # nothing to run; the summary counts the study's trials
    assert fewer.returncode == 0 and "nsga2 search, 8 trials over" in (run_dir / "report.md").read_text()
    # one trained model; one lowered model per ratio that was evaluated (no stage was made twice and left over)
    assert len(list((tmp_path / "cache" / "dense").iterdir())) == 1
    assert len(list((tmp_path / "cache" / "lowered").iterdir())) == len({r["ratio"] for r in again})


def test_an_auto_named_sweep_resumes_by_its_folder_name(tmp_path):
    path = _spec(tmp_path, "auto", {}, base={**BASE, "compression": {**BASE["compression"], "ratios": [0.0]}})
    tree = yaml.safe_load(path.read_text())
    del tree["run_name"]  # the folder is named sweep-<UTC timestamp>
    path.write_text(yaml.safe_dump(tree))
    first = sweep(load_spec(path), log=lambda *a: None)
    folder = first.run_dir
    assert folder.name.startswith("sweep-") and yaml.safe_load((folder / "sweep.yaml").read_text())["run_name"] == \
        folder.name
    rows = _rows(folder)
    again = sweep(load_spec(path, [f"run_name={folder.name}"]), resume=True, log=lambda *a: None)
    assert again.run_dir == folder and _rows(folder) == rows  # resumed: nothing re-run, nothing added


@pytest.mark.parametrize("workers", [100000, 257])
def test_more_local_workers_than_the_bound_are_refused_by_the_spec(tmp_path, workers):
    """Was no bound: --workers 100000 hung making dask scratch folders and left an incomplete run folder."""
    from codesign.config.run import ConfigError
    from codesign.config.sweep import MAX_WORKERS
    assert MAX_WORKERS == 256
    with pytest.raises(ConfigError, match=rf"^sweep: execution\.workers: at most 256 local worker processes \(0: "
                                          rf"serial in this process; unset: one per core\).*\(got {workers}\)$") as err:
        load_spec(_spec(tmp_path, "w", {}), [f"execution.workers={workers}"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_workers_is_refused(tmp_path, value):
    """true was taken as 1 worker."""
    from codesign.config.run import ConfigError
    with pytest.raises(ConfigError, match=r"^sweep: execution\.workers: must be an integer 0\.\.256 or unset, not "
                                          r"true/false"):
        load_spec(_spec(tmp_path, "w", {}), [f"execution.workers={value}"])


@pytest.mark.parametrize("workers, expected", [("0", 0), ("256", 256), ("null", None)])
def test_serial_bounded_and_per_core_workers_pass(tmp_path, workers, expected):
    assert load_spec(_spec(tmp_path, "w", {}), [f"execution.workers={workers}"]).execution.workers == expected


def test_cli_too_many_workers_exits_2_before_the_run_folder(tmp_path):
    path = _spec(tmp_path, "w", {})
    proc = subprocess.run([sys.executable, "-m", "codesign", "sweep", str(path), "--workers", "100000"],
                          cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [
        "error: sweep: execution.workers: at most 256 local worker processes (0: serial in this process; unset: one "
        "per core); for more, start a dask cluster and pass --scheduler (got 100000)"], proc.stderr
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("axes, message", [
    ({"model.neuron": ["IF", "XYZ"]}, "model.neuron: 'XYZ' is not one of"),  # found after the IF point had trained
    ({"data.encoding": ["direct", "events"]}, "data.encoding 'events' does not fit dataset 'digits'"),
    ({"compression.ratios": [[0.0, 0.5]]}, "compression.ratios: a design point needs exactly one ratio"),
])
def test_every_axis_value_is_checked_before_the_run_folder(tmp_path, axes, message):
    from codesign.config.run import ConfigError
    with pytest.raises(ConfigError, match=message):
        sweep(load_spec(_spec(tmp_path, "bad", axes)), log=lambda *a: None)
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_a_point_the_chip_cannot_hold_is_logged_with_its_reason(tmp_path):
    base = {**BASE, "train": {"epochs": 1}, "compression": {**BASE["compression"], "ratios": [0.0]}}
    lines = []
    result = sweep(load_spec(_spec(tmp_path, "fit", {"hardware.overrides.core.neurons_per_core": [1024, 4]},
                                   base=base)), log=lines.append)
    assert sorted(result.table["fits"]) == [False, True]
    failed = [ln for ln in lines if "not simulated:" in ln]  # was "energy nan µJ, latency nan µs", no reason
    assert len(failed) == 1 and "not simulated: network does not fit chip 'loihi'" in failed[0]


def test_a_grid_without_the_seed_axis_records_the_base_seed_and_both_result_files_agree(tmp_path):
    # its seed cell used to be empty, so claims (paired within a seed) left its points out of every comparison;
    # results.parquet kept the store's point order and no pareto column while results.csv had the report's
    axes = [{"seed": [0, 1], "compression.ratio": [0.0]}, {"compression.ratio": [0.5]}]
    base = {**BASE, "train": {"epochs": 1}, "hardware": {"n_samples": 4, "model": "analytic"},
            "compression": {"method": "l1p", "ratios": [0.0], "params": {"finetune_epochs": 0}}}
    spec = load_spec(_spec(tmp_path, "seeds", axes, base=base, execution={"workers": 0}))
    logs = []
    run = sweep(spec, log=logs.append).run_dir
    assert f"3 design points -> {run} (interrupted: resume with --set run_name=seeds --resume)" in logs
    csv = pd.read_csv(run / "results.csv", dtype={"point_id": str})
    assert sorted(csv["seed"].tolist()) == [0, 0, 1]
    assert csv.loc[csv["ratio"] == 0.5, "seed"].tolist() == [0]
    parquet = pd.read_parquet(run / "results.parquet")
    assert parquet["point_id"].tolist() == csv["point_id"].tolist() and "pareto" in parquet.columns


@pytest.mark.parametrize("command", ["sweep", "search"])
def test_a_set_that_contradicts_workers_is_refused_before_any_folder(tmp_path, command):
    # sweep --workers 0 --set execution.workers=2 ran serially without a word
    proc = subprocess.run([sys.executable, "-m", "codesign", command, "--workers", "0", "--set",
                           "execution.workers=2", "--set", "output_dir=out"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: --set: execution.workers='2' contradicts --workers 0; give one of them", proc.stderr
    assert not (tmp_path / "out").exists()
    same = subprocess.run([sys.executable, "-m", "codesign", command, "--workers", "0", "--set", "execution.workers=0",
                           "--set", "run_name=x/y"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert same.returncode == 2 and "contradicts" not in same.stderr  # agreeing values pass (run_name is refused)
