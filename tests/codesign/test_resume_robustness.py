"""Resuming a run folder after what a user does between the kill and the resume: the cache cleared, a damaged
provenance.json."""
import json

import pytest

from codesign.config.run import load_config
from codesign.execute.run import run

SETS = ["data.dataset=digits", "train.epochs=1", "compression.method=magnitude_channel", "compression.ratios=[0.0]",
        "hardware.n_samples=4", "hardware.latency_model=analytic"]


def _cfg(tmp_path, name):
    return load_config(None, [*SETS, f"run_name={name}", f"output_dir={tmp_path / 'reports'}",
                              f"cache_dir={tmp_path / 'cache'}"])


@pytest.mark.slow
def test_resume_of_a_finished_run_after_cache_clear_remakes_its_artifacts(tmp_path):
    """All points stored, the run stopped before its artifacts and report, the cache cleared: --resume lowers the
    model again for artifacts/ instead of failing on the missing cache entry forever."""
    cfg = _cfg(tmp_path, "r")
    first = run(cfg, progress=False, log=lambda m: None)
    art = sorted(p.name for p in (first.run_dir / "artifacts").iterdir())
    (first.run_dir / ".incomplete").touch()
    for path in (first.run_dir / "artifacts").iterdir():
        path.unlink()
    from codesign.store.cache import StageCache
    StageCache(tmp_path / "cache").remove("lowered")
    again = run(cfg, progress=False, log=lambda m: None, resume=True)
    assert sorted(p.name for p in (again.run_dir / "artifacts").iterdir()) == art
    assert all(p.stat().st_mode & 0o044 for p in (again.run_dir / "artifacts").iterdir())  # readable as before
    assert not (again.run_dir / ".incomplete").exists()
    assert json.loads((again.run_dir / "provenance.json").read_text())["seed"] == 0


@pytest.mark.parametrize("content", [b'{"seed": 0, "git_rev', b"[1, 2]", b"\xff\xfe"])
def test_a_damaged_provenance_json_is_refused_naming_the_file(tmp_path, content):
    from codesign.store.provenance import write_provenance
    (tmp_path / "provenance.json").write_bytes(content)
    with pytest.raises(ValueError, match=r"^provenance.json: '.*provenance.json' is not a JSON object"):
        write_provenance(tmp_path, 0)
    assert (tmp_path / "provenance.json").read_bytes() == content


def test_provenance_is_written_through_a_temp_file(tmp_path, monkeypatch):
    """A write that fails half way leaves no provenance.json (a resume then writes a whole one), never half of one."""
    from pathlib import Path

    from codesign.store.provenance import write_provenance
    real = Path.write_text

    def half(self, text, *args, **kwargs):
        real(self, text[:10], *args, **kwargs)
        raise OSError(27, "File too large")
    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(OSError):
        write_provenance(tmp_path, 0)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert write_provenance(tmp_path, 0)["seed"] == 0


def test_resume_refuses_a_folder_with_results_but_without_its_config(tmp_path):
    """Without config.resolved.yaml the config of the stored points cannot be checked: --resume with any other
    config would mix its points into the folder under the new config's name, so it is refused, naming the file.
    A folder without results (killed as it started) still resumes and gets the config."""
    from codesign.config.run import ConfigError
    from codesign.store.runfolder import check_folder
    out = tmp_path / "r"
    out.mkdir()
    assert check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1}) == out
    (out / "results.jsonl").write_text('{"point_id": "p1"}\n')
    with pytest.raises(ConfigError, match=r"^--resume: '.*c.yaml' is missing"):
        check_folder(str(tmp_path), "r", True, "c.yaml", {"a": 1})


def test_temp_files_of_killed_artifact_and_table_writes_are_cleaned(tmp_path):
    """artifacts/ and tables/ are written through temp files too: a kill leaves one, which the next owner removes."""
    from codesign.store.runfolder import clean_leftovers
    for sub in ("artifacts", "tables"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / ".x.npz.k2j3.tmp").write_text("half")
        (tmp_path / sub / "keep.npz").write_text("whole")
    clean_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["keep.npz", "keep.npz"]


@pytest.mark.slow
def test_a_task_whose_workers_die_is_one_line_not_a_killed_worker_traceback():
    """A point that kills its worker (out of memory: the nanny stops it) on every try ends in WorkerLost, an
    OSError the CLI prints as one line saying how to go on, not dask's KilledWorker traceback."""
    import os

    import dask
    import distributed  # noqa: F401  (its config defaults exist before dask.config.set, which would drop them)

    from codesign.config.sweep import ExecutionConfig
    from codesign.execute.executor import WorkerLost, dask_client
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(WorkerLost, match=r"^execution: dask workers of 1 local died running .*--resume"):
            with dask_client(ExecutionConfig(workers=1)) as client:
                client.submit(os._exit, 1, pure=False).result()


@pytest.mark.slow
def test_a_failing_task_on_local_workers_logs_no_compute_failed_block():
    """A task that raises reaches the caller as its exception (the CLI prints one line), and the local worker
    does not also log dask's ~10-line "Compute Failed" record to the terminal; its other logs are kept."""
    from codesign.config.sweep import ExecutionConfig
    from codesign.execute.executor import dask_client
    with dask_client(ExecutionConfig(workers=1)) as client:
        with pytest.raises(ValueError, match="invalid literal"):
            client.submit(int, "not a number", pure=False).result()
        logs = [msg for entries in client.get_worker_logs().values() for _, msg in entries]
    assert logs and not any("Compute Failed" in msg for msg in logs)


def test_ctrl_c_while_the_local_cluster_starts_is_ignored_and_inherited_by_spawned_processes():
    """Inside ctrl_c_ignored (the local cluster's start) a SIGINT is dropped and processes spawned there start
    with SIGINT ignored (the workers: no KeyboardInterrupt traceback while they import, no half-started cluster);
    afterwards this process's own handler is back and gets the next SIGINT."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from codesign.execute.executor import ctrl_c_ignored
    got = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    try:
        with ctrl_c_ignored():
            os.kill(os.getpid(), signal.SIGINT)  # dropped
            spawned = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        time.sleep(0.05)
        assert got == [] and spawned.stdout.strip() == "True"
        outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert outside.stdout.strip() == "False"  # a handled signal is reset to the default across exec
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert got == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.slow
def test_local_dask_workers_ignore_ctrl_c():
    """Ctrl-C reaches the whole process group: the local workers ignore it (this process stops the cluster), so
    they print no KeyboardInterrupt traceback each; this process keeps its own handler."""
    import signal

    from codesign.config.sweep import ExecutionConfig
    from codesign.execute.executor import dask_client
    before = signal.getsignal(signal.SIGINT)  # Python's default, or brian2's when another test imported it
    with dask_client(ExecutionConfig(workers=1)) as client:
        handlers = client.run(signal.getsignal, signal.SIGINT)
    assert list(handlers.values()) == [signal.SIG_IGN] and before is not signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before


def _details():
    import pandas as pd

    from codesign.reporting.hwfigures import PointDetails
    cores = pd.DataFrame({"core": [0, 1], "population": ["a", "b"], "tile_x": [0, 1], "tile_y": [0, 0],
                          "neurons": [4, 2], "busy_s": [1e-6, 2e-6], "utilization": [0.5, 1.0]})
    return PointDetails(pd.DataFrame({"population": ["a", "b"], "synops": [3.0, 4.0], "energy_j": [1e-6, 2e-6]}),
                        cores, pd.DataFrame(), pd.DataFrame({"step": [0, 1], "latency_s": [1e-6, 1e-6]}))


@pytest.mark.parametrize("table, damage, needle", [
    ("populations", "", "has no rows"), ("cores", "", "has no rows"), ("steps", "", "has no rows"),
    ("cores", "core,population\n0,a\n", "lacks the column 'tile_x'"),
    ("steps", "step,latency_s\n0,1e-6\n1,\n", "column 'latency_s' holds a value that is not a finite number")])
def test_a_damaged_point_table_is_refused_naming_it_not_a_key_error(tmp_path, table, damage, needle):
    """The figures read these columns: an empty, column-less or cut table is one line naming the file (the report
    command exits 2) instead of a KeyError traceback or a figure of half the data."""
    from codesign.reporting.hwfigures import PointDetails
    _details().save(tmp_path)
    assert PointDetails.load(tmp_path).cores["tile_x"].tolist() == [0, 1]  # the intact tables load
    (tmp_path / f"{table}.csv").write_text(damage)
    with pytest.raises(ValueError, match=rf"^'.*{table}.csv'.* {needle}"):
        PointDetails.load(tmp_path)


def test_point_tables_are_written_through_temp_files(tmp_path, monkeypatch):
    """A write that fails half way through a table (disk full, a kill) leaves the tables written before it whole
    and no half table, nor a temp file."""
    import pandas as pd
    details = _details()
    real = pd.DataFrame.to_csv

    def fail_on_steps(self, path, *args, **kwargs):
        if "step" in self.columns:
            with open(path, "w") as fh:
                fh.write("step,lat")
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kwargs)
    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_on_steps)
    with pytest.raises(OSError):
        details.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cores.csv", "links.csv", "populations.csv"]


def test_provenance_and_point_tables_keep_the_results_file_mode(tmp_path):
    """Written through temp files (mkstemp makes 0600), they still get 0644 less the umask, as results.csv does."""
    import os
    import stat

    from codesign.store.provenance import write_provenance
    old = os.umask(0o022)
    try:
        write_provenance(tmp_path, 0)
        _details().save(tmp_path / "points" / "p1")
    finally:
        os.umask(old)
    for path in [tmp_path / "provenance.json", *(tmp_path / "points" / "p1").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


@pytest.mark.slow
def test_ctrl_c_in_a_dask_sweep_prints_one_line_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a local worker trains: the CLI exits 130 with one
    line on stderr saying how to resume, and none of dask's shutdown records (heartbeat tracebacks, cancelled
    tasks, "Task exception was never retrieved ... AllExit", the nanny killing the busy worker) nor the resource
    tracker's leaked-semaphore warning for the killed worker's tqdm lock."""
    import os
    import signal
    import subprocess
    import sys
    import time
    sets = ["base.data.dataset=digits", "base.train.epochs=200", "base.hardware.n_samples=4",
            f"output_dir={tmp_path / 'reports'}", f"cache_dir={tmp_path / 'cache'}"]
    cmd = [sys.executable, "-m", "codesign", "sweep", "--workers", "2", *(a for s in sets for a in ("--set", s))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stdout:  # the dense model trains on a worker from this line on
            if line.startswith("preparing 1 distinct dense stage"):
                break
        time.sleep(1.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.splitlines() == ["interrupted: finished points are stored; rerun with --set run_name=<the folder "
                                "named as the run started> --resume to go on"]


def test_a_local_worker_drops_dask_records_once_it_closes_only():
    """DropWhileClosing keeps a worker's records while it runs and drops them from its closing on (the heartbeat
    tracebacks and cancelled tasks of a cluster closed by Ctrl-C)."""
    import logging
    from types import SimpleNamespace

    from distributed.core import Status

    from codesign.execute.logs import DropWhileClosing
    worker = SimpleNamespace(status=Status.running)
    drop = DropWhileClosing(worker)
    record = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "heartbeat failed", None, None)
    kept = {}
    for status in (Status.running, Status.paused, Status.closing, Status.closing_gracefully, Status.closed,
                   Status.failed):
        worker.status = status
        kept[status.name] = drop.filter(record)
    assert kept == {"running": True, "paused": True, "closing": False, "closing_gracefully": False,
                    "closed": False, "failed": False}
