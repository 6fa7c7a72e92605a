"""Mapping: neuron- and memory-limited chunking per storage format (hand-computed), placement, MappingError."""
import time

import numpy as np
import pytest

from hwmodels import FormatCosts, Mapping, MappingError, load_preset, map_network
from hwmodels.mapping.connectivity import PAID_COUNT
from hwmodels.mapping.map import fan_in
from hwmodels.mapping.storage import FORMATS
from hwmodels.trace import STORAGE_FORMATS, NetworkGraph, Population, Projection


def _two_pops(inp, src_shape, dst_shape, proj):
    return NetworkGraph([Population("in", src_shape, inp), Population(proj.target, dst_shape)], [proj])


def test_neuron_limit_chunks_and_in_order_placement(nets):
    g = NetworkGraph([Population("in", (2500,), nets.INPUT), Population("out", (3,))],
                     [Projection("fc", "in", "out", "dense", np.ones((3, 2500)), weight_bits=1)])
    m = map_network(g, load_preset("loihi"))
    assert m.core_population == ("in", "in", "in", "out")
    assert m.core_neurons.tolist() == [1024, 1024, 452, 3]
    assert m.core_of_neuron["in"][[0, 1023, 1024, 2047, 2048, 2499]].tolist() == [0, 0, 1, 1, 2, 2]
    assert m.core_synapse_bits.tolist() == [0, 0, 0, 3 * 2500]  # dense: fan-in x weight bits per neuron
    assert m.tile_xy.tolist() == [[0, 0]] * 4 and m.tiles_used == 1 and m.placement == "in_order"


def test_mapping_round_trips(nets, rng, tmp_path):
    m = map_network(nets.mixed_graph(rng), load_preset("loihi", {"core.neurons_per_core": 16}), "snake")
    m.save(tmp_path / "m.npz")
    back = Mapping.load(tmp_path / "m.npz")
    assert (back.placement, back.chip_name, back.core_population) == (m.placement, m.chip_name, m.core_population)
    for name in ("core_neurons", "core_synapse_bits", "tile_xy"):
        assert np.array_equal(getattr(back, name), getattr(m, name))
    assert list(back.core_of_neuron) == list(m.core_of_neuron)
    assert all(np.array_equal(back.core_of_neuron[k], v) for k, v in m.core_of_neuron.items())


def test_every_storage_format_has_a_memory_rule():
    assert set(FORMATS) == set(STORAGE_FORMATS) == set(FormatCosts.model_fields) == set(PAID_COUNT)
    assert all(FORMATS[f].paid_count == PAID_COUNT[f] for f in FORMATS)


def test_placement_in_order_and_snake(nets):
    chip = load_preset("loihi", {"core.neurons_per_core": 1, "cores_per_tile": 2, "mesh_width": 3})
    g = NetworkGraph([Population("in", (14,), nets.INPUT)], [])
    xy = map_network(g, chip).tile_xy.tolist()
    assert xy[:8] == [[0, 0], [0, 0], [1, 0], [1, 0], [2, 0], [2, 0], [0, 1], [0, 1]]
    assert xy[12:] == [[0, 2], [0, 2]]
    snake = map_network(g, chip, "snake").tile_xy.tolist()
    assert snake[4:10] == [[2, 0], [2, 0], [2, 1], [2, 1], [1, 1], [1, 1]] and snake[12] == [0, 2]
    with pytest.raises(ValueError, match="placement: 'random' is not one of in_order, snake"):
        map_network(g, chip, "random")


def test_dense_memory_is_fan_in_times_bits_and_limits_chunks(nets):
    proj = Projection("fc", "in", "fc_out", "dense", np.zeros((10, 300)), weight_bits=8)  # zeros still stored
    chip = load_preset("loihi", {"core.synapse_memory_bits": 10_000})
    m = map_network(_two_pops(nets.INPUT, (300,), (10,), proj), chip)
    assert m.core_neurons.tolist() == [300, 4, 4, 2]  # 4 x 300 x 8 = 9,600 <= 10,000 < 12,000
    assert m.core_synapse_bits.tolist() == [0, 9600, 9600, 4800]


def test_sparse_memory_counts_nonzeros_index_and_pointer(nets):
    w = np.zeros((3, 16))
    w[0, :3] = 1.0
    w[2, 5:10] = -2.0
    proj = Projection("fc", "in", "out", "dense", w, weight_bits=8, storage="sparse")
    m = map_network(_two_pops(nets.INPUT, (16,), (3,), proj), load_preset("loihi"))
    # index bits = log2(16) = 4, pointer bits = log2(1,048,576) = 20
    assert m.core_synapse_bits[1] == (3 * (8 + 4) + 20) + (0 + 20) + (5 * (8 + 4) + 20)


def test_conv_kernel_slice_stored_once_per_core(nets):
    # 8 output channels of 5x5 = 25 neurons each; 64 neurons per core; slice = C_in 3 x 3 x 3 x 4 bits = 108
    proj = Projection("conv", "in", "c", "conv", np.ones((8, 3, 3, 3)), padding=(1, 1), weight_bits=4)
    g = _two_pops(nets.INPUT, (3, 5, 5), (8, 5, 5), proj)
    m = map_network(g, load_preset("loihi", {"core.neurons_per_core": 64}))
    assert m.core_neurons.tolist() == [64, 11, 64, 64, 64, 8]
    # cores hold channels 0-2, 2-5, 5-7, 7 -> 3, 4, 3, 1 kernel slices
    assert m.core_synapse_bits.tolist()[2:] == [324, 432, 324, 108]
    m = map_network(g, load_preset("loihi", {"core.synapse_memory_bits": 250}))  # 2 slices fit, not 3
    assert m.core_neurons.tolist() == [75, 50, 50, 50, 50] and m.core_synapse_bits[1:].tolist() == [216] * 4


def test_conv_fan_in_matches_brute_force_unrolling(nets, rng):
    w = rng.normal(size=(6, 2, 3, 2)) * (rng.random((6, 2, 3, 2)) < 0.5)
    proj = Projection("c", "in", "out", "conv", w, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    wmat, inb = nets.unroll(proj, (4, 7, 6), (6, 4, 4))
    assert fan_in(proj, (4, 7, 6), "structural").tolist() == inb.sum(axis=1).tolist()
    assert fan_in(proj, (4, 7, 6), "nonzero").tolist() == (wmat != 0).sum(axis=1).tolist()


def test_neuron_that_does_not_fit_memory_raises(nets):
    proj = Projection("fc", "in", "fc", "dense", np.ones((10, 1000)), weight_bits=32)
    chip = load_preset("loihi", {"core.synapse_memory_bits": 16384})
    with pytest.raises(MappingError, match="population 'fc' neuron needs 32,000 bits of synapse memory but a "
                                           "core has 16,384"):
        map_network(_two_pops(nets.INPUT, (1000,), (10,), proj), chip)


def test_running_out_of_cores_names_population_and_shortfall(nets):
    chip = load_preset("loihi", {"mesh_width": 2, "mesh_height": 1, "cores_per_tile": 2})  # 4 cores
    proj = Projection("fc", "in", "lif2", "dense", np.ones((3500, 1000)), weight_bits=1)
    with pytest.raises(MappingError, match="population 'lif2' needs 4 cores but only 3 of 4 are left") as err:
        map_network(_two_pops(nets.INPUT, (1000,), (3500,), proj), chip)
    assert isinstance(err.value, ValueError)


def test_max_fan_in(nets):
    proj = Projection("fc", "in", "out", "dense", np.ones((4, 100)))
    with pytest.raises(MappingError, match="population 'out' neuron has fan-in 100 but a core accepts at most 64"):
        map_network(_two_pops(nets.INPUT, (100,), (4,), proj), load_preset("loihi", {"core.max_fan_in": 64}))


def test_maps_a_100k_neuron_network_fast(nets, rng):
    pops = [Population("in", (3, 64, 64), nets.INPUT), Population("c1", (16, 64, 64)), Population("c2", (8, 64, 64))]
    projs = [Projection("a", "in", "c1", "conv", rng.normal(size=(16, 3, 3, 3)), padding=(1, 1)),
             Projection("b", "c1", "c2", "conv", rng.normal(size=(8, 16, 3, 3)), padding=(1, 1))]
    g = NetworkGraph(pops, projs)
    t0 = time.perf_counter()
    m = map_network(g, load_preset("loihi"))
    assert time.perf_counter() - t0 < 1.0
    assert g.n_neurons == 110_592 and m.cores_used == 12 + 64 + 32


def _band(n_target, n_source, width):
    """Target j connects to sources j .. j + width - 1 (weights 1), zeros elsewhere."""
    w = np.zeros((n_target, n_source))
    for j in range(n_target):
        w[j, j:j + width] = 1.0
    return w


def test_axon_limit_chunks_by_distinct_source_neurons(nets):
    """Band of width 4: targets [s, e) read sources s .. e + 2, i.e. e - s + 3 axons; max 8 -> 5 targets a core."""
    proj = Projection("fc", "in", "out", "dense", _band(16, 20, 4), storage="sparse")
    g = _two_pops(nets.INPUT, (20,), (16,), proj)
    m = map_network(g, load_preset("loihi", {"core.max_axons": 8}))
    assert m.core_neurons.tolist() == [20, 5, 5, 5, 1] and m.core_axons.tolist() == [0, 8, 8, 8, 4]
    dense = Projection("fc", "in", "out", "dense", _band(16, 20, 4))  # dense storage keeps every column
    with pytest.raises(MappingError, match="population 'out' neuron has 20 input axons but a core accepts at most 8"):
        map_network(_two_pops(nets.INPUT, (20,), (16,), dense), load_preset("loihi", {"core.max_axons": 8}))


def test_conv_axon_chunks_are_greedy_and_maximal(nets):
    """3x3 conv (pad 1) on one 6x6 channel, at most 12 input axons a core. By hand: row 0 of the output reads
    input rows 0-1 (12 axons); (1,0)-(1,2) read rows 0-2, cols 0-3 (12); (1,3)-(1,5) rows 0-2, cols 2-5 (12).
    Every chunk is checked against the unrolled matrix: within the limit, and one more target would break it."""
    proj = Projection("c", "in", "out", "conv", np.ones((1, 1, 3, 3)), padding=(1, 1))
    g = _two_pops(nets.INPUT, (1, 6, 6), (1, 6, 6), proj)
    m = map_network(g, load_preset("loihi", {"core.max_axons": 12}))
    sizes = m.core_neurons.tolist()[1:]
    assert sizes[:3] == [6, 3, 3] and sum(sizes) == 36
    _, inb = nets.unroll(proj, (1, 6, 6), (1, 6, 6))
    start = 0
    for size, axons in zip(sizes, m.core_axons.tolist()[1:]):
        assert axons == inb[start:start + size].any(axis=0).sum() <= 12
        if start + size < 36:
            assert inb[start:start + size + 1].any(axis=0).sum() > 12
        start += size


def test_new_limits_round_trip_and_appear_in_the_table(nets, tmp_path):
    proj = Projection("fc", "in", "out", "dense", _band(16, 20, 4), storage="sparse")
    m = map_network(_two_pops(nets.INPUT, (20,), (16,), proj), load_preset("loihi", {"core.max_axons": 8}))
    m.save(tmp_path / "m.npz")
    back = Mapping.load(tmp_path / "m.npz")
    for name in ("core_axons", "core_state_bits", "chip_xy"):
        assert np.array_equal(getattr(back, name), getattr(m, name))
    t = m.table()
    assert t["axons"].tolist() == [0, 8, 8, 8, 4] and t["chip"].tolist() == [0] * 5
    assert t["state_bits"].tolist() == [0, 80, 80, 80, 16]  # 16-bit states, reported (loihi does not limit them)


def test_a_preset_name_or_a_wrong_object_is_named_not_an_attribute_error(nets):
    # map_network(graph, "loihi") used to fail deep in the partition with "'str' object has no attribute ..."
    g = NetworkGraph([Population("in", (3,), nets.INPUT), Population("out", (2,))],
                     [Projection("fc", "in", "out", "dense", np.ones((2, 3)))])
    with pytest.raises(TypeError, match=r"chip: got str 'loihi', expected a hwmodels.ChipSpec"):
        map_network(g, "loihi")
    with pytest.raises(TypeError, match=r"graph: got NoneType, expected a hwmodels.NetworkGraph"):
        map_network(None, load_preset("loihi"))
    assert map_network(g, load_preset("loihi")).cores_used == 2
