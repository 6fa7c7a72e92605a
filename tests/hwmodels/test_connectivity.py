"""Fan-out / fan-in counts against brute-force unrolled weight matrices, and the VGG-11 fan-out-table budget."""
import time
import tracemalloc

import numpy as np
import pytest

from hwmodels.mapping.connectivity import conv_core_fanout, core_fanout, fan_in, fanout, range_counter
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection, conv_output_shape

GEOMETRIES = [  # (C_in, H, W), C_out, kernel, stride, padding, dilation, groups
    ((4, 7, 6), 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((3, 9, 8), 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((6, 8, 8), 6, (2, 2), (2, 2), (0, 0), (1, 1), 6),
    ((2, 5, 7), 4, (1, 3), (1, 2), (0, 2), (1, 1), 1),
]


def _random_conv(rng, geom, density=0.6):
    src, c_out, k, stride, pad, dil, groups = geom
    w = rng.normal(size=(c_out, src[0] // groups) + k) * (rng.random((c_out, src[0] // groups) + k) < density)
    return Projection("p", "a", "b", "conv", w, stride=stride, padding=pad, dilation=dil, groups=groups), src


def _paid(nets, proj, src, count):
    dst = conv_output_shape(proj, src) if proj.kind == "conv" else (proj.weight.shape[0],)
    wmat, inb = nets.unroll(proj, src, dst)
    return (wmat != 0) if count == "nonzero" else inb


@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("count", ["structural", "nonzero"])
def test_core_fanout_equals_unrolled_count_for_any_core_assignment(nets, rng, geom, count):
    proj, src = _random_conv(rng, geom)
    paid = _paid(nets, proj, src, count)
    n_t = paid.shape[0]
    contiguous = np.repeat(np.arange(5), -(-n_t // 5))[:n_t] * 7 + 3  # chunks with odd core ids
    scattered = rng.integers(0, 4, n_t)  # channels split between cores anywhere
    for target_core in (contiguous, scattered):
        f, cores = core_fanout(proj, src, target_core, count)
        onehot = target_core[:, None] == cores[None, :]
        assert f.dtype == np.int64 and np.array_equal(f.toarray(), paid.T.astype(int) @ onehot.astype(int))
    assert np.array_equal(fanout(proj, src, count), paid.sum(axis=0))
    assert np.array_equal(fan_in(proj, src, count), paid.sum(axis=1))


def test_conv_fanout_by_hand():
    # 1 x 3 x 3 input, 2 x 2 kernel, 2 output channels: channel 0 all ones, channel 1 only its top-left tap
    w = np.zeros((2, 1, 2, 2))
    w[0] = 1.0
    w[1, 0, 0, 0] = -0.5
    proj = Projection("p", "a", "b", "conv", w)
    # the corner (0, 0) is read by one tap of one output position, the centre by all four, the corner (2, 2) by
    # the bottom-right tap only (which channel 1 does not use)
    structural, nonzero = fanout(proj, (1, 3, 3), "structural"), fanout(proj, (1, 3, 3), "nonzero")
    assert structural.dtype == np.int64 and nonzero.dtype == np.int64
    assert (structural[0], structural[4], structural[8]) == (2, 8, 2)
    assert (nonzero[0], nonzero[4], nonzero[8]) == (2, 5, 1)
    assert np.array_equal(fanout(proj, (1, 3, 3), "nonzero", np.array([8, 0, 4])), [1, 2, 5])


def test_dense_fanout_counts_columns():
    w = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])  # (n_target, n_source)
    proj = Projection("p", "a", "b", "dense", w)
    assert np.array_equal(fanout(proj, (3,), "structural"), [2, 2, 2])
    assert np.array_equal(fanout(proj, (3,), "nonzero"), [1, 0, 2])
    assert np.array_equal(fanout(proj, (3,), "nonzero", np.array([2, 1])), [2, 0])


def test_conv_core_fanout_with_overlapping_groups(nets, rng):
    proj, src = _random_conv(rng, GEOMETRIES[0])
    paid = _paid(nets, proj, src, "nonzero")
    dst = conv_output_shape(proj, src)
    ind = (rng.random((3,) + dst) < 0.4).astype(float)  # a target may sit in several groups, or in none
    got = conv_core_fanout(proj, src, ind, "nonzero")
    assert got.shape == (paid.shape[1], 3)
    assert np.array_equal(got, paid.T.astype(float) @ ind.reshape(3, -1).T)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_range_counter_counts_synapses_into_a_target_range(nets, rng, kind):
    if kind == "conv":
        proj, src = _random_conv(rng, GEOMETRIES[1])
    else:
        src = (12,)
        proj = Projection("p", "a", "b", "dense", rng.normal(size=(9, 12)) * (rng.random((9, 12)) < 0.3))
    for count in ("structural", "nonzero"):
        paid = _paid(nets, proj, src, count)
        counter = range_counter(proj, src, count)
        for start, end in [(0, 1), (3, 17), (0, paid.shape[0]), (paid.shape[0] - 2, paid.shape[0])]:
            assert np.array_equal(counter(start, end), paid[start:end].sum(axis=0)), (count, start, end)


def vgg11_graph(rng: np.random.Generator) -> NetworkGraph:
    """VGG-11 on 3x32x32: 8 conv3x3 (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M) with 2x2 average
    pools as grouped stride-2 convs, then Linear(512, 10); 9.23 M weights, 70 % of them non-zero."""
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    pops = [Population("in", (3, 32, 32), NeuronModel(kind="input"))]
    projs, c, h = [], 3, 32
    for i, v in enumerate(cfg):
        name = f"l{i}"
        if v == "M":
            w, stride, groups, pad, c_out, h = np.full((c, 1, 2, 2), 0.25), (2, 2), c, (0, 0), c, h // 2
        else:
            w = rng.normal(size=(v, c, 3, 3)).astype(np.float32) * (rng.random((v, c, 3, 3)) < 0.7)
            stride, groups, pad, c_out = (1, 1), 1, (1, 1), v
        pops.append(Population(name, (c_out, h, h)))
        projs.append(Projection(name, pops[-2].name, name, "conv", w, stride=stride, padding=pad, groups=groups))
        c = c_out
    pops.append(Population("fc", (10,)))
    projs.append(Projection("fc", pops[-2].name, "fc", "dense", rng.normal(size=(10, 512)), storage="sparse"))
    return NetworkGraph(pops, projs)


def test_vgg11_fanout_tables_fit_time_and_memory_budget(rng):
    """All core fan-out tables (structural and non-zero) of VGG-11 at 32x32 mapped on 4 Loihi chips: < 10 s and
    peak traced memory < 100 bytes per stored weight (the old dense einsum needed > 1 GB for one layer)."""
    from hwmodels.mapping.map import map_network
    from hwmodels.chip.presets import load_preset
    graph = vgg11_graph(rng)
    n_weights = sum(p.weight.size for p in graph.projections)
    assert 9.0e6 < n_weights < 9.5e6
    chip = load_preset("loihi", {"n_chips": 4, "router.chip_link_energy_j": 1e-11, "router.chip_link_latency_s": 1e-8})
    mapping = map_network(graph, chip)
    assert 130 < mapping.cores_used < 400 and mapping.chips_used == 2
    tracemalloc.start()
    t0 = time.perf_counter()
    events = 0
    for proj in graph.projections:
        src = graph.populations[proj.source].shape
        for count in ("structural", "nonzero"):
            f, _ = core_fanout(proj, src, mapping.core_of_neuron[proj.target], count)
            events += int(f.sum())
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 10.0, elapsed
    assert peak / n_weights < 100, peak / n_weights
    assert events > 2 * n_weights  # the unrolled synapse count is far larger than the weight count


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (1, 1), (37, 5), (200, 64)])
def test_counts_csr_equals_scipys_csr_of_the_dense_counts(rng, shape):
    """connectivity.counts_csr (one compiled scan) against sp.csr_matrix of the same dense counts, rounded to
    int64: the same rows, columns, values and index dtype, zeros left out."""
    import scipy.sparse as sp

    from hwmodels.mapping.connectivity import counts_csr
    counts = rng.integers(0, 4, shape).astype(float) * (rng.random(shape) < 0.4)
    counts[: shape[0] // 3] = 0.0  # whole rows without a synapse
    got, want = counts_csr(counts), sp.csr_matrix(np.rint(counts), dtype=np.int64)
    assert got.dtype == np.int64 and got.shape == want.shape and got.nnz == want.nnz == np.count_nonzero(counts)
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.indices.dtype == want.indices.dtype
