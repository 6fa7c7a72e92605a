"""Import a SANA-FE 2.x architecture file (YAML) as a ChipSpec: `from_sanafe(path)`, every number with provenance.

SANA-FE (Boyle et al., "SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast Exploration", IEEE TCAD
44(8), 2025; pip package sanafe 2.2, GPL-3.0) describes a chip as `architecture:` -> `tile:` -> `core:` -> a
pipeline of units `axon_in`, `synapse`, `dendrite`, `soma`, `axon_out`, each with per-event energies in J and
latencies in s (its docs' attribute table, "Framework attributes"; its loihi.yaml writes 35.5e-12 J and 3.8e-9 s).
ChipSpec is SI too, so every number is taken unchanged. The file is read with yaml.safe_load; sanafe itself is never
imported (it is an optional peer) and none of its code is copied. hwmodels/chip/presets/loihi-sanafe.yaml is the same
mapping done by hand for SANA-FE's loihi.yaml (tests/crosscheck/test_sanafe_arch.py compares the two field by field).

Mapping (SANA-FE attribute -> ChipSpec field). Sources: SANA-FE's documentation (README "Architecture
Description"; docs/models "Framework attributes": the meaning and unit of each attribute) and Boyle et al. 2025 (the
pipeline, the soma's access / update rules and the detailed timing model); "measured" marks what was checked by
running sanafe 2.2.9.

  architecture.attributes
    width, height                    -> mesh_width, mesh_height (tile t at x = t // height, y = t % height; the file
                                        must declare exactly width x height tiles)
    link_buffer_size                 -> router.buffer_depth (messages)
    topology                         -> must be mesh (absent = mesh)
    sync_model fixed, latency_sync   -> barrier_sync_s {1: latency_sync} (absent: 0.0, SANA-FE's default)
    sync_model table, latency_sync   -> barrier_sync_s: SANA-FE takes the entry of the largest key <= tiles in use
                                        (below the smallest key, that key's entry; measured with sanafe 2.2.9),
                                        ChipSpec interpolates linearly, so key 0 serves from 1 tile and a point
                                        (next key - 1, value) is added wherever a step would otherwise become a ramp
  tile.attributes
    energy_east_hop = energy_west_hop    -> router.hop_energy_ew_j    (latency_*: router.hop_latency_ew_s)
    energy_north_hop = energy_south_hop  -> router.hop_energy_ns_j    (latency_*: router.hop_latency_ns_s)
  core (count per tile)              -> cores_per_tile
  core.attributes
    max_neurons_supported            -> core.neurons_per_core
    buffer_position: soma, buffer_inside_unit: false (the only accepted pipeline: each received message goes
                                        through axon_in, synapse and dendrite, then the soma loop runs)
  axon_in   energy/latency_message_in       -> core.message_in_energy_j / _latency_s (per message received)
  synapse (model current_based)
            energy/latency_process_spike    -> core.synop_energy_j.<format> / synop_latency_s.<format> (per synapse
                                        visited). With one synapse unit it serves every storage format; with several,
                                        a unit whose name holds the word dense, sparse, conv or bitmap serves that
                                        format and one unit named by none of them serves the formats no unit names
                                        (bitmap unnamed: None, i.e. as sparse)
  dendrite (accumulator, accumulator_with_delay)
            energy/latency_update           -> core.dendrite_energy_j / _latency_s (per synaptic event, as sanafe
                                        2.2.9 charges it: measured, 2 spikes x 3 synapses = 6 updates)
  soma (leaky_integrate_fire)
            energy/latency_access_neuron    -> core.neuron_access_energy_j / _latency_s, neuron_access_rule
                                        every_step (every mapped non-input neuron, every step)
            energy/latency_update_neuron    -> core.neuron_inactive_energy_j / _latency_s, neuron_update_rule active
            ... + energy/latency_spike_out  -> core.neuron_active_energy_j / _latency_s (an update that spikes)
  soma (input)                       -> dropped; all its costs must be 0 (ChipSpec charges input neurons no soma)
  axon_out  energy/latency_message_out      -> core.message_out_energy_j / _latency_s (per message: spike x
                                        destination core)
  SANA-FE's detailed timing model    -> core.receive_mode serial, router.congestion_model density; memories folded
                                        (its per-event costs include the memory accesses)

Not in a SANA-FE file (source key "assumption" or "boyle2025"; override them with the chip's own values):
core.synapse_memory_bits = 2**32 (SANA-FE has no synapse-memory limit; a stand-in for none),
router.link_bandwidth_msgs_per_s = 1e18 (SANA-FE has no link bandwidth; 1e-18 s per message stands in for none),
core.static_power_w, core.sram_static_w_per_bit, static_power_chip_w = 0 (SANA-FE models no static power),
core.accumulator_bits = 0 (its per-event costs include the accumulator), n_chips = 1; the optional fields (fan-in,
axon and neuron-memory limits, stored bit widths, chip links) stay None and power_gating keeps its default, cores.

Dropped: log_energy / log_latency (reporting switches), core, tile and unit names, input somas of zero cost, units
of one kind that repeat the same costs (e.g. loihi.yaml's accumulator_with_delay dendrite: the NetworkGraph has no
synaptic delays), top-level sections other than `architecture` (SANA-FE ignores them too).

Refused with a one-line ValueError naming the file, the unit and the attribute: any other key or attribute (plugins,
neuron parameters, force_update, update_every_timestep, ...), other unit models (truenorth, taps, plugins), east
and west (or north and south) hop costs that differ, cores or tiles that differ (ChipSpec has one core type),
units of one kind with different costs (synapse units apart, by format), a tile count other than width x height,
numbers that are not finite and >= 0. Locations read tile[i].core[j] by entry position in the file's lists.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from hwmodels.npzfile import file_name, quote
from hwmodels.chip.chipfile import CHIP_FILE_MAX_BYTES, check_tree
from hwmodels.chip.spec import ChipSpec

UNIT_KINDS = ("axon_in", "synapse", "dendrite", "soma", "axon_out")
#: per-event cost attributes of each unit kind (SANA-FE framework attributes), all required
COSTS = {"axon_in": ("energy_message_in", "latency_message_in"),
         "synapse": ("energy_process_spike", "latency_process_spike"),
         "dendrite": ("energy_update", "latency_update"),
         "soma": ("energy_access_neuron", "latency_access_neuron", "energy_update_neuron", "latency_update_neuron",
                  "energy_spike_out", "latency_spike_out"),
         "axon_out": ("energy_message_out", "latency_message_out")}
#: unit models with a ChipSpec equivalent (None: the kind has no model attribute)
MODELS = {"axon_in": None, "synapse": ("current_based",), "dendrite": ("accumulator", "accumulator_with_delay"),
          "soma": ("leaky_integrate_fire", "input"), "axon_out": None}
REPORTING = ("log_energy", "log_latency")
FORMAT_WORDS = ("dense", "sparse", "conv", "bitmap")
HOPS = (("hop_energy_ew_j", "energy_east_hop", "energy_west_hop"), ("hop_energy_ns_j", "energy_north_hop",
         "energy_south_hop"), ("hop_latency_ew_s", "latency_east_hop", "latency_west_hop"),
        ("hop_latency_ns_s", "latency_north_hop", "latency_south_hop"))
#: ChipSpec fields a SANA-FE file does not describe: (key, value, source key, note)
NOT_IN_FILE = (
    ("core.synapse_memory_bits", 2 ** 32, "assumption",
     "ASSUMPTION: SANA-FE sets no synapse-memory limit; 2**32 bits per core stands in for none (sparse row "
     "pointers are then 32 bits); override core.synapse_memory_bits with the chip's size"),
    ("router.link_bandwidth_msgs_per_s", 1e18, "assumption",
     "ASSUMPTION: SANA-FE has no link bandwidth (its detailed timing model derives congestion from the messages in "
     "flight: router.congestion_model density); 1e18 messages/s (1e-18 s per message) stands in for none"),
    ("core.static_power_w", 0.0, "boyle2025",
     "SANA-FE models no static power, so the energy is SANA-FE's dynamic energy; override to add leakage"),
    ("core.sram_static_w_per_bit", 0.0, "boyle2025", "SANA-FE models no static power (no SRAM leakage)"),
    ("static_power_chip_w", 0.0, "boyle2025", "SANA-FE models no static power (no chip-level leakage)"),
    ("core.accumulator_bits", 0, "boyle2025", "SANA-FE charges no separate accumulator access: its synapse and "
     "dendrite costs per synaptic event include it"),
    ("n_chips", 1, "boyle2025", "a SANA-FE architecture file describes one chip"))
SOURCES = {
    "boyle2025": "J. A. Boyle, M. Plagge, S. G. Cardwell, F. S. Chance, A. Gerstlauer, \"SANA-FE: Simulating "
                 "Advanced Neuromorphic Architectures for Fast Exploration\", IEEE Trans. Computer-Aided Design of "
                 "Integrated Circuits and Systems 44(8):3165-3178, 2025, doi:10.1109/TCAD.2025.3537971 (pipeline, "
                 "soma rules and detailed timing model that the architecture file's costs are charged by)",
    "assumption": "not described by a SANA-FE architecture file: a stand-in that keeps SANA-FE's behaviour (no "
                  "limit), to be overridden with the chip's own value"}
SETTINGS = {"core.neuron_access_rule": "every_step", "core.neuron_update_rule": "active",
            "core.receive_mode": "serial", "router.congestion_model": "density",
            "core.synapse_memory": {"folded": True, "reason": "SANA-FE's energy_process_spike per synapse is the "
                                    "synapse unit's whole cost (weight read included)"},
            "core.state_memory": {"folded": True, "reason": "SANA-FE's soma access and update energies include "
                                  "the neuron-state access"}}
_RANGE = re.compile(r"(.*)\[(\d{1,9})\.\.(\d{1,9})\]")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


@dataclass(frozen=True)
class Leaf:
    """One ChipSpec number: dotted key, value, source key (in the ChipSpec's sources) and where it comes from."""

    key: str
    value: float | int
    source: str
    note: str


@dataclass(frozen=True)
class Unit:
    """One pipeline unit of a core: kind, name, model (None for axons), costs {attribute: value}, location."""

    kind: str
    name: str
    model: str | None
    costs: dict[str, float]
    where: str


def from_sanafe(path: str | Path) -> ChipSpec:
    """The ChipSpec of SANA-FE architecture file `path` (see the module docstring for the mapping).

    sources: "sanafe_file" (the file's path and sha256), "boyle2025" and "assumption"; notes: one entry per number,
    keyed by its dotted ChipSpec field, "<source key>: <where in the file>", plus "dropped" and "semantics".
    Raises ValueError (one line, naming the file) for a missing or unreadable file, YAML that is not a mapping
    with an `architecture` section, and anything ChipSpec cannot represent (naming the unit and attribute).
    """
    return _import(path)[0]


def sanafe_leaves(path: str | Path) -> list[dict]:
    """Every number of `from_sanafe(path)` with its provenance, as hwmodels.chip.presets.preset_leaves rows:
    [{"key": dotted field, "value", "source": key in the ChipSpec's sources, "note": where it comes from}]."""
    return [vars(leaf).copy() for leaf in _import(path)[1]]


def _import(path: str | Path) -> tuple[ChipSpec, list[Leaf]]:
    try:
        tree, digest = _read(path)
        name, leaves, dropped = _architecture(tree["architecture"])
        ignored = [f"top-level section {quote(k)} (SANA-FE ignores it too)" for k in tree if k != "architecture"]
        return _chip(path, digest, name, leaves, dropped + ignored), leaves
    except ValueError as exc:
        raise ValueError(f"sanafe arch {file_name(path)!r}: {exc}") from None


def _read(path: str | Path) -> tuple[dict, str]:
    """(the file's YAML mapping, which has an `architecture` mapping; sha256 of the file's bytes). A device, a
    FIFO or a file over CHIP_FILE_MAX_BYTES is refused, as for a chip file (/dev/zero would be read forever)."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir() and not p.is_file():
            raise ValueError("is not a regular file")
        with open(p, "rb") as fh:
            data = fh.read(CHIP_FILE_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > CHIP_FILE_MAX_BYTES:
        raise ValueError(f"is over {CHIP_FILE_MAX_BYTES:,} bytes")
    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    except RecursionError:
        raise ValueError("nests too deeply") from None
    check_tree(tree, "content", finite=False)  # alias bombs and deep nesting as for chip files (NaN: named below)
    if not isinstance(tree, dict):
        raise ValueError(f"must hold a mapping with an 'architecture' section, got {type(tree).__name__}")
    if not isinstance(tree.get("architecture"), dict):
        raise ValueError("has no 'architecture' mapping (a SANA-FE architecture file starts with 'architecture:')")
    return tree, hashlib.sha256(data).hexdigest()


def _chip(path: str | Path, digest: str, name: str, leaves: list[Leaf], dropped: list[str]) -> ChipSpec:
    body: dict[str, Any] = {}
    for key, value in [(leaf.key, leaf.value) for leaf in leaves] + list(SETTINGS.items()):
        *parents, last = [int(p) if p.isdigit() else p for p in key.split(".")]
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    sources = {"sanafe_file": f"SANA-FE architecture file {Path(path).resolve()} (sha256 {digest}), architecture "
                              f"{name!r}; read by hwmodels.chip.sanafe.from_sanafe (energies in J, latencies in "
                              "s, as SANA-FE writes them)", **SOURCES}
    return ChipSpec(name=name, description=_description(path, name, body), sources=sources,
                    notes=_notes(leaves, dropped), **body)


def _description(path: str | Path, name: str, body: dict) -> str:
    return (f"SANA-FE architecture {name!r} imported from {file_name(path)}: {body['mesh_width']} x "
            f"{body['mesh_height']} tiles, {body['cores_per_tile']} cores per tile, "
            f"{body['core']['neurons_per_core']} neurons per core, per-event costs as SANA-FE charges them. "
            "SANA-FE gives no synapse-memory size, link bandwidth or static power: see the notes")


def _notes(leaves: list[Leaf], dropped: list[str]) -> dict[str, str]:
    """{dotted field: "<source key>: <where>"} for every number, plus "dropped" and "semantics"."""
    notes = {leaf.key: f"{leaf.source}: {leaf.note}" for leaf in leaves}
    notes["dropped"] = "; ".join(dropped + ["log_energy / log_latency switches; tile, core and unit names"])
    notes["semantics"] = ("SANA-FE's soma charges the access cost to every mapped neuron every step and the update "
                          "cost to active neurons; its detailed timing model processes each message serially "
                          "(receive_mode serial) and delays messages by the density of messages in flight "
                          "(congestion_model density); its per-event costs include the memory accesses (folded)")
    return notes


def _architecture(arch: dict) -> tuple[str, list[Leaf], list[str]]:
    """(architecture name, every number as a Leaf, what was dropped)."""
    where = "architecture"
    _keys(arch, ("name", "attributes", "tile"), where)
    name = arch.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: needs a 'name' string")
    attrs = _attributes(arch, where, ("width", "height", "link_buffer_size", "topology", "sync_model",
                                      "latency_sync"))
    if attrs.get("topology", "mesh") != "mesh":
        raise ValueError(f"{where}: attribute 'topology' = {quote(attrs['topology'])} has no ChipSpec equivalent "
                         "(ChipSpec is a mesh)")
    width, height = _count(attrs, "width", where), _count(attrs, "height", where)
    leaves = [_leaf("mesh_width", width, f"{where} width"), _leaf("mesh_height", height, f"{where} height"),
              _leaf("router.buffer_depth", _count(attrs, "link_buffer_size", where), f"{where} link_buffer_size")]
    leaves += _barrier(attrs)
    tiles, tile_leaves, dropped = _tiles(arch)
    if tiles != width * height:
        raise ValueError(f"{where}: declares {tiles} tile(s) but width x height = {width} x {height} = "
                         f"{width * height}; ChipSpec needs a full mesh")
    leaves += tile_leaves + [Leaf(*row) for row in NOT_IN_FILE]
    return name, leaves, dropped


def _tiles(arch: dict) -> tuple[int, list[Leaf], list[str]]:
    """(tile count, the leaves of tile entry 0 (router and core), dropped), refusing tile entries that differ."""
    entries = [_tile(node, f"tile[{i}]") for i, node in enumerate(_entries(arch, "tile", "architecture"))]
    for i, (_, leaves, _) in enumerate(entries[1:], 1):
        _same(entries[0][1], leaves, "tile[0]", f"tile[{i}]", "tile")
    return sum(e[0] for e in entries), entries[0][1], entries[0][2]


def _tile(node: dict, where: str) -> tuple[int, list[Leaf], list[str]]:
    """(instances of this tile entry, its router and core leaves, dropped)."""
    _keys(node, ("name", "attributes", "core"), where)
    count = _instances(node, where)
    attrs = _attributes(node, where, tuple(a for _, *pair in HOPS for a in pair))
    leaves = []
    for field, a, b in HOPS:
        va, vb = _number(attrs, a, where), _number(attrs, b, where)
        if va != vb:
            raise ValueError(f"{where}: attribute {b!r} = {vb!r} differs from {a!r} = {va!r}; ChipSpec has one "
                             f"cost per axis ({field})")
        leaves.append(_leaf(f"router.{field}", va, f"{where} {a} = {b}"))
    cores = [_core(c, f"{where}.core[{j}]") for j, c in enumerate(_entries(node, "core", where))]
    for j, (_, core_leaves, _) in enumerate(cores[1:], 1):
        _same(cores[0][1], core_leaves, f"{where}.core[0]", f"{where}.core[{j}]", "core")
    per_tile = sum(c[0] for c in cores)
    leaves.append(_leaf("cores_per_tile", per_tile, f"{where}: {per_tile} core(s), identical"))
    return count, leaves + cores[0][1], cores[0][2]


def _same(first: list[Leaf], other: list[Leaf], first_where: str, other_where: str, what: str) -> None:
    """Refuse `other` (the numbers of a tile or core entry at other_where) unless they equal `first`'s."""
    mine, theirs = {leaf.key: leaf for leaf in first}, {leaf.key: leaf for leaf in other}
    for key in list(mine) + [k for k in theirs if k not in mine]:
        a, b = mine.get(key), theirs.get(key)
        if a is None or b is None:
            raise ValueError(f"{other_where if b is None else first_where}: gives no {key}, which "
                             f"{first_where if b is None else other_where} gives: ChipSpec has one {what} type "
                             "(heterogeneous cores are not supported yet)")
        if a.value != b.value:
            raise ValueError(f"{b.note} = {b.value!r} differs from {a.note} = {a.value!r}: ChipSpec has one "
                             f"{what} type (heterogeneous cores are not supported yet)")


def _core(node: dict, where: str) -> tuple[int, list[Leaf], list[str]]:
    """(instances of this core entry, its core.* leaves, dropped)."""
    _keys(node, ("name", "attributes") + UNIT_KINDS, where)
    count = _instances(node, where)
    attrs = _attributes(node, where, ("buffer_position", "buffer_inside_unit", "max_neurons_supported"))
    if attrs.get("buffer_position") != "soma" or _flag(attrs, "buffer_inside_unit", where):
        raise ValueError(f"{where}: attributes buffer_position = {quote(attrs.get('buffer_position'))}, "
                         f"buffer_inside_unit = {attrs.get('buffer_inside_unit', False)!r} have no ChipSpec "
                         "equivalent (only buffer_position: soma, buffer_inside_unit: false)")
    units = {kind: [_unit(kind, u, where) for u in _entries(node, kind, where)] for kind in UNIT_KINDS}
    leaves = [_leaf("core.neurons_per_core", _count(attrs, "max_neurons_supported", where),
                    f"{where} max_neurons_supported")]
    dropped: list[str] = []
    axon_in, axon_out = _one(units["axon_in"], dropped), _one(units["axon_out"], dropped)
    leaves += _unit_leaves(axon_in, {"message_in_energy_j": "energy_message_in",
                                     "message_in_latency_s": "latency_message_in"})
    leaves += _synapses(units["synapse"], where, dropped)
    leaves += _unit_leaves(_one(units["dendrite"], dropped), {"dendrite_energy_j": "energy_update",
                                                              "dendrite_latency_s": "latency_update"})
    leaves += _soma(units["soma"], where, dropped)
    leaves += _unit_leaves(axon_out, {"message_out_energy_j": "energy_message_out",
                                      "message_out_latency_s": "latency_message_out"})
    return count, leaves, dropped


def _unit(kind: str, node: dict, where: str) -> Unit:
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.{kind}: a unit needs a 'name' string")
    here = f"{where}.{kind} {quote(name)}"
    _keys(node, ("name", "attributes"), here)
    attrs = _attributes(node, here, COSTS[kind] + (("model",) if MODELS[kind] else ()))
    model = None
    if MODELS[kind]:
        model = attrs.get("model")
        if model is None:
            raise ValueError(f"{here}: attribute 'model' is missing")
        if model not in MODELS[kind]:
            raise ValueError(f"{here}: model {quote(model)} has no ChipSpec equivalent (accepted: "
                             f"{', '.join(MODELS[kind])})")
    return Unit(kind, name, model, {a: _number(attrs, a, here) for a in COSTS[kind]}, here)


def _one(units: list[Unit], dropped: list[str]) -> Unit:
    """The single unit that units of one kind collapse into: the first, when all costs are equal."""
    first = units[0]
    for u in units[1:]:
        for attr, value in u.costs.items():
            if value != first.costs[attr]:
                raise ValueError(f"{u.where}: attribute {attr!r} = {value!r} differs from {u.kind} {first.name!r} "
                                 f"({first.costs[attr]!r}); ChipSpec has one {u.kind} unit per core")
        dropped.append(f"{u.kind} {u.name!r} ({u.model or u.kind}): same costs as {first.name!r}")
    return first


def _unit_leaves(unit: Unit, fields: dict[str, str]) -> list[Leaf]:
    return [_leaf(f"core.{field}", unit.costs[attr], f"{unit.where} {attr}") for field, attr in fields.items()]


def _synapses(units: list[Unit], where: str, dropped: list[str]) -> list[Leaf]:
    """synop_energy_j / synop_latency_s per storage format, from the synapse units by the format word their names
    hold (case-insensitive, anywhere in the name: 'conv2d', 'DenseSynapse'; one unit: every format; a unit named
    by no format word: dense, sparse or conv where no unit names them, and listed in `dropped` when all three are
    named; bitmap without a unit of its own takes sparse's cost, ChipSpec's rule)."""
    by_format: dict[str, Unit] = {}
    rest = []
    for u in units:
        words = {w for w in FORMAT_WORDS if w in u.name.lower()}
        if len(words) > 1 and len(units) > 1:
            raise ValueError(f"{u.where}: the name holds the format words {', '.join(sorted(words))}; name one")
        if len(words) == 1 and len(units) > 1:
            fmt = words.pop()
            if fmt in by_format:
                raise ValueError(f"{u.where}: a second synapse unit for storage format {fmt!r} (after "
                                 f"{by_format[fmt].name!r}); ChipSpec has one cost per format")
            by_format[fmt] = u
        else:
            rest.append(u)
    default = _one(rest, dropped) if rest else None
    for fmt in ("dense", "sparse", "conv"):
        if fmt not in by_format and default is None:
            raise ValueError(f"{where}.synapse: no unit for storage format {fmt!r} (name one '..._{fmt}_...' or "
                             "add a unit named by no format word)")
    if default is not None and all(fmt in by_format for fmt in ("dense", "sparse", "conv")):
        dropped.append(f"synapse {default.name!r}: every storage format has a unit named for it (bitmap without "
                       "one takes sparse's cost)")
    for fmt in ("dense", "sparse", "conv"):
        by_format.setdefault(fmt, default)
    return [_leaf(f"core.synop_{field}.{fmt}", u.costs[attr], f"{u.where} {attr}")
            for field, attr in (("energy_j", "energy_process_spike"), ("latency_s", "latency_process_spike"))
            for fmt, u in by_format.items()]


def _soma(units: list[Unit], where: str, dropped: list[str]) -> list[Leaf]:
    """Neuron access / update costs from the leaky_integrate_fire somas; input somas must cost nothing."""
    for u in units:
        if u.model == "input":
            paid = [(a, v) for a, v in u.costs.items() if v != 0.0]
            if paid:
                raise ValueError(f"{u.where}: attribute {paid[0][0]!r} = {paid[0][1]!r}, but ChipSpec charges "
                                 "input neurons no soma cost (an input soma must cost 0)")
            dropped.append(f"soma {u.name!r} (input, zero cost)")
    lif = [u for u in units if u.model != "input"]
    if not lif:
        raise ValueError(f"{where}.soma: no leaky_integrate_fire unit (only input somas)")
    u = _one(lif, dropped)
    c = u.costs
    return [*_unit_leaves(u, {"neuron_access_energy_j": "energy_access_neuron",
                              "neuron_access_latency_s": "latency_access_neuron",
                              "neuron_inactive_energy_j": "energy_update_neuron",
                              "neuron_inactive_latency_s": "latency_update_neuron"}),
            _leaf("core.neuron_active_energy_j", _add(c["energy_update_neuron"], c["energy_spike_out"]),
                  f"{u.where} energy_update_neuron + energy_spike_out (an updated neuron that spikes)"),
            _leaf("core.neuron_active_latency_s", _add(c["latency_update_neuron"], c["latency_spike_out"]),
                  f"{u.where} latency_update_neuron + latency_spike_out")]


def _add(a: float, b: float) -> float:
    """a + b summed as the decimal numbers the file writes, rounded once (21.6e-12 + 69.3e-12 = 90.9e-12 exactly
    as a float literal would give it, where float addition is one ulp off)."""
    return float(Decimal(repr(a)) + Decimal(repr(b)))


def _barrier(attrs: dict) -> list[Leaf]:
    """barrier_sync_s from sync_model / latency_sync (SANA-FE: fixed by default, latency_sync 0.0 by default)."""
    model = attrs.get("sync_model", "fixed")
    if model == "fixed":
        if "latency_sync" not in attrs:
            return [_leaf("barrier_sync_s.1", 0.0, "architecture: no latency_sync (SANA-FE's default: fixed 0.0)")]
        return [_leaf("barrier_sync_s.1", _number(attrs, "latency_sync", "architecture"),
                      "architecture latency_sync (sync_model fixed: any tile count)")]
    if model != "table":
        raise ValueError(f"architecture: attribute 'sync_model' = {quote(model)} has no ChipSpec equivalent "
                         "(accepted: fixed, table)")
    return _steps(_sync_table(attrs.get("latency_sync")))


def _sync_table(raw: Any) -> dict[int, float]:
    """{tiles: s} of a table latency_sync: a mapping, a list (key = position) or one number (key 0)."""
    where = "architecture: attribute 'latency_sync'"
    if raw is None:
        raise ValueError(f"{where} is missing (sync_model table needs it)")
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else [(0, raw)]
    table = {}
    for key, value in items:
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise ValueError(f"{where}: key {quote(key)} is not a tile count >= 0")
        table[key] = _number({"v": value}, "v", f"{where}[{key}]")
    if not table:
        raise ValueError(f"{where}: the table is empty")
    return table


def _steps(table: dict[int, float]) -> list[Leaf]:
    """SANA-FE's step table (largest key <= tiles) as points that ChipSpec's linear interpolation reproduces."""
    rows = [(max(k, 1), v, f"architecture latency_sync[{k}]") for k, v in sorted(table.items())
            if k > 0 or 1 not in table]
    leaves = []
    for (k, v, note), nxt in zip(rows, rows[1:] + [None]):
        leaves.append(_leaf(f"barrier_sync_s.{k}", v, note))
        if nxt is not None and nxt[0] - k > 1 and nxt[1] != v:
            leaves.append(_leaf(f"barrier_sync_s.{nxt[0] - 1}", v,
                                f"repeats latency_sync[{k}] up to {nxt[0] - 1} tiles (SANA-FE takes the entry of "
                                "the largest key <= tiles in use; ChipSpec interpolates linearly)"))
    return leaves


def _leaf(key: str, value: float | int, note: str) -> Leaf:
    return Leaf(key, value, "sanafe_file", note)


def _entries(node: dict, key: str, where: str) -> list[dict]:
    """The entries under `key` (SANA-FE accepts one mapping or a list of them); the section is required."""
    if key not in node:
        raise ValueError(f"{where}: no {key!r} section (SANA-FE requires one)")
    items = [node[key]] if isinstance(node[key], dict) else node[key]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"{where}.{key}: must be a mapping or a non-empty list of mappings")
    return items


def _keys(node: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in node:
        if key not in allowed:
            raise ValueError(f"{where}: key {quote(key)} has no ChipSpec equivalent (accepted: {', '.join(allowed)})")


def _attributes(node: dict, where: str, allowed: tuple[str, ...]) -> dict:
    """The node's `attributes` mapping, refusing attributes outside `allowed` + REPORTING."""
    attrs = node.get("attributes")
    if not isinstance(attrs, dict):
        raise ValueError(f"{where}: needs an 'attributes' mapping")
    for key in attrs:
        if key not in allowed + REPORTING:
            raise ValueError(f"{where}: attribute {quote(key)} has no ChipSpec equivalent")
    for key in REPORTING:
        _flag(attrs, key, where)
    return attrs


def _instances(node: dict, where: str) -> int:
    """Instances of a tile or core entry: n for a name 'base[a..b]' (b - a + 1), else 1."""
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: needs a 'name' string")
    if ".." not in name:
        return 1
    m = _RANGE.fullmatch(name)
    if m is None or int(m[3]) < int(m[2]):
        raise ValueError(f"{where}: name {quote(name)} is not of the form base[first..last]")
    return int(m[3]) - int(m[2]) + 1


def _number(attrs: dict, key: str, where: str) -> float:
    """Attribute `key` as a finite float >= 0 (YAML 1.2 number strings such as '1e-12' included)."""
    if key not in attrs:
        raise ValueError(f"{where}: attribute {key!r} is missing (ChipSpec needs it)")
    value, number = attrs[key], math.nan
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        number = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e308 else math.inf
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{where}: attribute {key!r} = {quote(value)} is not a finite number >= 0")
    return number


def _count(attrs: dict, key: str, where: str) -> int:
    if key not in attrs:
        raise ValueError(f"{where}: attribute {key!r} is missing (ChipSpec needs it)")
    value = attrs[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: attribute {key!r} = {quote(value)} is not an integer >= 1")
    return value


def _flag(attrs: dict, key: str, where: str) -> bool:
    value = attrs.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: attribute {key!r} = {quote(value)} is not true or false")
    return value
