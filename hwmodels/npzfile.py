"""Reading the saved files of the hardware side (graph, trace and mapping `.npz`, streamed trace `.npy` columns)
with one-line errors: a missing file raises FileNotFoundError; a directory, a file that is not an `.npz`, a
truncated one, meta that is not the expected JSON object, or an array of the wrong dtype or shape raises
ValueError naming the file and what was expected. User values quoted in messages are cut to MAX_QUOTE characters.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

#: longest quoted user value (path, key, value) in an error message, in characters
MAX_QUOTE = 80
#: what each saved format's meta holds that the others' do not (how a file given as the wrong kind is recognised)
KIND_KEYS = {"network graph": "projections", "event trace": "n_samples", "mapping": "core_population"}
#: errors that reading a damaged file or malformed content raises inside numpy, zipfile, json or a constructor
READ_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError, OSError, EOFError, zipfile.BadZipFile,
               zlib.error)
#: errors of a damaged file (as opposed to well-formed bytes holding the wrong content)
DAMAGED = (OSError, EOFError, zipfile.BadZipFile, zlib.error)
#: dtype kinds accepted by `array`, by the word used in messages
KINDS = {"int": "iu", "float": "fiu", "uint8": "u"}


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """repr of a user value cut to `limit` characters ('...' marks the cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def file_name(path: str | os.PathLike, limit: int = MAX_QUOTE) -> str:
    """A path for a message, cut to its last `limit` characters ('...' marks the cut)."""
    text = str(path)
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def one_line(exc: BaseException) -> str:
    """'<message>' of a ValueError (whose messages quote user values already cut), else '<type>: <message>' cut
    to 2 x MAX_QUOTE characters; on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValueError):
        return text
    text = f"{'zlib.error' if isinstance(exc, zlib.error) else type(exc).__name__}: {text}"
    return text if len(text) <= 2 * MAX_QUOTE else text[:2 * MAX_QUOTE - 3] + "..."


def _problem(exc: BaseException, what: str) -> str:
    """What an error raised while reading a `what` file says about it, on one line."""
    if isinstance(exc, DAMAGED):
        return f"damaged or unreadable ({one_line(exc)})"
    return one_line(exc) if isinstance(exc, ValueError) else f"not a well-formed {what} ({one_line(exc)})"


def a_(what: str) -> str:
    """`what` with its indefinite article ("a mapping", "an event trace")."""
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def check_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """`path` as a Path when it is an existing, non-empty file. Raises FileNotFoundError when nothing is there
    and ValueError for a directory (`hint` says what to do instead) or an empty file."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{file_name(p)}: is a directory; expected {a_(what)} .npz file{hint}")
    if not p.exists():
        raise FileNotFoundError(f"{file_name(p)}: no such {what} file")
    if p.stat().st_size == 0:
        raise ValueError(f"{file_name(p)}: is empty; expected {a_(what)} .npz file")
    return p


@contextmanager
def open_npz(path: str | os.PathLike, what: str, hint: str = "") -> Iterator[np.lib.npyio.NpzFile]:
    """Open the `.npz` file `path` holding a `what` ("network graph", "event trace", "mapping") and yield it.

    Any READ_ERRORS raised while the body reads it becomes a one-line ValueError starting with the file name.
    Raises FileNotFoundError when the file does not exist, ValueError for a directory (`hint` appended), a file
    that is not an .npz archive (empty, truncated, a .npy, a pickle or text) or content that does not read.
    """
    p = check_file(path, what, hint)
    try:
        z = np.load(p, allow_pickle=False)
    except READ_ERRORS as exc:
        reason = "neither a zip archive nor a .npy array" if "pickle" in str(exc) else one_line(exc)
        raise ValueError(f"{file_name(p)}: not {a_(what)} .npz file ({reason})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{file_name(p)}: holds a single .npy array, not {a_(what)} .npz file")
    with z:
        try:
            yield z
        except READ_ERRORS as exc:
            text = _problem(exc, what)
            raise ValueError(text if text.startswith(file_name(p)) else f"{file_name(p)}: {text}") from None


def decode_meta(raw: bytes, name: str, what: str, required: dict[str, type | tuple]) -> dict:
    """The JSON object in `raw` (the meta of file `name`, a `what`) with the `required` keys of the given types.

    Raises ValueError when it is not UTF-8 JSON, not an object, is the meta of another kind of file (KIND_KEYS),
    or lacks a required key or holds one of the wrong type.
    """
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: meta is not JSON text ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{name}: meta is {type_names(type(meta))} ({quote(meta, 40)}), expected a JSON object with "
                         f"keys {', '.join(required)}")
    other = [k for k, key in KIND_KEYS.items() if k != what and key in meta and KIND_KEYS[what] not in meta]
    if other:
        raise ValueError(f"{name}: is {a_(other[0])} file, not {a_(what)} file")
    for key, types in required.items():
        if key not in meta:
            raise ValueError(f"{name}: meta lacks {key!r} ({a_(what)} file's meta holds {', '.join(required)})")
        if not isinstance(meta[key], types) or isinstance(meta[key], bool) and bool not in _tuple(types):
            raise ValueError(f"{name}: meta[{key!r}] is {quote(meta[key])}, expected {type_names(types)}")
    return meta


def read_meta(z: np.lib.npyio.NpzFile, name: str, what: str, required: dict[str, type | tuple]) -> dict:
    """decode_meta of the uint8 array "meta" of an open `.npz`. Raises ValueError when it is missing or not
    1-D uint8 (see decode_meta for the rest)."""
    if "meta" not in z.files:
        raise ValueError(f"{name}: has no 'meta' array; not {a_(what)} file")
    raw = z["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{name}: meta is {raw.dtype} {raw.shape}, expected 1-D uint8 JSON bytes")
    return decode_meta(raw.tobytes(), name, what, required)


def array(z: np.lib.npyio.NpzFile, name: str, key: str, kind: str, ndim: int | None = None) -> np.ndarray:
    """Array `key` of an open `.npz` (file `name`). kind: a key of KINDS; ndim: required number of dims.

    Raises ValueError naming the file and the array when it is missing or of the wrong dtype or dimensions.
    """
    if key not in z.files:
        raise ValueError(f"{name}: has no array {key!r}")
    return check_array(z[key], name, key, kind, ndim)


def check_array(a: np.ndarray, name: str, key: str, kind: str, ndim: int | None = None) -> np.ndarray:
    """`a` when its dtype is of `kind` (a key of KINDS) and it has `ndim` dims (None: any); ValueError naming the
    file `name` and the array `key` otherwise."""
    ok = a.dtype.kind in KINDS[kind] and (kind != "uint8" or a.dtype == np.uint8)
    if not ok or (ndim is not None and a.ndim != ndim):
        dims = f" with {ndim} dim{'s' if ndim != 1 else ''}" if ndim is not None else ""
        raise ValueError(f"{name}: array {key!r} is {a.dtype} {a.shape}, expected {kind}{dims}")
    return a


def load_npy(path: Path, what: str, kind: str, ndim: int = 1) -> np.ndarray:
    """A `.npy` column of a streamed `what` folder, memory-mapped read-only, checked like `check_array`.

    Raises ValueError naming the file when it is missing, unreadable, truncated or of the wrong dtype/dims.
    """
    name = file_name(path)
    if not path.is_file():
        raise ValueError(f"{name}: missing or not a file; the {what} is incomplete")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except READ_ERRORS as exc:
        raise ValueError(f"{name}: not a readable .npy column of {a_(what)} ({one_line(exc)})") from None
    return check_array(a, name, path.stem, kind, ndim)


def _tuple(types: type | tuple) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def type_names(types: type | tuple) -> str:
    """How a message names the JSON types `types` ("an integer", "a JSON list or null", ...)."""
    names = {"list": "a JSON list", "dict": "a JSON object", "str": "a string", "int": "an integer",
             "float": "a number", "bool": "true or false", "NoneType": "null"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in _tuple(types))
