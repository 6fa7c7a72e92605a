"""Chip presets: YAML package data in hwmodels/presets/, every number with its source, loaded into a ChipSpec.

A number in a preset file is written as a leaf `{value: <number>, source: <key>[, note: <text>]}` whose key
resolves in the file's top-level `sources:` map (full citations); the loader checks and strips these leaves.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from hwmodels.npzfile import quote
from hwmodels.spec import ChipSpec

PRESET_DIR = Path(__file__).with_name("presets")
LEAF_KEYS = ("value", "source", "note")


def list_presets() -> list[str]:
    """Names of the shipped presets (file stems in hwmodels/presets/), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_preset(name: str) -> dict:
    """The raw YAML mapping of preset `name`, source leaves still in place.

    Raises ValueError listing the shipped presets when `name` is not one of them.
    """
    names = list_presets()
    if name not in names:
        raise ValueError(f"preset: {quote(name)} is not one of {', '.join(names)}")
    with open(PRESET_DIR / f"{name}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def strip_sources(node: Any, sources: dict[str, str], path: str = "") -> Any:
    """Replace every `{value, source[, note]}` leaf under `node` by its value, checking provenance.

    Raises ValueError (naming the YAML path) when a number has no source leaf, when a source key is not in
    `sources`, when a leaf has keys other than value/source/note, or when a leaf's value is not a finite number.
    """
    if isinstance(node, dict) and "value" in node:
        extra = set(node) - set(LEAF_KEYS)
        if extra or "source" not in node:
            raise ValueError(f"preset {path}: a leaf needs keys value, source (optional note); got {sorted(node)}")
        if node["source"] not in sources:
            raise ValueError(f"preset {path}.source: {quote(node['source'])} is not one of {', '.join(sources)}")
        if not _is_number(node["value"]):
            raise ValueError(f"preset {path}.value: {quote(node['value'])} is not a number")
        if not math.isfinite(node["value"]):
            raise ValueError(f"preset {path}.value: {node['value']!r} is not a finite number (NaN and inf refused)")
        return node["value"]
    if isinstance(node, dict):
        return {k: strip_sources(v, sources, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [strip_sources(v, sources, f"{path}[{i}]") for i, v in enumerate(node)]
    if _is_number(node):
        raise ValueError(f"preset {path}: number {node!r} has no source; write {{value: {node!r}, source: <key>}}")
    return node


def preset_leaves(name: str) -> list[dict]:
    """Every number of preset `name` with its provenance: [{"key": dotted path, "value", "source": citation key,
    "note"}], in file order. Raises ValueError for an unknown preset."""
    raw = read_preset(name)
    out: list[dict] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "value" in node:
            out.append({"key": path, "value": node["value"], "source": node.get("source", ""),
                        "note": " ".join(str(node.get("note", "")).split())})
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
    walk({k: v for k, v in raw.items() if k not in ("sources", "notes")}, "")
    return out


#: words in a leaf's note (or its source key) that mark a number as not printed as such in its source
ASSUMPTION_MARKS = ("ASSUMPTION", "DERIVED", "placeholder")


def preset_assumptions(name: str) -> list[dict]:
    """The leaves of preset `name` that are modelling assumptions or derived estimates (source key
    "assumption", or ASSUMPTION / DERIVED / placeholder in the note), as `preset_leaves` rows."""
    return [leaf for leaf in preset_leaves(name)
            if leaf["source"] == "assumption" or any(m in leaf["note"] for m in ASSUMPTION_MARKS)]


def override_keys(model: type[BaseModel] = ChipSpec, prefix: str = "") -> list[str]:
    """Dotted keys accepted by `load_preset(..., overrides)`: every leaf field of ChipSpec (nested records
    descended, e.g. 'core.synop_energy_j.dense'; 'barrier_sync_s' replaces the whole table)."""
    keys = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += override_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def apply_overrides(chip: ChipSpec, overrides: dict[str, Any] | None) -> ChipSpec:
    """A new ChipSpec with dotted-key overrides applied and validated, e.g. {"core.synapse_memory_bits": 65536}.

    Raises ValueError naming the key and listing the accepted keys for an unknown key, and a one-line
    ValueError naming the field and its bounds for a bad value.
    """
    accepted = override_keys()
    data = chip.model_dump()
    for key, value in (overrides or {}).items():
        if key not in accepted:
            raise ValueError(f"override key {quote(key)} is not one of {', '.join(accepted)}")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return ChipSpec(**data)


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> ChipSpec:
    """Load the shipped preset `name` into a ChipSpec, then apply dotted `overrides` (see `apply_overrides`).

    Raises ValueError for an unknown preset (listing the presets), a number without a resolvable source, an
    unknown override key (listing the accepted keys) or a value outside its field's bounds.
    """
    raw = read_preset(name)
    sources = raw.get("sources") or {}
    body = strip_sources({k: v for k, v in raw.items() if k != "sources"}, sources)
    chip = ChipSpec(sources=sources, **body)
    return apply_overrides(chip, overrides) if overrides else chip
