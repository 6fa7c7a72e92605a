"""Streaming traces: TraceWriter / EventTrace.open round trip, and a 10,000-sample trace simulated from a memory
map with bounded Python memory."""
import tracemalloc

import numpy as np
import pytest

from hwmodels import load_preset, map_network, simulate
from hwmodels.stream import TraceWriter, open_trace, write_trace
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
from tests.hwmodels.conftest import mapped


def _graph(rng):
    pops = [Population("in", (1024,), NeuronModel(kind="input")), Population("h", (64,)), Population("out", (10,))]
    projs = [Projection("ih", "in", "h", "dense", rng.normal(size=(64, 1024)) * (rng.random((64, 1024)) < 0.1),
                        storage="sparse"),
             Projection("ho", "h", "out", "dense", rng.normal(size=(10, 64)))]
    return NetworkGraph(pops, projs)


def _batch(rng, n, graded=False):
    spikes = {"in": rng.random((n, 4, 1024)) < 0.25, "h": rng.random((n, 4, 64)) < 0.2,
              "out": rng.random((n, 4, 10)) < 0.2}
    if graded:
        spikes["in"] = spikes["in"] * rng.normal(size=(n, 4, 1024))
    return EventTrace.from_dense(spikes, labels=rng.integers(0, 10, n), graded=("in",) if graded else ())


@pytest.mark.parametrize("graded", [False, True])
def test_writer_round_trip_equals_concatenated_batches(tmp_path, rng, graded):
    batches = [_batch(rng, n, graded) for n in (3, 1, 4)]
    with TraceWriter(tmp_path / "t", ["in", "h", "out"], 4, graded=graded, labels=True) as w:
        for b in batches:
            w.append(b)
    got = EventTrace.open(tmp_path / "t")
    assert mapped(got.indices) and not got.indices.flags.writeable  # memory-mapped, read-only
    assert got.n_samples == 8 and got.populations == ("in", "h", "out")
    for name, size in (("in", 1024), ("h", 64), ("out", 10)):
        want = np.concatenate([b.to_dense(name, (size,)) for b in batches])
        assert np.array_equal(got.to_dense(name, (size,)), want)
    assert got.labels.tolist() == sum((b.labels.tolist() for b in batches), [])
    assert (got.values is not None) == graded


def test_writer_rejects_mismatched_batches_and_incomplete_folders(tmp_path, rng):
    w = TraceWriter(tmp_path / "t", ["in", "h"], 4)
    with pytest.raises(ValueError, match="populations and n_timesteps must match"):
        w.append(_batch(rng, 1))
    with pytest.raises(FileNotFoundError):
        open_trace(tmp_path / "t")  # not closed: no meta.json yet
    w.close()
    with pytest.raises(FileExistsError):
        TraceWriter(tmp_path / "t", ["in", "h"], 4)
    batch = _batch(rng, 2)
    act = EventTrace.from_dense({n: rng.random((2, 4, k)) < 0.3 for n, k in (("in", 1024), ("h", 64), ("out", 10))},
                                activity={"h": rng.random((2, 5, 64)) < 0.5})
    w = TraceWriter(tmp_path / "a", ["in", "h", "out"], 4, activity={"h": 7})  # 7 neurons: 1-byte rows, not 8
    with pytest.raises(ValueError, match="activity rows of 'h' are 8 bytes, the writer's 7 neurons pack into 1"):
        w.append(act)  # it wrote a folder EventTrace.open refused
    w.close()
    with pytest.raises(ValueError, match="batch_samples: 0 must be an integer >= 1"):
        write_trace(tmp_path / "b", batch, batch_samples=0)


def test_writer_takes_the_graph_fingerprint_at_close(tmp_path, rng):
    """A writer whose batches carry no fingerprint takes the one given to close (the lowering hashes the graph
    beside the trace write); one that differs from the writer's is refused."""
    fp = _graph(rng).fingerprint()
    with TraceWriter(tmp_path / "t", ["in", "h", "out"], 4) as w:
        w.append(_batch(rng, 2))
    w2 = TraceWriter(tmp_path / "u", ["in", "h", "out"], 4)
    w2.append(_batch(rng, 2))
    w2.close(fp)
    assert EventTrace.open(tmp_path / "t").graph_fingerprint is None
    assert EventTrace.open(tmp_path / "u").graph_fingerprint == fp
    w3 = TraceWriter(tmp_path / "v", ["in", "h", "out"], 4, graph_fingerprint=fp)
    w3.append(_batch(rng, 1))
    with pytest.raises(ValueError, match="graph_fingerprint .* differs from the writer's"):
        w3.close("0123456789abcdef")
    w3.close(fp)
    assert EventTrace.open(tmp_path / "v").graph_fingerprint == fp


def test_ten_thousand_samples_stream_with_bounded_memory(tmp_path, rng):
    """10,000 samples x 4 timesteps, ~1,050 spikes per sample: ~42 MB of indices on disk. Simulating the
    memory-mapped trace (batches of 32 samples) allocates at most a few MB of Python memory (tracemalloc peak)
    besides the per-sample result table it returns (13 floats per sample), and gives the same result as
    simulating the first batches from memory."""
    g = _graph(rng)
    with TraceWriter(tmp_path / "big", ["in", "h", "out"], 4) as w:
        for _ in range(20):
            w.append(_batch(rng, 500))
    trace = EventTrace.open(tmp_path / "big")
    trace_bytes = trace.indices.nbytes + trace.offsets.nbytes
    assert trace.n_samples == 10_000 and trace_bytes > 35e6
    chip = load_preset("loihi")
    m = map_network(g, chip)
    head = trace.select(slice(0, 64))
    write_trace(tmp_path / "head", head)
    # the first simulate of a process compiles (or loads) the numba kernels for the memory-mapped arrays' types:
    # done here, outside the measured window, by the comparison of the first 64 samples
    a, b = simulate(g, head, chip, m), simulate(g, EventTrace.open(tmp_path / "head"), chip, m, model="des")
    tracemalloc.start()
    r = simulate(g, trace, chip, m, model="des")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    per_sample = int(r.samples.memory_usage().sum())
    print(f"trace {trace_bytes / 1e6:.1f} MB on disk, peak Python memory {peak / 1e6:.2f} MB, "
          f"of which {per_sample / 1e6:.2f} MB per-sample results")
    assert per_sample <= 16 * 8 * trace.n_samples and peak - per_sample < trace_bytes / 8
    assert a.energy_j == b.energy_j and a.latency_s == b.latency_s
    assert r.spikes == pytest.approx(trace.counts().sum() / 10_000, rel=1e-12)


def test_an_unreadable_meta_json_is_a_one_line_error_naming_it(tmp_path, rng, monkeypatch):
    write_trace(tmp_path / "t", _batch(rng, 2))
    real = type(tmp_path).read_bytes

    def refuse(self):
        if self.name == "meta.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(type(tmp_path), "read_bytes", refuse)  # as for a user who may not read it
    with pytest.raises(ValueError, match=r"meta.json: cannot be read \(Permission denied\)"):
        open_trace(tmp_path / "t")
