"""Structured (SCA channel pruning) vs unstructured (L1P) pruning at equal parameter count on the chip model.

The default MNIST network (trained, cached in .cache/codesign) is pruned by SCA at ratio 0.5 and by L1P at the
sparsity that leaves the same number of non-zero parameters; both are lowered on the same 100 test samples, mapped
onto the Loihi preset and simulated with the DES. The report names, per population, the storage format, synapse
memory, cores, neurons and synaptic events that make the difference.
"""
from __future__ import annotations

import pandas as pd
import pytest

import hwmodels
from benchutil import machine_info, markdown_table, write_report
from codesign.store.cache import StageCache
from codesign.config.run import load_config
from codesign.execute.evaluate import model_row
from codesign.execute.run import ratio_points

CACHE = ".cache/codesign"
SCA_RATIO = 0.5


def _point(method: str, ratio: float):
    cfg = load_config(sets=[f"compression.method={method}", f"compression.ratios=[{ratio}]"]
                      + (["compression.params={}"] if method != "sca" else []))
    return ratio_points(cfg)[0]


def _evaluate(cfg):
    row, low = model_row(cfg, StageCache(CACHE))
    graph = hwmodels.NetworkGraph.load(low / "graph.npz")
    trace = hwmodels.EventTrace.load(low / "trace.npz")
    chip = hwmodels.load_preset("loihi")
    mapping = hwmodels.map_network(graph, chip)
    sim = hwmodels.simulate(graph, trace, chip, mapping=mapping, model="des")
    return row, graph, mapping, sim


def _per_population(graph, mapping, sim) -> pd.DataFrame:
    cores = mapping.table().groupby("population", sort=False).agg(cores=("core", "size"),
                                                                     synapse_bits=("synapse_bits", "sum"))
    storage = {p.target: p.storage for p in graph.projections}
    out = sim.populations[["neurons", "spikes", "synops", "energy_j"]].join(cores)
    out.insert(0, "storage_in", [storage.get(name, "-") for name in out.index])
    return out.reset_index()


@pytest.mark.benchmark
def test_structured_vs_unstructured_at_equal_params():
    sca_cfg = _point("sca", SCA_RATIO)
    sca_row, sca_graph, sca_map, sca_sim = _evaluate(sca_cfg)
    dense_row, *_ = _evaluate(_point("sca", 0.0))
    # L1P prunes conv and linear weights; pick the sparsity that leaves SCA's parameter count as non-zeros
    l1p_ratio = round(1.0 - sca_row["params"] / dense_row["params"], 3)
    l1p_row, l1p_graph, l1p_map, l1p_sim = _evaluate(_point("l1p", l1p_ratio))
    rows = []
    for name, row, mapping, sim in (("SCA (structured)", sca_row, sca_map, sca_sim),
                                    ("L1P (unstructured)", l1p_row, l1p_map, l1p_sim)):
        rows.append({"method": name, "ratio": row["ratio"], "accuracy": row["accuracy"], "params": row["params"],
                     "neurons": int(sim.populations["neurons"].sum()), "cores": sim.cores_used,
                     "synapse_memory_kib": mapping.core_synapse_bits.sum() / 8192,
                     "synops_paid": sim.synops, "synops_structural": sim.synops_structural,
                     "energy_uj": sim.energy_j * 1e6, "latency_us": sim.latency_s * 1e6,
                     "neuron_energy_uj": (sim.energy_breakdown_j["neuron_compute"]
                                          + sim.energy_breakdown_j["neuron_memory"]) * 1e6,
                     "synapse_energy_uj": (sim.energy_breakdown_j["synapse_compute"]
                                           + sim.energy_breakdown_j["synapse_memory"]) * 1e6,
                     "static_energy_uj": sim.energy_breakdown_j["static"] * 1e6})
    table = pd.DataFrame(rows)
    s, u = rows
    gap = abs(s["params"] - u["params"]) / s["params"]
    assert gap < 0.05, f"parameter counts differ by {gap:.1%}"
    pops = {"SCA": _per_population(sca_graph, sca_map, sca_sim), "L1P": _per_population(l1p_graph, l1p_map, l1p_sim)}
    reasons = _reasons(s, u, sca_graph, l1p_graph, pops)
    sections = {"Per population: SCA": markdown_table(pops["SCA"]), "Per population: L1P": markdown_table(pops["L1P"]),
                "Why they differ": "\n".join(f"- {r}" for r in reasons)}
    write_report("structured_vs_unstructured", "Structured vs unstructured pruning at equal parameter count",
                 f"Default MNIST network (mnist_conv, T=4, 100 test samples), SCA at ratio {SCA_RATIO} vs L1P at "
                 f"sparsity {l1p_ratio} (same non-zero parameters within {gap:.1%}), Loihi preset, DES.",
                 table, notes=["params: non-zero parameters after compression (L1P keeps the zeros' positions).",
                               "synops_paid: synaptic events the storage format pays per inference (sparse: "
                               "non-zeros only; conv/dense: the structural count)."],
                 machine=machine_info(), sections=sections)
    # the chip sees the difference the parameter count hides
    assert s["neurons"] < u["neurons"] and s["cores"] != u["cores"]
    assert s["synapse_memory_kib"] != u["synapse_memory_kib"] and s["latency_us"] != u["latency_us"]


def _busiest(pop: pd.DataFrame) -> str:
    """The population with the most synaptic events per core, as '<name>: <events> events on <cores> cores'."""
    per_core = pop["synops"] / pop["cores"]
    row = pop.loc[per_core.idxmax()]
    return f"{row['population']}: {row['synops']:,.0f} events on {int(row['cores'])} cores"


def _reasons(s: dict, u: dict, sca_graph, l1p_graph, pops: dict[str, pd.DataFrame]) -> list[str]:
    """Plain-language causes, each backed by the numbers of the two rows and the per-population tables."""
    conv_sparse = [p.name for p in l1p_graph.projections if p.kind == "conv" and p.storage == "sparse"]
    out = [f"Neurons: SCA removes whole channels, so its layers shrink to {s['neurons']:,} neurons; L1P zeroes "
           f"weights but keeps every channel, {u['neurons']:,} neurons. Every mapped neuron is updated each hardware "
           f"step, so neuron energy is {s['neuron_energy_uj']:.2f} uJ vs {u['neuron_energy_uj']:.2f} uJ.",
           f"Storage: SCA's convs stay shared kernels (conv format, stored once per core); L1P's zeros are stored "
           f"as compressed sparse synapses ({', '.join(conv_sparse) or 'none'} in sparse format): a conv's kernel is "
           f"then unrolled per target neuron with an index per synapse, so synapse memory is "
           f"{u['synapse_memory_kib']:.1f} KiB vs {s['synapse_memory_kib']:.1f} KiB.",
           f"Cores: the neuron and memory limits of a Loihi core give {s['cores']} cores for SCA and {u['cores']} "
           f"for L1P.",
           f"Synaptic events: the sparse format pays only non-zero synapses, {u['synops_paid']:,.0f} of "
           f"{u['synops_structural']:,.0f} structural for L1P, against {s['synops_paid']:,.0f} for SCA.",
           f"Latency: a hardware step lasts until the busiest core has processed its synaptic events serially and "
           f"updated its neurons. SCA's busiest layer is {_busiest(pops['SCA'])} (pruned channels pack the layer "
           f"into few cores), L1P's is {_busiest(pops['L1P'])} (all channels kept, spread over more cores): "
           f"{s['latency_us']:.1f} us per inference for SCA vs {u['latency_us']:.1f} us for L1P.",
           f"Energy per inference: {s['energy_uj']:.2f} uJ (SCA) vs {u['energy_uj']:.2f} uJ (L1P) at accuracy "
           f"{100 * s['accuracy']:.1f} % vs {100 * u['accuracy']:.1f} %."]
    return out
