"""User chip files: a chip in the preset schema of hwmodels/chip/presets/*.yaml, read from any path with one-line errors
naming the file, and written atomically (what `codesign presets derive` writes).

Reading runs no code (yaml.safe_load) and refuses a missing file, a directory, a file over CHIP_FILE_MAX_BYTES,
text that is not UTF-8 YAML, a document that expands (aliases) to more than CHIP_FILE_MAX_VALUES values or nests
deeper than CHIP_FILE_MAX_DEPTH, a document that is not a mapping, and NaN or inf anywhere.
"""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from hwmodels.atomic import write_error
from hwmodels.npzfile import quote_path
from hwmodels.yaml_strict import error_line, strict_load

#: largest chip file read, bytes
CHIP_FILE_MAX_BYTES = 1_000_000
#: a chip file may expand (YAML aliases counted at every use) to at most this many values
CHIP_FILE_MAX_VALUES = 100_000
#: deepest nesting of mappings and lists in a chip file (a preset nests 4 levels)
CHIP_FILE_MAX_DEPTH = 32
#: file name endings that mark a preset argument as a chip file
CHIP_FILE_SUFFIXES = (".yaml", ".yml")


def chip_file_label(path: str | os.PathLike) -> str:
    """'chip file <quoted path>', how every message about a chip file names it (long paths keep their tail)."""
    return f"chip file {quote_path(path)}"


def _parse(text: str, label: str) -> Any:
    """yaml.safe_load of `text` (hwmodels.yaml_strict: a key given twice refused); raises ValueError starting with
    `label` for YAML it cannot read."""
    try:
        return strict_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{label}: not valid YAML: {error_line(exc)[:200]}") from None
    except RecursionError:
        raise ValueError(f"{label}: nests too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"{label}: holds a value YAML cannot read: {' '.join(str(exc).split())[:120]}") from None


def check_tree(tree: Any, label: str, finite: bool = True) -> None:
    """Refuse (ValueError starting with `label`, naming the YAML path) a loaded YAML tree that expands to more than
    CHIP_FILE_MAX_VALUES values (alias bombs, recursive aliases), nests deeper than CHIP_FILE_MAX_DEPTH, or (when
    `finite`) holds a NaN or infinite number. Iterative, so a deep or cyclic tree cannot exhaust the stack."""
    count, stack = 0, [(tree, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > CHIP_FILE_MAX_VALUES:
            raise ValueError(f"{label}: expands to more than {CHIP_FILE_MAX_VALUES:,} values (YAML aliases); "
                             "write the values out or use fewer aliases")
        if depth > CHIP_FILE_MAX_DEPTH:
            raise ValueError(f"{label}: {path} nests deeper than {CHIP_FILE_MAX_DEPTH} levels")
        if finite and isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{label}: {path or '<root>'}: {node!r} is not a finite number (NaN and inf refused)")
        if isinstance(node, dict):
            stack += [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]


def read_chip_file(path: str | os.PathLike) -> dict:
    """The raw YAML mapping of the chip file at `path` (relative paths: to the working directory), leaves
    `{value, source[, note]}` still in place; nothing is validated against ChipSpec here.

    Raises ValueError naming the file for a missing file, a directory or other non-regular file, a file over
    CHIP_FILE_MAX_BYTES, unreadable or non-UTF-8 bytes, bad YAML, and a tree refused by `check_tree` or that is
    not a mapping.
    """
    p, label = Path(path), chip_file_label(path)
    if not p.exists():
        raise ValueError(f"{label} does not exist")
    if p.is_dir():
        raise ValueError(f"{label} is a directory; give a chip file (.yaml)")
    if not p.is_file():
        raise ValueError(f"{label} is not a regular file")
    size = p.stat().st_size
    if size > CHIP_FILE_MAX_BYTES:
        raise ValueError(f"{label} is {size:,} bytes; at most {CHIP_FILE_MAX_BYTES:,}")
    try:
        with open(p, "rb") as fh:
            data = fh.read(CHIP_FILE_MAX_BYTES + 1)  # a file that grew since stat is still cut off
        text = data.decode("utf-8")
    except OSError as exc:
        raise ValueError(f"{label}: cannot read it: {' '.join(str(exc).split())[:120]}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{label}: not UTF-8 text") from None
    if len(data) > CHIP_FILE_MAX_BYTES:
        raise ValueError(f"{label} is over {CHIP_FILE_MAX_BYTES:,} bytes")
    tree = _parse(text, label)
    check_tree(tree, label)
    if tree is None:
        raise ValueError(f"{label} is empty; a chip file holds a mapping of chip fields (name, mesh_width, ...)")
    if not isinstance(tree, dict):
        raise ValueError(f"{label}: must hold a mapping of chip fields (name, mesh_width, core, router, ...), "
                         f"got {type(tree).__name__}")
    return tree


def dump_chip_yaml(tree: dict, header: str = "") -> str:
    """YAML text of a chip tree in file order, preceded by `header` as '# ' comment lines (floats are written
    exactly: yaml.safe_dump writes repr, which reads back bit for bit)."""
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comments + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=120)


def write_chip_file(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write `text` to the chip file `path` atomically (a temporary file beside it, then a rename), so a reader
    never sees half a file; returns the path.

    Raises ValueError naming the file when its folder does not exist, when it is a directory, or when it exists
    and `force` is False (never overwritten then, even by a writer racing this one); OSError "cannot write
    '<path>': <reason>" (hwmodels.atomic.write_error) when writing fails.
    """
    p, label = Path(path), chip_file_label(path)
    if not p.parent.is_dir():
        raise ValueError(f"{label}: folder {quote_path(p.parent)} does not exist")
    if p.is_dir():
        raise ValueError(f"{label} is a directory; give a file name ending .yaml")
    if p.exists() and not force:
        raise ValueError(f"{label} exists; refusing to overwrite it (force it with --force)")
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _place(tmp, p, force, label)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise write_error(exc, p) from None
    finally:
        tmp.unlink(missing_ok=True)
    return p


def _place(tmp: Path, target: Path, force: bool, label: str) -> None:
    """Move the finished `tmp` to `target`: os.replace when forced, else a hard link that fails when `target`
    appeared meanwhile (falling back to a checked replace on file systems without hard links)."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise ValueError(f"{label} exists; refusing to overwrite it (force it with --force)") from None
    except OSError:
        if target.exists():
            raise ValueError(f"{label} exists; refusing to overwrite it (force it with --force)") from None
        os.replace(tmp, target)
