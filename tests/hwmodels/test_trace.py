"""The trace contract: CSR layout, save/load round trips, per-sample views and input validation."""
import numpy as np
import pytest

from hwmodels.trace import (EventTrace, NetworkGraph, NeuronModel, Population, Projection, concat_traces,
                            conv_output_shape)


def _trace(rng, n_samples=3, graded=True):
    spikes = {"input": rng.random((n_samples, 2, 4)) * (rng.random((n_samples, 2, 4)) < 0.5),
              "lif": (rng.random((n_samples, 2, 2, 3)) < 0.4).astype(np.float32)}
    return spikes, EventTrace.from_dense(spikes, labels=np.arange(n_samples),
                                         graded=("input",) if graded else ())


def test_csr_rows_hold_the_spiking_indices():
    spikes = {"a": np.array([[[0, 1, 1], [0, 0, 0]]]), "b": np.array([[[1, 0], [1, 1]]])}
    tr = EventTrace.from_dense(spikes)
    # rows: (s0,t0,a) (s0,t0,b) (s0,t1,a) (s0,t1,b)
    assert tr.offsets.tolist() == [0, 2, 3, 3, 5]
    assert tr.indices.tolist() == [1, 2, 0, 0, 1]
    assert tr.counts().tolist() == [[[2, 1], [0, 2]]]
    assert tr.spikes(0, 1, "b").indices.tolist() == [0, 1]
    assert tr.values is None and tr.spikes(0, 0, "a").values.tolist() == [1.0, 1.0]


def test_save_load_round_trip(tmp_path):
    spikes, tr = _trace(np.random.default_rng(0))
    tr.save(tmp_path / "t.npz")
    back = EventTrace.load(tmp_path / "t.npz")
    assert back.populations == tr.populations and back.n_timesteps == 2 and back.n_samples == 3
    for name in ("offsets", "indices", "values", "labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tr, name))
    np.testing.assert_allclose(back.to_dense("input", (4,)), spikes["input"].astype(np.float32))
    np.testing.assert_array_equal(back.to_dense("lif", (2, 3)), spikes["lif"])
    assert not list(tmp_path.glob("*.tmp"))


def test_sample_views_select_and_concat_agree():
    _, tr = _trace(np.random.default_rng(1), n_samples=4)
    views = list(tr.iter_samples())
    assert [v.n_samples for v in views] == [1] * 4
    joined = concat_traces(views)
    for name in ("offsets", "indices", "values", "labels"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(tr, name))
    picked = tr.select(np.array([2, 0]))
    assert picked.labels.tolist() == [2, 0]
    np.testing.assert_array_equal(picked.spikes(0, 1, "lif").indices, tr.spikes(2, 1, "lif").indices)


def test_graph_round_trip_and_depth(tmp_path):
    pops = [Population("in", (1, 4, 4), NeuronModel("input")), Population("c", (2, 4, 4), NeuronModel("LIF", tau=2.0)),
            Population("o", (3,), NeuronModel("IF", threshold=float("inf")))]
    w = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3)
    projs = [Projection("conv", "in", "c", "conv", w, padding=(1, 1), bias=np.ones(32)),
             Projection("fc", "c", "o", "dense", np.ones((3, 32)), storage="sparse", weight_bits=4)]
    g = NetworkGraph(pops, projs, name="g", metadata={"k": 1})
    assert [g.depth(p) for p in ("in", "c", "o")] == [0, 1, 2] and g.n_layers == 2
    g.save(tmp_path / "g.npz")
    back = NetworkGraph.load(tmp_path / "g.npz")
    assert back.populations == g.populations and back.metadata == {"k": 1}
    for a, b in zip(back.projections, g.projections):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert (a.storage, a.weight_bits, a.padding) == (b.storage, b.weight_bits, b.padding)
    np.testing.assert_array_equal(back.projections[0].bias, np.ones(32))


@pytest.mark.parametrize("make, match", [
    (lambda: NeuronModel("XYZ"), "neuron.kind: 'XYZ' is not one of input, IF"),
    (lambda: Population("p", (0,)), "population.shape"),
    (lambda: Projection("p", "a", "b", "pool", np.ones((1, 1))), "projection.kind: 'pool' is not one of dense, conv"),
    (lambda: Projection("p", "a", "b", "dense", np.ones((1, 1)), storage="conv"), "storage: 'conv' needs kind 'conv'"),
    (lambda: Projection("p", "a", "b", "dense", np.ones(3)), "dense needs 2 dims"),
    (lambda: EventTrace(["a"], 1, 1, np.array([0, 2]), np.array([0])), "must start at 0"),
])
def test_bad_contract_values_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_graph_rejects_shapes_that_do_not_fit():
    a, b = Population("a", (1, 5, 5), NeuronModel("input")), Population("b", (2, 3, 3))
    conv = Projection("c", "a", "b", "conv", np.ones((2, 1, 3, 3)))
    assert conv_output_shape(conv, a.shape) == (2, 3, 3)
    NetworkGraph([a, b], [conv])
    with pytest.raises(ValueError, match="conv output shape"):
        NetworkGraph([a, b], [Projection("c", "a", "b", "conv", np.ones((2, 1, 3, 3)), padding=(1, 1))])
    with pytest.raises(ValueError, match=r"should be \(target size, source size\) = \(18, 25\)"):
        NetworkGraph([a, b], [Projection("d", "a", "b", "dense", np.ones((25, 18)))])
    with pytest.raises(ValueError, match="bias shape"):
        NetworkGraph([a, b], [Projection("c", "a", "b", "conv", np.ones((2, 1, 3, 3)), bias=np.ones(2))])
    with pytest.raises(ValueError, match="is not one of a, b"):
        NetworkGraph([a, b], [Projection("c", "a", "zz", "conv", np.ones((2, 1, 3, 3)))])
    with pytest.raises(ValueError, match="cycle"):
        NetworkGraph([b, Population("b2", (2, 3, 3))],
                     [Projection("x", "b", "b2", "conv", np.ones((2, 2, 1, 1))),
                      Projection("y", "b2", "b", "conv", np.ones((2, 2, 1, 1)))])


def test_format_1_traces_load_without_activity_and_format_2_round_trips(tmp_path):
    """A trace written before activity was recorded (format 1) loads with no activity (the default rule); a
    format-2 trace keeps activity and predictions, in memory (.npz) and streamed (folder)."""
    import json
    from hwmodels.stream import open_trace, write_trace
    rng = np.random.default_rng(0)
    spikes = {"a": rng.random((3, 2, 5)) < 0.5, "b": rng.random((3, 2, 4)) < 0.5}
    old = EventTrace.from_dense(spikes)
    meta = {"format_version": 1, "populations": ["a", "b"], "n_samples": 3, "n_timesteps": 2}
    np.savez(tmp_path / "v1.npz", offsets=old.offsets, indices=old.indices,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    v1 = EventTrace.load(tmp_path / "v1.npz")
    assert v1.activity == {} and v1.predictions is None and np.array_equal(v1.indices, old.indices)
    act = rng.random((3, 3, 5)) < 0.5
    new = EventTrace(old.populations, 3, 2, old.offsets, old.indices, activity={"a": np.packbits(act, -1, "little")},
                     predictions=np.array([1, 0, 1]), sizes={"a": 5, "b": 4})
    new.save(tmp_path / "v2.npz")
    write_trace(tmp_path / "v2", new, batch_samples=2)
    for back in (EventTrace.load(tmp_path / "v2.npz"), open_trace(tmp_path / "v2")):
        bits = np.unpackbits(np.asarray(back.activity["a"]), axis=-1, count=5, bitorder="little").astype(bool)
        assert np.array_equal(bits, act) and back.predictions.tolist() == [1, 0, 1]
        assert back.select(slice(1, 3)).activity["a"].shape == (2, 3, 1)
    with pytest.raises(ValueError, match=r"trace.activity\['a'\]: uint8 \(3, 2, 1\) should be"):
        EventTrace(old.populations, 3, 2, old.offsets, old.indices, activity={"a": np.zeros((3, 2, 1), np.uint8)})
    with pytest.raises(ValueError, match="trace.activity: population 'z' is not one of a, b"):
        EventTrace(old.populations, 3, 2, old.offsets, old.indices, activity={"z": np.zeros((3, 3, 1), np.uint8)})


def test_activity_counts_per_core_equal_the_unpacked_bits():
    """hwmodels.activity.window_counts counts set bits per core on the packed bytes (chunk boundaries inside a
    byte included) and adds spikes the record missed, once each: equal to counting the unpacked bits."""
    from hwmodels import activity
    rng = np.random.default_rng(0)
    for _ in range(200):
        size = int(rng.integers(1, 200))
        cuts = np.sort(rng.choice(np.arange(1, size), size=min(int(rng.integers(0, 10)), size - 1), replace=False))
        cores = np.searchsorted(cuts, np.arange(size), side="right") * 2  # contiguous chunks, ids with gaps
        if rng.random() < 0.3:
            cores = rng.permutation(cores)  # a scattered assignment takes the unpacked path
        bits = rng.random((2, 3, size)) < 0.5
        s, t, i = rng.integers(0, 2, 15), rng.integers(0, 3, 15), rng.integers(0, size, 15)
        ref = bits.copy()
        ref[s, t, i] = True
        n = int(cores.max()) + 1
        want = np.stack([ref[:, :, cores == c].sum(-1) for c in range(n)], axis=-1)
        assert np.array_equal(activity.window_counts(activity.pack(bits), size, cores, n, (s, t, i)), want)


@pytest.mark.parametrize("make, match", [
    (lambda: Projection("p", "a", "b", "dense", np.array([[1.0, np.nan]])), "projection.weight: 'p' has 1 non-finite"),
    (lambda: Projection("p", "a", "b", "dense", np.full((2, 2), np.inf)), "projection.weight: 'p' has 4 non-finite"),
    (lambda: Projection("p", "a", "b", "dense", np.ones((1, 2)), bias=np.array([-np.inf])), "projection.bias: 'p'"),
    (lambda: Projection("p", "a", "b", "dense", np.array([[1.0, 2j]])), "projection.weight: 'p' is complex"),
    (lambda: Projection("p", "a", "b", "dense", np.ones((1, 2)), bias=[1 + 1j]), "projection.bias: 'p' is complex"),
    (lambda: NeuronModel("IF", threshold=float("nan")), "neuron.threshold: nan must be a number or \\+inf"),
    (lambda: NeuronModel("IF", threshold=-float("inf")), "neuron.threshold: -inf"),
    (lambda: NeuronModel("LIF", tau=float("nan")), "neuron.tau: nan must be a finite number >= 1"),
    (lambda: NeuronModel("LIF", tau=float("inf")), "neuron.tau: inf"),
    (lambda: NeuronModel("IF", v_reset=float("nan")), "neuron.v_reset: nan must be a finite number or None"),
    (lambda: NeuronModel("LIF", tau=2.0, decay_input="no"), "neuron.decay_input: 'no' must be True or False"),
    (lambda: EventTrace(["a"], -1, 1, np.zeros(1), np.zeros(0)), "trace.n_samples: -1 must be an integer >= 0"),
    (lambda: EventTrace(["a", "a"], 1, 1, np.zeros(3), np.zeros(0)), "trace.populations: \\['a', 'a'\\] must be"),
    (lambda: EventTrace(["a", "a"], 1, 1, np.zeros(3), np.zeros(0), sizes={"b": 2}),  # named before the sizes
     "trace.populations: \\['a', 'a'\\] must be"),
    (lambda: EventTrace(["a"], 1, 1, np.zeros(2), np.zeros(0), sizes={"b": 3}), "trace.sizes: population 'b'"),
])
def test_non_finite_weights_thresholds_and_bad_trace_counts_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_non_spiking_readout_keeps_its_infinite_threshold():
    assert NeuronModel("IF", threshold=float("inf")).threshold == float("inf")


@pytest.mark.parametrize("offsets, indices, labels, match", [
    ([0, 1, 1], np.array([2**32 + 1]), None, r"trace.indices: values 4294967297..4294967297 do not fit int32"),
    ([0, 1, 1], np.array([1.7]), None, r"trace.indices: 1 value\(s\) are not integers \(e.g. 1.7\)"),
    ([0, 0.5, 1], np.array([1]), None, r"trace.offsets: 1 value\(s\) are not integers \(e.g. 0.5\)"),
    ([0, 1, 1], np.array([1]), np.array([1.5]), r"trace.labels: 1 value\(s\) are not integers"),
])
def test_indices_offsets_and_labels_are_never_wrapped_or_truncated(offsets, indices, labels, match):
    # int64 index 2^32 + 1 used to wrap to neuron 1 and 1.7 to become neuron 1, silently
    with pytest.raises(ValueError, match=match):
        EventTrace(["a", "b"], 1, 1, offsets, indices, labels=labels)


def test_integer_valued_arrays_of_other_dtypes_still_convert():
    tr = EventTrace(["a", "b"], 1, 1, np.array([0, 1, 2.0]), np.array([3, 0], np.uint64), labels=[2.0])
    assert tr.indices.dtype == np.int32 and tr.indices.tolist() == [3, 0] and tr.offsets.dtype == np.int64
    assert tr.labels.tolist() == [2]


def test_spikes_out_of_range_raise_instead_of_reading_another_row():
    # 2 samples x 1 timestep x 1 population: t=1 of sample 0 used to return sample 1's spikes, t=-1 another row
    tr = EventTrace(["a"], 2, 1, [0, 1, 3], [4, 5, 6])
    assert tr.spikes(1, 0, "a").indices.tolist() == [5, 6]
    for sample, t, match in ((0, 1, "t: 1 is outside 0..0"), (0, -1, "t: -1 is outside 0..0"),
                             (2, 0, "sample: 2 is outside 0..1"), (-1, 0, "sample: -1 is outside 0..1")):
        with pytest.raises(IndexError, match=match):
            tr.spikes(sample, t, "a")


@pytest.mark.parametrize("make, match", [
    (lambda: Population("x", (2.5,)), r"population.shape: \(2.5,\) of 'x' must be a non-empty tuple of positive"),
    (lambda: Population("x", ("3",)), r"population.shape: \('3',\)"),
    (lambda: Population("x", 3), r"population.shape: 3 of 'x'"),
    (lambda: Population("x", (3,), state_bits=16.5), r"population.state_bits: 16.5 must be an integer in 1..64"),
    (lambda: Population("x", (3,), state_bits=True), r"population.state_bits: True"),
    (lambda: Population(5, (3,)), r"population.name: 5 must be a non-empty string"),
    (lambda: Projection("p", "a", "b", "dense", np.ones((2, 3)), weight_bits=8.5), r"weight_bits: 8.5 must be an int"),
    (lambda: Projection("p", "a", "b", "conv", np.ones((2, 1, 1, 1)), groups=True), r"projection.groups: True"),
    (lambda: Projection("p", "a", "b", "conv", np.ones((2, 1, 1, 1)), groups=0), r"projection.groups: 0 of 'p'"),
    (lambda: Projection("p", "a", "b", "conv", np.ones((2, 1, 1, 1)), stride=(1, 1, 1)), r"projection.stride"),
    (lambda: Projection("p", "a", "b", "conv", np.ones((2, 1, 1, 1)), padding=(1,)), r"projection.padding: \(1,\)"),
])
def test_integer_fields_are_never_truncated_or_taken_as_bools(make, match):
    # (2.5,) used to become a 2-neuron population, 8.5 bits stayed 8.5, groups=True became 1, padding (1,) failed
    # with an IndexError once the graph was built
    with pytest.raises(ValueError, match=match):
        make()


def test_integer_fields_accept_numpy_ints_and_a_single_int_geometry():
    pop = Population("x", (np.int64(2), 3), state_bits=np.int32(8))
    assert pop.shape == (2, 3) and pop.size == 6 and pop.state_bits == 8
    proj = Projection("p", "a", "b", "conv", np.ones((2, 1, 3, 3)), stride=2, padding=np.array([1, 0]),
                      groups=np.int64(1))
    assert proj.stride == (2, 2) and proj.padding == (1, 0) and proj.dilation == (1, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"spikes": {}}, r"spikes: needs at least one population"),
    ({"spikes": {"a": np.ones(3)}}, r"spikes\['a'\]: shape \(3,\) should be \(n_samples, n_timesteps, \*shape\)"),
    ({"spikes": {"a": np.ones((1, 2, 3)), "b": np.ones((1, 3, 3))}}, r"spikes\['b'\]: shape \(1, 3, 3\).*\(1, 2\)"),
    ({"spikes": {"a": np.ones((1, 2, 3))}, "graded": ("b",)}, r"graded: 'b' is not one of a"),
    ({"spikes": {"a": np.ones((1, 2, 3))}, "activity": {"a": np.ones((1, 2, 3))}},
     r"activity\['a'\]: shape \(1, 2, 3\) should be \(1, 3, 3\)")])
def test_from_dense_names_what_does_not_fit(kwargs, match):
    # these used to fail inside with IndexError / "not enough values to unpack" / "cannot reshape", or (graded)
    # to ignore the unknown name
    with pytest.raises(ValueError, match=match):
        EventTrace.from_dense(**kwargs)


def test_to_dense_refuses_a_shape_that_does_not_hold_the_population():
    # a smaller shape used to fail with numpy's IndexError, a larger one to pad silently
    tr = EventTrace.from_dense({"a": np.eye(3, dtype=np.float32)[None, :, :]})  # sizes {"a": 3}
    assert tr.to_dense("a", (3,)).tolist() == np.eye(3)[None].tolist()
    for shape in ((2,), (4,), (2, 2)):
        with pytest.raises(ValueError, match=r"shape: .* holds \d+ neurons; population 'a' has 3"):
            tr.to_dense("a", shape)
    no_sizes = EventTrace(["a"], 1, 1, [0, 1], [2])
    with pytest.raises(ValueError, match=r"shape: \(2,\) holds 2 neurons; population 'a' has a spike index outside"):
        no_sizes.to_dense("a", (2,))


def test_a_graph_that_saves_also_loads(tmp_path):
    """name=5 used to save a file NetworkGraph.load refused ("meta['name'] is 5, expected a string"), and numpy
    values in metadata failed the save with json's "Object of type int64 is not JSON serializable"."""
    pops = [Population("a", (2,), NeuronModel("input")), Population("b", (1,))]
    projs = [Projection("p", "a", "b", "dense", np.ones((1, 2)))]
    with pytest.raises(ValueError, match="graph.name: 5 must be a string"):
        NetworkGraph(pops, projs, name=5)
    with pytest.raises(ValueError, match="graph.metadata: list must be a dict"):
        NetworkGraph(pops, projs, metadata=[("k", 1)])
    g = NetworkGraph(pops, projs, metadata={"n_timesteps": np.int64(4), "rates": np.array([0.5, 0.25])})
    g.save(tmp_path / "g.npz")
    back = NetworkGraph.load(tmp_path / "g.npz")
    assert back.metadata == {"n_timesteps": 4, "rates": [0.5, 0.25]} and back.fingerprint() == g.fingerprint()
    g.metadata["bad"] = object()
    with pytest.raises(ValueError, match="graph.metadata: object of type object is not JSON serializable"):
        g.save(tmp_path / "g2.npz")


def test_select_takes_an_index_and_names_an_empty_selection():
    tr = EventTrace.from_dense({"a": np.eye(3, dtype=bool).reshape(3, 1, 3)}, labels=np.array([0, 1, 2]))
    one = tr.select(1)  # an index: a one-sample trace (was "'numpy.int64' object is not iterable")
    assert one.n_samples == 1 and one.labels.tolist() == [1] and one.spikes(0, 0, "a").indices.tolist() == [1]
    with pytest.raises(ValueError, match="samples: the selection picks none of the trace's 3 samples"):
        tr.select(tr.labels == 9)  # was "concat_traces: needs at least one trace"


def test_a_float64_bias_is_held_as_float32_so_a_saved_graph_reloads_equal(tmp_path):
    g = NetworkGraph([Population("i", (2,), NeuronModel("input")), Population("o", (2,))],
                     [Projection("p", "i", "o", "dense", np.ones((2, 2)), bias=np.array([0.1, 0.2]))])
    assert g.projections[0].bias.dtype == np.float32
    g.save(tmp_path / "g.npz")
    h = NetworkGraph.load(tmp_path / "g.npz")
    assert np.array_equal(g.projections[0].bias, h.projections[0].bias) and g.fingerprint() == h.fingerprint()
    with pytest.raises(ValueError, match="projection.bias: 'p' has 1 non-finite value"):
        Projection("p", "i", "o", "dense", np.ones((2, 2)), bias=np.array([1e300, 0.0]))  # beyond float32
