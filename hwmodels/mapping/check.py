"""Check a mapping made elsewhere (by hand, by another tool such as SANA-FE, or loaded from disk) against a graph
and every core limit of a chip, and build a Mapping from a per-neuron core assignment.

The per-core tables (neurons, synapse-memory bits per storage format, neuron-state bits, input axons, fan-in)
are recomputed from the graph with the rules the partitioner uses (hwmodels.mapping.storage, hwmodels.mapping.connectivity), so
a mapping is judged on what it holds, not on the numbers it records. Every failure is a one-line ValueError
naming the core (or population) and the limit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwmodels.mapping.connectivity import PAID_COUNT, FanoutStore, axons_per_core, fan_in
from hwmodels.mapping.map import Mapping, mapping_key
from hwmodels.mapping.partition import PORT_TYPE
from hwmodels.npzfile import quote
from hwmodels.chip.signatures import mapping_signature
from hwmodels.chip.spec import ChipSpec, CoreSpec
from hwmodels.mapping.storage import (bias_channel_neurons, channel_bits, memory_terms, pow2ceil,
                                     state_bits_per_neuron)
from hwmodels.trace import NetworkGraph


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


def _synapse_bits(graph: NetworkGraph, name: str, cores: np.ndarray, core: CoreSpec, n: int) -> np.ndarray:
    """Synapse-memory bits of population `name`'s in-projections on each core (all of type `core`), int64 (n,)."""
    out = np.zeros(n, np.int64)
    for proj in graph.in_projections(name):
        src_shape = graph.populations[proj.source].shape
        terms = memory_terms(proj, src_shape, core)
        out += np.bincount(cores, weights=terms.per_neuron, minlength=n).astype(np.int64)
        if terms.per_channel:
            plane = terms.channel_neurons
            pairs = np.unique(cores * (len(cores) // plane + 1) + np.arange(len(cores)) // plane)
            chans = np.bincount(pairs // (len(cores) // plane + 1), minlength=n)
            out += channel_bits(terms.per_channel, chans, core.memory_layout)
    return out


def _state_bits(graph: NetworkGraph, name: str, cores: np.ndarray, core: CoreSpec, n: int) -> np.ndarray:
    """Neuron-state bits of population `name` on each core (pow2 layout: channels x padded planes), int64 (n,)."""
    pop = graph.populations[name]
    bits = state_bits_per_neuron(pop, core)
    if core.memory_layout == "pow2" and len(pop.shape) == 3:
        plane = pop.shape[1] * pop.shape[2]
        stride = len(cores) // plane + 1
        pairs = np.unique(cores * stride + np.arange(len(cores)) // plane)
        padded = int(pow2ceil(pop.shape[1]) * pow2ceil(pop.shape[2]))
        return np.bincount(pairs // stride, minlength=n).astype(np.int64) * padded * bits
    return np.bincount(cores, minlength=n).astype(np.int64) * bits


def _covers(graph: NetworkGraph, core_of: dict) -> None:
    """ValueError unless every population of `graph` has one core id per neuron."""
    for name, pop in graph.populations.items():
        got = core_of.get(name)
        if got is None or np.shape(got) != (pop.size,):
            raise ValueError(f"mapping: population {name!r} ({pop.size} neurons) is not mapped as in the graph")


def core_tables(graph: NetworkGraph, chip: ChipSpec, core_of: dict[str, np.ndarray],
                n_cores: int, core_type: np.ndarray | None = None,
                fanouts: FanoutStore | None = None) -> dict[str, np.ndarray]:
    """Per-core tables of an assignment {population: int core id per neuron}: "population" (list), "neurons",
    "synapse_bits", "state_bits", "axons", "bias_entries" (int64 (n_cores,)). core_type: index into chip.core_specs of every
    core (None: all 0; PORT_TYPE: an input port's pseudo-core, costed with chip.core). fanouts: where the core
    fan-outs counted for the axons are kept for a later build_fanout on the same assignment (None: not kept).
    Raises ValueError for a malformed assignment."""
    _covers(graph, core_of)
    core_of = {k: np.asarray(v, np.int64) for k, v in core_of.items()}
    owner = _population_of_cores(graph, core_of, n_cores)
    types = np.zeros(n_cores, np.int64) if core_type is None else np.asarray(core_type, np.int64)
    specs = chip.core_specs
    out = {"population": owner, "neurons": np.zeros(n_cores, np.int64), "synapse_bits": np.zeros(n_cores, np.int64),
           "state_bits": np.zeros(n_cores, np.int64), "axons": np.zeros(n_cores, np.int64),
           "bias_entries": np.zeros(n_cores, np.int64)}
    for name in graph.populations:
        cores = core_of[name]
        out["neurons"] += np.bincount(cores, minlength=n_cores)
        for t in np.unique(types[np.unique(cores)]).tolist():
            on_t, spec = types == t, chip.core if t == PORT_TYPE else specs[t]
            out["synapse_bits"] += _synapse_bits(graph, name, cores, spec, n_cores) * on_t
            out["state_bits"] += _state_bits(graph, name, cores, spec, n_cores) * on_t
        out["axons"] += axons_per_core(graph, name, cores, n_cores, fanouts)
        out["bias_entries"] += _bias_entries(graph, name, cores, n_cores)
    return out


def _bias_entries(graph: NetworkGraph, name: str, cores: np.ndarray, n: int) -> np.ndarray:
    """Bias-memory entries per core of population `name` (one per output channel, or neuron of a dense population,
    it holds when an in-projection has a bias; CoreSpec.max_bias_entries), int64 (n,)."""
    per_channel = bias_channel_neurons(graph.in_projections(name), graph.populations[name])
    if per_channel is None:
        return np.zeros(n, np.int64)
    pairs = np.unique(cores * (graph.populations[name].size + 1) + np.arange(len(cores)) // per_channel)
    return np.bincount(pairs // (graph.populations[name].size + 1), minlength=n).astype(np.int64)


def core_types_of(mapping: Mapping, chip: ChipSpec, ports: np.ndarray | None = None) -> np.ndarray:
    """The core type (index into chip.core_specs) of every core of `mapping`, int64 (cores_used,): all 0 on a
    homogeneous chip; on a chip with core_types, the type of the core's slot when its tile has one type (e.g.
    one core per tile), else the mapping's recorded core_type. Raises ValueError when a recorded type is not the
    slot's, or a tile holds more cores of a type than it has (tiles outside the mesh are left to the placement
    check). ports: bool (cores_used,) input port pseudo-cores (ChipSpec.port_cores): PORT_TYPE, not checked."""
    ports = np.zeros(mapping.cores_used, bool) if ports is None else ports
    if chip.core_types is None:
        return np.where(ports, PORT_TYPE, 0).astype(np.int64)
    chip_types = core_types_of(dataclasses.replace(mapping, **_only(mapping, ~ports)), chip) if ports.any() else None
    if chip_types is not None:
        types = np.full(mapping.cores_used, PORT_TYPE, np.int64)
        types[~ports] = chip_types
        return types
    per_row = chip.chip_grid[0]
    gx, gy = mapping.tile_xy[:, 0], mapping.tile_xy[:, 1]
    chip_i = (gy // chip.mesh_height) * per_row + gx // chip.mesh_width
    local = (gy % chip.mesh_height) * chip.mesh_width + gx % chip.mesh_width
    slot_types = chip.slot_types()[:chip.n_cores].reshape(chip.n_tiles, chip.cores_per_tile)
    tile_types = slot_types[np.clip(local, 0, chip.n_tiles - 1)]
    single = (tile_types == tile_types[:, :1]).all(axis=1)
    types = np.where(single, tile_types[:, 0], mapping.core_type)
    names = chip.core_type_names
    bad = np.flatnonzero(single & (mapping.core_type != types) & mapping.core_type.astype(bool))
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"mapping.core_type: core {k} is recorded as type {names[mapping.core_type[k]]!r} but its "
                         f"tile holds type {names[types[k]]!r} on chip {chip.name!r}")
    key = np.stack([chip_i * chip.n_tiles + local, types], axis=1)
    pairs, counts = np.unique(key, axis=0, return_counts=True)
    for (tile, t), c in zip(pairs.tolist(), counts.tolist()):
        have = int((slot_types[tile % chip.n_tiles] == t).sum()) if 0 <= t < len(names) else 0
        if c > have:
            raise ValueError(f"mapping.core_type: a tile holds {c} cores of type "
                             f"{names[t] if 0 <= t < len(names) else t!r}; chip {chip.name!r} has {have} there")
    return types.astype(np.int64)


def _only(mapping: Mapping, keep: np.ndarray) -> dict:
    """The per-core fields of `mapping` restricted to cores `keep` (bool (cores_used,)), for dataclasses.replace
    (core_of_neuron emptied: the result only answers per-core questions)."""
    fields = ("core_neurons", "core_synapse_bits", "tile_xy", "chip_xy", "core_state_bits", "core_axons", "core_type")
    out = {f: getattr(mapping, f)[keep] for f in fields}
    return dict(out, core_population=tuple(p for p, k in zip(mapping.core_population, keep) if k), core_of_neuron={},
                verified_for=None)


def _limit(specs: tuple, types: np.ndarray, field: str) -> np.ndarray | None:
    """Per-core value of CoreSpec `field` by core type, float (n,) with inf for no limit; None when no type
    limits it."""
    values = [getattr(s, field) for s in specs]
    if all(v is None for v in values):
        return None
    return np.array([np.inf if v is None else v for v in values], float)[types]


def _check_limits(graph: NetworkGraph, chip: ChipSpec, tables: dict, core_of: dict,
                  core_type: np.ndarray | None = None) -> None:
    """ValueError naming the first core (or population) that breaks a limit of its core type on `chip`."""
    types = np.zeros(len(tables["neurons"]), np.int64) if core_type is None else core_type
    specs, typed = chip.core_specs, chip.core_types is not None
    limits = (("neurons", "neurons_per_core", "neurons"),
              ("synapse_bits", "synapse_memory_bits", "synapse-memory bits"),
              ("state_bits", "neuron_memory_bits", "neuron-state bits"), ("axons", "max_axons", "input axons"),
              ("bias_entries", "max_bias_entries", "bias-memory entries"))
    chip_core = types != PORT_TYPE  # an input port's pseudo-core has no core limits (ChipSpec.input_location)
    for key, field, what in limits:
        limit = _limit(specs, np.where(chip_core, types, 0), field)
        if limit is not None and (chip_core & (tables[key] > limit)).any():
            k = int(np.argmax(chip_core & (tables[key] > limit)))
            on = f" on core type {chip.core_type_names[types[k]]!r}" if typed else ""
            raise ValueError(f"mapping: core {k} ({tables['population'][k]!r}) holds {int(tables[key][k]):,} {what}; "
                             f"chip {chip.name!r} allows {int(limit[k]):,}{on}")
    for name in graph.populations:
        used = len(np.unique(core_of[name]))
        if chip.max_cores_per_population is not None and used > chip.max_cores_per_population:
            raise ValueError(f"mapping: population {name!r} spans {used} cores; chip {chip.name!r} allows "
                             f"{chip.max_cores_per_population}")
        fan_limit = _limit(specs, types[np.unique(core_of[name])], "max_fan_in")
        if fan_limit is not None and len(fan_limit):
            worst = max((int(fan_in(p, graph.populations[p.source].shape, PAID_COUNT[p.storage]).max(initial=0))
                         for p in graph.in_projections(name)), default=0)
            if worst > fan_limit.min():
                raise ValueError(f"mapping: population {name!r} has a neuron with fan-in {worst:,}; chip "
                                 f"{chip.name!r} allows {int(fan_limit.min()):,}")


def _check_placement(mapping: Mapping, chip: ChipSpec) -> None:
    """ValueError when the mapping uses more cores than the chips have, a tile outside the mesh, or more cores on
    a tile than cores_per_tile (an input port's pseudo-cores count for neither)."""
    if mapping.chip_cores_used > chip.n_cores_total:
        raise ValueError(f"mapping: {mapping.chip_cores_used} cores; chip {chip.name!r} x {chip.n_chips} has "
                         f"{chip.n_cores_total}")
    per_row, rows = chip.chip_grid
    xy = mapping.tile_xy
    if len(xy) and (xy.min() < 0 or xy[:, 0].max() >= chip.mesh_width * per_row
                    or xy[:, 1].max() >= chip.mesh_height * rows):
        raise ValueError(f"mapping.tile_xy: a tile lies outside the {chip.mesh_width * per_row} x "
                         f"{chip.mesh_height * rows} mesh of chip {chip.name!r}")
    _, per_tile = np.unique(xy[~mapping.is_port], axis=0, return_counts=True)
    if len(per_tile) and per_tile.max() > chip.cores_per_tile:
        raise ValueError(f"mapping.tile_xy: a tile holds {int(per_tile.max())} cores; chip {chip.name!r} has "
                         f"{chip.cores_per_tile} per tile")


def _flat(signature: object, prefix: str = "") -> dict[str, object]:
    """{dotted field: value} of a mapping signature (hwmodels.chip.signatures: nested sorted (key, value) tuples)."""
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
    naming the first field that differs and listing the others (a mapping made elsewhere and only checked is
    checked again instead)."""
    by_map_network = mapping.verified_for is not None and mapping.verified_for[2]
    if not by_map_network or mapping.verified_for[0] == mapping_signature(chip):
        return
    made, here = _flat(mapping.verified_for[0]), _flat(mapping_signature(chip))
    keys = [k for k in sorted(set(made) | set(here)) if made.get(k) != here.get(k)] or ["?"]
    key = keys[0]
    more = f" (also differs: {', '.join(keys[1:])})" if len(keys) > 1 else ""
    raise ValueError(f"mapping: made for chip {quote(mapping.chip_name)} with {key}={quote(made.get(key), 40)}, not "
                     f"for chip {quote(chip.name)} with {key}={quote(here.get(key), 40)}{more}; map the graph again "
                     "with map_network(graph, chip)")


def check_mapping(graph: NetworkGraph, mapping: Mapping, chip: ChipSpec,
                  fanouts: FanoutStore | None = None) -> Mapping:
    """The mapping with its per-core tables recomputed from the graph (neurons, synapse bits, state bits, axons:
    what it holds, whatever it records). Raises ValueError (one line) unless `mapping` covers exactly the
    populations of `graph`, was made for a chip with the same mapping-relevant fields when map_network made it
    (Mapping.verified_for; hand-made and loaded mappings are judged on what they hold), every core holds the one
    population it is recorded for, and every core limit of `chip` (neurons, synapse memory, neuron-state
    memory, input axons, bias memory, fan-in, cores per population, cores, mesh, cores per tile) holds.
    fanouts: a hwmodels.mapping.connectivity.FanoutStore that keeps the per-projection core fan-outs the check
    counts, for hwmodels.events.actions.build_fanout on the returned mapping (None: not kept)."""
    _covers(graph, mapping.core_of_neuron)
    _check_chip(mapping, chip)
    verified = mapping.verified_for is not None and mapping.verified_for[:2] == (mapping_signature(chip),
                                                                                  mapping_key(mapping))
    if verified:
        _check_placement(mapping, chip)
        return mapping  # tables computed from this graph for this chip by map_network or an earlier check
    ports = chip.port_cores(graph.populations, mapping.core_population)
    types = core_types_of(mapping, chip, ports)
    mapping = dataclasses.replace(mapping, core_type=types)
    tables = core_tables(graph, chip, mapping.core_of_neuron, mapping.cores_used, types, fanouts)
    if list(mapping.core_population) != tables["population"]:
        k = next(i for i, (a, b) in enumerate(zip(mapping.core_population, tables["population"])) if a != b)
        raise ValueError(f"mapping.core_population: core {k} is recorded as {mapping.core_population[k]!r} but holds "
                         f"{tables['population'][k]!r}")
    _check_limits(graph, chip, tables, mapping.core_of_neuron, types)
    _check_placement(mapping, chip)
    checked = dataclasses.replace(mapping, core_neurons=tables["neurons"], core_synapse_bits=tables["synapse_bits"],
                                  core_state_bits=tables["state_bits"], core_axons=tables["axons"],
                                  core_type=None if chip.core_types is None and not ports.any() else types)
    return dataclasses.replace(checked, verified_for=(mapping_signature(chip), mapping_key(checked), False))


def mapping_from_assignment(graph: NetworkGraph, chip: ChipSpec, core_of: dict[str, np.ndarray],
                            tile_xy: np.ndarray, placement: str = "user",
                            core_type: np.ndarray | None = None) -> Mapping:
    """A Mapping of `graph` on one chip from a core id per neuron ({population: int (size,)}, cores 0..n-1), the
    tile (x, y) of every core (int (n, 2)) and, on a chip whose tiles mix core types, the type of every core
    (index into chip.core_types; else taken from the tile); checked like `check_mapping`. Raises ValueError."""
    tile_xy = np.asarray(tile_xy, np.int64)
    tables = core_tables(graph, chip, core_of, len(tile_xy))
    mapping = Mapping({k: np.asarray(v, np.int64) for k, v in core_of.items()}, tuple(tables["population"]),
                      tables["neurons"], tables["synapse_bits"], tile_xy, placement, chip.name,
                      mesh_shape=(chip.mesh_width, chip.mesh_height), core_state_bits=tables["state_bits"],
                      core_axons=tables["axons"], core_type=core_type)
    return check_mapping(graph, mapping, chip)
