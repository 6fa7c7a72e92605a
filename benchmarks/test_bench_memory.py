"""Simulator memory per synapse: peak memory allocated by mapping + fan-out tables + DES simulation, divided by the
number of synapses. Writes reports/benchmarks/memory_per_synapse.{md,csv,json}. Target (issue 3): <= 100 bytes per
synapse (SANA-FE needs about 1 KB per synapse here, ../shared/PEERS.md).

Peak = tracemalloc's peak over map_network + simulate(model="des"), the graph and trace already in memory (they
are the simulator's input, listed separately). tracemalloc sees every Python and numpy allocation (scipy.sparse
keeps its arrays in numpy), i.e. everything the simulator allocates.
"""
import tracemalloc

import pandas as pd
import pytest

from benchutil import machine_info, target_row, write_report
from hwmodels import load_preset, map_network, simulate
from hwmodels.mapping.connectivity import fan_in
from peer_nets import lowered
from workloads_bench import mnist_default, vgg11_32


def _synapses(graph, count: str) -> int:
    """Synapses between neurons (convolutions unrolled), non-zero or structural."""
    return int(sum(fan_in(p, graph.populations[p.source].shape, count).sum() for p in graph.projections))


def _peak(graph, trace, chip) -> tuple[int, object]:
    """(peak bytes allocated during map_network + simulate(des), SimResult)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = simulate(graph, trace, chip, map_network(graph, chip), model="des")
        return tracemalloc.get_traced_memory()[1] - base, res
    finally:
        tracemalloc.stop()


def _row(name: str, graph, trace, chip, description: str) -> dict:
    peak, res = _peak(graph, trace, chip)
    nonzero, structural = _synapses(graph, "nonzero"), _synapses(graph, "structural")
    trace_bytes = sum(a.nbytes for a in (trace.offsets, trace.indices, trace.values) if a is not None)
    return {"workload": name, "chip": chip.name, "samples": trace.n_samples, "cores": res.cores_used,
            "synapses_nonzero": nonzero, "synapses_structural": structural,
            "stored_weights": sum(p.nonzero_synapses for p in graph.projections), "peak_bytes": peak,
            "bytes_per_synapse": peak / nonzero, "bytes_per_structural_synapse": peak / structural,
            "trace_bytes_input": trace_bytes, "description": description}


@pytest.mark.benchmark
def test_memory_per_synapse():
    machine = machine_info()
    rows = []
    for w in (mnist_default(), vgg11_32()):
        rows.append(_row(w.name, w.graph, w.trace, w.chip, w.description))
    _, _, graph, trace = lowered("conv", 16, 8, seed=0)
    rows.append(_row("conv_if (SANA-FE net)", graph, trace, load_preset("loihi-sanafe"),
                     "8C3-16C3-10FC IF, 16 MNIST rate-coded samples, T=8 (tests/crosscheck/peer_nets.py)"))
    table = pd.DataFrame(rows)
    targets = [target_row(f"{r['workload']}: bytes per synapse", r["bytes_per_synapse"], 100.0, "B")
               for r in rows]
    notes = ["synapses_nonzero: synapses between neurons with a non-zero weight, convolutions unrolled (sum of "
             "fan-in); synapses_structural: every in-bounds tap / matrix entry; stored_weights: non-zero weights "
             "as stored (a conv kernel once).",
             "peak_bytes: tracemalloc peak above the memory held before the call, over map_network + "
             "simulate(model='des') with the default batch of 32 samples; the trace (trace_bytes_input) is the "
             "simulator's input and is not counted.",
             "SANA-FE stores every unrolled synapse as an object: about 1 KB per synapse measured here "
             "(../shared/PEERS.md)."]
    write_report("memory_per_synapse", "Simulator memory per synapse",
                 "Peak memory the simulator allocates to map and simulate a network, per synapse.", table, targets,
                 notes, machine)
    assert (table["peak_bytes"] > 0).all()
