"""Heterogeneous chips (ChipSpec.core_types): validation, the type a population is mapped to, typed placement,
checked mappings and per-type memory and static power; the Speck preset's nine cores (sinabs get_constraints)."""
from __future__ import annotations

import numpy as np
import pytest

from hwmodels.energy.costs import static_power_w
from hwmodels.mapping.map import Mapping, MappingError, map_network
from hwmodels.mapping.check import check_mapping, mapping_from_assignment
from hwmodels.chip.presets import apply_overrides, load_preset, preset_leaves
from hwmodels.chip.signatures import mapping_signature
from hwmodels.chip.spec import ChipSpec
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")


def _chip(types, **over) -> ChipSpec:
    """A 2 x 2 one-core-per-tile chip from the loihi preset with `types` (list of dicts) as core_types."""
    base = load_preset("loihi", {"mesh_width": 2, "mesh_height": 2, "cores_per_tile": 1, **over})
    return ChipSpec(**{**base.model_dump(), "core_types": types})


def _fc(n_in: int, n_out: int, name: str = "fc", src: str = "in", dst: str = "out") -> Projection:
    return Projection(name, src, dst, "dense", np.ones((n_out, n_in)), weight_bits=8)


def test_homogeneous_chips_dump_and_sign_as_before():
    """core_types is left out of model_dump when unset, so presets, signatures and overrides are unchanged."""
    for name in ("loihi", "truenorth", "generic-45nm"):
        chip = load_preset(name)
        assert chip.core_types is None and "core_types" not in chip.model_dump()
        assert chip.core_specs == (chip.core,) and chip.core_type_counts == (chip.n_cores,)
        assert "core_types" not in dict(mapping_signature(chip))
        assert apply_overrides(chip, {"mesh_width": chip.mesh_width}) == chip


@pytest.mark.parametrize("types, message", [
    ([{"count": 3}], "ChipSpec.core_types: counts add up to 3 cores but the chip has 4 (mesh_width x mesh_height "
                     "x cores_per_tile)"),
    ([], "ChipSpec.core_types: give at least one core type, or leave core_types out"),
    ([{"count": 0}, {"count": 4}], "ChipSpec.core_types.0.count: Input should be greater than 0 (got 0)"),
    ([{"count": 4, "neurons": 5}], "ChipSpec.core_types.0.neurons: unknown field; accepted: name, count, "
                                   "neurons_per_core, synapse_memory_bits, neuron_memory_bits, max_fan_in, max_axons"),
])
def test_core_types_are_validated_in_one_line(types, message):
    with pytest.raises(ValueError) as err:
        _chip(types)
    assert str(err.value) == message


def test_types_override_only_their_limits_and_lie_over_the_slots_in_order():
    chip = _chip([{"name": "small", "count": 3, "synapse_memory_bits": 64}, {"count": 1, "neurons_per_core": 8}])
    small, big = chip.core_specs
    assert (small.synapse_memory_bits, small.neurons_per_core) == (64, chip.core.neurons_per_core)
    assert (big.synapse_memory_bits, big.neurons_per_core) == (chip.core.synapse_memory_bits, 8)
    assert small.synop_energy_j == chip.core.synop_energy_j and chip.core_type_names == ("small", "type 1")
    assert chip.slot_types().tolist() == [0, 0, 0, 1]


def test_a_population_goes_to_a_type_it_fits_and_is_placed_on_its_slots():
    """in: 4 neurons; out: 10 x 4 dense at 8 bits = 320 bits: only the big core (slot 3) holds it, in one core."""
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (10,))], [_fc(4, 10)])
    chip = _chip([{"name": "small", "count": 3, "synapse_memory_bits": 64}, {"name": "big", "count": 1}])
    for placement in ("in_order", "snake"):
        m = map_network(g, chip, placement)
        assert m.core_population == ("in", "out") and m.core_type.tolist() == [0, 1]
        assert m.core_synapse_bits.tolist() == [0, 320] and m.tile_xy[1].tolist() == [1, 1]  # slot 3
    traffic = np.array([[0.0, 5.0], [0.0, 0.0]])
    m = map_network(g, chip, "comm_aware", traffic=traffic)
    assert m.core_type.tolist() == [0, 1] and m.tile_xy[1].tolist() == [1, 1]
    assert np.abs(m.tile_xy[0] - m.tile_xy[1]).sum() == 1  # the input core moved next to it


def test_a_population_that_fits_no_type_names_itself_and_the_largest_type():
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (10,))], [_fc(4, 10)])
    chip = _chip([{"name": "tiny", "count": 2, "synapse_memory_bits": 16},
                  {"name": "bigger", "count": 2, "synapse_memory_bits": 31}], max_cores_per_population=1)
    with pytest.raises(MappingError) as err:
        map_network(g, chip)
    assert str(err.value) == ("network does not fit chip 'loihi': population 'out' fits no core type; on the "
                              "largest, 'bigger' (1,024 neurons, 31 synapse-memory bits): population 'out' neuron "
                              "needs 32 bits of synapse memory but a core has 31")


def test_the_type_search_backtracks_where_the_first_choice_fails():
    """a (fan-in 2, 16 bits a neuron) fits one big core or two small ones (32 bits) and prefers the big one
    (fewest cores); b (fan-in 5, 40 bits a neuron) fits only the big core: the search gives a the small ones."""
    pops = [Population("in", (2,), INPUT), Population("in5", (5,), INPUT), Population("a", (4,)), Population("b", (4,))]
    projs = [_fc(2, 4, "pa", "in", "a"), _fc(5, 4, "pb", "in5", "b")]
    chip = _chip([{"name": "small", "count": 5, "synapse_memory_bits": 32}, {"name": "big", "count": 1}],
                 mesh_width=3)
    m = map_network(NetworkGraph(pops, projs), chip)
    assert m.core_population == ("in", "in5", "a", "a", "b") and m.core_type.tolist() == [0, 0, 0, 0, 1]
    with pytest.raises(MappingError) as err:
        map_network(NetworkGraph(pops + [Population("c", (4,))], projs + [_fc(5, 4, "pc", "in5", "c")]), chip)
    assert str(err.value) == ("network does not fit chip 'loihi' x 1: population 'c' needs cores of a type it fits "
                              "(1 x 'big') but the populations before it leave too few (the chip has 5 x 'small', "
                              "1 x 'big')")


def test_checked_mappings_use_each_cores_own_type():
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (10,))], [_fc(4, 10)])
    chip = _chip([{"name": "small", "count": 3, "synapse_memory_bits": 64}, {"name": "big", "count": 1}])
    core_of = {"in": np.zeros(4, np.int64), "out": np.ones(10, np.int64)}
    ok = mapping_from_assignment(g, chip, core_of, np.array([[0, 0], [1, 1]]))
    assert ok.core_type.tolist() == [0, 1] and ok.core_synapse_bits.tolist() == [0, 320]
    with pytest.raises(ValueError, match="mapping: core 1 \\('out'\\) holds 320 synapse-memory bits; chip 'loihi' "
                                         "allows 64 on core type 'small'"):
        mapping_from_assignment(g, chip, core_of, np.array([[0, 0], [1, 0]]))


def test_a_typed_mapping_round_trips(tmp_path):
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (10,))], [_fc(4, 10)])
    chip = _chip([{"name": "small", "count": 3, "synapse_memory_bits": 64}, {"name": "big", "count": 1}])
    m = map_network(g, chip)
    m.save(tmp_path / "m.npz")
    back = Mapping.load(tmp_path / "m.npz")
    assert back.core_type.tolist() == [0, 1] and check_mapping(g, back, chip).core_type.tolist() == [0, 1]


def test_static_power_counts_each_types_sram():
    """power_gating none: every slot leaks its own type's SRAM; cores: only the used cores."""
    chip = _chip([{"count": 3, "synapse_memory_bits": 100}, {"count": 1, "synapse_memory_bits": 1000}],
                 **{"core.static_power_w": 1.0, "core.sram_static_w_per_bit": 1e-3, "core.neuron_memory_bits": 1000,
                    "power_gating": "none"})
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (10,))], [_fc(4, 10)])
    m = map_network(g, chip)
    assert static_power_w(chip, m) == pytest.approx(4 * 1.0 + 1e-3 * (3 * 1100 + 2000))
    gated = apply_overrides(chip, {"power_gating": "cores"})
    assert m.core_type.tolist() == [0, 1]
    assert static_power_w(gated, m) == pytest.approx(2 * 1.0 + 1e-3 * (1100 + 2000))


def test_speck_has_the_nine_sinabs_cores():
    """sinabs DynapcnnConfigBuilder.get_constraints: kernel 16/16/16/32/32/64/64/16/16 Ki entries (8 bits),
    neuron 64/64/64/32/32/16/16/16/16 Ki entries (16 bits)."""
    chip = load_preset("speck")
    per_core = [chip.core_specs[t] for t in chip.slot_types()]
    assert [c.synapse_memory_bits // 8 // 1024 for c in per_core] == [16, 16, 16, 32, 32, 64, 64, 16, 16]
    assert [c.neuron_memory_bits // 16 // 1024 for c in per_core] == [64, 64, 64, 32, 32, 16, 16, 16, 16]
    assert [c.neurons_per_core // 1024 for c in per_core] == [64, 64, 64, 32, 32, 16, 16, 16, 16]
    assert {leaf["key"] for leaf in preset_leaves("speck")} >= {"core_types[2].synapse_memory_bits"}


def test_speck_maps_a_linear_layer_of_32ki_entries_onto_a_big_core():
    """Flatten(8 x 16 x 16) -> Linear(16): kernel memory 8 x 2^(8 + 4) = 32,768 entries (sinabs treats the
    linear layer as a 16 x 16 conv), more than cores 0-2 and 7-8 hold: it goes to a 32 or 64 Ki core (3-6)."""
    g = NetworkGraph([Population("in", (2, 16, 16), INPUT), Population("c1", (8, 16, 16)), Population("fc", (16,))],
                     [Projection("conv", "in", "c1", "conv", np.ones((8, 2, 3, 3)), padding=(1, 1)),
                      Projection("lin", "c1", "fc", "dense", np.ones((16, 8 * 16 * 16)))])
    m = map_network(g, load_preset("speck"))
    assert m.core_population == ("in", "c1", "fc")
    assert m.core_synapse_bits.tolist() == [0, 2 * 16 * 8 * 8, 32768 * 8]
    assert m.core_state_bits.tolist() == [0, 8 * 16 * 16 * 16, 16 * 16]
    assert m.core_type.tolist()[2] in (1, 2) and 3 <= m.tile_xy[2, 1] * 3 + m.tile_xy[2, 0] <= 6


def test_a_core_limit_every_type_sets_is_refused_as_an_override_and_one_some_leave_open_applies():
    with pytest.raises(ValueError, match="override key 'core.neurons_per_core': every core type of chip 'speck' "
                                         "sets its own neurons_per_core"):
        load_preset("speck", {"core.neurons_per_core": 1})
    chip = load_preset("speck", {"core.max_fan_in": 100})  # speck's types leave max_fan_in to the core
    assert {c.max_fan_in for c in chip.core_specs} == {100}
