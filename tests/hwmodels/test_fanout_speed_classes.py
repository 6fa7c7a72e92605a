"""The factorised fan-out tables (issue 14): source classes with equal fan-out rows, counts of chosen rows only,
the per-class stacks and the per-(row, class) spike counts give exactly the unfactorised tables and actions."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from hwmodels import load_preset, map_network
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.mapping.connectivity import core_fanout, fanout, source_classes
from hwmodels.trace import Projection, conv_output_shape

GEOMETRIES = [  # (C_in, H, W), C_out, kernel, stride, padding, dilation, groups
    ((4, 7, 6), 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((3, 9, 8), 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((6, 8, 8), 6, (2, 2), (2, 2), (0, 0), (1, 1), 6),
    ((2, 5, 7), 4, (1, 3), (1, 2), (0, 2), (1, 1), 1),
    ((8, 4, 4), 16, (1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((3, 6, 6), 3, (1, 1), (2, 2), (0, 0), (1, 1), 1),  # stride 2, 1x1: positions no tap reads
    ((6, 4, 4), 12, (4, 4), (1, 1), (0, 0), (1, 1), 6),  # spiking attention's K^T V: one tap reads a position
]


def _conv(rng, geom, density=0.6):
    src, c_out, k, stride, pad, dil, groups = geom
    w = rng.normal(size=(c_out, src[0] // groups) + k) * (rng.random((c_out, src[0] // groups) + k) < density)
    return Projection("p", "a", "b", "conv", w, stride=stride, padding=pad, dilation=dil, groups=groups), src


def _assignments(rng, n_t, hw_out):
    whole = np.repeat(np.arange(-(-n_t // hw_out)), hw_out)[:n_t] // 2 * 3 + 1  # two whole channels per core
    contiguous = np.repeat(np.arange(5), -(-n_t // 5))[:n_t] * 7 + 3  # channels split at chunk edges
    return whole, contiguous, rng.integers(0, 4, n_t)


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_conv_classes_and_rows_give_the_full_counts(rng, geom):
    proj, src = _conv(rng, geom)
    c_out, ho, wo = conv_output_shape(proj, src)
    n_src = int(np.prod(src))
    rows = rng.permutation(n_src)[: n_src // 2]
    for target_core in _assignments(rng, c_out * ho * wo, ho * wo):
        of = source_classes(proj, src, target_core)
        first = np.unique(of, return_index=True)[1]
        for count in ("structural", "nonzero"):
            full, cores = core_fanout(proj, src, target_core, count)
            dense = full.toarray()
            assert np.array_equal(dense, dense[first[np.unique(of, return_inverse=True)[1]]])  # equal in a class
            part, part_cores = core_fanout(proj, src, target_core, count, rows)
            assert np.array_equal(part_cores, cores) and part.dtype == np.int64
            assert np.array_equal(part.toarray(), dense[rows])
            tot = fanout(proj, src, count)
            assert np.array_equal(fanout(proj, src, count, rows), tot[rows])
            assert np.array_equal(tot, tot[first][np.unique(of, return_inverse=True)[1]])


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_conv_rows_equal_the_unrolled_count(nets, rng, geom):
    """The row-by-row count (hwmodels.kernels.conv_rows) of some source neurons against the unrolled synapses,
    for owners holding whole channels, channels split at chunk edges and scattered targets."""
    proj, src = _conv(rng, geom)
    dst = conv_output_shape(proj, src)
    wmat, inb = nets.unroll(proj, src, dst)
    rows = rng.permutation(int(np.prod(src)))[: max(1, int(np.prod(src)) // 3)]
    for target_core in _assignments(rng, int(np.prod(dst)), dst[1] * dst[2]):
        for count, paid in (("structural", inb), ("nonzero", wmat != 0)):
            f, cores = core_fanout(proj, src, target_core, count, rows)
            onehot = (target_core[:, None] == cores[None, :]).astype(int)
            assert np.array_equal(f.toarray(), (paid.T.astype(int) @ onehot)[rows])
            assert np.array_equal(fanout(proj, src, count, rows), paid.sum(axis=0)[rows])


def test_dense_classes_are_equal_mask_columns(rng):
    w = (rng.random((6, 40)) < 0.3).astype(np.float32)
    w[:, 20:] = w[:, :1]  # many equal columns
    proj = Projection("d", "a", "b", "dense", w, storage="sparse")
    of = source_classes(proj, (40,), np.arange(6) // 2)
    assert len(np.unique(of)) <= 21 and len(np.unique(of[20:])) == 1 and of[0] == of[20]
    for count in ("structural", "nonzero"):
        full = core_fanout(proj, (40,), np.arange(6) // 2, count)[0].toarray()
        assert np.array_equal(core_fanout(proj, (40,), np.arange(6) // 2, count, of[:5])[0].toarray(), full[of[:5]])


@pytest.mark.parametrize("multicast", [False, True])
def test_factorised_tables_give_the_plain_tables_actions(nets, rng, multicast):
    g = nets.mixed_graph(rng)
    chip = load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 2})
    m = map_network(g, chip)
    tr = nets.random_trace(g, rng, n_samples=3, n_timesteps=4, rate=0.2)
    tables = build_fanout(g, m, multicast)
    assert sum(len(c) for c in tables.class_first.values()) < sum(len(c) for c in tables.classes.values())
    plain = dataclasses.replace(tables, stack={k: tables.stack[k] for k in tables.stack}, classes=None,
                                class_stack=None, class_first=None)
    for name in tables.stack:
        st = tables.stack[name]
        assert st.shape[0] == g.populations[name].size
        assert (st != tables.class_stack[name][tables.classes[name]]).nnz == 0
        _assert_coarsest(tables, name)
    a, b = count_actions(g, tr, m, tables, range(3)), count_actions(g, tr, m, plain, range(3))
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        elif f.name == "routes" and x is not None:
            assert all(np.array_equal(p, q) for p, q in zip(x, y)) and len(x) == len(y)
        else:
            assert x == y, f.name


def _assert_coarsest(tables, name):
    """The classes of population `name` are the coarsest with equal stack rows and fan-out totals: equal within a
    class, told apart between any two classes; class_first is each class's first neuron."""
    cls, per_class, first = tables.factors(name)
    totals = np.stack([tables.structural[name], tables.nonzero[name]], axis=1)
    assert np.array_equal(totals, totals[first][cls])
    assert np.array_equal(first, [int(np.flatnonzero(cls == c)[0]) for c in range(per_class.shape[0])])
    dense = per_class.toarray()
    keys = {(dense[c].tobytes(), totals[first[c]].tobytes()) for c in range(len(dense))}
    assert len(keys) == len(dense)


def test_conv_input_channels_with_equal_rows_and_totals_share_a_class(rng):
    """A 1x1 convolution with whole output channels per core (structural counts, one per core for every input
    channel) and a weight column of zeros: every input channel at a position shares one class but the one whose
    nonzero total differs."""
    from hwmodels.trace import NetworkGraph, NeuronModel, Population
    w = rng.normal(size=(6, 4, 1, 1))
    w[:, 2] = 0.0  # input channel 2 has no non-zero synapse
    g = NetworkGraph([Population("a", (4, 3, 3), NeuronModel("input")), Population("b", (6, 3, 3), NeuronModel("LIF"))],
                     [Projection("p", "a", "b", "conv", w)])
    chip = load_preset("loihi", {"core.neurons_per_core": 18})  # two whole output channels per core
    tables = build_fanout(g, map_network(g, chip))
    cls, per_class, _ = tables.factors("a")
    assert per_class.shape[0] == 2 and len(np.unique(cls.reshape(4, 9)[[0, 1, 3]])) == 1
    assert set(cls.reshape(4, 9)[2]) == {1 - cls[0]}
    _assert_coarsest(tables, "a")


def test_axons_per_core_counts_every_source_neuron(nets, rng):
    from hwmodels.mapping.connectivity import PAID_COUNT, axons_per_core
    g = nets.mixed_graph(rng)
    for name in g.populations:
        if not g.in_projections(name):
            continue
        size = g.populations[name].size
        for cores in (np.arange(size) * 3 // size, rng.integers(0, 5, size)):
            want = np.zeros(6, np.int64)
            per_source = {}
            for proj in g.in_projections(name):
                f, cols = core_fanout(proj, g.populations[proj.source].shape, cores, PAID_COUNT[proj.storage])
                per_source[proj.source] = per_source.get(proj.source, 0) + f.toarray()
            for dense in per_source.values():
                want[cols] += (dense > 0).sum(axis=0)
            assert np.array_equal(axons_per_core(g, name, cores, 6), want)


def test_fanout_tables_built_on_threads_equal_the_one_thread_tables(nets, rng, monkeypatch):
    """build_fanout's populations on 3 threads (forced: FANOUT_NEURONS_PER_THREAD 1) give the same tables."""
    from hwmodels.events import actions
    from hwmodels.kernels import threads
    g = nets.mixed_graph(rng)
    chip = load_preset("loihi", {"core.neurons_per_core": 16, "cores_per_tile": 2})
    m = map_network(g, chip)
    one = build_fanout(g, m, False, chip.core)
    monkeypatch.setattr(actions, "FANOUT_NEURONS_PER_THREAD", 1)
    monkeypatch.setattr(threads, "count", lambda: 3)
    many = build_fanout(g, m, False, chip.core)
    assert list(many.class_stack) == list(one.class_stack) and len(one.class_stack) > 2
    for name in one.class_stack:
        assert (many.class_stack[name] != one.class_stack[name]).nnz == 0
        for table in ("classes", "class_first", "structural", "nonzero"):
            assert np.array_equal(getattr(many, table)[name], getattr(one, table)[name]), (name, table)


def test_fanout_tables_through_a_store_equal_the_tables_without(nets, rng):
    """build_fanout with a FanoutStore (as hwmodels.simulate passes one: one row per class in the store, rows
    taken from it) gives the tables it gives without one, on a mixed conv/dense graph and two assignments."""
    g = nets.mixed_graph(rng)
    for npc in (16, 7):
        chip = load_preset("loihi", {"core.neurons_per_core": npc, "cores_per_tile": 2})
        m = map_network(g, chip)
        plain, stored = build_fanout(g, m, False, chip.core), build_fanout(g, m, False, chip.core, {})
        assert list(stored.class_stack) == list(plain.class_stack)
        for name in plain.class_stack:
            a, b = plain.class_stack[name], stored.class_stack[name]
            assert a.shape == b.shape and (a != b).nnz == 0 and a.data.dtype == b.data.dtype
            for table in ("classes", "class_first", "structural", "nonzero"):
                assert np.array_equal(getattr(stored, table)[name], getattr(plain, table)[name]), (name, table)


def test_class_firsts_and_take_rows_equal_numpy_and_scipy(rng):
    from hwmodels.mapping.connectivity import class_firsts, take_rows
    dense = rng.permutation(np.repeat(np.arange(9), rng.integers(1, 5, 9)))
    gappy = np.array([5, 2, 5, 9, 2, 2, 9])  # classes 0, 1, 3.. absent (and a negative one below): np.unique
    for of in (dense, gappy, np.array([3, -2, 0, -2, 1, 2]), np.zeros(0, np.int64)):
        assert np.array_equal(class_firsts(of), np.unique(of, return_index=True)[1])
    f = sp.random(6, 5, density=0.5, format="csr", random_state=1)
    assert take_rows(f, np.arange(6)) is f
    for rows in (np.array([0, 1, 2, 3, 5, 4]), np.array([3, 3, 0]), np.arange(5)):
        assert (take_rows(f, rows) != f[rows]).nnz == 0 and take_rows(f, rows).shape == (len(rows), 5)
