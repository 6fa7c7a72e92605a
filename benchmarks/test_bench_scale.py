"""Scale: VGG-16 and Spikformer-4-384 at 3x32x32, T=4, through forward, lowering streamed into a trace folder,
mapping and simulation from the memory-mapped folder, each stage in its own spawned process (so each stage's peak
RSS, VmHWM, is its own); then one hardware sweep of the VGG-16 trace, serially and on a 2-worker dask LocalCluster.
Writes reports/benchmarks/scale.{md,csv,json}.

Targets (issue 14, deliverable 4): every stage's peak RSS <= CEILING_BYTES (8 GiB of this machine's 24 GiB, which
other jobs share); the dask sweep's rows identical to the serial ones (its speed-up is reported).
Sizes come from the environment (ScaleSettings.from_env; the defaults are the issue's sizes): SCALE_SAMPLES_VGG
(256), SCALE_SAMPLES_SPIKFORMER (64), SCALE_MODEL_VGG / SCALE_MODEL_SPIKFORMER (des), SCALE_CHUNK_VGG (128),
SCALE_CHUNK_SPIKFORMER (32), SCALE_SWEEP_SAMPLES (16) and SCALE_SWEEP_MODEL (analytic). Quick check (~10 min):
SCALE_SAMPLES_VGG=4 SCALE_SAMPLES_SPIKFORMER=2 SCALE_CHUNK_SPIKFORMER=1 SCALE_MODEL_VGG=analytic
SCALE_MODEL_SPIKFORMER=analytic SCALE_SWEEP_SAMPLES=2 pytest -m benchmark benchmarks/test_bench_scale.py

The module level imports no torch: the map and simulate stages and the dask workers import this module, and their
peak RSS should be the simulator's (torch and the workloads are imported inside the stages that need them).
"""
from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd
import pytest

from hwmodels import ChipSpec, EventTrace, NetworkGraph, apply_overrides, map_network, simulate
from hwmodels.mapping.map import Mapping as ChipMapping

#: peak RSS ceiling of every stage, bytes: 8 GiB, a third of this machine's 24 GiB (shared with other jobs)
CEILING_BYTES = 8 * 2 ** 30
GIB = 2 ** 30
#: the hardware sweep over the VGG-16 trace (2 x 2 x 2 = 8 design points): neurons per core (re-partitions: 310 or
#: 162 cores), chip-to-chip link latency (s; timing) and energy (J per message crossing a chip boundary; costs only)
SWEEP_AXES = {"core.neurons_per_core": [1024, 2048], "router.chip_link_latency_s": [1.0e-8, 1.0e-7],
              "router.chip_link_energy_j": [4.0e-11, 4.0e-10]}
SWEEP_WORKERS = 2
SIM_MODELS = ("des", "analytic")


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
    """Sizes of one benchmark run: samples (count), lowering chunk (samples per recording batch) and simulator
    ("des" or "analytic") per workload; sweep samples (the first ones of the VGG-16 trace) and simulator."""

    samples_vgg: int = 256
    samples_spikformer: int = 64
    chunk_vgg: int = 128
    chunk_spikformer: int = 32
    model_vgg: str = "des"
    model_spikformer: str = "des"
    sweep_samples: int = 16
    sweep_model: str = "analytic"

    def __post_init__(self) -> None:
        for name in ("samples_vgg", "samples_spikformer", "chunk_vgg", "chunk_spikformer", "sweep_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"SCALE_{name.upper()}: {getattr(self, name)} must be >= 1")
        for name in ("model_vgg", "model_spikformer", "sweep_model"):
            if getattr(self, name) not in SIM_MODELS:
                raise ValueError(f"SCALE_{name.upper()}: {getattr(self, name)!r} is not one of {', '.join(SIM_MODELS)}")
        if self.sweep_samples > self.samples_vgg:
            raise ValueError(f"SCALE_SWEEP_SAMPLES: {self.sweep_samples} must be <= SCALE_SAMPLES_VGG "
                             f"({self.samples_vgg})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ScaleSettings":
        """Settings from SCALE_<FIELD> variables of `environ` (unset: the default). ValueError names the variable."""
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(f"SCALE_{field.name.upper()}")
            if raw is None:
                continue
            try:
                values[field.name] = type(field.default)(raw)
            except ValueError:
                raise ValueError(f"SCALE_{field.name.upper()}: {raw!r} is not a {type(field.default).__name__}") \
                    from None
        return cls(**values)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process image so far, bytes: VmHWM of /proc/self/status (Linux). Not
    getrusage's ru_maxrss: Linux carries the parent's peak into a child across fork + exec, so a spawned stage
    process would report at least the RSS of the process that started it; elsewhere ru_maxrss (KiB on Linux) is
    the fallback."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_subprocess(fn: Callable[..., dict], *args) -> dict:
    """fn(*args) in a fresh spawned process (nothing inherited, so its peak RSS is the stage's own)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _workload(kind: str):
    """The StreamWorkload of `kind` ("vgg16" or "spikformer"; workloads_bench, imported here: it imports torch)."""
    from workloads_bench import spikformer_32_stream, vgg16_32_stream
    return {"vgg16": vgg16_32_stream, "spikformer": spikformer_32_stream}[kind]()


def forward_stage(kind: str, n_samples: int, chunk: int) -> dict:
    """Stage process: build and BN-calibrate the model (build_s), then time its no-grad torch forward over
    n_samples samples, `chunk` at a time (wall_s: the model calls only)."""
    import torch
    from spikingjelly.activation_based import functional
    t0 = time.perf_counter()
    w = _workload(kind)
    build_s, wall = time.perf_counter() - t0, 0.0
    for s0 in range(0, n_samples, chunk):
        x = w.inputs(s0, min(s0 + chunk, n_samples))
        t0 = time.perf_counter()
        with torch.no_grad():
            w.model(x)
        functional.reset_net(w.model)
        wall += time.perf_counter() - t0
    return {"wall_s": wall, "build_s": build_s, "peak_rss_bytes": peak_rss_bytes(),
            "torch_threads": torch.get_num_threads()}


def lower_stage(kind: str, n_samples: int, chunk: int, out: str) -> dict:
    """Stage process: lower n_samples into the trace folder <out>/trace, `chunk` per recording batch
    (workloads_bench.lower_to_folder), and save <out>/graph.npz and <out>/chip.json (the workload's chip)."""
    from workloads_bench import lower_to_folder
    w = _workload(kind)
    graph, walls = lower_to_folder(w, Path(out) / "trace", n_samples, chunk)
    graph.save(Path(out) / "graph.npz")
    (Path(out) / "chip.json").write_text(w.chip.model_dump_json())
    return {"wall_s": sum(walls), "call_walls_s": walls, "peak_rss_bytes": peak_rss_bytes(),
            "neurons": graph.n_neurons, "description": w.description}


def map_stage(out: str) -> dict:
    """Stage process: map <out>/graph.npz onto <out>/chip.json (in_order) and save <out>/mapping.npz."""
    graph, chip = NetworkGraph.load(Path(out) / "graph.npz"), _chip(out)
    t0 = time.perf_counter()
    mapping = map_network(graph, chip)
    wall = time.perf_counter() - t0
    mapping.save(Path(out) / "mapping.npz")
    return {"wall_s": wall, "peak_rss_bytes": peak_rss_bytes(), "cores": int(len(mapping.core_neurons))}


def simulate_stage(out: str, model: str) -> dict:
    """Stage process: simulate the memory-mapped trace folder <out>/trace (EventTrace.open) with `model`, the saved
    graph, chip and mapping; returns the wall, peak RSS and the SimResult's row (as_row, seed 0)."""
    graph, chip = NetworkGraph.load(Path(out) / "graph.npz"), _chip(out)
    mapping, trace = ChipMapping.load(Path(out) / "mapping.npz"), EventTrace.open(Path(out) / "trace")
    t0 = time.perf_counter()
    sim = simulate(graph, trace, chip, mapping, model=model)
    return {"wall_s": time.perf_counter() - t0, "peak_rss_bytes": peak_rss_bytes(), "row": sim.as_row(seed=0),
            "events": int(trace.offsets[-1])}


def _chip(out: str) -> ChipSpec:
    return ChipSpec.model_validate_json((Path(out) / "chip.json").read_text())


def sweep_point(out: str, overrides: dict, n_samples: int, model: str) -> dict:
    """One hardware design point (a dask task or a serial loop step): the first n_samples of the trace folder
    <out>/trace on <out>/chip.json with `overrides` (hwmodels.apply_overrides), mapped in_order and simulated;
    returns the overrides plus SimResult.as_row(seed=0)."""
    graph, chip = NetworkGraph.load(Path(out) / "graph.npz"), apply_overrides(_chip(out), overrides)
    trace = EventTrace.open(Path(out) / "trace").select(slice(0, n_samples))
    sim = simulate(graph, trace, chip, map_network(graph, chip), model=model)
    return {**overrides, **sim.as_row(seed=0)}


def timed_sweep_point(out: str, overrides: dict, n_samples: int, model: str) -> tuple[dict, float]:
    """(sweep_point's row, its wall s where it ran): the walls tell contention from executor overhead."""
    t0 = time.perf_counter()
    row = sweep_point(out, overrides, n_samples, model)
    return row, time.perf_counter() - t0


def sweep_points() -> list[dict]:
    """The overrides of every design point of SWEEP_AXES, in grid order."""
    return [dict(zip(SWEEP_AXES, values)) for values in itertools.product(*SWEEP_AXES.values())]


def run_sweep_serial(out: str, n_samples: int, model: str) -> tuple[pd.DataFrame, float, float]:
    """(rows, wall s, sum of the points' walls s) of the sweep in this process, one point after the other, after
    one untimed point (warm_up) so that imports and compiled kernels are loaded before the clock starts, as on
    the dask workers (run_sweep_dask)."""
    warm_up(out, n_samples, model)
    t0 = time.perf_counter()
    done = [timed_sweep_point(out, p, n_samples, model) for p in sweep_points()]
    return pd.DataFrame([row for row, _ in done]), time.perf_counter() - t0, sum(s for _, s in done)


def warm_up(out: str, n_samples: int, model: str) -> float:
    """Run the sweep's first point once, untimed by the sweep: wall s of what a fresh process pays once (imports,
    numba's cached kernels loaded, the trace folder's pages read) and a sweep of many points amortises."""
    return timed_sweep_point(out, sweep_points()[0], n_samples, model)[1]


def run_sweep_dask(out: str, n_samples: int, model: str) -> dict:
    """The sweep on codesign's local dask cluster (codesign.execute.executor.dask_client: SWEEP_WORKERS processes,
    one thread each), one task per point, twice: a cold pass on fresh workers, then, once every worker has run one
    point (warm_up, as run_sweep_serial does in this process), the timed warm pass. Returns {"rows": the warm
    pass's rows, "wall_s" / "cold_wall_s": each pass from submitting its tasks to gathering its last row (the
    cluster already up), "points_s" / "cold_points_s": sum of its points' walls on the workers, "start_s": cluster
    start, "warm_s": {worker: its warm_up wall}, "peaks": {worker: peak RSS bytes}}."""
    from codesign.config.sweep import ExecutionConfig
    from codesign.execute.executor import dask_client
    t0 = time.perf_counter()
    with dask_client(ExecutionConfig(workers=SWEEP_WORKERS)) as client:
        start_s = time.perf_counter() - t0
        cold_rows, cold_wall_s, cold_points_s = _dask_pass(client, out, n_samples, model)
        warm_s = client.run(warm_up, out, n_samples, model)
        rows, wall_s, points_s = _dask_pass(client, out, n_samples, model)
        peaks = client.run(peak_rss_bytes)
    return {"rows": rows, "wall_s": wall_s, "points_s": points_s, "cold_rows": cold_rows, "cold_wall_s": cold_wall_s,
            "cold_points_s": cold_points_s, "start_s": start_s, "warm_s": warm_s, "peaks": peaks}


def _dask_pass(client, out: str, n_samples: int, model: str) -> tuple[pd.DataFrame, float, float]:
    """(rows, wall s from submitting the tasks to gathering the last row, sum of the points' walls on the
    workers s) of one pass of the sweep on `client`, one task per point."""
    t0 = time.perf_counter()
    points = sweep_points()
    futures = client.map(timed_sweep_point, [out] * len(points), points, n_samples=n_samples, model=model, pure=False)
    done = client.gather(futures)
    return pd.DataFrame([row for row, _ in done]), time.perf_counter() - t0, sum(s for _, s in done)


def _trace_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def run_workload(kind: str, label: str, n_samples: int, chunk: int, model: str, out: Path) -> tuple[list[dict], dict]:
    """Forward, lower, map and simulate `kind` at n_samples, each stage in its own process; returns (table rows,
    the lower stage's result)."""
    fwd = in_subprocess(forward_stage, kind, n_samples, chunk)
    low = in_subprocess(lower_stage, kind, n_samples, chunk, str(out))
    mapped = in_subprocess(map_stage, str(out))
    sim = in_subprocess(simulate_stage, str(out), model)
    trace_bytes = _trace_bytes(out / "trace")
    base = {"workload": label, "samples": n_samples}
    calls = ", ".join(f"{s:.1f}" for s in low["call_walls_s"])
    rows = [{**base, "stage": "forward (torch, no grad)", "wall_s": fwd["wall_s"], "peak_bytes": fwd["peak_rss_bytes"],
             "trace_bytes": None, "detail": f"chunks of {chunk}; model build + BN calibration {fwd['build_s']:.1f} s "
                                            f"(not in wall); torch threads {fwd['torch_threads']}"},
            {**base, "stage": "lower to trace folder", "wall_s": low["wall_s"], "peak_bytes": low["peak_rss_bytes"],
             "trace_bytes": trace_bytes, "detail": f"one lower(..., out=folder) call, batches of <= {chunk} samples "
                                                   f"({calls} s); {sim['events']:,} events; "
                                                   f"{low['neurons']:,} neurons"},
            {**base, "stage": "map (in_order)", "wall_s": mapped["wall_s"], "peak_bytes": mapped["peak_rss_bytes"],
             "trace_bytes": None, "detail": f"{mapped['cores']} cores"},
            {**base, "stage": f"simulate ({model}, memory-mapped trace)", "wall_s": sim["wall_s"],
             "peak_bytes": sim["peak_rss_bytes"], "trace_bytes": trace_bytes,
             "detail": f"energy/inf. {sim['row']['energy_j']:.4g} J, latency/inf. {sim['row']['latency_s']:.4g} s, "
                       f"{sim['row']['cores_used']} cores"}]
    for r in rows:
        r["s_per_sample"] = r["wall_s"] / n_samples
    return rows, low


def sweep_rows(out: str, settings: ScaleSettings) -> tuple[list[dict], pd.DataFrame, bool, float]:
    """The sweep serially, then on dask: (two table rows, the dask rows, rows identical (both dask passes)?,
    speed-up serial / dask of the warm passes)."""
    serial, serial_s, serial_points_s = run_sweep_serial(out, settings.sweep_samples, settings.sweep_model)
    serial_rss = peak_rss_bytes()
    d = run_sweep_dask(out, settings.sweep_samples, settings.sweep_model)
    parallel = d["rows"]
    identical = serial.equals(parallel) and serial.equals(d["cold_rows"])
    speedup, cold_speedup = serial_s / d["wall_s"], serial_s / d["cold_wall_s"]
    warm = ", ".join(f"{s:.1f}" for s in d["warm_s"].values())
    base = {"workload": "VGG-16 sweep", "samples": settings.sweep_samples, "trace_bytes": None}
    rows = [{**base, "stage": f"{len(serial)}-point sweep, serial ({settings.sweep_model})", "wall_s": serial_s,
             "peak_bytes": serial_rss, "detail": f"in the pytest process after one untimed point; every point loads, "
                                                 f"maps and simulates; sum of point walls {serial_points_s:.1f} s"},
            {**base, "stage": f"{len(parallel)}-point sweep, dask {SWEEP_WORKERS} workers ({settings.sweep_model})",
             "wall_s": d["wall_s"], "peak_bytes": max(d["peaks"].values()),
             "detail": f"speed-up {speedup:.2f}x (warm workers: each ran one point first, {warm} s); cold pass on "
                       f"fresh workers {d['cold_wall_s']:.1f} s, speed-up {cold_speedup:.2f}x; rows identical: "
                       f"{identical}; sum of point walls on the workers {d['points_s']:.1f} s (cold "
                       f"{d['cold_points_s']:.1f} s); cluster start {d['start_s']:.1f} s (not in wall); RSS: the "
                       "larger worker's peak"}]
    for r in rows:
        r["s_per_sample"] = r["wall_s"] / (len(serial) * settings.sweep_samples)
    return rows, parallel, identical, speedup


def results_table(rows: list[dict]) -> pd.DataFrame:
    """The report table: walls (s), peak RSS (GiB) and trace folder size (MB) of every row."""
    table = pd.DataFrame(rows)
    table["peak_rss_gib"] = table["peak_bytes"] / GIB
    table["trace_mb"] = pd.to_numeric(table["trace_bytes"]) / 1e6
    return table[["workload", "stage", "samples", "wall_s", "s_per_sample", "peak_rss_gib", "trace_mb", "detail"]]


def report_notes(settings: ScaleSettings, descriptions: list[str]) -> list[str]:
    """The notes of the report: how each number was measured and what the project lacks."""
    return descriptions + [
        f"Settings: {settings} (environment SCALE_*; the defaults are the issue's sizes: 256 VGG-16 and 64 "
        "Spikformer samples, DES).",
        f"Ceiling: {CEILING_BYTES / GIB:.0f} GiB peak RSS per stage process (VmHWM of a fresh spawned process per "
        "stage, imports included; not ru_maxrss, which a spawned child inherits from its parent: peak_rss_bytes); "
        "the machine has 24 GiB, shared with other jobs.",
        "trace_mb: the trace folder on disk (offsets, indices, values, predictions and packed activity as .npy); the "
        "simulate stage memory-maps it (EventTrace.open), so its pages are file-backed, not allocations.",
        "Lowering: one lower(..., out=folder) call streams every recording batch's events into the trace folder as "
        "it is recorded (workloads_bench.lower_to_folder), so one batch's events are in memory at a time; the graph "
        "is built and weight-fitted once. Until commit f086024 the last batch's merged events and its per-population "
        "ones stayed alive through the next batch's forward pass (VGG-16's lowering peak 1.85 GiB in the run just "
        "before, 1.58 after, about the plain forward's 1.56).",
        f"Sweep: {len(sweep_points())} design points over {', '.join(SWEEP_AXES)} on the first "
        f"{settings.sweep_samples} samples of the VGG-16 trace folder; each point loads the graph, opens the folder, "
        "maps and simulates, with no SimCache shared between points (independent tasks, as dask runs them). "
        "codesign's executor (run_points) only takes RunConfig points, which train, compress and lower from a "
        "dataset, so it cannot sweep a given trace; the dask side uses its cluster "
        "(codesign.execute.executor.dask_client: LocalCluster, processes, one thread per worker) with sweep_point "
        "as the task. Both sides are timed warm: the serial loop after one untimed point in this process, the "
        "dask pass after a cold pass on the fresh workers and one more point on each (warm_up), since a fresh "
        "process pays its imports and numba's kernel loads once (~1 s), which a sweep of many points amortises. "
        "Until commit 4ce3279 the dask side was timed cold against a warm serial loop (speed-up 0.72x, its "
        "first point on each worker 1.2-1.5 s against ~0.5 s after).",
    ]


@pytest.mark.benchmark
def test_scale(tmp_path):
    from benchutil import machine_info, markdown_table, target_row, write_report  # imports torch: see docstring
    settings = ScaleSettings.from_env(os.environ)
    machine = machine_info()
    rows, descriptions = [], []
    for kind, label, n, chunk, model in (
            ("vgg16", "VGG-16", settings.samples_vgg, settings.chunk_vgg, settings.model_vgg),
            ("spikformer", "Spikformer-4-384", settings.samples_spikformer, settings.chunk_spikformer,
             settings.model_spikformer)):
        (tmp_path / kind).mkdir()
        stage_rows, low = run_workload(kind, label, n, chunk, model, tmp_path / kind)
        rows += stage_rows
        descriptions.append(low["description"])
    sweep, parallel, identical, speedup = sweep_rows(str(tmp_path / "vgg16"), settings)
    table = results_table(rows + sweep)
    targets = [target_row(f"{w}: largest stage peak RSS <= ceiling",
                          table.loc[table.workload == w, "peak_rss_gib"].max(), CEILING_BYTES / GIB, "GiB")
               for w in table.workload.unique()]
    targets.append(target_row("dask sweep rows identical to serial", float(identical), 1.0, "bool", better="higher"))
    sweep_cols = [*SWEEP_AXES, "cores_used", "energy_j", "latency_s", "energy_network_j", "energy_static_j"]
    write_report("scale", "Scale: VGG-16 and Spikformer-4-384 at 3x32x32",
                 "Peak memory and wall time of each stage (forward, lowering into a trace folder, mapping, simulation "
                 "from the memory-mapped folder) for VGG-16 and Spikformer-4-384, each stage in its own process, and "
                 f"one {len(parallel)}-point hardware sweep of the VGG-16 trace serially and on a {SWEEP_WORKERS}-"
                 f"worker dask cluster (speed-up serial / dask, warm: {speedup:.2f}x).", table, targets,
                 report_notes(settings, descriptions), machine,
                 {"Sweep rows (dask)": markdown_table(parallel[sweep_cols])})
    assert identical
