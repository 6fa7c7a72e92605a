"""Units of the co-design loop: Pareto masks, the durable results store, the stage cache and sweep specs."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from codesign.store.cache import StageCache, config_key
from codesign.config.run import ConfigError
from codesign.reporting.pareto import pareto_mask
from codesign.config.sweep import grid_points, load_spec, point_config
from codesign.store.results import ResultStore


def test_pareto_mask_hand_example():
    df = pd.DataFrame({"acc": [0.9, 0.8, 0.95, 0.85, 0.9, np.nan], "e": [2.0, 1.0, 5.0, 3.0, 2.0, 0.1]})
    # row 3 is dominated by row 0 (lower acc, higher energy); rows 0 and 4 tie (neither dominates the other);
    # row 5 has a NaN objective
    assert pareto_mask(df, {"acc": "max", "e": "min"}).tolist() == [True, True, True, False, True, False]
    with pytest.raises(ValueError, match="objectives.acc: 'up' is not one of max, min"):
        pareto_mask(df, {"acc": "up"})
    with pytest.raises(ValueError, match="column 'zz'"):
        pareto_mask(df, {"zz": "max"})


def test_store_is_durable_and_drops_a_torn_line(tmp_path):
    store = ResultStore(tmp_path, lead_columns=["b"])
    store.append({"point_id": "p1", "a": 1, "b": 2.5})
    store.append({"point_id": "p2", "a": 2, "b": 3.5, "extra": "x"})
    with pytest.raises(ValueError, match="already stored"):
        store.append({"point_id": "p1", "a": 9})
    with open(tmp_path / "results.jsonl", "a") as fh:  # a SIGKILL in the middle of a write
        fh.write('{"point_id": "p3", "a"')
    again = ResultStore(tmp_path)
    assert again.done == {"p1", "p2"}
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 2
    again.append({"point_id": "p3", "a": 3, "b": 1.0})
    assert [json.loads(x)["point_id"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == \
        ["p1", "p2", "p3"]
    csv = pd.read_csv(tmp_path / "results.csv")
    assert csv["point_id"].tolist() == ["p1", "p2", "p3"]
    assert pd.read_parquet(tmp_path / "results.parquet")["a"].tolist() == [1, 2, 3]
    assert list(store.table().columns[:2]) == ["b", "point_id"]
    axis = ResultStore(tmp_path / "dicts")  # a sweep axis over whole dicts, {} its baseline (pyarrow refused it)
    axis.append({"point_id": "q1", "hardware.overrides": {}})
    axis.append({"point_id": "q2", "hardware.overrides": {"mesh_height": 1}})
    assert pd.read_parquet(tmp_path / "dicts" / "results.parquet")["hardware.overrides"].tolist() == [
        "{}", '{"mesh_height": 1}']


def test_stage_cache_builds_once_and_leaves_nothing_on_failure(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def make(folder):
        calls.append(1)
        (folder / "x.txt").write_text("hi")

    key = config_key({"a": 1, "b": 2}, [2, 3])
    assert key == config_key({"b": 2, "a": 1}, [2, 3])  # dict key order does not matter
    assert key != config_key({"a": 1, "b": 3}, [2, 3]) and len(key) == 16
    p = cache.get_or_make("s", key, make, meta={"m": 1})
    meta = json.loads((p / "meta.json").read_text())
    assert (p / "x.txt").read_text() == "hi" and meta["meta"] == {"m": 1}
    assert meta["files"] == {"x.txt": "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"}  # sha256
    assert (meta["stage"], meta["key"]) == ("s", key)
    cache.get_or_make("s", key, make)
    assert len(calls) == 1

    def boom(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_make("s", "other", boom)
    assert not cache.has("s", "other")
    assert [p.name for p in (tmp_path / "s").iterdir()] == [key]


def test_spec_axes_expand_to_validated_points(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("base: {data: {dataset: digits}, compression: {ratios: [0.0, 0.5]}}\n"
                    "axes:\n  hardware.overrides.core.synapse_memory_bits: [65536, 131072]\n"
                    "  compression.params.q: [0.2]\n")
    spec = load_spec(path)
    points = grid_points(spec)
    assert len(points) == 2 * 2 * 1
    values, cfg = points[-1]
    assert values == {"compression.ratio": 0.5, "hardware.overrides.core.synapse_memory_bits": 131072,
                      "compression.params.q": 0.2}
    assert cfg.compression.ratios == [0.5] and cfg.data.dataset == "digits"
    assert cfg.hardware.overrides == {"core.synapse_memory_bits": 131072}
    assert cfg.compression.params == {"q": 0.2}
    with pytest.raises(ConfigError, match="compression.ratios: 1.5 is outside"):
        point_config(spec, {"compression.ratio": 1.5})
    with pytest.raises(ConfigError, match="unknown key 'axez'"):
        load_spec(None, ["axez={}"])
    with pytest.raises(ConfigError, match="axis 'hardware.model' has no values"):
        load_spec(None, ["axes={hardware.model: []}"])


def test_stage_threads_share_the_local_cores_out():
    from codesign.execute.executor import stage_threads
    from codesign.config.sweep import ExecutionConfig
    assert stage_threads(ExecutionConfig(workers=4), 1) == 4  # one model to train: every core of the cluster
    assert stage_threads(ExecutionConfig(workers=4), 3) == 1 and stage_threads(ExecutionConfig(workers=4), 2) == 2
    assert stage_threads(ExecutionConfig(workers=2, torch_threads=3), 1) == 3  # set explicitly: kept
    assert stage_threads(ExecutionConfig(scheduler="tcp://h:8786"), 1) == 1  # remote cores unknown


@pytest.mark.slow
def test_local_workers_spawn_without_dask_malloc_trim_threshold():
    import os

    from codesign.execute.executor import dask_client
    from codesign.config.sweep import ExecutionConfig
    with dask_client(ExecutionConfig(workers=1)) as client:
        env = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        omp = client.run(os.environ.get, "OMP_NUM_THREADS")
    assert list(env.values()) == [None] and list(omp.values()) == ["1"]


@pytest.mark.slow
def test_the_local_cluster_refuses_a_client_without_its_credentials():
    # on plain tcp://127.0.0.1 any local process could connect and run code on the workers (client.run)
    from dask.distributed import Client
    from distributed.security import Security

    from codesign.execute.executor import dask_client
    from codesign.config.sweep import ExecutionConfig
    with dask_client(ExecutionConfig(workers=1)) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:") and list(client.run(lambda: 7).values()) == [7]
        # plain tcp, and TLS with credentials of its own (another CA): both refused by the scheduler
        for outsider, security in ((address.replace("tls://", "tcp://"), None), (address, Security.temporary())):
            with pytest.raises(OSError, match="Comm|TLS|closed"):
                Client(outsider, timeout="3s", security=security).close()


@pytest.mark.slow
def test_check_scheduler_accepts_a_live_scheduler_and_names_a_dead_one():
    from dask.distributed import LocalCluster

    from codesign.execute.executor import check_scheduler
    from codesign.config.sweep import ExecutionConfig
    check_scheduler(ExecutionConfig())  # no scheduler: nothing to check
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        check_scheduler(ExecutionConfig(scheduler=cluster.scheduler_address))
    with pytest.raises(ConfigError, match=r"execution.scheduler: no dask scheduler answers at 'tcp://127.0.0.1:9'"):
        check_scheduler(ExecutionConfig(scheduler="tcp://127.0.0.1:9"), timeout_s=1.0)


def test_a_spec_file_naming_a_dask_scheduler_is_refused_but_the_command_line_may(tmp_path):
    # a client unpickles what its scheduler sends: a shared spec must not pick the scheduler
    from codesign.config.run import ConfigError
    from codesign.config.sweep import load_spec
    spec = tmp_path / "spec.yaml"
    spec.write_text("execution:\n  scheduler: tcp://203.0.113.5:8786\n")
    with pytest.raises(ConfigError, match=r"sweep: execution.scheduler: .*spec.yaml' names a dask scheduler"):
        load_spec(spec)
    spec.write_text("execution:\n  workers: 0\n")
    assert load_spec(spec, ["execution.scheduler=tcp://h:8786"]).execution.scheduler == "tcp://h:8786"


def test_store_drops_a_last_line_cut_before_its_newline(tmp_path):
    """A write cut just before its newline (disk full, a file size limit) leaves a parseable line without '\\n':
    it is torn, not stored, so the next row does not run into it and no finished point is lost later."""
    store = ResultStore(tmp_path)
    store.append({"point_id": "p1", "a": 1})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"point_id": "p2", "a": 2}')
    again = ResultStore(tmp_path)
    assert again.done == {"p1"}
    again.append({"point_id": "p2", "a": 2})
    again.append({"point_id": "p3", "a": 3})
    assert ResultStore(tmp_path).done == {"p1", "p2", "p3"}


def test_store_open_refreshes_snapshots_a_point_short(tmp_path):
    """A process stopped after a row's fsync but before its snapshots: reopening the store (as --resume does, even
    with nothing left to evaluate) brings results.csv and results.parquet up to the log."""
    store = ResultStore(tmp_path)
    store.append({"point_id": "p1", "a": 1})
    with open(tmp_path / "results.jsonl", "a") as fh:  # p2 stored; the snapshots were never rewritten
        fh.write(json.dumps({"point_id": "p2", "a": 2}) + "\n")
    ResultStore(tmp_path)
    assert pd.read_csv(tmp_path / "results.csv")["point_id"].tolist() == ["p1", "p2"]
    assert pd.read_parquet(tmp_path / "results.parquet")["point_id"].tolist() == ["p1", "p2"]


def test_store_refuses_a_damaged_line_before_finished_rows_instead_of_cutting_them(tmp_path):
    """Only a last line without its newline is a torn write; a whole line that is not JSON in the middle is damage:
    refused in one line naming the file and line, and the finished rows after it stay in the file."""
    log = tmp_path / "results.jsonl"
    text = '{"point_id": "p1"}\n{"point_id": "p2"}{"point_id": "p3"}\n{"point_id": "p4"}\n'
    log.write_text(text)
    with pytest.raises(ValueError, match=r"results.jsonl: line 2 is not a results row"):
        ResultStore(tmp_path)
    assert log.read_text() == text


@pytest.mark.parametrize("axes, needle", [
    ({"compression.ratio": [0.5], "compression.ratios": [[0.0]]},  # ran ratio 0, labelled 0.5
     "axes 'compression.ratio' and 'compression.ratios' set the same field (compression.ratios)"),
    ({"hardware.overrides.core.neurons_per_core": [256], "hardware.overrides": [{}]},  # labelled 256, ran 1024
     "axes 'hardware.overrides.core.neurons_per_core' and 'hardware.overrides' set the same field "
     "(hardware.overrides)"),
    ({"hardware.model": ["analytic"], "hardware.latency_model": ["des"]},  # labelled analytic, ran des
     "axes 'hardware.model' and 'hardware.latency_model' set the same field (hardware.latency_model)"),
    ({"compression.ratio": [0.0], "device": ["cpu", "auto"]},  # one point id: 'already stored' after the folder
     "axis 'device': cache_dir, device, output_dir, run_name say where and how a run works"),
    ([{"run_name": ["a", "b"]}], "axis 'run_name': "),
])
def test_axes_that_set_one_field_twice_or_a_run_field_are_refused(axes, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_spec(None, [f"axes={json.dumps(axes)}"])
    grids = {"compression.ratio": [0.5], "hardware.overrides.core.neurons_per_core": [256],
             "compression.params.q": [0.2], "hardware.overrides.router.buffer_depth": [2]}
    assert load_spec(None, [f"axes={json.dumps(grids)}"]).axis_names == list(grids)  # different fields: fine
