"""Lowering speed: workloads.lower(model, x, weight_fit="quantize") against one torch forward pass of the same model
on the same input, on the three benchmark workloads (workloads_bench: the default MNIST net, VGG-11 and
Spikformer-4-384 at 32x32). Writes reports/benchmarks/lowering_speed.{md,csv,json}.

Target (issue 14): lowering takes at most the forward pass plus the time to write its trace to disk
(hwmodels.stream.write_trace, a trace folder), i.e. recording the spikes, the neuron activity and the weight fit
add no more than the trace's own write. The machine is shared, so forward and lowering run as interleaved pairs
(forward, lowering, forward, lowering, ...) that see the same load; the table gives medians over the pairs.
"""
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from spikingjelly.activation_based import functional

from benchutil import machine_info, target_row, time_median, write_report
from hwmodels.stream import write_trace
from workloads.lowering import lower
from workloads_bench import mnist_default, spikformer_32, vgg11_32

PAIRS = 3


def _forward_s(model, x) -> float:
    """Wall s of one no-grad eval forward of model on x (neuron state reset after), as benchutil.torch_forward_s."""
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        model(x)
    wall = time.perf_counter() - t0
    functional.reset_net(model)
    return wall


def _lower_s(w) -> tuple[float, object]:
    """(wall s, trace) of lowering workload `w` as workloads_bench does (8-bit, weight_fit "quantize", CPU)."""
    t0 = time.perf_counter()
    _, trace = lower(w.model, w.x, name=w.name, device="cpu", weight_fit="quantize")
    return time.perf_counter() - t0, trace


def _write_s(trace) -> float:
    """Median wall s of writing `trace` as a trace folder (hwmodels.stream.write_trace) into a fresh temp dir."""
    root = Path(tempfile.mkdtemp(prefix="bench_lowering_"))
    try:
        counter = iter(range(1_000))
        med, _, _ = time_median(lambda: write_trace(root / f"t{next(counter)}", trace))
        return med
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(w) -> dict:
    """One row: medians over PAIRS interleaved (forward, lowering) pairs, after one warm-up forward (the workload's
    own lowering in workloads_bench was the lowering warm-up)."""
    _forward_s(w.model, w.x)
    fwd, low, trace = [], [], None
    for _ in range(PAIRS):
        fwd.append(_forward_s(w.model, w.x))
        wall, trace = _lower_s(w)
        low.append(wall)
    write = _write_s(trace)
    ratios = [lo / fw for lo, fw in zip(low, fwd)]
    return {"workload": w.name, "samples": int(w.x.shape[1]), "timesteps": int(w.x.shape[0]),
            "events": int(len(trace.indices)), "forward_s": statistics.median(fwd), "lower_s": statistics.median(low),
            "trace_write_s": write, "lower_over_forward": statistics.median(ratios),
            "budget_s": statistics.median(fwd) + write,
            "pairs_forward_s": " ".join(f"{v:.3f}" for v in fwd), "pairs_lower_s": " ".join(f"{v:.3f}" for v in low)}


@pytest.mark.benchmark
def test_lowering_speed():
    machine = machine_info()
    workloads = [mnist_default(), vgg11_32(), spikformer_32()]
    rows = [_measure(w) for w in workloads]
    table = pd.DataFrame(rows)
    targets = [target_row(f"lowering <= 1.0x forward + trace write ({r['workload']})", r["lower_s"],
                          r["budget_s"], "s") for r in rows]
    notes = [w.description for w in workloads] + [
        f"forward_s: one no-grad eval forward of the whole input in one batch; lower_s: lower(model, x, "
        f"weight_fit='quantize', device='cpu') with its default batch_size 64 (quantized copy of the model, graph "
        f"build, weight fit, one recording forward with spikes and activity taken in forward hooks); medians over "
        f"{PAIRS} interleaved pairs, per-pair walls in the last two columns; lower_over_forward is the median of "
        "the per-pair ratios.",
        "trace_write_s: hwmodels.stream.write_trace of the lowered trace to a trace folder (median of 3; the page "
        "cache absorbs the writes). budget_s = forward_s + trace_write_s, the target's bound on lower_s.",
        f"Load average at start {machine['load_avg_1min']} on {machine['cores']} cores: other jobs share the "
        "machine, so walls vary between runs; the pairs see the same load."]
    write_report("lowering_speed", "Lowering speed against the torch forward pass",
                 "Time to lower each benchmark workload (graph + trace) against one torch forward pass on the same "
                 "input (see the module docstring of benchmarks/test_bench_lowering.py).", table, targets, notes,
                 machine)
    assert all(r["lower_s"] > 0 for r in rows)
