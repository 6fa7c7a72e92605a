"""A trace belongs to one graph: the graph fingerprint it records (and, for older traces, its populations, sizes
and spike indices) is checked before anything is simulated, so a graph with another model's trace is refused with
one line naming both fingerprints."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import xxhash

from hwmodels import SimCache, load_preset, map_network, simulate
from hwmodels.stream import TraceWriter, open_trace, write_trace
from hwmodels.trace import (FINGERPRINT_PREFIX, EventTrace, NetworkGraph, NeuronModel, Population, Projection,
                            concat_traces)
from hwmodels.trace_check import check_trace, index_bounds


def _with_fingerprint(tr: EventTrace, graph: NetworkGraph) -> EventTrace:
    """`tr` recording `graph`'s fingerprint, as workloads.lowering writes it."""
    return EventTrace(tr.populations, tr.n_samples, tr.n_timesteps, tr.offsets, tr.indices, tr.values, tr.labels,
                      tr.activity, tr.predictions, tr.sizes, graph.fingerprint())


def _refused(graph, trace, needle: str, chip=None) -> str:
    with pytest.raises(ValueError) as err:
        simulate(graph, trace, chip or load_preset("loihi"), model="analytic")
    text = str(err.value)
    assert needle in text and "\n" not in text, text
    return text


def test_fingerprint_covers_weights_and_structure_not_storage_bits_or_labels(nets, rng, tmp_path):
    g = nets.mixed_graph(rng)
    fp = g.fingerprint()
    assert fp.startswith(FINGERPRINT_PREFIX) and len(fp) == len(FINGERPRINT_PREFIX) + 32
    assert int(fp[len(FINGERPRINT_PREFIX):], 16) >= 0
    g.save(tmp_path / "g.npz")
    assert NetworkGraph.load(tmp_path / "g.npz").fingerprint() == fp
    pops = list(g.populations.values())
    relabelled = NetworkGraph(pops, [dataclasses.replace(p, storage="sparse", weight_bits=2) if p.kind == "dense"
                                     else p for p in g.projections], name="other", metadata={"k": 1})
    assert relabelled.fingerprint() == fp
    w = g.projections[2].weight.copy()
    w[0, 0] += 1e-3
    nudged = NetworkGraph(pops, [*g.projections[:2], dataclasses.replace(g.projections[2], weight=w),
                                 g.projections[3]])
    assert nudged.fingerprint() != fp
    leak = [dataclasses.replace(p, neuron=dataclasses.replace(p.neuron, kind="LIF", tau=2.0)) if p.name == "d1"
            else p for p in pops]
    assert NetworkGraph(leak, g.projections).fingerprint() != fp


class _Bytes:
    """Stands in for a hash object: keeps what is fed to it."""

    def __init__(self):
        self.parts = []

    def update(self, data) -> None:
        self.parts.append(bytes(memoryview(data).cast("B")))


def _small_graph() -> NetworkGraph:
    """Two populations and one dense projection with hand-set weights and bias."""
    pops = [Population("in", (3,), NeuronModel("input")), Population("out", (2,), NeuronModel("LIF", tau=2.0))]
    w = np.array([[0.5, -0.25, 1.0], [0.0, 0.75, -1.5]], np.float32)
    return NetworkGraph(pops, [Projection(name="fc1", source="in", target="out", kind="dense", weight=w,
                                          bias=np.array([0.1, -0.2], np.float32))], name="small")


def test_the_fingerprint_is_xxh3_and_the_legacy_one_sha256_of_the_same_bytes(nets, rng):
    """fingerprint() and legacy_fingerprint() hash one byte stream: XXH3-128 of it after FINGERPRINT_PREFIX, and
    the first 16 hex digits of its SHA-256, which is what graphs gave before (commit 126f3c7 gave the small
    graph's below, so traces lowered then still check)."""
    for g in (nets.mixed_graph(rng), _small_graph()):
        data = b"".join(g.hash_into(_Bytes()).parts)
        assert g.fingerprint() == FINGERPRINT_PREFIX + xxhash.xxh3_128(data).hexdigest()
        assert g.legacy_fingerprint() == hashlib.sha256(data).hexdigest()[:16]
        assert g.fingerprint_of(g.fingerprint()) == g.fingerprint()
        assert g.fingerprint_of("0" * 16) == g.fingerprint_of("anything else") == g.legacy_fingerprint()
    assert _small_graph().legacy_fingerprint() == "bee5782f757a3537"


@pytest.mark.parametrize("background", [False, True])
def test_a_trace_with_a_legacy_fingerprint_simulates_with_its_graph_only(nets, rng, monkeypatch, background):
    """A trace lowered before the XXH3 fingerprint (its graph_fingerprint the 16-hex SHA-256 form) simulates with
    its graph as any other trace, and is refused with another graph, naming both legacy fingerprints; hashed now
    or on a thread beside the simulation (SHA-256 releases the GIL; forced here on a small graph)."""
    import hwmodels.trace_check as tc
    if background:
        monkeypatch.setattr(tc, "FINGERPRINT_THREAD_BYTES", 0)
        monkeypatch.setattr(tc.threads, "count", lambda: 2)
    g0, g5 = nets.mixed_graph(rng), nets.mixed_graph(rng)
    tr = nets.random_trace(g5, rng, 2, 3, 0.3)
    old = EventTrace(tr.populations, tr.n_samples, tr.n_timesteps, tr.offsets, tr.indices, tr.values, tr.labels,
                     tr.activity, tr.predictions, tr.sizes, g5.legacy_fingerprint())
    chip = load_preset("loihi")
    assert simulate(g5, old, chip, model="analytic").as_row() == simulate(g5, tr, chip, model="analytic").as_row()
    text = _refused(g0, old, "trace.graph_fingerprint: the trace was recorded on a graph with fingerprint")
    assert g0.legacy_fingerprint() in text and g5.legacy_fingerprint() in text


def test_a_trace_of_another_model_is_refused_naming_both_fingerprints(nets, rng):
    g0, g5 = nets.mixed_graph(rng), nets.mixed_graph(rng)
    tr = _with_fingerprint(nets.random_trace(g5, rng, 2, 3, 0.3), g5)
    text = _refused(g0, tr, "trace.graph_fingerprint: the trace was recorded on a graph with fingerprint")
    assert g0.fingerprint() in text and g5.fingerprint() in text
    simulate(g5, tr, load_preset("loihi"), model="analytic")


def test_the_fingerprint_survives_save_load_streaming_views_and_concatenation(nets, rng, tmp_path):
    g = nets.mixed_graph(rng)
    tr = _with_fingerprint(nets.random_trace(g, rng, 3, 2, 0.3), g)
    tr.save(tmp_path / "t.npz")
    write_trace(tmp_path / "folder", tr, batch_samples=2)
    for back in (EventTrace.load(tmp_path / "t.npz"), open_trace(tmp_path / "folder"), tr.sample_view(1),
                 tr.select(slice(0, 2)), concat_traces([tr, tr])):
        assert back.graph_fingerprint == g.fingerprint() and back.sizes == {n: p.size for n, p in
                                                                          g.populations.items()}
    other = _with_fingerprint(tr, nets.mixed_graph(rng))
    with pytest.raises(ValueError, match="concat_traces: traces differ in graph_fingerprint"):
        concat_traces([tr, other])
    with TraceWriter(tmp_path / "w", list(tr.populations), 2) as w:
        w.append(tr)
        with pytest.raises(ValueError, match="trace batch: graph_fingerprint .* differs from the writer's"):
            w.append(other)
    assert json.loads((tmp_path / "w" / "meta.json").read_text())["graph_fingerprint"] == g.fingerprint()


def test_old_traces_without_a_fingerprint_load_and_are_checked_on_what_they_hold(nets, rng, tmp_path):
    """A trace saved before fingerprints and sizes were recorded (format 2 meta without them) still simulates
    with its graph; one whose populations or spike indices do not fit the graph is refused."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 2, 3, 0.3)
    meta = {"format_version": 2, "populations": list(tr.populations), "n_samples": 2, "n_timesteps": 3,
            "activity": []}
    np.savez(tmp_path / "old.npz", offsets=tr.offsets, indices=tr.indices,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    old = EventTrace.load(tmp_path / "old.npz")
    assert old.graph_fingerprint is None and old.sizes is None
    chip = load_preset("loihi")
    assert simulate(g, old, chip, model="analytic").energy_j == simulate(g, tr, chip, model="analytic").energy_j
    wide = EventTrace(old.populations, 2, 3, old.offsets, np.where(old.indices > 3, old.indices + 100, old.indices))
    _refused(g, wide, "trace.indices: population 'in' has a spike index outside 0..71 (neuron")
    renamed = EventTrace(("in", "c1", "p1", "d1", "final"), 2, 3, old.offsets, old.indices)
    _refused(g, renamed, "trace.populations: graph population 'out' is missing")


def test_populations_sizes_timesteps_and_empty_traces_are_refused_at_the_start(nets, rng):
    g = nets.mixed_graph(rng)
    shapes = {n: p.size for n, p in g.populations.items()}
    empty = EventTrace(list(g.populations), 0, 3, np.zeros(1, np.int64), np.zeros(0, np.int32))
    _refused(g, empty, "trace.n_samples: 0; a trace needs at least one sample")
    part = EventTrace.from_dense({"in": np.zeros((1, 3, 72)), "c1": np.zeros((1, 3, 144))})
    _refused(g, part, "trace.populations: graph population 'p1' is missing")
    extra = EventTrace.from_dense({**{n: np.zeros((1, 3, s)) for n, s in shapes.items()}, "x": np.zeros((1, 3, 2))})
    _refused(g, extra, "trace.populations: 'x' is not a population of graph 'network'")
    wider = EventTrace.from_dense({n: np.zeros((1, 3, s + (5 if n == "d1" else 0))) for n, s in shapes.items()})
    _refused(g, wider, "trace.sizes: population 'd1' has 25 neurons in the trace, 20 in graph 'network'")
    timed = NetworkGraph(list(g.populations.values()), g.projections, metadata={"n_timesteps": 4})
    _refused(timed, nets.random_trace(g, rng, 1, 3, 0.3), "trace.n_timesteps: 3, but graph 'network' was lowered "
                                                            "with 4 timesteps")
    act = {"d1": np.zeros((1, 4, 2), np.uint8)}  # rows of 2 bytes: 9..16 neurons, d1 has 20
    short_rows = EventTrace(tuple(shapes), 1, 3, np.zeros(16, np.int64),
                            np.zeros(0, np.int32), activity=act)
    _refused(g, short_rows, "trace.activity['d1']: rows of 2 bytes; population 'd1' of graph 'network' has 20")


@pytest.mark.parametrize("chunk", [None, 5])
def test_nan_or_infinite_spike_values_are_refused_and_counted(nets, rng, monkeypatch, tmp_path, chunk):
    import hwmodels.trace_check as tc
    if chunk:
        monkeypatch.setattr(tc, "VALUE_CHUNK", chunk)
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 2, 3, 0.3)
    n = len(tr.indices)
    assert n > 12
    values = rng.uniform(-2, 2, n).astype(np.float32)
    graded = EventTrace(tr.populations, tr.n_samples, tr.n_timesteps, tr.offsets, tr.indices, values)
    check_trace(g, graded)  # finite graded values, negative ones included, pass
    values[[0, n // 2, n - 1]] = [np.nan, np.inf, -np.inf]
    bad = EventTrace(tr.populations, tr.n_samples, tr.n_timesteps, tr.offsets, tr.indices, values)
    _refused(g, bad, "trace.values: 3 spike values are NaN or infinite")
    write_trace(tmp_path / "t", bad)  # and when read memory-mapped from a trace folder
    _refused(g, open_trace(tmp_path / "t"), "trace.values: 3 spike values are NaN or infinite")
    values[[n // 2, n - 1]] = 1.0
    one = EventTrace(tr.populations, tr.n_samples, tr.n_timesteps, tr.offsets, tr.indices, values)
    _refused(g, one, "trace.values: 1 spike value is NaN or infinite")


def test_traffic_traces_are_checked_only_by_placements_that_use_them(nets, rng):
    g = nets.mixed_graph(rng)
    chip = load_preset("loihi")
    other = _with_fingerprint(nets.random_trace(g, rng, 1, 2, 0.3), nets.mixed_graph(rng))
    map_network(g, chip, "in_order", traffic=other)  # ignored
    with pytest.raises(ValueError, match="trace.graph_fingerprint"):
        map_network(g, chip, "comm_aware", traffic=other)


def test_index_bounds_read_in_chunks_equal_the_whole_trace(nets, rng, monkeypatch):
    import hwmodels.trace_check as tc
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 4, 3, 0.3)
    want = index_bounds(tr)
    monkeypatch.setattr(tc, "CHUNK_ROWS", 7)
    got = index_bounds(tr)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert want[1].tolist() == [max(tr.spikes(s, t, n).indices.max(initial=-1) for s in range(4) for t in range(3))
                                for n in tr.populations]
    check_trace(g, tr)


def test_a_fingerprint_hashed_beside_the_simulation_refuses_as_before_and_first(nets, rng, monkeypatch):
    """simulate hashes a large graph's fingerprint on a thread beside its first work (trace_check.start_check):
    forced here on a small graph; the refusal, its text and its precedence over the other checks and over a
    mapping error of the body are those of check_trace, and a passed (graph, trace) is not hashed again."""
    import hwmodels.trace_check as tc
    monkeypatch.setattr(tc, "FINGERPRINT_THREAD_BYTES", 0)
    monkeypatch.setattr(tc.threads, "count", lambda: 2)
    g0, g5 = nets.mixed_graph(rng), nets.mixed_graph(rng)
    tr = _with_fingerprint(nets.random_trace(g5, rng, 2, 3, 0.3), g5)
    text = _refused(g0, tr, "trace.graph_fingerprint: the trace was recorded on a graph with fingerprint")
    assert g0.fingerprint() in text and g5.fingerprint() in text
    wrong_pops = EventTrace.from_dense({"in": np.zeros((1, 3, 72))})
    wrong_pops.graph_fingerprint = g5.fingerprint()
    _refused(g0, wrong_pops, "trace.graph_fingerprint")  # the fingerprint error first, as check_trace
    chip, other_chip = load_preset("loihi"), load_preset("generic-45nm")
    with pytest.raises(ValueError) as err:  # a mapping made for another chip: the body's own error ...
        simulate(g5, tr, chip, mapping=map_network(g5, other_chip))
    assert "graph_fingerprint" not in str(err.value)
    with pytest.raises(ValueError, match="trace.graph_fingerprint"):  # ... comes after the fingerprint's
        simulate(g0, tr, chip, mapping=map_network(g0, other_chip))
    want = simulate(g5, tr, chip, model="analytic")
    calls, real = [], NetworkGraph.fingerprint
    monkeypatch.setattr(NetworkGraph, "fingerprint", lambda self: calls.append(1) or real(self))
    cache = SimCache()
    first = simulate(g5, tr, chip, model="analytic", cache=cache)
    second = simulate(g5, tr, chip, model="analytic", cache=cache)
    assert len(calls) == 1 and first.as_row() == want.as_row() == second.as_row()


def test_a_neuron_listed_twice_in_one_row_is_refused_naming_where(nets):
    """A repeated entry used to count as two spikes (input neuron 2 twice: 2 x 2 synaptic events instead of 2)."""
    g = NetworkGraph([Population("in", (3,), nets.INPUT), Population("out", (2,))],
                     [Projection("fc", "in", "out", "dense", np.ones((2, 3)))])

    def trace(rows):  # 2 samples x 2 timesteps x 2 populations = 8 CSR rows
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        return EventTrace(["in", "out"], 2, 2, offsets, np.concatenate(rows))
    rows = [[0], [], [1, 2], [0], [2], [], [2, 0, 2], [1]]  # sample 1, timestep 1, 'in' (row 6): neuron 2 twice
    text = _refused(g, trace(rows), "trace.indices: neuron 2 of population 'in' is listed twice at timestep 1 of "
                                    "sample 1")
    assert "merge repeated events" in text
    unsorted, ordered = trace(rows[:6] + [[2, 0], [1]]), trace(rows[:6] + [[0, 2], [1]])
    check_trace(g, unsorted)  # unsorted without a repeat: accepted, and counted as the sorted row
    chip = load_preset("loihi")
    assert simulate(g, unsorted, chip).synops == simulate(g, ordered, chip).synops == (1 + 2 + 1 + 2) * 2 / 2
