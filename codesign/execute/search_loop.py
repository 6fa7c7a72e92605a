"""The trial loop of `codesign search`: serial in this process, or parallel trials on dask.distributed.

In parallel, up to one trial per worker is in flight (optuna ask-and-tell: NSGA-II fills its generations from
finished trials, TPE treats running trials as bad with constant_liar). Each trial's row is stored and told the
moment its point finishes. Shared upstream stages are never computed twice at once: a point whose trained or
lowered model is not cached yet waits (as a dask dependency) on the one task that makes it, and a trial whose
point is already stored or in flight reuses that row instead of evaluating it again. Which trials are asked
depends on the order in which points finish, so a parallel search is not bit-reproducible the way a serial
one is; every stored point is still exactly reproducible from its config.
"""
from __future__ import annotations

from collections.abc import Callable

import optuna

from codesign.store.cache import StageCache
from codesign.execute.evaluate import stage_keys
from codesign.execute.executor import evaluate_on_worker, prepare_model_on_worker, dask_client, local_workers, serial, stage_threads
from codesign.execute.search_trials import ask_point, complete_trials, run_trial, store_row, tell_point
from codesign.config.sweep import SweepSpec
from codesign.store.results import ResultStore


def run_trials(study: optuna.Study, spec: SweepSpec, store: ResultStore, log: Callable[[str], None],
               on_trial: Callable[[int, int], None] | None = None) -> None:
    """Run trials until the study has spec.search.n_trials COMPLETE ones.

    Serial (this process) when spec.execution says so (workers 0, one core, or a single trial left, and no
    scheduler); else on a dask cluster (codesign.execute.executor.dask_client). on_trial(complete, n_trials) is called
    after each told trial. Exceptions of a point's evaluation propagate (its trial stays RUNNING and is
    re-enqueued by a resumed search).
    """
    n = spec.search.n_trials
    left = n - complete_trials(study)
    if left <= 0:
        return
    if serial(spec.execution, left):
        while complete_trials(study) < n:
            run_trial(study, spec, store, log)
            if on_trial is not None:
                on_trial(complete_trials(study), n)
        return
    _run_dask(study, spec, store, log, on_trial)


class _Flights:
    """Futures in flight: point id -> (future, trials waiting for that point), and the stage-preparing futures
    by stage key."""

    def __init__(self):
        self.points: dict[str, tuple[object, list]] = {}
        self.stages: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.points)


def _stage_dependency(client, spec: SweepSpec, cfg_json: dict, keys, flights: _Flights, threads: int):
    """The future that makes this point's trained and lowered models when they are not cached yet (None when
    both are): at most one preparing task per stage key is ever submitted. Training a dense model gets the
    cores of the local cluster (the trials that need it wait for it); the rest `threads` each."""
    cache = StageCache(spec.cache_dir)
    dep = None
    for stage, key in (("dense", keys.dense), ("lowered", keys.lowered)):
        if cache.has(stage, key):
            continue
        if key not in flights.stages:
            n = stage_threads(spec.execution, 1) if stage == "dense" else threads
            fut = client.submit(prepare_model_on_worker, cfg_json, spec.cache_dir, n, dep, pure=False)
            flights.stages[key] = fut
            if stage == "dense":  # prepare_model_on_worker makes every stage of this point, its lowered model too
                flights.stages.setdefault(keys.lowered, fut)
        dep = flights.stages[key]
    return dep


def _launch(client, study, spec: SweepSpec, store: ResultStore, flights: _Flights, log, threads: int) -> int:
    """Ask one trial and start its point (or attach it to the same point in flight, or tell it the stored row).
    Returns 1 when a trial was told at once, else 0."""
    asked = ask_point(study, spec)
    stored = {r["point_id"]: r for r in store.rows}.get(asked.point_id)
    if stored is not None:
        tell_point(study, spec, asked, stored, log)
        return 1
    if asked.point_id in flights.points:
        flights.points[asked.point_id][1].append(asked)
        return 0
    cfg_json = asked.cfg.model_dump(mode="json")
    dep = _stage_dependency(client, spec, cfg_json, stage_keys(asked.cfg), flights, threads)
    fut = client.submit(evaluate_on_worker, cfg_json, spec.cache_dir, threads, str(store.run_dir / "points"), dep,
                        pure=False)
    flights.points[asked.point_id] = (fut, [asked])
    return 0


def _finish(fut, study, spec: SweepSpec, store: ResultStore, flights: _Flights, log) -> int:
    """Store the finished point once and tell every trial waiting for it; returns how many were told."""
    pid = next(p for p, (f, _) in flights.points.items() if f is fut)
    _, waiting = flights.points.pop(pid)
    row = fut.result()
    stored = store_row(waiting[0], row, store)
    for asked in waiting:
        tell_point(study, spec, asked, stored, log)
    return len(waiting)


def _run_dask(study, spec: SweepSpec, store: ResultStore, log, on_trial) -> None:
    from dask.distributed import wait
    n, threads = spec.search.n_trials, spec.execution.torch_threads or 1
    with dask_client(spec.execution) as client:
        workers = len(client.scheduler_info()["workers"]) or local_workers(spec.execution)
        log(f"search on {workers} dask workers, up to {workers} trials at a time")
        flights, done = _Flights(), complete_trials(study)
        while done < n:
            while len(flights) < workers and done + sum(len(w) for _, w in flights.points.values()) < n:
                done += _launch(client, study, spec, store, flights, log, threads)
            if flights.points:
                finished = wait([f for f, _ in flights.points.values()], return_when="FIRST_COMPLETED").done
                for fut in finished:
                    done += _finish(fut, study, spec, store, flights, log)
            if on_trial is not None:
                on_trial(done, n)
