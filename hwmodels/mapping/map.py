"""Mapping a NetworkGraph onto one or more chips: partition populations into core-sized chunks
(hwmodels.mapping.partition), place the cores on mesh tiles (hwmodels.mapping.placement), and answer routing questions (tile
and chip of every core, XY hop counts and hop lists between cores) for the simulators.

A network that does not fit raises MappingError naming the population and the shortfall.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xxhash

from hwmodels.mapping.connectivity import fan_in
from hwmodels.mapping.partition import PORT_TYPE, Keep, MappingError, Partition, make_now, partition
from hwmodels.mapping.placement import PLACEMENTS, USES_TRAFFIC, slot_coords, traffic_matrix
from hwmodels.npzfile import array, file_name, open_npz, quote, read_meta
from hwmodels.chip.signatures import mapping_signature
from hwmodels.chip.spec import ChipSpec
from hwmodels.mapping.storage import FORMATS
from hwmodels.trace import EventTrace, NetworkGraph, atomic_savez
from hwmodels.trace_check import check_trace

__all__ = ["FORMATS", "Mapping", "MappingError", "PLACEMENTS", "Partition", "fan_in", "map_network", "partition"]


@dataclass(frozen=True, eq=False)
class Mapping:
    """Where every neuron lives: global core ids 0..cores_used-1, the tile and chip of each core.

    core_of_neuron: {population: int64 array (size,)}; core_population: population per core;
    core_neurons / core_synapse_bits: int64 (cores_used,); tile_xy: int64 (cores_used, 2) global tile (x, y)
    (chip column * mesh_width + x, chip row * mesh_height + y; the on-chip tile for a single chip);
    placement: name of the placement strategy; chip_name: the ChipSpec it was made for.
    chip_xy: int64 (cores_used, 2) chip grid position (zeros for one chip); chips_per_row: chip grid width;
    mesh_shape: (mesh_width, mesh_height) of one chip (None: one chip, no chip boundaries);
    core_state_bits / core_axons: int64 (cores_used,) neuron-state bits and distinct input axons per core.
    core_type: int64 (cores_used,) index into the chip's core_types of every core (all 0 on a homogeneous chip;
        PORT_TYPE (-1) for an input port's pseudo-core, see ChipSpec.input_location).
    verified_for: set by map_network (and hwmodels.mapping.check): (mapping signature of the chip, assignment
        fingerprint, made) whose per-core tables were computed from the graph; made is True when map_network
        partitioned the graph for that chip, False when check_mapping verified a mapping made elsewhere. A
        mapping whose assignment changed, or a verified one used on another chip, is checked again; one that
        map_network made for a chip with other mapping-relevant fields is refused
        (hwmodels.mapping.check.check_mapping).
    Raises ValueError when the per-core arrays do not have one entry per core (tile_xy, chip_xy: two) or an
    assignment is not a 1-D integer array.
    """

    core_of_neuron: dict[str, np.ndarray]
    core_population: tuple[str, ...]
    core_neurons: np.ndarray
    core_synapse_bits: np.ndarray
    tile_xy: np.ndarray
    placement: str
    chip_name: str
    chip_xy: np.ndarray | None = None
    chips_per_row: int = 1
    mesh_shape: tuple[int, int] | None = None
    core_state_bits: np.ndarray | None = None
    core_axons: np.ndarray | None = None
    verified_for: tuple | None = None
    core_type: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, shape in (("chip_xy", (self.cores_used, 2)), ("core_state_bits", (self.cores_used,)),
                            ("core_axons", (self.cores_used,)), ("core_type", (self.cores_used,))):
            value = getattr(self, name)
            object.__setattr__(self, name, np.zeros(shape, np.int64) if value is None else np.asarray(value, np.int64))
        for name, shape in (("core_neurons", (self.cores_used,)), ("core_synapse_bits", (self.cores_used,)),
                            ("tile_xy", (self.cores_used, 2)), ("chip_xy", (self.cores_used, 2)),
                            ("core_state_bits", (self.cores_used,)), ("core_axons", (self.cores_used,)),
                            ("core_type", (self.cores_used,))):
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"mapping.{name}: shape {got} should be {shape} (one entry per core)")
        for pop, cores in self.core_of_neuron.items():
            cores = np.asarray(cores)
            if cores.ndim != 1 or cores.dtype.kind not in "iu":
                raise ValueError(f"mapping.core_of_neuron[{quote(pop)}]: {cores.dtype} {cores.shape} should be a "
                                 "1-D integer array (a core id per neuron)")

    @property
    def cores_used(self) -> int:
        """Number of cores holding at least one neuron, the input port's pseudo-cores included (the length of
        every per-core array; see chip_cores_used)."""
        return len(self.core_population)

    @property
    def is_port(self) -> np.ndarray:
        """bool (cores_used,): the core is an input port's pseudo-core, not a chip core (ChipSpec.input_location)."""
        return self.core_type == PORT_TYPE

    @property
    def chip_cores_used(self) -> int:
        """Number of chip cores holding at least one neuron (input port pseudo-cores not counted)."""
        return int(np.count_nonzero(~self.is_port))

    @property
    def tiles_used(self) -> int:
        """Number of distinct (global) tiles holding at least one used chip core."""
        xy = np.asarray(self.tile_xy, np.int64)[~self.is_port]
        if not len(xy):
            return 0
        xy = xy - xy.min(axis=0)  # one integer key per tile
        return len(np.unique(xy[:, 0] * (int(xy[:, 1].max()) + 1) + xy[:, 1]))

    @property
    def chip_of_core(self) -> np.ndarray:
        """Chip index of every core, int64 (cores_used,) (row-major over the chip grid)."""
        return self.chip_xy[:, 1] * self.chips_per_row + self.chip_xy[:, 0]

    @property
    def chips_used(self) -> int:
        """Number of distinct chips holding at least one used core."""
        return len(np.unique(self.chip_of_core))

    def hop_counts(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """XY-route hop counts from cores `src` to cores `dst` (int arrays of equal shape): (east-west tile
        hops, north-south tile hops, chip-to-chip link hops), int64 arrays of that shape. A route crossing a
        chip boundary takes a chip-to-chip link instead of a tile hop for that step."""
        a, b = self.tile_xy[np.asarray(src)], self.tile_xy[np.asarray(dst)]
        ca, cb = self.chip_xy[np.asarray(src)], self.chip_xy[np.asarray(dst)]
        chip = np.abs(ca - cb)
        tiles = np.abs(a - b) - chip
        return tiles[..., 0], tiles[..., 1], chip.sum(axis=-1)

    def hops(self) -> tuple[np.ndarray, np.ndarray]:
        """XY-routing tile hop counts between every pair of cores: (east-west, north-south), int64 (n, n) each;
        chip-to-chip link hops are not included (see chip_hops)."""
        idx = np.arange(self.cores_used)
        ew, ns, _ = self.hop_counts(idx[:, None], idx[None, :])
        return ew, ns

    def chip_hops(self) -> np.ndarray:
        """Chip-to-chip link hops between every pair of cores, int64 (n, n) (all zero on one chip)."""
        idx = np.arange(self.cores_used)
        return self.hop_counts(idx[:, None], idx[None, :])[2]

    def route(self, src: int, dst: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
        """The XY (X first, then Y) route from core `src` to core `dst` as hops (kind, from tile, to tile) in global
        tile coordinates; kind is "ew", "ns" or "chip" (a step across a chip boundary). [] within one tile."""
        (x, y), (x1, y1) = (tuple(int(v) for v in self.tile_xy[c]) for c in (src, dst))
        out = []
        for axis, (pos, end) in enumerate(((x, x1), (y, y1))):
            step = 1 if end > pos else -1
            for p in range(pos, end, step):
                a, b = ((p, y), (p + step, y)) if axis == 0 else ((x1, p), (x1, p + step))
                size = self.mesh_shape[axis] if self.mesh_shape else 0
                crosses = size > 0 and p // size != (p + step) // size
                out.append(("chip" if crosses else ("ew", "ns")[axis], a, b))
        return out

    def table(self) -> pd.DataFrame:
        """One row per core: core, population, neurons, synapse_bits, state_bits, axons, chip, tile_x, tile_y."""
        return pd.DataFrame({"core": np.arange(self.cores_used), "population": list(self.core_population),
                             "neurons": self.core_neurons, "synapse_bits": self.core_synapse_bits,
                             "state_bits": self.core_state_bits, "axons": self.core_axons,
                             "chip": self.chip_of_core, "tile_x": self.tile_xy[:, 0], "tile_y": self.tile_xy[:, 1]})

    def save(self, path: str | os.PathLike) -> None:
        """Write the mapping to one `.npz` (arrays plus JSON metadata; core_type only when a core is not of type
        0); atomic (temp file, then rename)."""
        meta = {"placement": self.placement, "chip_name": self.chip_name, "core_population": self.core_population,
                "populations": list(self.core_of_neuron), "chips_per_row": self.chips_per_row,
                "mesh_shape": list(self.mesh_shape) if self.mesh_shape else None}
        arrays = {f"pop{i}": v for i, v in enumerate(self.core_of_neuron.values())}
        arrays.update(core_neurons=self.core_neurons, core_synapse_bits=self.core_synapse_bits, tile_xy=self.tile_xy,
                      chip_xy=self.chip_xy, core_state_bits=self.core_state_bits, core_axons=self.core_axons,
                      meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        if self.core_type.any():
            arrays["core_type"] = self.core_type
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Mapping":
        """Read a mapping written by `save` (files without the multi-chip fields load as one chip). A loaded
        mapping is checked against the graph and chip it is used with (hwmodels.mapping.check.check_mapping).

        Raises FileNotFoundError when `path` does not exist and a one-line ValueError naming the file and what
        was expected for anything else: a directory, a file that is not an .npz (empty, truncated, another
        format), a network graph or event trace file, meta that is not a JSON object with the mapping's keys,
        or arrays of the wrong dtype or shape.
        """
        with open_npz(path, "mapping") as z:
            name = file_name(path)
            meta = read_meta(z, name, "mapping", MAPPING_META)
            core_of = {pop: array(z, name, f"pop{i}", "int", 1) for i, pop in enumerate(meta["populations"])}
            opt = {k: array(z, name, k, "int") for k in ("chip_xy", "core_state_bits", "core_axons", "core_type")
                   if k in z.files}
            return cls(core_of, tuple(meta["core_population"]), array(z, name, "core_neurons", "int", 1),
                       array(z, name, "core_synapse_bits", "int", 1), array(z, name, "tile_xy", "int", 2),
                       meta["placement"], meta["chip_name"], chips_per_row=int(meta.get("chips_per_row", 1)),
                       mesh_shape=tuple(int(v) for v in meta["mesh_shape"]) if meta.get("mesh_shape") else None,
                       **opt)


#: keys (and JSON types) of a saved mapping's meta
MAPPING_META = {"placement": str, "chip_name": str, "core_population": list, "populations": list}


def map_network(graph: NetworkGraph, chip: ChipSpec, placement: str = "in_order",
                traffic: np.ndarray | EventTrace | None = None, seed: int = 0, keep: Keep = make_now) -> Mapping:
    """Partition `graph` into cores of `chip` (hwmodels.mapping.partition) and place them with PLACEMENTS[placement].

    traffic: for placement "comm_aware", the measured traffic: an (n_cores, n_cores) message-count matrix over
    the partition's cores (graph order) or an EventTrace from which it is computed (placement.traffic_matrix,
    only for placements in placement.USES_TRAFFIC; the others ignore it, so a pipeline may always pass its trace).
    seed: seed of the randomised steps of a placement (Kernighan-Lin bisection). keep: where the partition's
    chunks are kept (hwmodels.mapping.partition.partition; hwmodels.SimCache.keep). Cores beyond one chip spill to
    the next of chip.n_chips chips; on a chip with core_types every core lands on a slot of its type (its
    Partition.core_type); on a chip whose input_location is "port" the input populations sit on port pseudo-cores
    at tile (0, 0) of chip 0 (core_type PORT_TYPE), and comm_aware places the chip cores on the traffic between
    them. Raises ValueError for an unknown placement (listing them), a traffic
    matrix of the wrong shape or a traffic trace that does not belong to the graph (hwmodels.trace_check, when
    the placement uses it), MappingError when the network does not fit, and TypeError when graph or chip is not
    of its type (a preset name for chip).
    """
    if not isinstance(graph, NetworkGraph):
        raise TypeError(f"graph: got {type(graph).__name__}, expected a hwmodels.NetworkGraph")
    if not isinstance(chip, ChipSpec):
        raise TypeError(f"chip: got {type(chip).__name__} {quote(chip)[:40]}, expected a hwmodels.ChipSpec, e.g. "
                        "hwmodels.load_preset('loihi')")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: {quote(placement)} is not one of {', '.join(PLACEMENTS)}")
    if isinstance(traffic, EventTrace) and placement in USES_TRAFFIC:
        check_trace(graph, traffic)
    part = partition(graph, chip, keep)
    if isinstance(traffic, EventTrace):
        traffic = (traffic_matrix(graph, part.core_of_neuron, part.n_cores, traffic)
                   if placement in USES_TRAFFIC else None)
    if traffic is not None:
        traffic = np.asarray(traffic, np.float64)
        if traffic.shape != (part.n_cores, part.n_cores) or not np.all(np.isfinite(traffic)) or (traffic < 0).any():
            raise ValueError(f"traffic: shape {traffic.shape} should be ({part.n_cores}, {part.n_cores}) with finite "
                             f"non-negative message counts")
    tile_xy, chip_xy = _place(part, chip, PLACEMENTS[placement], traffic, seed)
    m = Mapping(part.core_of_neuron, part.core_population, part.core_neurons, part.core_synapse_bits, tile_xy,
                placement, chip.name, chip_xy, chip.chip_grid[0], (chip.mesh_width, chip.mesh_height),
                part.core_state_bits, part.core_axons, core_type=part.core_type)
    return replace(m, verified_for=(mapping_signature(chip), mapping_key(m), True))


def _place(part: Partition, chip: ChipSpec, strategy, traffic: np.ndarray | None,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(global tile (x, y), chip grid (x, y)) of every core, int64 (n_cores, 2) each: the chip cores placed by
    `strategy` on the traffic between them; the input port's pseudo-cores (PORT_TYPE) at tile (0, 0) of chip 0
    (ChipSpec.input_location)."""
    on_chip = np.flatnonzero(part.core_type != PORT_TYPE)
    if len(on_chip) == part.n_cores:
        return slot_coords(strategy(part, chip, traffic, seed), chip)
    tile_xy, chip_xy = np.zeros((part.n_cores, 2), np.int64), np.zeros((part.n_cores, 2), np.int64)
    if not len(on_chip):  # every population on the input port (a graph of inputs only): no core to place
        return tile_xy, chip_xy
    sub = replace(part, core_population=tuple(part.core_population[k] for k in on_chip),
                  core_neurons=part.core_neurons[on_chip], core_synapse_bits=part.core_synapse_bits[on_chip],
                  core_state_bits=part.core_state_bits[on_chip], core_axons=part.core_axons[on_chip],
                  core_type=part.core_type[on_chip], core_of_neuron={})
    sub_traffic = None if traffic is None else traffic[np.ix_(on_chip, on_chip)]
    tile_xy[on_chip], chip_xy[on_chip] = slot_coords(strategy(sub, chip, sub_traffic, seed), chip)
    return tile_xy, chip_xy


def assignment_key(core_of_neuron: dict[str, np.ndarray], core_population: tuple, *tables: np.ndarray) -> tuple:
    """A fingerprint of a per-neuron core assignment and the per-core tables recorded with it (names, and XXH3-128
    digests of the arrays' int64 bytes, read in place, the same in every process): any change to them changes the
    key. XXH3 (xxhash; not cryptographic: the key tells mappings apart, it is no defence against a forged one)
    hashes Spikformer-4-384's 14 MB assignment in ~1 ms, where SHA-256 took 10 on every checked simulate call."""
    arrays = [*core_of_neuron.values(), *tables]
    return (tuple(core_of_neuron), tuple(core_population),
            tuple(xxhash.xxh3_128_hexdigest(np.ascontiguousarray(a, np.int64)) for a in arrays))


def mapping_key(m: "Mapping") -> tuple:
    """assignment_key of a Mapping (its assignment, populations and recorded per-core tables)."""
    return assignment_key(m.core_of_neuron, m.core_population, m.core_neurons, m.core_synapse_bits,
                          m.core_state_bits, m.core_axons, m.core_type)
