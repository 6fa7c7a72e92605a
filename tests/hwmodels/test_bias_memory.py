"""CoreSpec.max_bias_entries: a population fed by a projection with a bias stores one bias-memory entry per
output channel (conv) or neuron (dense) on each core (DYNAP-CNN/Speck: 1024 a core, sinabs). Hand-computed."""
import numpy as np
import pytest

from hwmodels import map_network
from hwmodels.chip.presets import load_preset
from hwmodels.mapping.check import mapping_from_assignment
from hwmodels.mapping.partition import bias_entries
from hwmodels.trace import NetworkGraph, Population, Projection
from tests.hwmodels.conftest import INPUT


def _conv_graph(bias: bool) -> NetworkGraph:
    """in (1, 4, 4) -conv 1x1-> c (6, 4, 4): 6 channels of 16 neurons, a bias per channel when `bias`."""
    b = np.repeat(np.arange(6.0), 16) if bias else None
    return NetworkGraph([Population("in", (1, 4, 4), INPUT), Population("c", (6, 4, 4))],
                        [Projection("p", "in", "c", "conv", np.ones((6, 1, 1, 1)), bias=b)])


def test_bias_entries_count_the_channels_a_chunk_touches():
    assert bias_entries(0, np.array([1, 16, 17, 48]), 16).tolist() == [1, 1, 2, 3]
    assert bias_entries(20, np.array([21, 32, 33]), 16).tolist() == [1, 1, 2]
    assert bias_entries(3, np.array([4, 10]), 1).tolist() == [1, 7]  # dense: one per neuron


@pytest.mark.parametrize("bias, cores", [(True, 3), (False, 1)])
def test_a_core_holds_at_most_max_bias_entries_channels(bias, cores):
    chip = load_preset("generic-45nm", {"core.max_bias_entries": 2})
    m = map_network(_conv_graph(bias), chip)
    assert m.chip_cores_used == 1 + cores  # the input core, then 2 channels (32 neurons) a core with a bias
    if bias:
        assert m.core_neurons.tolist() == [16, 32, 32, 32]


def test_a_hand_made_mapping_over_the_bias_memory_is_refused():
    chip = load_preset("generic-45nm", {"core.max_bias_entries": 2})
    core_of = {"in": np.zeros(16, np.int64), "c": np.repeat([1, 2], [48, 48])}  # 3 channels a core
    with pytest.raises(ValueError, match=r"core 1 \('c'\) holds 3 bias-memory entries; chip 'generic-45nm' allows 2"):
        mapping_from_assignment(_conv_graph(True), chip, core_of, [[0, 0], [1, 0], [2, 0]])
    mapping_from_assignment(_conv_graph(False), chip, core_of, [[0, 0], [1, 0], [2, 0]])
