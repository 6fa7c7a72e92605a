"""User-supplied mappings: checked against the graph and every core limit (one-line errors), per-core tables
recomputed from what the mapping holds, and mappings built from a per-neuron core assignment."""
import dataclasses

import numpy as np
import pytest

from hwmodels import load_preset, map_network, simulate
from hwmodels.mapping.check import check_mapping, mapping_from_assignment
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")


def _net():
    """in (8, input) -dense-> h (6) -conv-free dense, half zeros-> o (4)."""
    rng = np.random.default_rng(0)
    w2 = rng.normal(size=(4, 6)) * (rng.random((4, 6)) < 0.5)
    g = NetworkGraph([Population("in", (8,), INPUT), Population("h", (6,)), Population("o", (4,))],
                     [Projection("ih", "in", "h", "dense", rng.normal(size=(6, 8)), weight_bits=4),
                      Projection("ho", "h", "o", "dense", w2, storage="sparse")])
    tr = EventTrace.from_dense({n: rng.random((2, 3) + p.shape) < 0.4 for n, p in g.populations.items()})
    return g, tr


def test_recomputed_tables_equal_the_partitioners(rng, nets):
    """On the partitioner's own mappings (conv, pooling, sparse, dense; pow2 layout too) the check recomputes the
    same per-core neurons, synapse bits, state bits and axons."""
    g = nets.mixed_graph(rng)
    for over in ({"core.neurons_per_core": 16}, {"core.neurons_per_core": 50, "core.max_axons": 40}):
        chip = load_preset("loihi", over)
        m = map_network(g, chip)
        checked = check_mapping(g, m, chip)
        for name in ("core_neurons", "core_synapse_bits", "core_state_bits", "core_axons"):
            assert np.array_equal(getattr(checked, name), getattr(m, name)), name
    speck = load_preset("speck")
    m = map_network(g, speck)
    assert np.array_equal(check_mapping(g, m, speck).core_synapse_bits, m.core_synapse_bits)


def test_a_mapping_that_breaks_a_limit_is_refused_with_one_line():
    g, tr = _net()
    chip = load_preset("loihi")
    ok = mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.ones(6), "o": np.full(4, 2)},
                                 [[0, 0], [0, 0], [1, 0]])
    # h: 6 neurons x 8 inputs x 4 bits; o: sparse, non-zeros x (8 bits + ceil(log2 6) index bits) + a 20-bit
    # pointer (ceil(log2 of 128 KB in bits)) per neuron
    assert ok.core_synapse_bits.tolist() == [0, 6 * 8 * 4,
                                             int(np.count_nonzero(g.projections[1].weight)) * (8 + 3) + 4 * 20]
    cases = [({"core.neurons_per_core": 7}, "core 0 ('in') holds 8 neurons; chip 'loihi' allows 7"),
             ({"core.synapse_memory_bits": 100}, "core 1 ('h') holds 192 synapse-memory bits"),
             ({"core.max_axons": 7}, "core 1 ('h') holds 8 input axons; chip 'loihi' allows 7"),
             ({"core.max_fan_in": 7}, "population 'h' has a neuron with fan-in 8"),
             ({"core.neuron_memory_bits": 50}, "neuron-state bits"),
             ({"cores_per_tile": 1}, "a tile holds 2 cores; chip 'loihi' has 1 per tile")]
    for over, needle in cases:
        small = load_preset("loihi", over)
        with pytest.raises(ValueError) as err:
            simulate(g, tr, small, mapping=ok)
        assert needle in str(err.value) and "\n" not in str(err.value), over


def test_malformed_assignments_are_refused():
    g, _ = _net()
    chip = load_preset("loihi")
    with pytest.raises(ValueError, match="core 0 holds neurons of 'in' and 'h'; a core holds one population"):
        mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.zeros(6), "o": np.ones(4)}, [[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="population 'o' \\(4 neurons\\) is not mapped as in the graph"):
        mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.ones(6)}, [[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="tile lies outside the 8 x 4 mesh"):
        mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.ones(6), "o": np.full(4, 2)},
                                [[0, 0], [0, 0], [9, 0]])
    with pytest.raises(ValueError, match="core 2 holds no neuron"):
        mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.ones(6), "o": np.full(4, 3)},
                                [[0, 0], [0, 0], [1, 0], [1, 0]])


def test_recorded_numbers_are_replaced_by_what_the_mapping_holds():
    """A mapping that records wrong per-core numbers simulates with the recomputed ones: the same result as the
    correct mapping (here lemaire-45nm, whose memory energy depends on the bits a core holds)."""
    g, tr = _net()
    chip = load_preset("lemaire-45nm")
    m = map_network(g, chip)
    wrong = dataclasses.replace(m, core_synapse_bits=np.zeros(m.cores_used, np.int64))
    assert simulate(g, tr, chip, mapping=wrong).energy_j == simulate(g, tr, chip, mapping=m).energy_j


def test_a_mapping_made_for_another_chip_is_refused_naming_the_field():
    """map_network partitions for one chip: using its mapping on a chip with other mapping-relevant fields is
    refused (naming the first field that differs); other energies are fine, and a mapping made elsewhere and only
    checked is checked again on the new chip."""
    g, tr = _net()
    chip = load_preset("loihi")
    made = map_network(g, load_preset("loihi", {"core.neurons_per_core": 4}))
    with pytest.raises(ValueError) as err:
        simulate(g, tr, chip, mapping=made)
    assert str(err.value) == ("mapping: made for chip 'loihi' with core.neurons_per_core=4, not for chip 'loihi' with "
                              "core.neurons_per_core=1024; map the graph again with map_network(graph, chip)")
    both = map_network(g, load_preset("loihi", {"mesh_width": 9, "mesh_height": 5}))
    with pytest.raises(ValueError, match=r"with mesh_height=5, not for chip 'loihi' with mesh_height=4 "
                                         r"\(also differs: mesh_width\); map the graph again"):
        simulate(g, tr, chip, mapping=both)
    cheaper = load_preset("loihi", {"core.synop_energy_j.dense": 1e-12})
    assert simulate(g, tr, cheaper, mapping=map_network(g, chip)).energy_j > 0
    checked = mapping_from_assignment(g, chip, {"in": np.zeros(8), "h": np.ones(6), "o": np.full(4, 2)},
                                      [[0, 0], [0, 0], [1, 0]])
    assert simulate(g, tr, load_preset("loihi", {"core.neurons_per_core": 8}), mapping=checked).energy_j > 0
