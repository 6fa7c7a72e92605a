"""Action counts against a brute-force per-spike, per-synapse recount on unrolled weight matrices."""
from collections import defaultdict

import numpy as np
import pytest

from hwmodels import load_preset, map_network
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.mapping.connectivity import PAID_COUNT, synaptic_events
from hwmodels.trace import EventTrace


@pytest.fixture
def setup(nets, rng):
    g = nets.mixed_graph(rng)
    chip = load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 2})
    m = map_network(g, chip)
    tr = nets.random_trace(g, rng, n_samples=3, n_timesteps=4, rate=0.2)
    return g, m, tr, nets


def _brute_flows(g, m, tr, nets):
    """{(sample, step, src core, dst core): [messages, {format: events}]}, one spike and synapse at a time."""
    paid = {}
    for p in g.projections:
        wmat, inb = nets.unroll(p, g.populations[p.source].shape, g.populations[p.target].shape)
        paid[p.name] = (wmat != 0) if p.storage == "sparse" else inb
    flows = defaultdict(lambda: [0, defaultdict(int)])
    for s in range(tr.n_samples):
        for t in range(tr.n_timesteps):
            for name in g.populations:
                for i in tr.spikes(s, t, name).indices:
                    per_dst = defaultdict(lambda: defaultdict(int))
                    for p in g.out_projections(name):
                        for j in np.flatnonzero(paid[p.name][:, i]):
                            per_dst[int(m.core_of_neuron[p.target][j])][p.storage] += 1
                    for dst, ev in per_dst.items():
                        key = (s, t + g.depth(name), int(m.core_of_neuron[name][i]), dst)
                        flows[key][0] += 1
                        for f, n in ev.items():
                            flows[key][1][f] += n
    return flows


def test_flows_match_brute_force(setup):
    g, m, tr, nets = setup
    acts = count_actions(g, tr, m, build_fanout(g, m), range(tr.n_samples))
    assert acts.formats == ("dense", "sparse", "conv") and acts.n_steps == 4 + 4
    brute = _brute_flows(g, m, tr, nets)
    assert np.array_equal(acts.deliv_flow, np.arange(len(acts.flow_messages)))  # unicast: one delivery per flow
    assert np.array_equal(acts.flow_route, acts.deliv_dst) and np.array_equal(acts.flow_messages, acts.deliv_messages)
    got = {}
    for k in range(len(acts.flow_messages)):
        key = tuple(int(v[k]) for v in (acts.flow_sample, acts.flow_step, acts.flow_src, acts.deliv_dst))
        got[key] = (int(acts.flow_messages[k]), {f: int(e) for f, e in zip(acts.formats, acts.deliv_events[k]) if e})
    assert got == {k: (v[0], dict(v[1])) for k, v in brute.items()}
    order = np.lexsort((acts.flow_route, acts.flow_src, acts.flow_step, acts.flow_sample))
    assert np.array_equal(order, np.arange(len(order)))  # sorted by (sample, step, src, dst)


def test_multicast_flows_group_spikes_by_destination_set(setup):
    """One flow per (sample, step, source core, set of destination cores), one message per spike; its
    deliveries carry the same per-core events as the unicast flows."""
    g, m, tr, nets = setup
    uni = count_actions(g, tr, m, build_fanout(g, m), range(tr.n_samples))
    tables = build_fanout(g, m, multicast=True)
    multi = count_actions(g, tr, m, tables, range(tr.n_samples))
    assert [tuple(r) for r in tables.routes] == sorted(tuple(r) for r in tables.routes)
    brute = defaultdict(int)
    for s in range(tr.n_samples):
        for t in range(tr.n_timesteps):
            for name in g.populations:
                if name not in tables.dest_set:
                    continue
                for i in tr.spikes(s, t, name).indices:
                    cores = nets_dests(tables, name, i)
                    if cores:
                        brute[(s, t + g.depth(name), int(m.core_of_neuron[name][i]), cores)] += 1
    got = {(int(multi.flow_sample[f]), int(multi.flow_step[f]), int(multi.flow_src[f]), multi.route_cores(f)):
           int(multi.flow_messages[f]) for f in range(len(multi.flow_messages))}
    assert got == dict(brute)
    for f, dst, msgs in zip(multi.deliv_flow, multi.deliv_dst, multi.deliv_messages):
        assert dst in multi.route_cores(f) and msgs == multi.flow_messages[f]
    for f in range(len(multi.flow_messages)):  # every destination of its set gets a delivery
        assert tuple(int(d) for d in multi.deliv_dst[multi.deliv_flow == f]) == multi.route_cores(f)
    # flows sorted by (sample, step, source core, route id), deliveries by (flow, destination core)
    order = np.lexsort((multi.flow_route, multi.flow_src, multi.flow_step, multi.flow_sample))
    assert np.array_equal(order, np.arange(len(order)))
    assert np.array_equal(np.lexsort((multi.deliv_dst, multi.deliv_flow)), np.arange(len(multi.deliv_flow)))
    # synaptic events per (sample, step, src, dst) do not depend on multicast
    for got_part, want_part in zip(_events_per_pair(multi), _events_per_pair(uni)):
        assert np.array_equal(got_part, want_part)


def _events_per_pair(acts):
    """(sorted (sample, step, src, dst) keys, synaptic events of each)."""
    f = acts.deliv_flow
    k = ((acts.flow_sample[f] * acts.n_steps + acts.flow_step[f]) * acts.n_cores + acts.flow_src[f]) \
        * acts.n_cores + acts.deliv_dst
    keys, inv = np.unique(k, return_inverse=True)
    return keys, np.bincount(inv, weights=acts.deliv_events.sum(axis=1))


def nets_dests(tables, name, i):
    """Destination cores of neuron i of `name` from the block-0 message pattern (independent of dest_set)."""
    row = tables.stack[name][int(i), :tables.n_cores].toarray().ravel()
    return tuple(int(c) for c in np.flatnonzero(row))


def test_neuron_updates_and_spikes_per_core(setup):
    g, m, tr, _ = setup
    acts = count_actions(g, tr, m, build_fanout(g, m), range(1, 3))  # samples 1 and 2 only
    for s_local, s in enumerate((1, 2)):
        for h in range(acts.n_steps):
            for c, name in enumerate(m.core_population):
                pop, t = g.populations[name], h - g.depth(name)
                on_core = m.core_of_neuron[name] == c
                fired = 0
                if 0 <= t < tr.n_timesteps:
                    fired = int(on_core[tr.spikes(s, t, name).indices].sum())
                live = not pop.is_input and 0 <= t < tr.n_timesteps
                assert acts.spikes[s_local, h, c] == fired
                assert acts.active[s_local, h, c] == (fired if live else 0)
                assert acts.inactive[s_local, h, c] == (int(on_core.sum()) - fired if live else 0)


def test_totals_match_connectivity_synaptic_events(setup):
    g, m, tr, _ = setup
    acts = count_actions(g, tr, m, build_fanout(g, m), range(tr.n_samples))
    for count, got in (("structural", acts.synops_structural), ("nonzero", acts.synops_nonzero)):
        assert got.sum() == sum(synaptic_events(g, tr, count).values())
    per_format = dict(zip(acts.formats, acts.deliv_events.sum(axis=0)))
    for fmt in per_format:
        want = sum(synaptic_events(g, tr, PAID_COUNT[fmt])[p.name] for p in g.projections if p.storage == fmt)
        assert per_format[fmt] == want > 0


def test_missing_population_and_bad_index_raise(setup):
    g, m, tr, _ = setup
    spikes = {n: np.zeros((1, 2) + p.shape) for n, p in g.populations.items() if n != "p1"}
    with pytest.raises(ValueError, match="graph population 'p1' is missing"):
        count_actions(g, EventTrace.from_dense(spikes), m, build_fanout(g, m), range(1))
    bad = tr.select(slice(0, 1))
    bad.indices[:] = 10_000
    with pytest.raises(ValueError, match="spike index outside"):
        count_actions(g, bad, m, build_fanout(g, m), range(1))
