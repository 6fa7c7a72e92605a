"""Mapping a NetworkGraph onto a chip: partition populations into core-sized chunks, place cores on mesh tiles.

Partitioning follows the neuron limit and the synapse memory of each storage format (registry STORAGE_BITS);
placement is a registry of strategies (PLACEMENTS). A network that does not fit raises MappingError.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from hwmodels.connectivity import conv_output_shape
from hwmodels.spec import ChipSpec
from hwmodels.trace import NetworkGraph, Projection, _atomic_savez


class MappingError(ValueError):
    """The network does not fit the chip; the message names the population and the shortfall."""


def _in_bounds(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """V[k_idx, out_idx] = 1 where kernel tap k_idx of output position out_idx reads an in-bounds input."""
    pos = np.arange(n_out)[None, :] * stride - pad + np.arange(k)[:, None] * dil
    return ((pos >= 0) & (pos < n_in)).astype(np.int64)


def fan_in(proj: Projection, src_shape: tuple[int, ...], count: str) -> np.ndarray:
    """Synapses into every target neuron of `proj` (C-order), shape (n_target,), int64.

    count "structural": every matrix entry / in-bounds kernel tap, zeros included; "nonzero": non-zero weights.
    """
    mask = proj.weight != 0 if count == "nonzero" else np.ones(proj.weight.shape, bool)
    if proj.kind == "dense":
        return mask.sum(axis=1).astype(np.int64)
    _, h_out, w_out = conv_output_shape(proj, src_shape)
    taps = mask.sum(axis=1).astype(np.int64)  # (C_out, kh, kw): non-zero input channels per tap
    vy = _in_bounds(src_shape[1], h_out, taps.shape[1], proj.stride[0], proj.padding[0], proj.dilation[0])
    vx = _in_bounds(src_shape[2], w_out, taps.shape[2], proj.stride[1], proj.padding[1], proj.dilation[1])
    return np.einsum("okl,ky,lx->oyx", taps, vy, vx).reshape(-1)


def _dense_bits(proj: Projection, src_shape: tuple[int, ...], memory_bits: int) -> tuple[np.ndarray, int]:
    """Dense storage: a row of (structural fan-in) x weight_bits per target neuron; nothing per channel."""
    return fan_in(proj, src_shape, "structural") * proj.weight_bits, 0


def _sparse_bits(proj: Projection, src_shape: tuple[int, ...], memory_bits: int) -> tuple[np.ndarray, int]:
    """Compressed sparse rows: non-zeros x (weight_bits + source-index bits) + one pointer per target neuron.

    Index bits = ceil(log2(source neurons)); pointer bits = ceil(log2(synapse_memory_bits)), a bit address into
    the core's synapse memory (modelling choice; no chip publishes its pointer width here).
    """
    index_bits = max(1, int(np.ceil(np.log2(int(np.prod(src_shape))))))
    pointer_bits = max(1, int(np.ceil(np.log2(memory_bits))))
    return fan_in(proj, src_shape, "nonzero") * (proj.weight_bits + index_bits) + pointer_bits, 0


def _conv_bits(proj: Projection, src_shape: tuple[int, ...], memory_bits: int) -> tuple[np.ndarray, int]:
    """Shared-kernel storage: per output channel present on a core, its kernel slice (C_in/groups x kh x kw
    x weight_bits), stored once per core however many of that channel's neurons the core holds."""
    _, c_in_g, kh, kw = proj.weight.shape
    n_target = int(np.prod(conv_output_shape(proj, src_shape)))
    return np.zeros(n_target, np.int64), c_in_g * kh * kw * proj.weight_bits


#: storage format -> fn(projection, source shape, core memory bits) -> (bits per target neuron, bits per
#: output channel held on a core). Neuron state is not counted: Loihi keeps it in separate compartment memory.
STORAGE_BITS: dict[str, Callable[[Projection, tuple, int], tuple[np.ndarray, int]]] = {
    "dense": _dense_bits, "sparse": _sparse_bits, "conv": _conv_bits}


@dataclass(frozen=True, eq=False)
class Partition:
    """Cores before placement, numbered 0..n-1 in graph order.

    core_population: population name per core; core_neurons / core_synapse_bits: int64 arrays (n_cores,);
    core_of_neuron: {population: int64 array (size,)} core id of every neuron (C-order).
    """

    core_population: tuple[str, ...]
    core_neurons: np.ndarray
    core_synapse_bits: np.ndarray
    core_of_neuron: dict[str, np.ndarray]


def _pop_costs(graph: NetworkGraph, name: str, chip: ChipSpec) -> tuple[np.ndarray, int, int]:
    """(bits per neuron, bits per output channel, neurons per channel) of population `name`'s in-projections.

    Raises MappingError when a neuron's fan-in exceeds core.max_fan_in; ValueError when a conv projection's
    output shape differs from the target population's shape.
    """
    pop = graph.populations[name]
    per_neuron, per_channel, hw = np.zeros(pop.size, np.int64), 0, 1
    paid_fan_in = np.zeros(pop.size, np.int64)
    for proj in graph.in_projections(name):
        src_shape = graph.populations[proj.source].shape
        if proj.kind == "conv":
            out_shape = conv_output_shape(proj, src_shape)
            if tuple(out_shape) != pop.shape:
                raise ValueError(f"projection {proj.name!r}: conv output {out_shape} != target shape {pop.shape}")
            hw = out_shape[1] * out_shape[2]
        bits, chan = STORAGE_BITS[proj.storage](proj, src_shape, chip.core.synapse_memory_bits)
        per_neuron += bits
        per_channel += chan
        paid_fan_in += fan_in(proj, src_shape, "nonzero" if proj.storage == "sparse" else "structural")
    limit = chip.core.max_fan_in
    if limit is not None and pop.size and paid_fan_in.max() > limit:
        raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} neuron has fan-in "
                           f"{int(paid_fan_in.max()):,} but a core accepts at most {limit:,}")
    return per_neuron, per_channel, hw


def _chunks(name: str, per_neuron: np.ndarray, per_channel: int, hw: int, chip: ChipSpec) -> list[tuple]:
    """Greedy contiguous chunks [(start, end, bits)] under the neuron and synapse-memory limits of a core.

    A chunk's bits = sum of its neurons' bits + per_channel x (output channels it touches); this grows with the
    chunk, so each chunk is the longest prefix that fits. Raises MappingError when one neuron does not fit.
    """
    limit, mem = chip.core.neurons_per_core, chip.core.synapse_memory_bits
    csum = np.concatenate([[0], np.cumsum(per_neuron)])
    out, start, n = [], 0, len(per_neuron)
    while start < n:
        ends = np.arange(start + 1, min(start + limit, n) + 1)
        cost = csum[ends] - csum[start] + per_channel * ((ends - 1) // hw - start // hw + 1)
        fits = int(np.count_nonzero(cost <= mem))
        if fits == 0:
            raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} neuron needs "
                               f"{int(cost[0]):,} bits of synapse memory but a core has {mem:,}")
        out.append((start, int(ends[fits - 1]), int(cost[fits - 1])))
        start = int(ends[fits - 1])
    return out


def partition(graph: NetworkGraph, chip: ChipSpec) -> Partition:
    """Split every population, in graph order, into contiguous chunks of its C-order neurons, one per core.

    Raises MappingError naming the population when a neuron does not fit a core, or when the chip runs out of
    cores ("population 'lif2' needs 40 cores but only 12 of 128 are left").
    """
    all_chunks = {name: _chunks(name, *_pop_costs(graph, name, chip), chip) for name in graph.populations}
    needed = sum(len(c) for c in all_chunks.values())
    pops, neurons, bits, core_of = [], [], [], {}
    for name, chunks in all_chunks.items():
        left = chip.n_cores - len(pops)
        if len(chunks) > left:
            raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} needs {len(chunks)} "
                               f"cores but only {left} of {chip.n_cores} are left (the network needs {needed} cores)")
        sizes = [e - s for s, e, _ in chunks]
        core_of[name] = np.repeat(np.arange(len(pops), len(pops) + len(chunks)), sizes).astype(np.int64)
        pops += [name] * len(chunks)
        neurons += sizes
        bits += [b for _, _, b in chunks]
    return Partition(tuple(pops), np.array(neurons, np.int64), np.array(bits, np.int64), core_of)


def _in_order(part: Partition, chip: ChipSpec) -> np.ndarray:
    """Core k on tile t = k // cores_per_tile at (x = t % mesh_width, y = t // mesh_width)."""
    t = np.arange(len(part.core_population)) // chip.cores_per_tile
    return np.stack([t % chip.mesh_width, t // chip.mesh_width], axis=1).astype(np.int64)


def _snake(part: Partition, chip: ChipSpec) -> np.ndarray:
    """As in_order, but odd mesh rows run right to left (boustrophedon), so consecutive tiles stay adjacent."""
    xy = _in_order(part, chip)
    odd = xy[:, 1] % 2 == 1
    xy[odd, 0] = chip.mesh_width - 1 - xy[odd, 0]
    return xy


#: placement name -> fn(partition, chip) -> int64 array (n_cores, 2) of tile (x, y) per core
PLACEMENTS: dict[str, Callable[[Partition, ChipSpec], np.ndarray]] = {"in_order": _in_order, "snake": _snake}


@dataclass(frozen=True, eq=False)
class Mapping:
    """Where every neuron lives: global core ids 0..cores_used-1 and the mesh tile of each core.

    core_of_neuron: {population: int64 array (size,)}; core_population: population per core;
    core_neurons / core_synapse_bits: int64 (cores_used,); tile_xy: int64 (cores_used, 2) tile (x, y);
    placement: name of the placement strategy; chip_name: the ChipSpec it was made for.
    """

    core_of_neuron: dict[str, np.ndarray]
    core_population: tuple[str, ...]
    core_neurons: np.ndarray
    core_synapse_bits: np.ndarray
    tile_xy: np.ndarray
    placement: str
    chip_name: str

    @property
    def cores_used(self) -> int:
        """Number of cores holding at least one neuron."""
        return len(self.core_population)

    @property
    def tiles_used(self) -> int:
        """Number of distinct tiles holding at least one used core."""
        return len({(int(x), int(y)) for x, y in self.tile_xy})

    def hops(self) -> tuple[np.ndarray, np.ndarray]:
        """XY-routing hop counts between every pair of cores: (east-west, north-south), int64 (n, n) each."""
        dx = np.abs(self.tile_xy[:, None, 0] - self.tile_xy[None, :, 0])
        dy = np.abs(self.tile_xy[:, None, 1] - self.tile_xy[None, :, 1])
        return dx, dy

    def table(self) -> pd.DataFrame:
        """One row per core: core, population, neurons, synapse_bits, tile_x, tile_y."""
        return pd.DataFrame({"core": np.arange(self.cores_used), "population": list(self.core_population),
                             "neurons": self.core_neurons, "synapse_bits": self.core_synapse_bits,
                             "tile_x": self.tile_xy[:, 0], "tile_y": self.tile_xy[:, 1]})

    def save(self, path: str | os.PathLike) -> None:
        """Write the mapping to one `.npz` (arrays plus JSON metadata); atomic (temp file, then rename)."""
        meta = {"placement": self.placement, "chip_name": self.chip_name, "core_population": self.core_population,
                "populations": list(self.core_of_neuron)}
        arrays = {f"pop{i}": v for i, v in enumerate(self.core_of_neuron.values())}
        arrays.update(core_neurons=self.core_neurons, core_synapse_bits=self.core_synapse_bits, tile_xy=self.tile_xy,
                      meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        _atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Mapping":
        """Read a mapping written by `save`."""
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            core_of = {name: z[f"pop{i}"] for i, name in enumerate(meta["populations"])}
            return cls(core_of, tuple(meta["core_population"]), z["core_neurons"], z["core_synapse_bits"],
                       z["tile_xy"], meta["placement"], meta["chip_name"])


def map_network(graph: NetworkGraph, chip: ChipSpec, placement: str = "in_order") -> Mapping:
    """Partition `graph` into cores of `chip` (see `partition`) and place them with PLACEMENTS[placement].

    Raises ValueError for an unknown placement (listing them) and MappingError when the network does not fit.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: {placement!r} is not one of {', '.join(PLACEMENTS)}")
    part = partition(graph, chip)
    xy = PLACEMENTS[placement](part, chip)
    return Mapping(part.core_of_neuron, part.core_population, part.core_neurons, part.core_synapse_bits, xy,
                   placement, chip.name)
