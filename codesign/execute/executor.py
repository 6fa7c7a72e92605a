"""Run design points serially or on dask.distributed, appending each finished row to the ResultStore.

With dask, shared upstream stages run first (one task per distinct trained model, then per distinct compressed
and lowered model), so no two workers ever train the same model; then every point is its own task and is stored
the moment it finishes.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from codesign.store.cache import StageCache
from codesign.config.run import ConfigError, RunConfig
from codesign.execute.evaluate import evaluate_point, model_row, stage_keys
from codesign.execute.logs import quiet_logs
from codesign.config.sweep import ExecutionConfig
from codesign.store.results import ResultStore
from hwmodels import ChipSpec, SimCache
from workloads.train import torch_threads


def prepare_model_on_worker(cfg_json: dict, cache_dir: str, threads: int, after=None) -> str:
    """Worker task: make sure the trained, compressed and lowered stages of a point are cached (`after`: the
    result of a task this one waits for, unused)."""
    cfg = RunConfig.model_validate(cfg_json)
    with torch_threads(threads):
        model_row(cfg, StageCache(cache_dir))
    return stage_keys(cfg).lowered


def evaluate_on_worker(cfg_json: dict, cache_dir: str, threads: int, details_root: str, after=None, chip=None) -> dict:
    """Worker task: one design point's results row (its detail tables written under details_root; `after`: the
    result of a task this one waits for, unused; chip: the point's chip when already built, else built here)."""
    with torch_threads(threads):
        return evaluate_point(RunConfig.model_validate(cfg_json), cache_dir, details_root=details_root, chip=chip)


class WorkerLost(OSError):
    """Dask workers died running a task (killed, or stopped by their nanny at 95 % of their memory limit) as often
    as the scheduler allows: one line for the CLI instead of dask's KilledWorker traceback."""


@contextlib.contextmanager
def dask_client(execution: ExecutionConfig) -> Iterator:
    """A dask Client: to `execution.scheduler` if set, else a LocalCluster of `execution.workers` processes.
    The local cluster talks TLS with temporary credentials (dask's Security.temporary(): a self-signed
    certificate made for this cluster and held in memory), so another local user cannot connect to its scheduler
    and run code on its workers, as anyone could on plain tcp://127.0.0.1. A task whose workers all died (dask's
    KilledWorker) raises WorkerLost, saying how to go on."""
    from dask.distributed import Client, LocalCluster
    with _worker_deaths_as_errors(execution):
        if execution.scheduler:
            with Client(execution.scheduler) as client:
                client.run(quiet_logs)
                yield client
            return
        with contextlib.ExitStack() as stack:
            stack.enter_context(_torch_friendly_nanny())
            stack.enter_context(_workers_ignore_ctrl_c())
            with ctrl_c_ignored():  # workers spawned meanwhile ignore Ctrl-C from their start
                cluster = stack.enter_context(LocalCluster(
                    n_workers=local_workers(execution), threads_per_worker=1, processes=True,
                    dashboard_address=None, security=True))
                client = stack.enter_context(Client(cluster))
            client.run(quiet_logs)
            yield client


@contextlib.contextmanager
def _worker_deaths_as_errors(execution: ExecutionConfig) -> Iterator[None]:
    """Turn dask's KilledWorker into WorkerLost: finished points are stored, so the run resumes with --resume."""
    from distributed.scheduler import KilledWorker
    try:
        yield
    except KilledWorker as exc:
        where = f"at {execution.scheduler}" if execution.scheduler else f"of {local_workers(execution)} local"
        task = str(exc.args[0]) if exc.args else "a task"
        raise WorkerLost(f"execution: dask workers {where} died running {task[:80]} (killed, or out of memory); "
                         "finished points are stored: --resume with fewer workers (--workers 0 runs in this "
                         "process)") from None


def check_scheduler(execution: ExecutionConfig, timeout_s: float = 10.0) -> None:
    """Raise ConfigError naming execution.scheduler when it is set and no dask scheduler answers there within
    `timeout_s` (checked before a run folder is created, so a wrong address leaves nothing behind)."""
    if not execution.scheduler:
        return
    from dask.distributed import Client
    try:
        Client(execution.scheduler, timeout=f"{timeout_s}s").close()
    except Exception as exc:  # noqa: BLE001 - whatever answers there (a server of another protocol gave a MemoryError)
        raise ConfigError(f"execution.scheduler: no dask scheduler answers at {execution.scheduler!r} "
                          f"({type(exc).__name__}); give a running scheduler's address, e.g. tcp://host:8786, "
                          "or leave it unset for a local cluster") from None


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ignore Ctrl-C (SIGINT) inside the block: the local cluster's start. Its worker processes inherit the
    ignored signal when they are spawned (an ignored signal stays ignored across exec, and Python then installs
    no KeyboardInterrupt handler), so a Ctrl-C sent to the terminal's process group while they import can no
    longer kill them with a traceback each before their preload (codesign.execute.logs.dask_setup) ignores it,
    nor leave the cluster half-started for dask's atexit close to fail on ("AssertionError: Status.init"). A
    Ctrl-C in those few seconds is dropped: the next one, once the cluster runs, stops the run as usual. A no-op
    off the main thread, where Python cannot set signal handlers."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _workers_ignore_ctrl_c():
    """dask config that preloads codesign.execute.logs into every local worker process (restarted ones too),
    whose `dask_setup` makes the worker ignore SIGINT: a Ctrl-C in the terminal reaches the whole process group,
    and this process stops the cluster itself, so the workers need not print a KeyboardInterrupt traceback each."""
    import dask
    preload = list(dask.config.get("distributed.worker.preload", []))
    return dask.config.set({"distributed.worker.preload": [*preload, "codesign.execute.logs"]})


def _torch_friendly_nanny():
    """dask config for spawning local workers without MALLOC_TRIM_THRESHOLD_=65536, which dask's nanny sets by
    default and which makes torch training in a worker about 2x slower than in this process (glibc returns
    freed memory at every step; measured: 30 Adam steps of a small conv net 1.22 s in a default worker, 0.57 s
    without the variable, 0.67 s in the main process). OMP/MKL/OPENBLAS threads stay at dask's 1 (torch's own
    thread count is set per task)."""
    import dask
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": environ})


def local_workers(execution: ExecutionConfig) -> int:
    """Worker processes of the local cluster: execution.workers, or one per core when it is None."""
    return execution.workers if execution.workers is not None else (os.cpu_count() or 1)


def stage_threads(execution: ExecutionConfig, n_tasks: int) -> int:
    """torch threads per task when `n_tasks` tasks run alone on the cluster: execution.torch_threads if set;
    on a local cluster the cores shared out (one dense model to train on 2 workers gets 2 threads, not 1 while
    the other core idles); 1 on a remote scheduler (its workers' cores are unknown here)."""
    if execution.torch_threads:
        return execution.torch_threads
    if execution.scheduler:
        return 1
    return max(1, local_workers(execution) // max(n_tasks, 1))


def serial(execution: ExecutionConfig, n_points: int) -> bool:
    """Run in this process: workers 0, or a single point (or a single core) with no scheduler given."""
    if execution.scheduler:
        return False
    return local_workers(execution) <= 1 or n_points <= 1


def _unique_by(points: list[RunConfig], attr: str) -> list[RunConfig]:
    seen, out = set(), []
    for cfg in points:
        key = getattr(stage_keys(cfg), attr)
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def run_points(points: list[RunConfig], store: ResultStore, cache_dir: str, execution: ExecutionConfig,
               progress: bool = True, log: Callable[[str], None] = print,
               on_row: Callable[[RunConfig, dict], None] | None = None, labels: list[dict] | None = None,
               chip: ChipSpec | None = None) -> int:
    """Evaluate every point not yet in `store`; returns how many were evaluated now.

    On dask (a local cluster of one worker per core by default, or execution.scheduler) unless `serial` says
    this process (workers 0, one core, or one point to compute); see the module docstring.
    labels[i] (e.g. the point's axis values) is merged into point i's row before it is stored; on_row(cfg, row)
    is called after each row is stored (e.g. to log it).
    chip: the chip every point shares (codesign.execute.evaluate.load_chip of their common hardware section, as a run's
    ratios have), built once by the caller; None: each point builds its own (once, in evaluate_point).
    """
    label_of = {stage_keys(p).point: (labels[i] if labels else {}) for i, p in enumerate(points)}
    details_root = str(store.run_dir / "points")
    store = _Labelled(store, label_of)
    todo = [p for p in points if stage_keys(p).point not in store.done]
    if len(todo) < len(points):
        log(f"resuming: {len(points) - len(todo)} of {len(points)} points already finished")
    if not todo:
        return 0
    if serial(execution, len(todo)):
        sim_cache = SimCache()  # hardware-only points of one lowered model reuse mapping, actions and timing
        for cfg in todo:
            with torch_threads(execution.torch_threads):
                row = evaluate_point(cfg, cache_dir, progress=progress, sim_cache=sim_cache,
                                     details_root=details_root, chip=chip)
            store.append(row)
            if on_row:
                on_row(cfg, row)
        return len(todo)
    return _run_dask(todo, store, cache_dir, execution, log, on_row, details_root, chip)


class _Labelled:
    """A ResultStore view that merges each point's labels into its row before appending."""

    def __init__(self, store: ResultStore, label_of: dict[str, dict]):
        self.store, self.label_of = store, label_of

    @property
    def done(self) -> set[str]:
        return self.store.done

    def append(self, row: dict) -> None:
        self.store.append({**self.label_of.get(row["point_id"], {}), **row})


def _run_dask(todo, store, cache_dir, execution, log, on_row, details_root: str, chip: ChipSpec | None) -> int:
    from dask.distributed import as_completed
    threads = execution.torch_threads or 1
    with dask_client(execution) as client:
        for attr in ("dense", "lowered"):
            group = _unique_by(todo, attr)
            log(f"preparing {len(group)} distinct {attr} stage(s) on {len(client.scheduler_info()['workers'])} workers")
            client.gather(client.map(prepare_model_on_worker, [c.model_dump(mode="json") for c in group],
                                     cache_dir=cache_dir, threads=stage_threads(execution, len(group)),
                                     pure=False))
        futures = {client.submit(evaluate_on_worker, c.model_dump(mode="json"), cache_dir, threads, details_root, chip=chip,
                                 pure=False): c for c in todo}
        for fut in as_completed(futures):
            row = fut.result()
            store.append(row)
            if on_row:
                on_row(futures[fut], row)
    return len(todo)
