"""Synapse storage formats (registry FORMATS): the memory a chunk of target neurons takes on a core, and which
synaptic count (structural or non-zero, hwmodels.mapping.connectivity.PAID_COUNT) a spike pays in each format.

Formats, per target neuron n with structural fan-in S_n, non-zero fan-in Z_n and b weight bits:
- dense: S_n x b (every matrix entry / in-bounds tap is stored, zeros included: a crossbar row);
- sparse (compressed sparse rows): Z_n x (b + index bits) + one pointer per neuron, index bits =
  ceil(log2(source neurons)), pointer bits = ceil(log2(core synapse memory bits)) (a bit address; modelling
  choice, no chip here publishes its pointer width);
- bitmap: S_n x 1 (one presence bit per structural synapse) + Z_n x b (the non-zero weights only);
- conv (shared kernel): nothing per neuron; each output channel with neurons on a core stores its kernel slice
  (C_in/groups x kh x kw x b) once on that core, however many of the channel's neurons it holds.
Bits read per spike (the synapse-memory traffic a synaptic event causes, FORMATS[f].read -> (a, b): bits =
a x structural fan-out + b x non-zero fan-out of the spike on that core): dense and conv read every stored
entry of the row/kernel, b bits each (a = b bits); sparse reads each non-zero weight with its index (b +
index bits); bitmap reads the presence bit of every structural synapse and the non-zero weights (a = 1, b =
weight bits). Pointers and axon tables are not counted (no chip here publishes their width).
Low-rank is not a format: a rank-r projection W ~ A B (A: out x r, B: r x in) is two synaptic stages through a
"relay" population of r non-spiking neurons (trace.NeuronModel kind "relay", graded values each timestep):
`low_rank_layers` builds it, and its memory r x (in + out) x b with dense storage falls out of the two
projections (B: r neurons x in fan-in, A: out neurons x r fan-in); the relay adds r neurons and one layer of
depth (one more hardware timestep of pipeline delay).

Chip memory layout (CoreSpec.memory_layout): "packed" sums bits exactly; "pow2" follows DYNAP-CNN/Speck
addressing (sinabs DynapcnnLayer.memory_summary): kernel memory c_in x 2^ceil(log2(kh kw)) x 2^ceil(log2 f)
entries for f output channels, neuron memory f x 2^ceil(log2 H) x 2^ceil(log2 W) entries; here applied to the
channels a core holds. A dense projection in the pow2 layout is stored as sinabs stores a linear layer: a
conv whose kernel covers the whole (C, H, W) source (a 1-D source of N neurons: C = N, 1 x 1), every target
neuron an output channel: C x 2^ceil(log2(H W)) x 2^ceil(log2 f) entries for f target neurons on a core.
CoreSpec.stored_weight_bits / stored_state_bits fix the stored widths of a chip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hwmodels.mapping.connectivity import PAID_COUNT, fan_in
from hwmodels.chip.spec import CoreSpec
from hwmodels.trace import NeuronModel, Population, Projection, conv_output_shape


@dataclass(frozen=True)
class MemoryTerms:
    """Synapse memory of one projection's targets: per_neuron int64 (n_target,) bits that grow with every target
    neuron on a core; per_channel bits stored once per output channel that has neurons on a core, an output
    channel being channel_neurons consecutive C-order target neurons (a conv's output plane; 1 for a dense
    projection, whose every target neuron is a channel of the pow2 layout)."""

    per_neuron: np.ndarray
    per_channel: int
    channel_neurons: int = 1


@dataclass(frozen=True)
class StorageFormat:
    """A storage format: which count a synaptic event pays, its memory rule fn(projection, source shape, core)
    -> MemoryTerms, and its read rule fn(projection, source shape, core) -> (bits per structural synapse, bits
    per non-zero synapse) read per spike (module docstring)."""

    paid_count: str
    memory: Callable[[Projection, tuple, CoreSpec], MemoryTerms]
    read: Callable[[Projection, tuple, CoreSpec], tuple[int, int]]


def _ceil_log2(n: int) -> int:
    return max(1, int(np.ceil(np.log2(max(int(n), 2)))))


def pow2ceil(n: np.ndarray) -> np.ndarray:
    """Smallest power of two >= n, elementwise (int64); 0 stays 0."""
    n = np.asarray(n, np.int64)
    out = np.left_shift(1, np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64))
    return np.where(n > 0, out, 0)


def stored_weight_bits(proj: Projection, core: CoreSpec | None) -> int:
    """Bits one stored weight of `proj` takes on `core`: core.stored_weight_bits if the chip fixes it, else the
    projection's weight_bits (also when core is None)."""
    return int((core.stored_weight_bits if core is not None else None) or proj.weight_bits)


def _dense(proj: Projection, src_shape: tuple, core: CoreSpec) -> MemoryTerms:
    """Dense storage (module docstring); ValueError for a conv projection in the pow2 layout, which stores a
    convolution as its kernel only (storage "conv"), and a dense matrix as a linear layer's (a dense projection)."""
    if core.memory_layout == "pow2" and proj.kind == "conv":
        raise ValueError(f"projection.storage: conv projection {proj.name!r} stored 'dense' has no layout on a pow2 "
                         "(DYNAP-CNN) core, which stores a convolution as its kernel; use storage 'conv'")
    if core.memory_layout == "pow2":  # DYNAP-CNN: a linear layer is a conv whose kernel covers the (C, H, W) input
        taps = int(pow2ceil(int(np.prod(src_shape[1:]))))
        per_channel = src_shape[0] * taps * stored_weight_bits(proj, core)
        return MemoryTerms(np.zeros(proj.weight.shape[0], np.int64), per_channel)
    return MemoryTerms(fan_in(proj, src_shape, "structural") * stored_weight_bits(proj, core), 0)


def _index_bits(src_shape: tuple) -> int:
    """Bits of a source index in a compressed sparse row: ceil(log2(source neurons))."""
    return _ceil_log2(int(np.prod(src_shape)))


def _sparse(proj: Projection, src_shape: tuple, core: CoreSpec) -> MemoryTerms:
    index_bits = _index_bits(src_shape)
    pointer_bits = _ceil_log2(core.synapse_memory_bits)
    per = fan_in(proj, src_shape, "nonzero") * (stored_weight_bits(proj, core) + index_bits) + pointer_bits
    return MemoryTerms(per, 0)


def _bitmap(proj: Projection, src_shape: tuple, core: CoreSpec) -> MemoryTerms:
    per = fan_in(proj, src_shape, "structural") + fan_in(proj, src_shape, "nonzero") * stored_weight_bits(proj, core)
    return MemoryTerms(per, 0)


def _conv(proj: Projection, src_shape: tuple, core: CoreSpec) -> MemoryTerms:
    _, c_in_g, kh, kw = proj.weight.shape
    taps = int(pow2ceil(kh * kw)) if core.memory_layout == "pow2" else kh * kw
    out = conv_output_shape(proj, src_shape)
    return MemoryTerms(np.zeros(int(np.prod(out)), np.int64), c_in_g * taps * stored_weight_bits(proj, core),
                       int(np.prod(out[1:])))


def _read_entries(proj: Projection, src_shape: tuple, core: CoreSpec) -> tuple[int, int]:
    return stored_weight_bits(proj, core), 0


def _read_sparse(proj: Projection, src_shape: tuple, core: CoreSpec) -> tuple[int, int]:
    return 0, stored_weight_bits(proj, core) + _index_bits(src_shape)


def _read_bitmap(proj: Projection, src_shape: tuple, core: CoreSpec) -> tuple[int, int]:
    return 1, stored_weight_bits(proj, core)


#: storage format name -> StorageFormat; keys equal hwmodels.trace.STORAGE_FORMATS and PAID_COUNT
FORMATS: dict[str, StorageFormat] = {
    "dense": StorageFormat(PAID_COUNT["dense"], _dense, _read_entries),
    "sparse": StorageFormat(PAID_COUNT["sparse"], _sparse, _read_sparse),
    "conv": StorageFormat(PAID_COUNT["conv"], _conv, _read_entries),
    "bitmap": StorageFormat(PAID_COUNT["bitmap"], _bitmap, _read_bitmap),
}


def read_bits(proj: Projection, src_shape: tuple[int, ...], core: CoreSpec | None) -> tuple[int, int]:
    """(bits per structural synapse, bits per non-zero synapse) a spike reads from synapse memory on `core` in
    the projection's storage format (module docstring); core None: the projection's own weight bits. Raises
    ValueError for an unknown format."""
    if proj.storage not in FORMATS:
        raise ValueError(f"projection.storage: {proj.storage!r} is not one of {', '.join(FORMATS)}")
    return FORMATS[proj.storage].read(proj, src_shape, core)


def memory_terms(proj: Projection, src_shape: tuple[int, ...], core: CoreSpec) -> MemoryTerms:
    """MemoryTerms of `proj` stored in its format on `core`. Raises ValueError for an unknown format."""
    if proj.storage not in FORMATS:
        raise ValueError(f"projection.storage: {proj.storage!r} is not one of {', '.join(FORMATS)}")
    return FORMATS[proj.storage].memory(proj, src_shape, core)


def channels_touched(start: int, ends: np.ndarray, per_channel_neurons: int) -> np.ndarray:
    """Output channels with neurons in [start, end) for every end (C-order neurons, `per_channel_neurons` each)."""
    return (np.asarray(ends) - 1) // per_channel_neurons - start // per_channel_neurons + 1


def bias_channel_neurons(projs: list[Projection], pop: Population) -> int | None:
    """Target neurons of population `pop` sharing one bias-memory entry (CoreSpec.max_bias_entries), given its
    in-projections `projs`: a conv output plane when one of them is a conv, else 1 (one entry per neuron); None
    when none of them has a bias (no bias memory used)."""
    if not any(p.bias is not None for p in projs):
        return None
    return int(np.prod(pop.shape[1:])) if any(p.kind == "conv" for p in projs) else 1


def channel_bits(per_channel: int, chans: np.ndarray, layout: str) -> np.ndarray:
    """Bits of one projection's per-channel terms on cores holding `chans` of its output channels: per_channel x
    channels held, the channels rounded up to a power of two for layout "pow2" (each projection its own kernel
    memory, as sinabs lays out a layer's kernel)."""
    return per_channel * (pow2ceil(chans) if layout == "pow2" else np.asarray(chans, np.int64))


def chunk_synapse_bits(csum: np.ndarray, channel_terms: list[tuple[int, int]], start: int, ends: np.ndarray,
                       layout: str) -> np.ndarray:
    """Synapse memory bits of the chunks [start, end) for every end: sum of per-neuron bits (csum = cumulative
    sum with a leading 0) + `channel_bits` of every (per_channel, channel_neurons) of channel_terms (one per
    in-projection, MemoryTerms) over the channels the chunk touches."""
    out = csum[ends] - csum[start]
    for per_channel, neurons in channel_terms:
        out = out + channel_bits(per_channel, channels_touched(start, ends, neurons), layout)
    return out


def state_bits_per_neuron(pop: Population, core: CoreSpec) -> int:
    """State bits one neuron of `pop` takes on `core`: its state variables (NeuronModel.state_variables: 1, or 2
    for a CubaLIF's current and potential) x the width of one (the chip's stored_state_bits, else the
    population's state_bits); 0 for input populations, which hold no state.

    A CubaLIF thus fills twice the neuron memory of a LIF of the same size and its every update reads and writes
    twice the state bits (hwmodels.energy.costs: neuron memory); the update itself stays one neuron update (neuron
    compute), as on Loihi, whose compartment holds a current u and a voltage v natively and updates both in one
    compartment update: a current-based LIF is Loihi's own neuron model (Davies et al., IEEE Micro 2018, the
    CUBA LIF of its neuron model section).
    """
    return 0 if pop.is_input else pop.neuron.state_variables * int(core.stored_state_bits or pop.state_bits)


def chunk_state_bits(pop: Population, core: CoreSpec, start: int, ends: np.ndarray) -> np.ndarray:
    """Neuron-state memory bits of the chunks [start, end) of `pop` for every end. Layout "pow2" with a (C, H, W)
    population: channels held x 2^ceil(log2 H) x 2^ceil(log2 W) neurons' worth (sinabs neuron memory)."""
    bits = state_bits_per_neuron(pop, core)
    ends = np.asarray(ends, np.int64)
    if core.memory_layout == "pow2" and len(pop.shape) == 3:
        plane = int(pow2ceil(pop.shape[1]) * pow2ceil(pop.shape[2]))
        return channels_touched(start, ends, pop.shape[1] * pop.shape[2]) * plane * bits
    return (ends - start) * bits


def low_rank_layers(name: str, source: Population, target: str, a: np.ndarray, b: np.ndarray, weight_bits: int = 8,
                    storage: str = "dense", state_bits: int = 16) -> tuple[Population, list[Projection]]:
    """A rank-r projection W ~ a @ b from `source` to population `target` as two synaptic stages.

    a: (n_target, r), b: (r, source.size). Returns the relay Population f"{name}_relay" (shape (r,), kind
    "relay", graded) and the projections f"{name}_b" (source -> relay, weight b) and f"{name}_a" (relay -> target,
    weight a). Method: DSP low-rank factorisation (../shared/METHODS.md); on hardware two synop stages.
    Raises ValueError when the factor shapes disagree.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or b.shape[1] != source.size:
        raise ValueError(f"low_rank_layers: factors a {a.shape} and b {b.shape} must be (n_target, r) and "
                         f"(r, {source.size})")
    relay = Population(f"{name}_relay", (a.shape[1],), NeuronModel(kind="relay"), state_bits=state_bits, graded=True)
    projs = [Projection(f"{name}_b", source.name, relay.name, "dense", b, weight_bits=weight_bits, storage=storage),
             Projection(f"{name}_a", relay.name, target, "dense", a, weight_bits=weight_bits, storage=storage)]
    return relay, projs
