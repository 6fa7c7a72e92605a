"""Where simulate ends a group of batches (GROUP_SAMPLES, GROUP_NODES) and whether a given mapping's check shares its
core fan-outs with the fan-out tables: neither changes a result bit."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from same_results import assert_same

import hwmodels.mapping.connectivity as connectivity
import importlib
from hwmodels import load_preset, map_network, simulate
from hwmodels.events.actions import build_fanout
from hwmodels.mapping.check import check_mapping

sim = importlib.import_module("hwmodels.simulate")  # the module: the package exports the function simulate


def _same(a, b) -> None:
    """Every field of two SimResults equal exactly (same_results.assert_same)."""
    assert_same(a, b, tables=True)


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("depth", [None, 2])
def test_des_groups_closed_by_channel_nodes_give_the_same_result(nets, rng, monkeypatch, multicast, depth):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 7, 3, 0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 8, "router.buffer_depth": depth})
    one = simulate(g, tr, chip, model="des", batch_samples=2, multicast=multicast)  # 4 batches, one group
    monkeypatch.setitem(sim.GROUP_NODES, "des", 1)  # every batch its own group
    _same(simulate(g, tr, chip, model="des", batch_samples=2, multicast=multicast), one)


def test_group_full_counts_samples_and_channel_nodes(nets, rng, monkeypatch):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 4, 3, 0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 8})
    groups = []
    real = sim._add_group
    monkeypatch.setattr(sim, "_add_group", lambda tot, group, *rest: (groups.append(len(group)),
                                                                      real(tot, group, *rest)))
    simulate(g, tr, chip, model="des", batch_samples=1)
    assert groups == [4]
    groups.clear()
    monkeypatch.setitem(sim.GROUP_NODES, "des", 1)
    simulate(g, tr, chip, model="des", batch_samples=1)
    assert groups == [1, 1, 1, 1]


def test_check_and_fanout_tables_count_each_core_fanout_once(nets, rng, monkeypatch):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 3, 0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 8})
    mapping = map_network(g, chip)
    hand = dataclasses.replace(mapping, verified_for=None)  # judged on what it holds: the check counts fan-outs
    expect = simulate(g, tr, chip, hand)
    calls = []
    real = connectivity.core_fanout
    monkeypatch.setattr(connectivity, "core_fanout", lambda *a: (calls.append((a[0].name, a[3])), real(*a))[1])
    _same(simulate(g, tr, chip, hand), expect)
    assert len(calls) == len(set(calls))
    assert {p.name for p in g.projections if p.kind == "conv"} <= {name for name, _ in calls}


def test_shared_fanouts_give_the_same_tables(nets, rng):
    g = nets.mixed_graph(rng)
    chip = load_preset("loihi", {"core.neurons_per_core": 8})
    hand = dataclasses.replace(map_network(g, chip), verified_for=None)
    store = {}
    checked = check_mapping(g, hand, chip, store)
    assert store
    shared, alone = build_fanout(g, checked, True, chip.core, store), build_fanout(g, checked, True, chip.core)
    for name in alone.stack:
        assert (shared.stack[name] != alone.stack[name]).nnz == 0
    assert shared.routes is not None and all(np.array_equal(a, b) for a, b in zip(shared.routes, alone.routes))
    assert check_mapping(g, hand, chip, store).core_axons.tolist() == checked.core_axons.tolist()


def test_a_stored_fanout_is_not_reused_for_another_assignment(nets, rng):
    g = nets.mixed_graph(rng)
    proj = g.projections[0]
    shape = g.populations[proj.source].shape
    n = g.populations[proj.target].size
    store = {}
    a = connectivity.stored_core_fanout(store, proj, shape, np.zeros(n, np.int64))
    b = connectivity.stored_core_fanout(store, proj, shape, np.arange(n) % 3)
    assert a[0].shape[1] == 1 and b[0].shape[1] == 3


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_a_sample_s_results_do_not_depend_on_the_samples_batched_with_it(nets, rng, model):
    """Each sample's latency and energy are bit-identical whatever batch_samples is and whichever samples share
    its batch (the synapse units' suffix sums used to be differences of one running sum over the batch)."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 7, 3, 0.3)
    chip = load_preset("loihi", {"core.neurons_per_core": 8, "router.buffer_depth": 1})
    cols = ["latency_s", "energy_j"]
    per_batch = [simulate(g, tr, chip, model=model, batch_samples=b).samples[cols].to_numpy() for b in (1, 2, 3, 7)]
    assert all(np.array_equal(per_batch[0], other) for other in per_batch[1:])
    alone = simulate(g, tr.select([4]), chip, model=model).samples[cols].to_numpy()
    assert np.array_equal(alone[0], per_batch[0][4])


@pytest.mark.parametrize("model", ["des", "analytic"])
def test_batch_samples_changes_no_energy_latency_or_core_table_bit(nets, rng, model):
    # energies, busy times and step latencies were summed per batch and the batch sums added, so 1, 3 or 7 samples
    # a batch gave totals a few ulp apart; they are now added sample by sample (link hold times excepted)
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 7, 3, 0.4)
    chip = load_preset("loihi", {"core.neurons_per_core": 8})
    m = map_network(g, chip)
    runs = [simulate(g, tr, chip, m, model=model, batch_samples=b) for b in (1, 3, 7)]
    for r in runs[1:]:
        for f in dataclasses.fields(r):
            if f.name != "tables":  # compared table by table below: the links' hold times may differ
                assert np.array_equal(getattr(r, f.name), getattr(runs[0], f.name)) if f.name.endswith("step_s") \
                    else getattr(r, f.name) == getattr(runs[0], f.name), f.name
        for name in ("samples", "populations", "cores", "action_counts"):
            pd.testing.assert_frame_equal(getattr(r, name), getattr(runs[0], name), check_exact=True)
    mean = runs[0].samples[[f"energy_{c}_j" for c in runs[0].energy_breakdown_j]].to_numpy().mean(axis=0)
    assert list(runs[0].energy_breakdown_j.values()) == pytest.approx(mean, rel=1e-15, abs=0)
