"""Reading the saved files of the hardware side (graph, trace and mapping `.npz`, streamed trace `.npy` columns)
with one-line errors: a missing file raises FileNotFoundError; a directory, a file that is not an `.npz`, a
truncated one, meta that is not the expected JSON object, or an array of the wrong dtype or shape raises
ValueError naming the file and what was expected. User values quoted in messages are cut to MAX_QUOTE characters.

An `.npz` is checked before any member is read (`check_members`), so a zip bomb (a small file whose members
inflate to gigabytes) is refused without inflating it:

- every `.npy` member's header must describe exactly the bytes the member declares (shape x itemsize + header
  = its uncompressed size in the zip directory; zipfile never inflates a member past that size), so a lying
  header cannot make numpy allocate more than the zip directory declares;
- a file whose members inflate to at most FREE_INFLATE_BYTES (512 MiB) in total loads however compressed it is;
  beyond that, the file as a whole, and each member larger than FREE_INFLATE_BYTES, may inflate at most
  MAX_INFLATE_RATIO (100) times its size on disk (compressed size, for a member).

So loading an `.npz` never allocates more than max(512 MiB, 100 x the file's size) for its arrays.

Why these bounds: a ratio alone cannot tell a bomb from sparse data. Zeros deflate 1027x at zlib level 6 but
only 229x at level 1 (the probe's bomb: 2.5 GiB of float32 zeros in an 11 MiB file), while legitimate sparse
arrays reach the same ratios. Measured with np.savez_compressed (zlib level 6): the lowered graphs and traces of
mnist_conv and vgg9 on digits (100 samples) have weights at ~1.1x, CSR offsets/indices/values at 13-27x and the
packed activity of silent layers at 140-565x (every member under 1 MiB); 64 MiB of packed spike bits compress 8x
at a spike density of 1e-2, 43x at 1e-3, 271x at 1e-4, 788x at 1e-5, and sorted int64 CSR offsets 215x. Hence
the absolute allowance: any compressed file up to 512 MiB of arrays loads (far above the traces of the shipped
configs), and only files over it that inflate more than 100x (spike densities under ~3e-4 per bit, or a bomb)
are refused. The graphs and traces codesign writes are stored uncompressed (np.savez, 1x) and are never refused;
a genuine array refused by the bound loads once saved uncompressed (np.savez) or as a streamed trace folder
(hwmodels.stream, read memory-mapped). Members of other zip methods (bzip2, lzma, which reach far higher
ratios) are held to the same bound.
"""
from __future__ import annotations

import json
import math
import mmap
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
#: uncompressed bytes of all members of an `.npz` that load whatever its compression (512 MiB); see the docstring
FREE_INFLATE_BYTES = 512 << 20
#: uncompressed / compressed bytes a file (or a member) over FREE_INFLATE_BYTES may reach
MAX_INFLATE_RATIO = 100


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """repr of a user value cut to `limit` characters ('...' marks the cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def quote_path(path: str | os.PathLike, limit: int = MAX_QUOTE) -> str:
    """repr of a path for a one-line message, cut at its start to `limit` characters ('...' after the opening
    quote marks the cut), so a long path keeps its file name: quote(file_name(p)) or quote(str(p)) cut its end."""
    text = repr(str(path))
    return text if len(text) <= limit else text[0] + "..." + text[-(limit - 4):]


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
        check_members(z.zip, p, p.stat().st_size)
        try:
            yield z
        except READ_ERRORS as exc:
            text = _problem(exc, what)
            raise ValueError(text if text.startswith(file_name(p)) else f"{file_name(p)}: {text}") from None


def human_bytes(n: int) -> str:
    """`n` bytes as '<value> B/KiB/MiB/GiB/TiB' with 3 significant digits (binary units)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} TiB"


def _inflate_limit(compressed: int) -> int:
    """Most bytes that `compressed` bytes may inflate to: max(FREE_INFLATE_BYTES, MAX_INFLATE_RATIO x compressed)."""
    return max(FREE_INFLATE_BYTES, MAX_INFLATE_RATIO * compressed)


def check_members(zf: zipfile.ZipFile, path: str | os.PathLike, archive_bytes: int) -> None:
    """Refuse an `.npz` archive whose members would inflate far beyond its size, before any member is read.

    zf: the open archive; path: its file (for messages); archive_bytes: its size on disk in bytes. Reads only
    the zip directory and the header of each `.npy` member (a few KiB inflated each). Raises ValueError (one line
    naming the file and the member) when all members together inflate to more than
    max(FREE_INFLATE_BYTES, MAX_INFLATE_RATIO x archive_bytes) bytes, or one member to more than
    max(FREE_INFLATE_BYTES, MAX_INFLATE_RATIO x its compressed size), when an `.npy` member's header describes a
    different number of bytes than the member holds, or when a member cannot be opened (encrypted, or an
    unsupported compression method). The bounds, and why real files pass them, are in the module docstring.
    """
    name = file_name(path)
    infos = zf.infolist()
    advice = (f"refused as a possible zip bomb (over {human_bytes(FREE_INFLATE_BYTES)}, at most {MAX_INFLATE_RATIO}x "
              "is accepted; save genuine arrays uncompressed with np.savez)")
    for info in infos:
        if info.file_size > _inflate_limit(info.compress_size):
            raise ValueError(f"{name}: member {quote(info.filename)} inflates to {human_bytes(info.file_size)} from "
                             f"{human_bytes(info.compress_size)} ({info.file_size / max(info.compress_size, 1):.0f}x); "
                             f"{advice}")
    total = sum(info.file_size for info in infos)
    if infos and total > _inflate_limit(archive_bytes):
        big = max(infos, key=lambda info: info.file_size)
        raise ValueError(f"{name}: its {len(infos)} members inflate to {human_bytes(total)} from a "
                         f"{human_bytes(archive_bytes)} file ({total / max(archive_bytes, 1):.0f}x; the largest, "
                         f"member {quote(big.filename)}, to {human_bytes(big.file_size)}); {advice}")
    for info in infos:
        _check_npy_header(zf, info, name)


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """ValueError unless the `.npy` header of member `info` (when it has one) describes exactly the bytes that
    the zip directory declares for it; a member that is not an `.npy`, or whose header does not parse, is left
    to numpy (it reads at most the declared bytes, or refuses the header). Object arrays are left to numpy too
    (it refuses them: allow_pickle=False)."""
    member = quote(info.filename)
    try:
        with zf.open(info) as fh:
            if fh.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                return
            fh.seek(0)
            try:
                version = np.lib.format.read_magic(fh)
                shape, _, dtype = _read_header(fh, version)
            except (ValueError, TypeError, SyntaxError, OverflowError, EOFError):
                return
            header = fh.tell()
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a compression method zipfile lacks
        raise ValueError(f"{name}: member {member} cannot be read ({one_line(exc)})") from None
    except DAMAGED as exc:
        raise ValueError(f"{name}: damaged or unreadable ({one_line(exc)})") from None
    if dtype.hasobject:
        return
    data = dtype.itemsize
    for n in shape:
        data *= int(n)
    if header + data != info.file_size:
        raise ValueError(f"{name}: member {member} declares a {dtype} array of shape {quote(tuple(shape), 40)} "
                         f"({human_bytes(data)}) but holds {human_bytes(max(info.file_size - header, 0))}; "
                         f"not a well-formed .npy member")


def _read_header(fh, version: tuple[int, int]) -> tuple:
    """(shape, fortran_order, dtype) of an `.npy` header of `version` (1.0, 2.0 or 3.0), `fh` just past the magic."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    reader = getattr(np.lib.format, "_read_array_header", None)  # 3.0 (UTF-8 names) has no public reader
    if reader is None:
        from numpy.lib import _format_impl  # numpy >= 2 keeps it here
        reader = _format_impl._read_array_header
    return reader(fh, version)


def decode_meta(raw: bytes, name: str, what: str, required: dict[str, type | tuple]) -> dict:
    """The JSON object in `raw` (the meta of file `name`, a `what`) with the `required` keys of the given types.

    Raises ValueError when it is not UTF-8 JSON (or nests too deep to decode), not an object, is the meta of
    another kind of file (KIND_KEYS), or lacks a required key or holds one of the wrong type.
    """
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: meta is not JSON text ({one_line(exc)})") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise ValueError(f"{name}: meta nests JSON deeper than Python's recursion limit; not a meta this tool "
                         "writes") from None
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

    Raises ValueError naming the file when it is a symlink (a column is a file of its own folder: a link could
    point anywhere), missing, unreadable, truncated or of the wrong dtype/dims.
    """
    name = file_name(path)
    if path.is_symlink():
        raise ValueError(f"{name}: is a symlink; a column of {a_(what)} must be a file inside the folder")
    if not path.is_file():
        raise ValueError(f"{name}: missing or not a file; the {what} is incomplete")
    try:
        a = map_npy(path)
    except READ_ERRORS as exc:
        raise ValueError(f"{name}: not a readable .npy column of {a_(what)} ({one_line(exc)})") from None
    return check_array(a, name, path.stem, kind, ndim)


def map_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of the `.npy` file `path`, memory-mapped read-only (its base is an mmap.mmap; an empty array is
    a plain read-only array): what np.load(path, mmap_mode="r") gives, with one open of the file and no
    np.memmap (np.load opens it three times and resolves its real path: 53 columns of a trace folder 11.5 ->
    ~5 ms, measured). Raises ValueError for a bad magic or header, an object dtype (it would need pickle) or a
    file shorter than its header declares; OSError when the file cannot be opened."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        shape, fortran, dtype = _read_header(fh, version)
        if dtype.hasobject:
            raise ValueError("an object array (it would need pickle)")
        offset, count = fh.tell(), math.prod(int(n) for n in shape)
        size = os.fstat(fh.fileno()).st_size
        if offset + count * dtype.itemsize > size:
            raise ValueError(f"the header declares {count * dtype.itemsize} bytes of data but the file holds "
                             f"{max(size - offset, 0)}")
        if count == 0:
            a = np.empty(shape, dtype, order="F" if fortran else "C")
            a.flags.writeable = False
            return a
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    a = np.frombuffer(buf, dtype, count, offset)
    return a.reshape(shape[::-1]).T if fortran else a.reshape(shape)


def _tuple(types: type | tuple) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def type_names(types: type | tuple) -> str:
    """How a message names the JSON types `types` ("an integer", "a JSON list or null", ...)."""
    names = {"list": "a JSON list", "dict": "a JSON object", "str": "a string", "int": "an integer",
             "float": "a number", "bool": "true or false", "NoneType": "null"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in _tuple(types))
