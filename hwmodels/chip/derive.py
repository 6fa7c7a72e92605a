"""Derive a chip file from a preset or another chip file (`codesign presets derive`): the base's
`{value, source, note}` leaves are kept, every changed value becomes a leaf with source `derived` (a `sources`
entry says from what, when and what changed) and a top-level `derived_from` block records the same provenance.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from hwmodels.chip.chipfile import CHIP_FILE_SUFFIXES, chip_file_label, dump_chip_yaml, write_chip_file
from hwmodels.npzfile import quote
from hwmodels.chip.presets import (PROVENANCE_KEYS, apply_overrides, chip_from_tree, flat_overrides, load_preset,
                                   override_keys, read_preset)
from hwmodels.chip.spec import ChipSpec

#: the source key of values set by a derivation
DERIVED_SOURCE = "derived"
#: ChipSpec keys a derivation sets itself (refused as overrides)
RESERVED_KEYS = {"name": "the chip's name is given by --name (default: the output file's stem)",
                 "sources": "sources are the base's plus the `derived` entry",
                 "derived_from": "the derivation writes it", "notes": "notes are the base's"}
#: fields that differ between a derived chip and load_preset(base, overrides) by design
PROVENANCE_FIELDS = {"name", "description", *PROVENANCE_KEYS}


def _get(tree: dict, key: str) -> Any:
    """tree['a']['b'] for key 'a.b' (None when a part is missing)."""
    node: Any = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _as_leaves(value: Any, note: str) -> Any:
    """`value` with every number turned into a `{value, source: derived, note}` leaf (tables recursively)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"value": value, "source": DERIVED_SOURCE, "note": note}
    if isinstance(value, dict):
        return {k: _as_leaves(v, note) for k, v in value.items()}
    return value


def _set(raw: dict, key: str, value: Any, base: str) -> None:
    """Write the new `value` of dotted `key` into the raw tree, as derived leaves whose note says what it was."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    old = node.get(leaf)
    if isinstance(old, dict) and "value" in old:
        was = f"{old['value']!r}" + (f" ({old.get('source')}: {' '.join(str(old.get('note', '')).split())})"
                                     if old.get("source") else "")
    else:
        was = "the ChipSpec default" if old is None else f"{_plain(old)!r}"
    node[leaf] = _as_leaves(value, f"set by presets derive; in {base}: {was}")


def _plain(node: Any) -> Any:
    """A raw subtree with its leaves replaced by their values (for messages)."""
    if isinstance(node, dict) and "value" in node:
        return node["value"]
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    return node


def _lists(value: Any) -> Any:
    """`value` (a model_dump value) with its tuples as lists, recursively: what the value reads back as from YAML,
    so the provenance of a derived chip compares equal after its file is written and read."""
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def derive_tree(base: str, overrides: dict[str, Any], name: str, date: str) -> dict:
    """The raw tree of a chip file derived from preset or chip file `base` with dotted `overrides` (the keys of
    `apply_overrides`), named `name`, dated `date` (ISO); checked to load into exactly the ChipSpec that
    `load_preset(base, overrides)` gives, apart from name, description and provenance.

    Values equal to the base's are left with their source; every other value becomes a leaf with source
    'derived', `sources.derived` says "derived from <base> on <date>; changed: <key> <old> -> <new>, ..." (after
    the base's own derivation, if any) and `derived_from` = {preset: base, date, changed: {key: {from, to}}}.
    Raises ValueError for an unknown base, an unknown override key (listing the accepted keys), a key the
    derivation sets itself (name, sources, notes, derived_from), or a value outside its field's bounds.
    """
    overrides = flat_overrides(overrides, [*override_keys(), *RESERVED_KEYS])  # nested dicts as dotted keys
    for key in overrides:
        if key in RESERVED_KEYS:
            raise ValueError(f"override key {quote(key)} cannot be set when deriving: {RESERVED_KEYS[key]}")
    base_chip = load_preset(base)
    target = apply_overrides(base_chip, overrides)
    old, new = base_chip.model_dump(), target.model_dump()
    raw = copy.deepcopy(read_preset(base))
    changed = {}
    for key in overrides:
        if _get(old, key) != _get(new, key):
            changed[key] = {"from": _lists(_get(old, key)), "to": _lists(_get(new, key))}
            _set(raw, key, _get(new, key), base)
    summary = ", ".join(f"{k} {v['from']!r} -> {v['to']!r}" for k, v in changed.items()) or "nothing"
    sources = dict(raw.get("sources") or {})
    text = f"derived from {base} on {date}; changed: {summary}"
    sources[DERIVED_SOURCE] = text + (f"; before that: {sources[DERIVED_SOURCE]}" if DERIVED_SOURCE in sources else "")
    rest = {k: v for k, v in raw.items() if k not in ("name", "description", "derived_from", "sources")}
    tree = {"name": name, "description": f"Derived from {base} (changed: {summary}). {raw.get('description', '')}"
            .strip(), "derived_from": {"preset": base, "date": date, "changed": changed}, "sources": sources, **rest}
    _check_loads_as(tree, target, name)
    return tree


def _check_loads_as(tree: dict, target: ChipSpec, name: str) -> None:
    """Raise ValueError unless `tree` loads (as a chip file would) into `target` apart from PROVENANCE_FIELDS."""
    chip = chip_from_tree(tree, f"derived chip {quote(name)}:", strict=False)
    if chip.model_dump(exclude=PROVENANCE_FIELDS) != target.model_dump(exclude=PROVENANCE_FIELDS):
        raise ValueError(f"derived chip {quote(name)}: does not load as the base with its overrides (a bug)")


def derived_chip_yaml(tree: dict) -> str:
    """The YAML text of a derived chip tree, with a header saying what it is and how it was made."""
    made = tree["derived_from"]
    return dump_chip_yaml(tree, f"Chip file {tree['name']}, derived from {made['preset']} on {made['date']} by "
                                "`codesign presets derive`.\nEvery number is a leaf {value, source[, note]}; "
                                "`sources` gives the citations, `derived` the changed values.")


def write_derived(path: str | os.PathLike, base: str, overrides: dict[str, Any], date: str, name: str | None = None,
                  force: bool = False) -> dict:
    """Derive a chip from `base` with `overrides` (`derive_tree`) and write it to the chip file `path` (.yaml or
    .yml), atomically, after checking that the written text loads back into the same chip; returns the tree.

    name: the chip's name (default: the file's stem). date: ISO date recorded in the provenance.
    Raises ValueError for a path without a .yaml/.yml ending, a symbolic link, an existing file without `force`, a
    name with a control character, a missing folder, and everything `derive_tree` raises; OSError when writing fails.
    """
    p = Path(path)
    if not p.name.lower().endswith(CHIP_FILE_SUFFIXES) or p.name.lower() in CHIP_FILE_SUFFIXES:
        raise ValueError(f"{chip_file_label(p)}: must be a name ending .yaml or .yml (a chip file is YAML)")
    if p.is_symlink():
        raise ValueError(f"{chip_file_label(p)} is a symbolic link; refusing to replace it (give a new file name)")
    if p.exists() and not force:
        raise ValueError(f"{chip_file_label(p)} exists; refusing to overwrite it (force it with --force)")
    if not (name or p.stem).isprintable():
        raise ValueError(f"name: {(name or p.stem)!r} holds a control character; a chip name must be printable "
                         "text (YAML stores no control characters)")
    tree = derive_tree(base, overrides, name or p.stem, date)
    text = derived_chip_yaml(tree)
    reread = chip_from_tree(yaml.safe_load(text), f"{chip_file_label(p)}:", strict=False)
    if reread != chip_from_tree(tree, f"{chip_file_label(p)}:", strict=False):
        raise ValueError(f"{chip_file_label(p)}: the YAML text does not read back as the derived chip (a bug)")
    write_chip_file(p, text, force)
    return tree
