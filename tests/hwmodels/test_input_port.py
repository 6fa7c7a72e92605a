"""ChipSpec.input_location "port": the input population takes no core (Speck's DVS / host input, sinabs), its
events enter the mesh at tile (0, 0) of chip 0, and it leaks no static power; "core" (default) keeps the input on
a core as before. Hand-computed cores, hops and static power on a three-layer chain."""
import dataclasses

import numpy as np
import pytest

from hwmodels import MappingError, map_network, simulate
from hwmodels.mapping.map import Mapping
from hwmodels.mapping.check import check_mapping
from hwmodels.chip.presets import load_preset
from hwmodels.trace import EventTrace, NetworkGraph, Population, Projection
from tests.hwmodels.conftest import INPUT

#: two tiles in a row, one core each, static power 1 mW a core and nothing else
TWO_CORES = {"mesh_width": 2, "mesh_height": 1, "cores_per_tile": 1, "core.static_power_w": 1e-3,
             "core.sram_static_w_per_bit": 0.0, "static_power_chip_w": 0.0}


def _chain() -> NetworkGraph:
    """in (6) -dense-> a (4) -dense-> b (3), all weights 1."""
    pops = [Population("in", (6,), INPUT), Population("a", (4,)), Population("b", (3,))]
    projs = [Projection("p0", "in", "a", "dense", np.ones((4, 6))), Projection("p1", "a", "b", "dense", np.ones((3, 4)))]
    return NetworkGraph(pops, projs)


def _trace(graph: NetworkGraph) -> EventTrace:
    """One sample, two timesteps: 5 input spikes, 3 spikes of a, 1 of b."""
    spikes = {n: np.zeros((1, 2) + p.shape, bool) for n, p in graph.populations.items()}
    spikes["in"][0, 0, :3] = spikes["in"][0, 1, :2] = True
    spikes["a"][0, 0, :2] = spikes["a"][0, 1, 3] = True
    spikes["b"][0, 1, 0] = True
    return EventTrace.from_dense(spikes)


def test_the_input_takes_a_core_unless_it_comes_through_the_port():
    graph = _chain()
    with pytest.raises(MappingError, match="population 'b' needs 1 cores but only 0 of 2 are left"):
        map_network(graph, load_preset("generic-45nm", TWO_CORES))
    m = map_network(graph, load_preset("generic-45nm", dict(TWO_CORES, input_location="port")))
    assert m.core_population == ("in", "a", "b") and m.is_port.tolist() == [True, False, False]
    assert m.cores_used == 3 and m.chip_cores_used == 2 and m.tiles_used == 2
    assert m.tile_xy.tolist() == [[0, 0], [0, 0], [1, 0]]  # the port at tile (0, 0); a, b in order


@pytest.mark.parametrize("placement", ["in_order", "snake", "comm_aware"])
def test_a_graph_of_inputs_only_maps_onto_the_port_with_every_placement(placement):
    g = NetworkGraph([Population("in", (4,), INPUT)], [])
    tr = EventTrace.from_dense({"in": np.ones((1, 2, 4), bool)})
    m = map_network(g, load_preset("speck"), placement=placement, traffic=tr)
    assert m.is_port.tolist() == [True] and m.chip_cores_used == 0 and m.tile_xy.tolist() == [[0, 0]]
    assert simulate(g, tr, load_preset("speck"), m, model="analytic").synops == 0


def test_port_events_pay_hops_from_tile_0_0_and_the_port_leaks_nothing():
    graph, chip = _chain(), load_preset("generic-45nm", dict(TWO_CORES, input_location="port"))
    sim = simulate(graph, _trace(graph), chip, model="analytic")
    # messages: 5 input spikes to a's core (tile (0, 0): 0 hops), 3 spikes of a to b's core (1 hop each)
    assert sim.messages == 5 + 3 and sim.hops == 3
    assert sim.cores_used == 2 and sim.static_power_w == pytest.approx(2 * 1e-3)
    assert sim.energy_breakdown_j["static"] == pytest.approx(2e-3 * sim.latency_s)
    assert sim.cores.loc[0, "energy_static_j"] == 0.0
    # the tables count chip cores as cores_used does: the port's pseudo-core is a row marked port, not a core
    assert sim.cores["port"].tolist() == [True, False, False]
    assert sim.populations["cores"].to_dict() == {"in": 0, "a": 1, "b": 1}
    assert int(sim.populations["cores"].sum()) == int((~sim.cores["port"]).sum()) == sim.cores_used


def test_default_keeps_the_input_on_a_core_and_the_chip_dump_unchanged():
    graph, chip = _chain(), load_preset("generic-45nm", dict(TWO_CORES, mesh_width=3))
    sim = simulate(graph, _trace(graph), chip, model="analytic")
    # input core at (0, 0), a at (1, 0), b at (2, 0): 5 messages x 1 hop + 3 x 1 hop; three cores leak
    assert sim.cores_used == 3 and sim.hops == 5 + 3 and sim.static_power_w == pytest.approx(3e-3)
    assert "input_location" not in chip.model_dump() and load_preset("speck").model_dump()["input_location"] == "port"


def test_a_saved_port_mapping_loads_checks_and_simulates_alike(tmp_path):
    graph, chip = _chain(), load_preset("generic-45nm", dict(TWO_CORES, input_location="port"))
    m = map_network(graph, chip)
    m.save(tmp_path / "m.npz")
    loaded = Mapping.load(tmp_path / "m.npz")
    assert loaded.is_port.tolist() == [True, False, False]
    hand = check_mapping(graph, dataclasses.replace(m, core_type=None, verified_for=None), chip)
    assert hand.is_port.tolist() == [True, False, False]  # the port is the input's core, whatever is recorded
    trace = _trace(graph)
    ref = simulate(graph, trace, chip, mapping=m)
    for other in (loaded, hand):
        got = simulate(graph, trace, chip, mapping=other)
        assert got.energy_j == ref.energy_j and got.latency_s == ref.latency_s


def test_port_core_is_outside_every_core_limit():
    """An input larger than a core's neuron limit is fine on the port (the DVS sends 2 x 128 x 128 events)."""
    graph, chip = _chain(), load_preset("generic-45nm", dict(TWO_CORES, input_location="port",
                                                              **{"core.neurons_per_core": 4}))
    m = map_network(graph, chip)
    assert m.core_neurons.tolist() == [6, 4, 3]
    check_mapping(graph, dataclasses.replace(m, verified_for=None), chip)
