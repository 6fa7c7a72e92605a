"""Chip presets: YAML package data in hwmodels/chip/presets/, every number with its source, loaded into a ChipSpec; and
user chip files in the same schema (hwmodels.chip.chipfile), named by their path wherever a preset name is accepted.

A number in a preset file is written as a leaf `{value: <number>, source: <key>[, note: <text>]}` whose key
resolves in the file's top-level `sources:` map (full citations); the loader checks and strips these leaves. A
shipped preset must source every number; a user chip file may also give a bare number (or a leaf without a
source), which loads and is reported as missing a source (`unsourced_keys`). `sanafe:PATH` names a SANA-FE
architecture file (hwmodels.chip.sanafe.from_sanafe).
"""
from __future__ import annotations

import hashlib
import importlib
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from hwmodels.chip.chipfile import CHIP_FILE_SUFFIXES, chip_file_label, read_chip_file
from hwmodels.npzfile import quote
from hwmodels.chip.spec import CORE_TYPE_FIELDS, ChipSpec
from hwmodels.yaml_strict import strict_load

PRESET_DIR = Path(__file__).with_name("presets")
LEAF_KEYS = ("value", "source", "note")
#: prefix of a preset argument that names a SANA-FE architecture file
SANAFE_PREFIX = "sanafe:"
#: top-level keys of a preset that are provenance (kept on ChipSpec as they are, never source-checked)
PROVENANCE_KEYS = ("sources", "notes", "derived_from")
#: what a preset argument names (see `preset_kind`)
PresetKind = Literal["shipped", "file", "sanafe", "unknown"]


def list_presets() -> list[str]:
    """Names of the shipped presets (file stems in hwmodels/chip/presets/), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _exists(name: str) -> bool:
    """True when `name` is an existing path (False for names the OS cannot even look up, e.g. with a NUL)."""
    try:
        return Path(name).exists()
    except (OSError, ValueError):
        return False


def preset_name(name: object) -> str:
    """The preset argument `name` as a str: a str as given, an os.PathLike (a pathlib.Path to a chip file) as its
    path. Raises TypeError naming the argument for anything else (None, a number, a ChipSpec)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"preset: got {type(name).__name__} {quote(name)}, expected a preset name "
                        f"({', '.join(list_presets())}), a chip file path (str or pathlib.Path) or sanafe:PATH")
    return name


def preset_kind(name: str) -> PresetKind:
    """What the preset argument `name` names: "shipped" (one of `list_presets()`, which always wins), "sanafe"
    (`sanafe:PATH`), "file" (a user chip file: ends .yaml or .yml, contains a path separator, or exists) or
    "unknown"."""
    if name in list_presets():
        return "shipped"
    if not name.strip():
        return "unknown"
    if name.startswith(SANAFE_PREFIX):
        return "sanafe"
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if name.lower().endswith(CHIP_FILE_SUFFIXES) or any(s in name for s in separators) or _exists(name):
        return "file"
    return "unknown"


def _unknown(name: str) -> ValueError:
    """The error for a preset argument that names neither a shipped preset nor a file."""
    return ValueError(f"preset: {quote(name)} is not one of {', '.join(list_presets())} "
                      "(or a chip file path ending .yaml or .yml, or sanafe:PATH)")


def _sanafe(name: str) -> tuple[Any, str]:
    """(the hwmodels.chip.sanafe module, imported only now; PATH) of `sanafe:PATH`. Raises ValueError naming the
    argument when PATH is empty or the SANA-FE import is not available."""
    path = name[len(SANAFE_PREFIX):]
    if not path:
        raise ValueError(f"preset {quote(name)}: give the SANA-FE architecture file after 'sanafe:'")
    try:
        module = importlib.import_module("hwmodels.chip.sanafe")
    except ImportError as exc:
        raise ValueError(f"preset {quote(name)}: SANA-FE architecture import is not available "
                         f"(hwmodels.chip.sanafe: {' '.join(str(exc).split())[:120]})") from None
    return module, path


def _from_sanafe(name: str) -> ChipSpec:
    """The ChipSpec of `sanafe:PATH` (hwmodels.chip.sanafe.from_sanafe). Raises ValueError as `_sanafe` does and as
    from_sanafe does for a bad file."""
    module, path = _sanafe(name)
    return module.from_sanafe(path)


def read_preset(name: str) -> dict:
    """The raw YAML mapping of a shipped preset or user chip file `name`, source leaves still in place (a chip file
    without `name` gets its file stem; `sanafe:PATH` gives the imported chip's fields as bare numbers).

    Raises ValueError listing the shipped presets when `name` is neither a shipped preset nor a file, and a
    one-line ValueError naming the file when a chip file cannot be read (hwmodels.chip.chipfile.read_chip_file).
    """
    name = preset_name(name)
    kind = preset_kind(name)
    if kind == "unknown":
        raise _unknown(name)
    if kind == "sanafe":
        return _from_sanafe(name).model_dump(exclude_none=True)
    if kind == "file":
        raw = read_chip_file(name)
        raw.setdefault("name", Path(name).stem)
        return raw
    with open(PRESET_DIR / f"{name}.yaml", encoding="utf-8") as fh:
        return strict_load(fh)


def chip_file_digest(name: str) -> str | None:
    """sha256 (hex) of the bytes of the chip file `name` (or of PATH in `sanafe:PATH`); None for a shipped preset,
    whose content is versioned with the code. What a cache or result keyed on the preset must hold, so that an
    edited file is never taken for the old one. Raises ValueError and TypeError as `read_preset` does."""
    name = preset_name(name)
    kind = preset_kind(name)
    if kind == "shipped":
        return None
    if kind == "unknown":
        raise _unknown(name)
    path = name[len(SANAFE_PREFIX):] if kind == "sanafe" else name
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        read_chip_file(path)  # raises the one-line error naming the file (missing, directory, ...)
        raise


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def strip_sources(node: Any, sources: dict[str, str], path: str = "", where: str = "preset",
                  strict: bool = True) -> Any:
    """Replace every `{value, source[, note]}` leaf under `node` by its value, checking provenance.

    where: how messages start ('preset', or 'chip file <path>:'). strict: every number needs a leaf with a source
    (shipped presets); with strict False (user chip files) a bare number or a leaf without `source` is accepted.
    Raises ValueError (naming the YAML path) when a number has no source leaf (strict), when a given source key is
    not in `sources`, when a leaf has keys other than value/source/note or lacks its value, or when a number is
    not finite.
    """
    if isinstance(node, dict) and "value" in node:
        return _leaf_value(node, sources, path, where, strict)
    if isinstance(node, dict) and node and set(node) <= set(LEAF_KEYS):  # {source, note} without its value
        raise ValueError(f"{where} {path}: a leaf needs keys value, source (optional note); got {sorted(node)}")
    if isinstance(node, dict):
        return {k: strip_sources(v, sources, f"{path}.{k}" if path else str(k), where, strict)
                for k, v in node.items()}
    if isinstance(node, list):
        return [strip_sources(v, sources, f"{path}[{i}]", where, strict) for i, v in enumerate(node)]
    if _is_number(node) and strict:
        raise ValueError(f"{where} {path}: number {node!r} has no source; write {{value: {node!r}, source: <key>}}")
    if _is_number(node) and not math.isfinite(node):
        raise ValueError(f"{where} {path}: {node!r} is not a finite number (NaN and inf refused)")
    return node


def _leaf_value(node: dict, sources: dict[str, str], path: str, where: str, strict: bool) -> int | float:
    """The checked value of one `{value, source[, note]}` leaf (see `strip_sources`)."""
    if set(node) - set(LEAF_KEYS) or (strict and "source" not in node):
        raise ValueError(f"{where} {path}: a leaf needs keys value, source (optional note); got {sorted(node)}")
    if "source" in node and (not isinstance(node["source"], str) or node["source"] not in sources):
        raise ValueError(f"{where} {path}.source: {quote(node['source'])} is not one of "
                         f"{', '.join(sources) or '(no sources given)'}")
    value = node["value"]
    if not _is_number(value):
        raise ValueError(f"{where} {path}.value: {quote(value)} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{where} {path}.value: {value!r} is not a finite number (NaN and inf refused)")
    return value


def _leaves(raw: dict) -> list[dict]:
    """Every number of a raw preset tree with its provenance, in file order (see `preset_leaves`)."""
    out: list[dict] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "value" in node:
            out.append({"key": path, "value": node["value"], "source": str(node.get("source", "")),
                        "note": " ".join(str(node.get("note", "")).split())})
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):  # core_types
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif _is_number(node):
            out.append({"key": path, "value": node, "source": "", "note": ""})
    walk({k: v for k, v in raw.items() if k not in PROVENANCE_KEYS}, "")
    return out


def preset_leaves(name: str) -> list[dict]:
    """Every number of preset or chip file `name` with its provenance: [{"key": dotted path, "value", "source":
    citation key ("" when the number has none: a bare number or a leaf without source, allowed in user chip
    files only), "note"}], in file order. Raises ValueError as `read_preset` does."""
    if preset_kind(name) == "sanafe":
        module, path = _sanafe(name)
        if hasattr(module, "sanafe_leaves"):  # each number with the place in the file it comes from
            return module.sanafe_leaves(path)
    return _leaves(read_preset(name))


def unsourced_keys(name: str) -> list[str]:
    """Dotted keys of the numbers of chip file `name` that have no source (always [] for a shipped preset)."""
    return [leaf["key"] for leaf in preset_leaves(name) if not leaf["source"]]


#: words in a leaf's note (or its source key) that mark a number as not printed as such in its source
ASSUMPTION_MARKS = ("ASSUMPTION", "DERIVED", "placeholder")
#: source keys of numbers that are modelling choices, not published figures ("derived": set by presets derive)
ASSUMPTION_SOURCES = ("assumption", "derived")


def preset_assumptions(name: str) -> list[dict]:
    """The leaves of preset `name` that are modelling assumptions or derived estimates (source key "assumption"
    or "derived", or ASSUMPTION / DERIVED / placeholder in the note), as `preset_leaves` rows."""
    return [leaf for leaf in preset_leaves(name)
            if leaf["source"] in ASSUMPTION_SOURCES or any(m in leaf["note"] for m in ASSUMPTION_MARKS)]


def default_leaves(name: str, chip: ChipSpec | None = None) -> list[dict]:
    """The numbers of ChipSpec that preset or chip file `name` leaves out, so the loaded chip (`chip`, or
    load_preset(name)) has ChipSpec's defaults there: [{"key": dotted override key, "value"}] in override_keys
    order (numbers and None, i.e. no limit or unset, only; text, rules and records are left out). A key counts as
    set when the file has a leaf with that key or under it (barrier_sync_s.1 sets barrier_sync_s). Raises
    ValueError as `load_preset`."""
    chip = load_preset(name) if chip is None else chip
    given = [leaf["key"] for leaf in preset_leaves(name)]
    out = []
    for key in override_keys():
        if key in ("derived_from", "core_types") or any(g == key or g.startswith(key + ".") for g in given):
            continue
        value = chip
        for part in key.split("."):
            value = getattr(value, part)
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out.append({"key": key, "value": value})
    return out


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


def flat_overrides(overrides: dict[str, Any], accepted: list[str] | None = None) -> dict[str, Any]:
    """{dotted key: value} of `overrides` written dotted ({"core.neurons_per_core": 512}), nested ({"core":
    {"neurons_per_core": 512}}, as YAML mappings and `--set hardware.overrides.core.neurons_per_core=512` give)
    or both: a dict value is descended, its keys joined with ".", unless its own key is one of `accepted`
    (override_keys() when None: a field whose value is a table, e.g. 'barrier_sync_s', takes the dict whole).
    Keys that are not strings are kept as they are (apply_overrides names them). Raises ValueError naming a key
    given twice (e.g. both dotted and nested)."""
    accepted = set(override_keys() if accepted is None else accepted)
    flat: dict[str, Any] = {}

    def add(key, value) -> None:
        if isinstance(key, str) and isinstance(value, dict) and value and key not in accepted:
            for sub, inner in value.items():
                add(f"{key}.{sub}", inner)
            return
        if key in flat:
            raise ValueError(f"override key {quote(key)} is given twice (dotted and nested?); give it once")
        flat[key] = value
    for key, value in overrides.items():
        add(key, value)
    return flat


def apply_overrides(chip: ChipSpec, overrides: dict[str, Any] | None) -> ChipSpec:
    """A new ChipSpec with dotted-key overrides applied and validated, e.g. {"core.synapse_memory_bits": 65536}
    (nested dicts too, {"core": {"synapse_memory_bits": 65536}}: flat_overrides).

    Raises ValueError naming the key and listing the accepted keys for an unknown key, naming the key for a core
    limit every core type of the chip sets for itself (it would change nothing), a one-line ValueError naming the
    field and its bounds for a bad value, and TypeError when chip is not a ChipSpec or overrides is
    not a dict (or None).
    """
    if not isinstance(chip, ChipSpec):
        raise TypeError(f"chip: got {type(chip).__name__}, expected a hwmodels.ChipSpec (hwmodels.load_preset)")
    if not isinstance(overrides, (dict, type(None))):
        raise TypeError(f"overrides: got {type(overrides).__name__} {quote(overrides)}, expected a dict "
                        "{dotted key: value}, e.g. {'core.neurons_per_core': 512}")
    accepted = override_keys()
    data = chip.model_dump()
    for key, value in flat_overrides(overrides or {}, accepted).items():
        if key not in accepted:
            raise ValueError(f"override key {quote(key)} is not one of {', '.join(accepted)}")
        _check_typed_core_key(chip, key)
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return ChipSpec(**data)


def _check_typed_core_key(chip: ChipSpec, key: str) -> None:
    """ValueError when `key` is a core limit (core.<CORE_TYPE_FIELDS>) that every core type of `chip` sets for
    itself (CoreType.spec puts the type's value in place of the core's): the override would change nothing."""
    field = key[len("core."):] if key.startswith("core.") else None
    if chip.core_types and field in CORE_TYPE_FIELDS and all(getattr(t, field) is not None for t in chip.core_types):
        raise ValueError(f"override key {quote(key)}: every core type of chip {quote(chip.name)} sets its own "
                         f"{field}, so the core's value is not used; override 'core_types' (the list of types, "
                         "each with its count and limits) instead")


def chip_from_tree(raw: dict, where: str = "preset", strict: bool = True) -> ChipSpec:
    """A ChipSpec from a raw preset tree (leaves stripped by `strip_sources`; `sources`, `notes` and `derived_from`
    kept as provenance). Raises ValueError starting with `where` for a bad leaf or `sources` map, and for a field
    ChipSpec refuses (an unknown key with the accepted ones, a value outside its bounds)."""
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict):
        raise ValueError(f"{where} sources: must be a mapping {{key: full citation}}, got {type(sources).__name__}")
    body = strip_sources({k: v for k, v in raw.items() if k not in PROVENANCE_KEYS}, sources, where=where,
                         strict=strict)
    fields = {str(k): v for k, v in {**raw, **body}.items()}
    fields["sources"] = sources
    try:
        return ChipSpec(**fields)
    except ValueError as exc:
        raise ValueError(f"{where} {exc}") from None


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> ChipSpec:
    """Load a shipped preset, a user chip file or a SANA-FE architecture into a ChipSpec, then apply dotted
    `overrides` (see `apply_overrides`).

    name: a shipped preset (`list_presets()`); a path to a chip file in the preset schema (ends .yaml or .yml,
        contains a path separator, or exists; relative to the working directory), whose numbers need no source
        (`unsourced_keys` lists those without); or `sanafe:PATH` (hwmodels.chip.sanafe.from_sanafe).
    Raises ValueError for an unknown preset (listing the presets), a chip file that cannot be read (naming the
    file), a number without a resolvable source in a shipped preset, a bad leaf or field (naming the file and the
    YAML key), an unknown override key (listing the accepted keys) or a value outside its field's bounds, and
    TypeError when name is not a str or os.PathLike (a pathlib.Path to a chip file is taken as its path) or
    overrides is not a dict.
    """
    name = preset_name(name)
    kind = preset_kind(name)
    if kind == "sanafe":
        chip = _from_sanafe(name)
    else:  # messages about a file name it; a shipped preset must source every number
        where = f"{chip_file_label(name)}:" if kind == "file" else "preset"
        chip = chip_from_tree(read_preset(name), where, strict=kind == "shipped")
    return apply_overrides(chip, overrides) if overrides is not None else chip
