"""Hashable signatures of the ChipSpec fields a stage depends on: two chips with equal mapping signatures map a
graph alike, two with equal timing signatures give equal step latencies (hwmodels.simcache reuses work across
design points by them; hwmodels.mapping.check trusts a mapping made for an equal mapping signature).
"""
from __future__ import annotations

from typing import Any

from hwmodels.chip.spec import ChipSpec, CoreSpec, RouterSpec

#: ChipSpec fields that never change a mapping: the router, the barrier, provenance text, and every per-event
#: cost of a core (names ending in _j, _s or _w) and its receive mode; every other field is mapping-relevant
#: (core capacity and memory limits, mesh, cores_per_tile, chips, the chip name kept in Mapping.chip_name)
MAPPING_EXCLUDED = {"router": True, "barrier_sync_s": True, "description": True, "sources": True, "notes": True,
                    "derived_from": True, "static_power_chip_w": True, "power_gating": True,
                    "core": {f for f in CoreSpec.model_fields
                             if f.endswith(("_j", "_s", "_w", "_rule", "_per_bit", "_memory"))
                             or f in ("receive_mode", "accumulator_bits")}}


#: ChipSpec fields that never change a latency: every energy and power (names ending in _j or _w, in the core
#: and the router) and the provenance text; the timing of a batch depends on every other field
TIMING_EXCLUDED = {"name": True, "description": True, "sources": True, "notes": True, "derived_from": True,
                   "static_power_chip_w": True, "power_gating": True,
                   "core": {f for f in CoreSpec.model_fields
                            if f.endswith(("_j", "_w", "_per_bit", "_memory")) or f == "accumulator_bits"},
                   "router": {f for f in RouterSpec.model_fields if f.endswith(("_j", "_w"))}}


def frozen(value: Any) -> Any:
    """A hashable copy of nested dicts/lists of plain values."""
    if isinstance(value, dict):
        return tuple(sorted((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set)):
        return tuple(frozen(v) for v in value)
    return value


def mapping_signature(chip: ChipSpec) -> tuple:
    """The mapping-relevant fields of `chip` as a hashable value (chips with equal signatures map alike)."""
    return frozen(chip.model_dump(exclude=MAPPING_EXCLUDED))


def timing_signature(chip: ChipSpec) -> tuple:
    """The latency-relevant fields of `chip` as a hashable value (equal signatures: equal step latencies)."""
    return frozen(chip.model_dump(exclude=TIMING_EXCLUDED))


def partition_signature(chip: ChipSpec) -> tuple:
    """The fields hwmodels.mapping.partition reads to cut the populations into core-sized chunks, before it counts
    them against the chip's cores, as a hashable value: on a homogeneous chip the chip name (its errors name
    it), the core's mapping-relevant fields and the input location, so chips that differ only in their mesh,
    cores per tile or number of chips share the chunks; on a chip with core types (populations are given types
    by the cores of each type) the whole mapping signature."""
    if chip.core_types is not None:
        return mapping_signature(chip)
    return frozen(chip.model_dump(include={"name": True, "core": True, "input_location": True},
                                  exclude={"core": MAPPING_EXCLUDED["core"]}))
