"""Check a mapping made elsewhere (by hand, by another tool such as SANA-FE, or loaded from disk) against a graph
and every core limit of a chip, and build a Mapping from a per-neuron core assignment.

The per-core tables (neurons, synapse-memory bits per storage format, neuron-state bits, input axons, fan-in)
are recomputed from the graph with the rules the partitioner uses (hwmodels.storage, hwmodels.connectivity), so
a mapping is judged on what it holds, not on the numbers it records. Every failure is a one-line ValueError
naming the core (or population) and the limit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwmodels.connectivity import PAID_COUNT, core_fanout, fan_in
from hwmodels.mapping import Mapping, mapping_key
from hwmodels.npzfile import quote
from hwmodels.signatures import mapping_signature
from hwmodels.spec import ChipSpec
from hwmodels.storage import memory_terms, pow2ceil, state_bits_per_neuron
from hwmodels.trace import NetworkGraph, conv_output_shape


def _population_of_cores(graph: NetworkGraph, core_of: dict[str, np.ndarray], n_cores: int) -> list[str]:
    """The population every core holds; ValueError when a core holds two, none, or a core id is out of range."""
    owner: list[str | None] = [None] * n_cores
    for name, cores in core_of.items():
        if len(cores) and (cores.min() < 0 or cores.max() >= n_cores):
            raise ValueError(f"mapping: population {name!r} uses a core id outside 0..{n_cores - 1}")
        for c in np.unique(cores).tolist():
            if owner[c] is not None and owner[c] != name:
                raise ValueError(f"mapping: core {c} holds neurons of {owner[c]!r} and {name!r}; a core holds one "
                                 "population")
            owner[c] = name
    empty = [c for c, o in enumerate(owner) if o is None]
    if empty:
        raise ValueError(f"mapping: core {empty[0]} holds no neuron (cores are numbered 0..cores_used-1)")
    return owner


def _synapse_bits(graph: NetworkGraph, name: str, cores: np.ndarray, chip: ChipSpec, n: int) -> np.ndarray:
    """Synapse-memory bits of population `name`'s in-projections on each core, int64 (n,)."""
    out = np.zeros(n, np.int64)
    for proj in graph.in_projections(name):
        src_shape = graph.populations[proj.source].shape
        terms = memory_terms(proj, src_shape, chip.core)
        out += np.bincount(cores, weights=terms.per_neuron, minlength=n).astype(np.int64)
        if terms.per_channel:
            plane = int(np.prod(conv_output_shape(proj, src_shape)[1:]))
            pairs = np.unique(cores * (len(cores) // plane + 1) + np.arange(len(cores)) // plane)
            chans = np.bincount(pairs // (len(cores) // plane + 1), minlength=n)
            chans = pow2ceil(chans) if chip.core.memory_layout == "pow2" else chans
            out += terms.per_channel * chans
    return out


def _state_bits(graph: NetworkGraph, name: str, cores: np.ndarray, chip: ChipSpec, n: int) -> np.ndarray:
    """Neuron-state bits of population `name` on each core (pow2 layout: channels x padded planes), int64 (n,)."""
    pop, core = graph.populations[name], chip.core
    bits = state_bits_per_neuron(pop, core)
    if core.memory_layout == "pow2" and len(pop.shape) == 3:
        plane = pop.shape[1] * pop.shape[2]
        stride = len(cores) // plane + 1
        pairs = np.unique(cores * stride + np.arange(len(cores)) // plane)
        padded = int(pow2ceil(pop.shape[1]) * pow2ceil(pop.shape[2]))
        return np.bincount(pairs // stride, minlength=n).astype(np.int64) * padded * bits
    return np.bincount(cores, minlength=n).astype(np.int64) * bits


def _axons(graph: NetworkGraph, name: str, cores: np.ndarray, n: int) -> np.ndarray:
    """Distinct source neurons with a stored synapse into each core of population `name`, int64 (n,)."""
    out = np.zeros(n, np.int64)
    by_source: dict[str, object] = {}
    for proj in graph.in_projections(name):
        f, cols = core_fanout(proj, graph.populations[proj.source].shape, cores, PAID_COUNT[proj.storage])
        full = f.tocsc()
        prev = by_source.get(proj.source)
        by_source[proj.source] = (full, cols) if prev is None else (prev[0] + full, cols)
    for f, cols in by_source.values():
        out[cols] += np.diff((f > 0).tocsc().indptr)
    return out


def _covers(graph: NetworkGraph, core_of: dict) -> None:
    """ValueError unless every population of `graph` has one core id per neuron."""
    for name, pop in graph.populations.items():
        got = core_of.get(name)
        if got is None or np.shape(got) != (pop.size,):
            raise ValueError(f"mapping: population {name!r} ({pop.size} neurons) is not mapped as in the graph")


def core_tables(graph: NetworkGraph, chip: ChipSpec, core_of: dict[str, np.ndarray],
                n_cores: int) -> dict[str, np.ndarray]:
    """Per-core tables of an assignment {population: int core id per neuron}: "population" (list), "neurons",
    "synapse_bits", "state_bits", "axons" (int64 (n_cores,)). Raises ValueError for a malformed assignment."""
    _covers(graph, core_of)
    core_of = {k: np.asarray(v, np.int64) for k, v in core_of.items()}
    owner = _population_of_cores(graph, core_of, n_cores)
    out = {"population": owner, "neurons": np.zeros(n_cores, np.int64), "synapse_bits": np.zeros(n_cores, np.int64),
           "state_bits": np.zeros(n_cores, np.int64), "axons": np.zeros(n_cores, np.int64)}
    for name in graph.populations:
        cores = core_of[name]
        out["neurons"] += np.bincount(cores, minlength=n_cores)
        out["synapse_bits"] += _synapse_bits(graph, name, cores, chip, n_cores)
        out["state_bits"] += _state_bits(graph, name, cores, chip, n_cores)
        out["axons"] += _axons(graph, name, cores, n_cores)
    return out


def _check_limits(graph: NetworkGraph, chip: ChipSpec, tables: dict, core_of: dict) -> None:
    """ValueError naming the first core (or population) that breaks a limit of `chip`."""
    c = chip.core
    limits = (("neurons", c.neurons_per_core, "neurons"), ("synapse_bits", c.synapse_memory_bits, "synapse-memory bits"),
              ("state_bits", c.neuron_memory_bits, "neuron-state bits"), ("axons", c.max_axons, "input axons"))
    for key, limit, what in limits:
        if limit is not None and (tables[key] > limit).any():
            k = int(np.argmax(tables[key] > limit))
            raise ValueError(f"mapping: core {k} ({tables['population'][k]!r}) holds {int(tables[key][k]):,} {what}; "
                             f"chip {chip.name!r} allows {limit:,}")
    for name in graph.populations:
        used = len(np.unique(core_of[name]))
        if chip.max_cores_per_population is not None and used > chip.max_cores_per_population:
            raise ValueError(f"mapping: population {name!r} spans {used} cores; chip {chip.name!r} allows "
                             f"{chip.max_cores_per_population}")
        if c.max_fan_in is not None:
            worst = max((int(fan_in(p, graph.populations[p.source].shape, PAID_COUNT[p.storage]).max(initial=0))
                         for p in graph.in_projections(name)), default=0)
            if worst > c.max_fan_in:
                raise ValueError(f"mapping: population {name!r} has a neuron with fan-in {worst:,}; chip "
                                 f"{chip.name!r} allows {c.max_fan_in:,}")


def _check_placement(mapping: Mapping, chip: ChipSpec) -> None:
    """ValueError when the mapping uses more cores than the chips have, a tile outside the mesh, or more cores on
    a tile than cores_per_tile."""
    if mapping.cores_used > chip.n_cores_total:
        raise ValueError(f"mapping: {mapping.cores_used} cores; chip {chip.name!r} x {chip.n_chips} has "
                         f"{chip.n_cores_total}")
    per_row, rows = chip.chip_grid
    xy = mapping.tile_xy
    if len(xy) and (xy.min() < 0 or xy[:, 0].max() >= chip.mesh_width * per_row
                    or xy[:, 1].max() >= chip.mesh_height * rows):
        raise ValueError(f"mapping.tile_xy: a tile lies outside the {chip.mesh_width * per_row} x "
                         f"{chip.mesh_height * rows} mesh of chip {chip.name!r}")
    _, per_tile = np.unique(xy, axis=0, return_counts=True)
    if len(per_tile) and per_tile.max() > chip.cores_per_tile:
        raise ValueError(f"mapping.tile_xy: a tile holds {int(per_tile.max())} cores; chip {chip.name!r} has "
                         f"{chip.cores_per_tile} per tile")


def _flat(signature: object, prefix: str = "") -> dict[str, object]:
    """{dotted field: value} of a mapping signature (hwmodels.signatures: nested sorted (key, value) tuples)."""
    is_record = isinstance(signature, tuple) and signature and all(
        isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in signature)
    if not is_record:
        return {prefix: signature}
    out = {}
    for key, value in signature:
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def _check_chip(mapping: Mapping, chip: ChipSpec) -> None:
    """ValueError when map_network made `mapping` for a chip whose mapping-relevant fields differ from `chip`'s,
    naming the first field that differs (a mapping made elsewhere and only checked is checked again instead)."""
    by_map_network = mapping.verified_for is not None and mapping.verified_for[2]
    if not by_map_network or mapping.verified_for[0] == mapping_signature(chip):
        return
    made, here = _flat(mapping.verified_for[0]), _flat(mapping_signature(chip))
    key = next((k for k in sorted(set(made) | set(here)) if made.get(k) != here.get(k)), "?")
    raise ValueError(f"mapping: made for chip {quote(mapping.chip_name)} with {key}={quote(made.get(key), 40)}, not "
                     f"for chip {quote(chip.name)} with {key}={quote(here.get(key), 40)}; map the graph again with "
                     "map_network(graph, chip)")


def check_mapping(graph: NetworkGraph, mapping: Mapping, chip: ChipSpec) -> Mapping:
    """The mapping with its per-core tables recomputed from the graph (neurons, synapse bits, state bits, axons:
    what it holds, whatever it records). Raises ValueError (one line) unless `mapping` covers exactly the
    populations of `graph`, was made for a chip with the same mapping-relevant fields when map_network made it
    (Mapping.verified_for; hand-made and loaded mappings are judged on what they hold), every core holds the one
    population it is recorded for, and every core limit of `chip` (neurons, synapse memory, neuron-state
    memory, input axons, fan-in, cores per population, cores, mesh, cores per tile) holds."""
    _covers(graph, mapping.core_of_neuron)
    _check_chip(mapping, chip)
    verified = mapping.verified_for is not None and mapping.verified_for[:2] == (mapping_signature(chip),
                                                                                  mapping_key(mapping))
    if verified:
        _check_placement(mapping, chip)
        return mapping  # tables computed from this graph for this chip by map_network or an earlier check
    tables = core_tables(graph, chip, mapping.core_of_neuron, mapping.cores_used)
    if list(mapping.core_population) != tables["population"]:
        k = next(i for i, (a, b) in enumerate(zip(mapping.core_population, tables["population"])) if a != b)
        raise ValueError(f"mapping.core_population: core {k} is recorded as {mapping.core_population[k]!r} but holds "
                         f"{tables['population'][k]!r}")
    _check_limits(graph, chip, tables, mapping.core_of_neuron)
    _check_placement(mapping, chip)
    checked = dataclasses.replace(mapping, core_neurons=tables["neurons"], core_synapse_bits=tables["synapse_bits"],
                                  core_state_bits=tables["state_bits"], core_axons=tables["axons"])
    return dataclasses.replace(checked, verified_for=(mapping_signature(chip), mapping_key(checked), False))


def mapping_from_assignment(graph: NetworkGraph, chip: ChipSpec, core_of: dict[str, np.ndarray],
                            tile_xy: np.ndarray, placement: str = "user") -> Mapping:
    """A Mapping of `graph` on one chip from a core id per neuron ({population: int (size,)}, cores 0..n-1) and
    the tile (x, y) of every core (int (n, 2)); checked like `check_mapping`. Raises ValueError."""
    tile_xy = np.asarray(tile_xy, np.int64)
    tables = core_tables(graph, chip, core_of, len(tile_xy))
    mapping = Mapping({k: np.asarray(v, np.int64) for k, v in core_of.items()}, tuple(tables["population"]),
                      tables["neurons"], tables["synapse_bits"], tile_xy, placement, chip.name,
                      mesh_shape=(chip.mesh_width, chip.mesh_height), core_state_bits=tables["state_bits"],
                      core_axons=tables["axons"])
    return check_mapping(graph, mapping, chip)
