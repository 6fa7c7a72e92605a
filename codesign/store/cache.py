"""Content-addressed cache of stage outputs (trained models, compressed models, lowered graphs and traces).

A stage output lives in `<root>/<stage>/<key>/`, where key is the hash of the config (and the code version,
`code_version`) that produced it. An entry is written into a temporary folder `.<key>.tmp-<host>-<pid>-<random>`
and renamed into place, so a killed process never leaves a half entry; two processes racing on one key both succeed
and the first rename wins. Its meta.json records what produced it and the sha256 of every other file; an entry is
verified against those hashes on use, and one that fails to verify or to load is moved aside, removed and made again
with a logged warning (never run or trusted). Temporary folders of processes that died on this host (or older than
a day) are removed whenever a StageCache is created.

`check_cache_dir` checks a configured cache folder before a run creates its run folder, so a cache that cannot
be used (a file, a folder this user cannot write, a symlink loop, a stage folder that is any of these) is one
line naming `cache_dir` instead of a traceback in the middle of a run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from codesign.config.run import ConfigError

KEY_CHARS = 16
META_NAME = "meta.json"
#: a temporary or moved-aside folder older than this is removed even when its owner cannot be checked
STALE_AFTER_S = 86400.0
#: (package, glob) of the source files whose content is part of every cache key: the code that makes the entries
CODE_SOURCES = (("workloads", "**/*.py"), ("codesign", "execute/evaluate.py"), ("codesign", "execute/stages.py"),
                ("hwmodels", "trace.py"))
#: what a failing load or verification raises: the entry is discarded and made again
ENTRY_ERRORS = (ValueError, OSError, KeyError, EOFError)
#: the stage folders a run writes under its cache folder (codesign.execute.evaluate): `check_cache_dir` checks them
STAGE_NAMES = ("dense", "compressed", "lowered")
#: the config key of the cache folder (RunConfig.cache_dir, SweepSpec.cache_dir), as error messages name it
CACHE_DIR_KEY = "cache_dir"
_SCRATCH = re.compile(r"^\.(?P<key>[^.]+)\.(?P<kind>tmp|bad)-(?P<host>[A-Za-z0-9._]*)-(?P<pid>\d+)-")
T = TypeVar("T")
log = logging.getLogger(__name__)


def config_key(*parts) -> str:
    """Stable hash (16 hex chars) of JSON-serialisable parts (dict keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def package_version() -> str:
    """Installed version of snn-codesign (importlib.metadata), or "unknown" when it is not installed."""
    try:
        return importlib.metadata.version("snn-codesign")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def source_files(sources: Iterable[tuple[str, str]] = CODE_SOURCES) -> list[tuple[str, Path]]:
    """(name relative to its package's parent folder, path) of every file the (package, glob) pairs match, sorted.
    Packages are found without importing them; a package that is not found contributes no file."""
    files = []
    for package, pattern in sources:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent
        files += [(f"{package}/{p.relative_to(folder).as_posix()}", p) for p in folder.glob(pattern) if p.is_file()]
    return sorted(set(files))


def source_digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 (hex) over the names and contents of `files` ((name, path) pairs, in the order given)."""
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.cache
def code_version() -> str:
    """'<package version>+<12 hex chars of source_digest(source_files())>': part of every stage key, so an upgrade
    or an edit of the code that makes cache entries never serves an entry made by other code. Computed once per
    process (the sources are read once)."""
    return f"{package_version()}+{source_digest(source_files())[:12]}"


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes. Raises OSError when it cannot be read."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _owner() -> str:
    """'<host>-<pid>' of this process, as it appears in temporary folder names (host: [A-Za-z0-9._] only)."""
    return f"{re.sub(r'[^A-Za-z0-9.]', '_', socket.gethostname())}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    """True unless no process `pid` exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_stale(folder: Path, now_s: float | None = None) -> bool:
    """True for a temporary or moved-aside folder (`.<key>.tmp-*`, `.<key>.bad-*`) whose process died on this
    host, or that is older than STALE_AFTER_S (owner on another host, or a name without owner)."""
    try:
        age_s = (time.time() if now_s is None else now_s) - folder.lstat().st_mtime
    except FileNotFoundError:
        return False
    found = _SCRATCH.match(folder.name)
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())
    if found and found["host"] == host and not _pid_alive(int(found["pid"])):
        return True
    return age_s > STALE_AFTER_S


def force_rmtree(path: Path) -> None:
    """Remove `path` (a folder and everything below it, or a file or symlink), making read-only folders writable
    first; errors are ignored (what stays is removed by a later `clean_stale`)."""
    if os.path.islink(path) or os.path.isfile(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    try:
        os.chmod(path, 0o700)
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                if not os.path.islink(os.path.join(top, d)):
                    os.chmod(os.path.join(top, d), 0o700)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def _listing(folder: Path) -> list[str]:
    """Relative names of the files of an entry, meta.json excluded, sorted. Raises ValueError for a symlink or
    anything else that is not a regular file or folder, OSError when the entry cannot be read."""
    names = []
    for top, dirs, files in os.walk(folder, onerror=_raise):
        for name in dirs + files:
            full = Path(top) / name
            if full.is_symlink() or not (full.is_dir() or full.is_file()):
                raise ValueError(f"{full.relative_to(folder)} is not a regular file")
        names += [(Path(top) / f).relative_to(folder).as_posix() for f in files]
    return sorted(n for n in names if n != META_NAME)


def _raise(exc: OSError) -> None:
    raise exc


def check_cache_dir(path: str | os.PathLike) -> None:
    """Check that the cache folder `path` (a config's cache_dir) can be used, before anything is written.

    It must be a folder this process can list, read and write (or, when missing, one it can create: its nearest
    existing ancestor is a writable folder), and each stage folder of STAGE_NAMES that exists under it must be
    such a folder too. Entries inside a stage folder are not checked: one that cannot be read or fails to verify
    is moved aside and made again on use (`StageCache.load_or_make`), so a read-only entry is still used.
    Symlinks are followed.

    Raises ConfigError (a ValueError; one line starting `cache_dir: '<path>'`) saying what is wrong: a regular
    file (or other non-folder), a symlink loop or a broken symlink, a folder this user cannot write or list
    (read-only, or owned by another user), a folder on a read-only file system, or a missing folder that cannot
    be created. Each folder that passes is probed: a temporary folder is made in it and removed at once (the only
    change, and none is left), since permission bits do not tell whether a file system such as /proc takes new
    folders.
    """
    root = Path(path)
    where = f"{CACHE_DIR_KEY}: {_quote_path(root)}"
    st = _stat(root, where)
    if st is None:
        _check_creatable(root, where)
        return
    _check_folder(root, st, where, "")
    for stage in STAGE_NAMES:
        folder = root / stage
        st = _stat(folder, f"{where}: stage folder {_quote_path(folder)}")
        if st is not None:
            _check_folder(folder, st, where, "stage folder")


def _quote_path(path: Path) -> str:
    """repr of a path for a message, cut to its last 80 characters."""
    text = str(path)
    return repr(text if len(text) <= 80 else "..." + text[-77:])


def _stat(path: Path, where: str) -> os.stat_result | None:
    """os.stat of `path` (symlinks followed); None when nothing is there. Raises ConfigError `where: ...` for a
    symlink loop, a broken symlink or a path that cannot be looked up."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ConfigError(f"{where} is a broken symlink (to {os.readlink(path)!r}); point it at a folder or "
                              "remove it") from None
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            part = "is" if os.path.islink(path) else "has a part that is"
            raise ConfigError(f"{where} {part} a symlink loop; replace it with a folder") from None
        if exc.errno == errno.ENOTDIR:
            raise ConfigError(f"{where}: a part of the path is a file, not a folder") from None
        raise ConfigError(f"{where} cannot be looked up ({exc.strerror or exc})") from None


def _writable(path: Path) -> bool:
    """True when this process may list, read and create entries in the folder `path` (effective ids when the
    platform supports it: a root process without CAP_DAC_OVERRIDE is refused like any other user)."""
    mode = os.R_OK | os.W_OK | os.X_OK
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _check_folder(path: Path, st: os.stat_result, where: str, what: str) -> None:
    """ConfigError unless `path` (its stat `st`) is a folder this process can list and write. where: the
    message's start (`cache_dir: '<path>'`); what: "" for the cache folder itself, else "stage folder"."""
    subject = f"{where}: {what} {_quote_path(path)}" if what else where
    if not stat.S_ISDIR(st.st_mode):
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else "not a folder"
        raise ConfigError(f"{subject} is {kind}; the cache needs a folder it can write (remove it or choose "
                          "another cache_dir)")
    if _writable(path):
        _probe(path, subject)
        return
    owner = "" if st.st_uid == os.geteuid() else f", owner uid {st.st_uid}: another user"
    why = ("is on a read-only file system" if _read_only_fs(path) else
           f"is not writable by this user (mode {stat.S_IMODE(st.st_mode):o}{owner})")
    raise ConfigError(f"{subject} {why}; choose a cache_dir this user can write")


def _read_only_fs(path: Path) -> bool:
    """True when `path` is on a file system mounted read-only (False when it cannot be told)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _check_creatable(root: Path, where: str) -> None:
    """ConfigError unless the missing folder `root` can be made: its nearest existing ancestor is a writable
    folder (symlinks followed)."""
    parent = Path(os.path.abspath(root)).parent
    while True:
        st = _stat(parent, f"{where}: its parent {_quote_path(parent)}")
        if st is not None:
            break
        parent = parent.parent
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where} cannot be created: {_quote_path(parent)} is a file, not a folder")
    if not _writable(parent):
        raise ConfigError(f"{where} does not exist and cannot be created: {_quote_path(parent)} is not writable by "
                          "this user; choose a cache_dir this user can write")
    _probe(parent, f"{where} does not exist and cannot be created: {_quote_path(parent)}")


def _probe(folder: Path, subject: str) -> None:
    """ConfigError `subject refuses new folders (...)` unless a folder can really be made in `folder`: a temporary
    one is made and removed at once. Permission bits do not tell it on file systems such as /proc or /sys, which
    refuse new entries whatever they say, or to a root process."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".codesign-probe-", dir=folder))
    except OSError as exc:
        raise ConfigError(f"{subject} refuses new folders ({exc.strerror or exc}); choose a cache_dir this user "
                          "can write") from None


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """A complete entry: stage, key, folder, size_bytes (all its files), modified_unix_s (meta.json's mtime) and
    meta (meta.json's content, None when it cannot be read)."""

    stage: str
    key: str
    path: Path
    size_bytes: int
    modified_unix_s: float
    meta: dict | None


class StageCache:
    """Folders of stage outputs under `root`, one per (stage, key). Thread- and process-safe by atomic rename.
    Creating one removes the stale temporary folders under `root` (`clean_stale`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.clean_stale()

    def path(self, stage: str, key: str) -> Path:
        """Folder of the entry (it exists only once complete)."""
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        """True when the entry is complete (its meta.json exists); its files are verified only on use."""
        return (self.path(stage, key) / META_NAME).is_file()

    def verify(self, stage: str, key: str) -> dict:
        """meta.json of the entry after checking that it names this stage and key (an entry moved or copied under
        another key holds another point's model) and that its files are exactly those it lists, with the same
        sha256. Raises ValueError naming the first difference (or an entry of an older version without hashes) and
        OSError when a file cannot be read."""
        folder = self.path(stage, key)
        if folder.is_symlink() or not folder.is_dir():
            raise ValueError("the entry is not a folder")
        meta = json.loads((folder / META_NAME).read_text())
        if isinstance(meta, dict) and (meta.get("stage"), meta.get("key")) != (stage, key):
            raise ValueError(f"meta.json names the entry {meta.get('stage')!r}/{meta.get('key')!r}, not "
                             f"{stage!r}/{key!r} (moved or copied from another key)")
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict):
            raise ValueError("meta.json lists no file hashes (an entry of an older version)")
        present = _listing(folder)
        if present != sorted(files):
            raise ValueError(f"files {present} differ from those meta.json lists {sorted(files)}")
        for name, digest in files.items():
            if file_sha256(folder / name) != digest:
                raise ValueError(f"{name}: content differs from its hash in meta.json")
        return meta

    def discard(self, stage: str, key: str, reason: object) -> None:
        """Log a warning and move the entry aside (then remove it). Raises OSError (one line) when it cannot be
        moved, e.g. the stage folder is read-only."""
        final = self.path(stage, key)
        log.warning("cache entry %s is unusable (%s); discarding and recomputing it", final, reason)
        try:
            _remove_entry(final)
        except OSError as exc:
            raise OSError(f"cache entry {final} is unusable ({reason}) and cannot be moved aside: {exc}") from None

    def load_or_make(self, stage: str, key: str, make: Callable[[Path], None], load: Callable[[Path], T],
                     meta: dict | None = None) -> tuple[Path, T]:
        """(entry folder, load(folder)): the entry is verified (`verify`) and loaded; when it is missing, or fails
        to verify or load (ENTRY_ERRORS), it is discarded with a warning and `make(tmp_folder)` fills it first.

        `meta` is written to meta.json under "meta" (what produced it), with the stage, key, code version, time,
        host, pid and the sha256 of every file. Exceptions from `make`, and from `load` on a fresh entry,
        propagate and leave nothing behind.
        """
        final = self.path(stage, key)
        if os.path.lexists(final):
            try:
                self.verify(stage, key)
                return final, load(final)
            except ENTRY_ERRORS as exc:
                self.discard(stage, key, f"{type(exc).__name__}: {exc}")
        self._make(stage, key, make, meta)
        try:
            self.verify(stage, key)
            return final, load(final)
        except FileNotFoundError:
            if os.path.lexists(final):
                raise
        self._make(stage, key, make, meta)  # removed before it was read (a `cache clear` meanwhile): made once more
        self.verify(stage, key)
        return final, load(final)

    def get_or_make(self, stage: str, key: str, make: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Return the verified entry folder, calling `make(tmp_folder)` to fill it first when it is missing or fails
        to verify (see `load_or_make`)."""
        return self.load_or_make(stage, key, make, lambda folder: None, meta)[0]

    def _make(self, stage: str, key: str, make: Callable[[Path], None], meta: dict | None) -> None:
        """Run `make` in a temporary folder, write meta.json with the file hashes, rename it into place."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.tmp-{_owner()}-"))
        try:
            make(tmp)
            record = {"stage": stage, "key": key, "meta": meta or {}, "code_version": code_version(),
                      "created_unix_s": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                      "files": {name: file_sha256(tmp / name) for name in _listing(tmp)}}
            (tmp / META_NAME).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    def stages(self) -> list[str]:
        """Names of the stage folders under root, sorted. A symbolic link is not a stage folder: listing, clearing
        and the stale-folder cleanup never go through one (they would remove what it points to)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

    def entries(self, stage: str | None = None) -> list[CacheEntry]:
        """Every complete entry (of `stage`, or of all stages), sorted by stage then key."""
        return [_entry(name, entry) for name, entry in self._entry_folders(stage) if (entry / META_NAME).is_file()]

    def _entry_folders(self, stage: str | None) -> list[tuple[str, Path]]:
        """(stage, folder) of every non-hidden name in the stage folders (of `stage`, or of all), sorted."""
        stages = self.stages()
        return [(name, entry) for name in ([stage] if stage is not None else stages) if name in stages
                for entry in sorted((self.root / name).iterdir()) if not entry.name.startswith(".")]

    def remove(self, stage: str | None = None) -> int:
        """Remove every entry (of `stage`, or of all stages): the complete ones and the damaged ones, entry
        folders that lost their meta.json (an entry appears complete, by rename, so no process is still filling
        one), then the stale temporary folders; folders of live processes are left. Returns the number of entry
        folders removed."""
        found = [entry.path for entry in self.entries(stage)] + self.damaged(stage)
        for path in found:  # moved aside first: a clear stopped midway leaves no entry without its meta.json
            _remove_entry(path)
        self.clean_stale()
        return len(found)

    def damaged(self, stage: str | None = None) -> list[Path]:
        """Entry folders (of `stage`, or of all stages) without a meta.json file: damaged (a run remakes them,
        `remove` removes them); sorted. Symbolic links are left out, as in `stages`."""
        return [entry for _, entry in self._entry_folders(stage)
                if entry.is_dir() and not entry.is_symlink() and not (entry / META_NAME).is_file()]

    def clean_stale(self) -> list[Path]:
        """Remove the temporary and moved-aside folders that `is_stale` calls stale; returns them."""
        removed = []
        for name in self.stages():
            for folder in (self.root / name).glob(".*"):
                if _SCRATCH.match(folder.name) or ".tmp-" in folder.name:
                    if is_stale(folder):
                        force_rmtree(folder)
                        removed.append(folder)
        return removed


def _remove_entry(folder: Path) -> None:
    """Move an entry folder aside (a scratch name clean_stale knows), then remove it, so no process ever sees a
    half-removed entry under its key; nothing when it is gone already (removed meanwhile by another process).
    Raises OSError when it cannot be moved, e.g. the stage folder is read-only."""
    aside = folder.parent / f".{folder.name}.bad-{_owner()}-{secrets.token_hex(4)}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    force_rmtree(aside)


def _entry(stage: str, folder: Path) -> CacheEntry:
    """The CacheEntry of a complete entry folder (meta None when meta.json is unreadable)."""
    try:
        meta = json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        meta = None
    size = 0
    for top, _, files in os.walk(folder):
        size += sum(os.lstat(os.path.join(top, f)).st_size for f in files)
    return CacheEntry(stage, folder.name, folder, size, (folder / META_NAME).stat().st_mtime,
                      meta if isinstance(meta, dict) else None)
