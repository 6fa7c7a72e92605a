"""Mapping fixes with hand-computed expectations: pow2 synapse memory of a population fed by a conv and a dense
projection (the partitioner counts what check_mapping counts), chips filled in order on a chip with core types,
and the bias-memory limit named when it is why a population needs too many cores."""
from __future__ import annotations

import numpy as np
import pytest

from hwmodels.chip.presets import load_preset
from hwmodels.chip.spec import ChipSpec
from hwmodels.mapping.check import check_mapping, core_tables
from hwmodels.mapping.map import Mapping, MappingError, map_network
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")
LINKS = {"router.chip_link_energy_j": 1e-11, "router.chip_link_latency_s": 1e-8}


def _conv_and_dense(rng: np.random.Generator) -> NetworkGraph:
    """in (2, 8, 8) -> c1 (4, 8, 8) through a 3 x 3 conv and a dense 256 x 128 projection."""
    return NetworkGraph([Population("in", (2, 8, 8), INPUT), Population("c1", (4, 8, 8))],
                        [Projection("p1", "in", "c1", "conv", rng.normal(size=(4, 2, 3, 3)), padding=(1, 1)),
                         Projection("p2", "in", "c1", "dense", rng.normal(size=(256, 128)))])


def _conv_chain(rng: np.random.Generator, layers: int) -> NetworkGraph:
    """in (2, 8, 8) -> l0 -> ... each (4, 8, 8) through 3 x 3 convs."""
    pops, projs, prev = [Population("in", (2, 8, 8), INPUT)], [], "in"
    for i in range(layers):
        pops.append(Population(f"l{i}", (4, 8, 8)))
        weight = rng.normal(size=(4, pops[-2].shape[0], 3, 3))
        projs.append(Projection(f"p{i}", prev, f"l{i}", "conv", weight, padding=(1, 1)))
        prev = f"l{i}"
    return NetworkGraph(pops, projs)


def test_pow2_conv_plus_dense_population_counts_each_projection_on_speck(rng, tmp_path):
    """conv: 2 in-channels x 2^ceil(log2 9) taps x 4 channels x 8 bits = 1,024; dense as a linear layer: 2 x 64
    taps x 256 target neurons x 8 bits = 262,144; 263,168 bits only 'cores 5-6' (524,288) holds."""
    g, speck = _conv_and_dense(rng), load_preset("speck")
    m = map_network(g, speck)
    assert m.core_synapse_bits.tolist() == [0, 1024 + 262144]
    assert speck.core_type_names[m.core_type[1]] == "cores 5-6"
    m.save(tmp_path / "m.npz")
    checked = check_mapping(g, Mapping.load(tmp_path / "m.npz"), speck)
    assert checked.core_synapse_bits.tolist() == [0, 263168]


def test_pow2_conv_plus_dense_chunks_match_check_at_every_boundary(rng):
    """40-neuron chunks of c1 (64 neurons per channel): per chunk 256 bits per conv channel touched + 1,024 bits
    x 2^ceil(log2 neurons) for the dense projection; the partitioner's tables equal core_tables'."""
    chip = load_preset("generic-45nm", {"core.memory_layout": "pow2", "core.neurons_per_core": 40})
    g = _conv_and_dense(rng)
    m = map_network(g, chip)
    c1 = [k for k, p in enumerate(m.core_population) if p == "c1"]
    expect = [256 * 1 + 65536, 256 * 2 + 65536, 256 * 1 + 65536, 256 * 2 + 65536, 256 * 2 + 65536,
              256 * 1 + 65536, 256 * 1 + 16 * 1024]
    assert m.core_synapse_bits[c1].tolist() == expect
    tables = core_tables(g, chip, m.core_of_neuron, m.cores_used)
    assert tables["synapse_bits"].tolist() == m.core_synapse_bits.tolist()


def test_a_network_that_fits_one_speck_stays_on_chip_0_of_two(rng):
    """Four conv layers take four of Speck's nine cores: with two chips they stay on chip 0, on the same types."""
    g = _conv_chain(rng, 4)
    one = map_network(g, load_preset("speck"))
    two = map_network(g, load_preset("speck", {"n_chips": 2, **LINKS}))
    assert one.chip_of_core.tolist() == two.chip_of_core.tolist() == [0, 0, 0, 0, 0]
    assert two.core_type.tolist() == one.core_type.tolist()
    assert two.chips_used == 1


def test_one_chip_is_preferred_to_fewer_cores_on_two():
    """A 3 x 2 chip of five 32-bit 'small' cores and one 'big' core; a and a2 (4 neurons, 2 x 8-bit fan-in: 16
    bits a neuron) each fit one big core or two small ones. On two chips a takes chip 0's big core and a2 two of
    its small cores (one chip holds the network), not chip 1's big core."""
    base = load_preset("loihi", {"mesh_width": 3, "mesh_height": 2, "cores_per_tile": 1, "n_chips": 2, **LINKS})
    types = [{"name": "small", "count": 5, "synapse_memory_bits": 32}, {"name": "big", "count": 1}]
    chip = ChipSpec(**{**base.model_dump(), "core_types": types})
    fc = [Projection(f"p{t}", "in", t, "dense", np.ones((4, 2)), weight_bits=8) for t in ("a", "a2")]
    m = map_network(NetworkGraph([Population("in", (2,), INPUT), Population("a", (4,)), Population("a2", (4,))],
                                 fc), chip)
    assert m.core_population == ("in", "a", "a2", "a2")
    assert m.core_type.tolist() == [0, 1, 0, 0] and m.chip_of_core.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("placement", ["in_order", "snake"])
def test_eleven_layers_fill_speck_chip_0_before_chip_1(rng, placement):
    """Eleven one-core layers on two nine-core Speck chips: nine on chip 0, two spill to chip 1 (the input port
    is on chip 0)."""
    g = _conv_chain(rng, 11)
    m = map_network(g, load_preset("speck", {"n_chips": 2, **LINKS}), placement=placement)
    assert m.chip_of_core.tolist() == [0] * 10 + [1, 1]


def test_bias_memory_named_when_it_needs_more_cores_than_allowed(rng):
    """1,100 output channels with a bias on one core of at most 1,024 bias entries."""
    g = NetworkGraph([Population("in", (2, 2, 2), INPUT), Population("c1", (1100, 2, 2))],
                     [Projection("p1", "in", "c1", "conv", rng.normal(size=(1100, 2, 1, 1)), bias=np.ones(4400))])
    with pytest.raises(MappingError, match=r"population 'c1' needs 1,100 bias entries per core but a core holds "
                                           r"1,024$"):
        map_network(g, load_preset("speck"))
    chip = load_preset("generic-45nm", {"max_cores_per_population": 2, "core.max_bias_entries": 500})
    with pytest.raises(MappingError, match=r"population 'c1' needs 550 bias entries per core \(its 1,100 on at "
                                           r"most 2 cores\) but a core holds 500$"):
        map_network(g, chip)
