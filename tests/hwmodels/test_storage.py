"""Storage formats: hand-computed memory per format, cores per format, low-rank relay stages, DYNAP-CNN layout."""
import numpy as np
import pytest

from hwmodels.mapping.connectivity import PAID_COUNT
from hwmodels.mapping.map import MappingError, map_network
from hwmodels.chip.presets import load_preset
from hwmodels.mapping.storage import FORMATS, low_rank_layers, memory_terms, pow2ceil
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")
W34 = np.array([[1.0, 0, 2, 0], [0, 3, 0, 0], [4, 0, 0, 5]])  # 3 targets x 4 sources, 5 non-zeros


def _fc(w, storage, bits=8):
    return Projection("fc", "in", "out", "dense", w, weight_bits=bits, storage=storage)


@pytest.mark.parametrize("storage,per_neuron", [
    ("dense", [4 * 8, 4 * 8, 4 * 8]),                           # S_n x b = 4 x 8 each: 96 bits
    ("sparse", [2 * (8 + 2) + 10, 1 * (8 + 2) + 10, 2 * (8 + 2) + 10]),  # Z_n (b + log2 4) + log2 1024: 80
    ("bitmap", [4 + 2 * 8, 4 + 1 * 8, 4 + 2 * 8]),              # S_n x 1 + Z_n x b: 52
])
def test_memory_of_a_3x4_weight_with_5_nonzeros_at_8_bits(storage, per_neuron):
    core = load_preset("loihi", {"core.synapse_memory_bits": 1024}).core  # pointer = 10 bits
    terms = memory_terms(_fc(W34, storage), (4,), core)
    assert terms.per_neuron.tolist() == per_neuron and terms.per_channel == 0
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (3,))], [_fc(W34, storage)])
    m = map_network(g, load_preset("loihi", {"core.synapse_memory_bits": 1024}))
    assert m.core_synapse_bits.tolist() == [0, sum(per_neuron)] and sum(per_neuron) == {"dense": 96, "sparse": 80,
                                                                                        "bitmap": 52}[storage]


def test_conv_shared_kernel_is_stored_once_per_core_whatever_its_zeros():
    """4 output channels of a C_in=2 3x3 kernel at 8 bits: slice = 2 x 9 x 8 = 144 bits per channel on a core;
    zeroing half the kernel changes nothing (the slice is stored whole), and pow2 layout pads 9 taps to 16."""
    w = np.ones((4, 2, 3, 3))
    w[:, :, 0, :] = 0.0
    proj = Projection("c", "in", "out", "conv", w, padding=(1, 1), weight_bits=8)
    loihi = load_preset("loihi").core
    assert memory_terms(proj, (2, 5, 5), loihi).per_channel == 144
    speck = load_preset("speck").core  # pow2 layout, 8-bit stored weights
    assert memory_terms(proj, (2, 5, 5), speck).per_channel == 2 * 16 * 8
    g = NetworkGraph([Population("in", (2, 5, 5), INPUT), Population("out", (4, 5, 5))], [proj])
    assert map_network(g, load_preset("loihi")).core_synapse_bits.tolist() == [0, 4 * 144]


def test_dynapcnn_pow2_memory_matches_the_sinabs_formula():
    """sinabs DynapcnnLayer.memory_summary: kernel = c 2^(ceil log2(kx ky) + ceil log2 f) entries, neuron =
    f 2^(ceil log2 fy + ceil log2 fx) entries. Here c=2, f=3, 3x3 kernel, 5x5 output: kernel 2 x 2^(4+2) = 128
    entries x 8 bits = 1,024 bits; neuron 3 x 2^(3+3) = 192 entries x 16 bits = 3,072 bits."""
    proj = Projection("c", "in", "out", "conv", np.ones((3, 2, 3, 3)), padding=(1, 1), weight_bits=4)
    g = NetworkGraph([Population("in", (2, 5, 5), INPUT), Population("out", (3, 5, 5), state_bits=8)], [proj])
    m = map_network(g, load_preset("speck"))
    kernel = 2 * 2 ** (int(np.ceil(np.log2(9))) + int(np.ceil(np.log2(3))))
    neuron = 3 * 2 ** (int(np.ceil(np.log2(5))) * 2)
    assert (kernel, neuron) == (128, 192)
    assert m.core_synapse_bits.tolist() == [0, kernel * 8] and m.core_state_bits.tolist() == [0, neuron * 16]
    assert pow2ceil(np.array([0, 1, 2, 3, 5, 8, 9])).tolist() == [0, 1, 2, 4, 8, 8, 16]


def test_a_conv_stored_dense_is_refused_on_a_pow2_core_and_stored_on_a_packed_one():
    proj = Projection("p", "in", "c", "conv", np.ones((2, 1, 3, 3)), storage="dense")
    g = NetworkGraph([Population("in", (1, 4, 4), INPUT), Population("c", (2, 2, 2))], [proj])
    with pytest.raises(ValueError, match="conv projection 'p' stored 'dense' has no layout on a pow2 "
                                         r"\(DYNAP-CNN\) core.*use storage 'conv'"):
        map_network(g, load_preset("speck"))
    m = map_network(g, load_preset("loihi"))  # packed layout: a crossbar row per target, 9 taps x 8 bits
    assert int(m.core_synapse_bits.sum()) == 8 * 9 * 8


def test_neuron_state_memory_limits_chunks_and_names_the_shortfall():
    g = NetworkGraph([Population("in", (4,), INPUT), Population("out", (100,), state_bits=16)],
                     [Projection("fc", "in", "out", "dense", np.ones((100, 4)), weight_bits=1)])
    m = map_network(g, load_preset("loihi", {"core.neuron_memory_bits": 640}))  # 640 / 16 = 40 neurons
    assert m.core_neurons.tolist() == [4, 40, 40, 20] and m.core_state_bits.tolist() == [0, 640, 640, 320]
    with pytest.raises(MappingError, match="population 'out' neuron needs 16 bits of neuron-state memory but a "
                                           "core has 8"):
        map_network(g, load_preset("loihi", {"core.neuron_memory_bits": 8}))


def test_stored_weight_bits_override_the_projection_bits():
    core = load_preset("truenorth").core  # 1-bit crossbar
    assert memory_terms(_fc(W34, "dense", bits=8), (4,), core).per_neuron.tolist() == [4, 4, 4]


def test_low_rank_is_two_dense_stages_through_a_relay_population():
    """W ~ a b with r = 2, in = 6, out = 5, 8 bits: memory r (in + out) b = 2 x 11 x 8 = 176 bits."""
    rng = np.random.default_rng(0)
    src = Population("in", (6,), INPUT)
    relay, projs = low_rank_layers("fc", src, "out", rng.normal(size=(5, 2)), rng.normal(size=(2, 6)))
    assert relay.neuron.kind == "relay" and relay.graded and relay.shape == (2,)
    assert [(p.source, p.target, p.weight.shape) for p in projs] == [("in", "fc_relay", (2, 6)),
                                                                     ("fc_relay", "out", (5, 2))]
    g = NetworkGraph([src, relay, Population("out", (5,))], projs)
    m = map_network(g, load_preset("loihi"))
    assert m.core_synapse_bits.tolist() == [0, 2 * 6 * 8, 5 * 2 * 8] and sum(m.core_synapse_bits) == 176
    assert g.depth("out") == 2  # the relay adds one synaptic stage
    with pytest.raises(ValueError, match="low_rank_layers: factors"):
        low_rank_layers("fc", src, "out", np.ones((5, 2)), np.ones((3, 6)))


def _equal_budget_graphs(rng):
    """Four ways to spend 1,024 non-zero 8-bit weights on a 64-input layer (see the test docstring)."""
    inp = Population("in", (64,), INPUT)
    unstructured = np.zeros((64, 64))
    for row in unstructured:
        row[rng.choice(64, 16, replace=False)] = rng.normal(size=16)
    structured = NetworkGraph([inp, Population("h", (16,))],
                              [Projection("fc", "in", "h", "dense", rng.normal(size=(16, 64)))])
    relay, projs = low_rank_layers("fc", inp, "h", rng.normal(size=(64, 8)), rng.normal(size=(8, 64)))
    graphs = {"structured": structured, "low_rank": NetworkGraph([inp, relay, Population("h", (64,))], projs)}
    for storage in ("dense", "sparse", "bitmap"):
        graphs[f"unstructured_{storage}"] = NetworkGraph(
            [inp, Population("h", (64,))], [Projection("fc", "in", "h", "dense", unstructured, storage=storage)])
    return graphs


def test_structured_vs_unstructured_at_equal_nonzero_count_give_different_memory_and_cores(rng):
    """Every graph keeps 1,024 non-zero 8-bit weights; cores hold 8,192 synapse bits and 64 neurons.

    - structured (16 of 64 target neurons kept, dense 16 x 64): memory = parameters x bits = 8,192 -> 1 core;
    - unstructured 64 x 64 with 16 non-zeros per row, dense storage: the zeros are stored too, 4,096 x 8 =
      32,768 bits -> 4 cores of 16 neurons;
    - same, compressed sparse: 16 x (8 + 6 index bits) + 13 pointer bits = 237 bits per neuron -> 34 neurons per
      core (8,058 bits), 2 cores (34 + 30), 15,168 bits: 1.85x the structured memory for the indices;
    - same, bitmap: 64 presence bits + 16 x 8 = 192 bits per neuron -> 42 per core, 2 cores, 12,288 bits;
    - low rank r = 8 (8 x 64 + 64 x 8 = 1,024 weights): 8,192 bits like the structured layer, but two stages
      through an 8-neuron relay population (a second core and a second synaptic stage).
    The paid synaptic events per input spike differ as well: structured 16, unstructured dense 64 (zeros are
    walked), sparse and bitmap 16 on average (non-zeros only), low rank 8 into the relay plus 64 per relay value.
    """
    want = {"structured": ([8192], 8192), "unstructured_dense": ([8192] * 4, 32768),
            "unstructured_sparse": ([34 * 237, 30 * 237], 15168), "unstructured_bitmap": ([42 * 192, 22 * 192], 12288),
            "low_rank": ([4096, 4096], 8192)}
    chip = load_preset("loihi", {"core.synapse_memory_bits": 8192, "core.neurons_per_core": 64})
    for name, g in _equal_budget_graphs(rng).items():
        assert sum(int((p.weight != 0).sum()) for p in g.projections) == 1024, name
        m = map_network(g, chip)
        bits = [int(b) for b, pop in zip(m.core_synapse_bits, m.core_population) if pop != "in"]
        assert (bits, sum(bits)) == want[name], name
    assert PAID_COUNT["dense"] == "structural" and PAID_COUNT["sparse"] == PAID_COUNT["bitmap"] == "nonzero"
    assert set(FORMATS) == set(PAID_COUNT)
