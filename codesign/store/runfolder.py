"""Run folders: safe names, one owner at a time, resume only with the same config, no stray leftovers.

A run folder `<output_dir>/<run_name>/` is created atomically (`os.mkdir` fails when it exists, so two runs started
together cannot both create it) and is owned through an exclusive `flock` on `.codesign.lock`, which holds the
owner's pid, host and start time; the kernel releases the lock when the owner exits or is killed, so a lock never
goes stale. While a run is working its folder holds `.incomplete`; a plain rerun of such a folder says how to
resume it. The run's config is stored at creation (`config.resolved.yaml`, `sweep.yaml` or `search.yaml`) and
`--resume` refuses a different config, naming the changed keys.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from codesign.config.run import ConfigError, quote, read_tree
from hwmodels.npzfile import quote_path
from codesign.store.links import check_no_links
from codesign.store.provenance import read_provenance, results_code_version

#: a run name is one path component of these characters, starting with a letter or digit
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@\[\]-]*")
MAX_NAME_CHARS = 120
LOCK_NAME = ".codesign.lock"
INCOMPLETE_NAME = ".incomplete"
#: files holding finished points: a folder with one of them needs its stored config to be resumed
RESULT_FILES = ("results.jsonl", "results.csv")
#: temp files a killed writer can leave in a run folder (store snapshots, reports, figures, artifacts, tables)
LEFTOVER_GLOBS = ("*.tmp", "*.tmp-*", ".*.tmp", ".*.tmp-*", "figures/*.tmp", "points/*/*.tmp", "artifacts/*.tmp",
                  "tables/*.tmp")


def check_run_name(name: str) -> str:
    """Return `name` when it is a safe run-folder name: one path component of letters, digits and `._+=@[]-`,
    starting with a letter or digit, at most MAX_NAME_CHARS characters. Raises ConfigError naming run_name."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"run_name: {quote(name)} is not a folder name: use letters, digits and . _ + = @ [ ] - "
                          "(starting with a letter or digit; no '/' or '..')")
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"run_name: {len(name)} characters is too long (at most {MAX_NAME_CHARS})")
    return name


def resume_hint(out: Path) -> str:
    """'-> <folder> (interrupted: resume with --set run_name=<name> --resume)': logged as a run starts, so a user who
    stops it (Ctrl-C, a killed job) knows which folder to resume, the name of which may have been made for them."""
    return f"-> {out} (interrupted: resume with --set run_name={Path(out).name} --resume)"


def _flatten(tree, prefix: str = "") -> dict:
    """{"a.b": leaf} of a nested mapping (lists are leaves)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix.removesuffix("."): tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def changed_keys(stored: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two config trees (keys starting with an `ignore` prefix skipped)."""
    a, b = _flatten(stored), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    return [k for k in keys if not k.startswith(ignore)]


def owner_of(folder: Path) -> dict:
    """The owner recorded in the folder's lock file ({} when none or unreadable)."""
    try:
        info = json.loads((folder / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _owner_text(folder: Path) -> str:
    info = owner_of(folder)
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started_utc')}"


def check_folder(output_dir: str, name: str, resume: bool, config_file: str, config_tree: dict,
                 ignore: tuple[str, ...] = ()) -> Path:
    """Validate (without creating anything) that `<output_dir>/<name>` can be started or resumed.

    Raises ConfigError when the name is unsafe; when the folder exists without `resume` (saying how to resume an
    incomplete one); when `resume` is given and the folder is missing; when its stored config (`config_file`)
    differs from `config_tree` in keys other than `ignore`; when its finished points were made by other code
    (provenance.json's code_version is not results_code_version(), or cannot be read); when another live process
    owns it.
    """
    out = Path(output_dir) / check_run_name(name)
    _check_output_dir(Path(output_dir), resume)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run_name: {quote_path(out)} exists and is not a folder")
    if out.exists() and not resume:
        if (out / INCOMPLETE_NAME).exists() and _in_use(out):
            raise ConfigError(f"run_name: {quote_path(out)} is in use by {_owner_text(out)} (a run working there "
                              "now); wait for it to finish or choose another run_name")
        state = " but is incomplete (a run stopped before it finished)" if (out / INCOMPLETE_NAME).exists() else ""
        raise ConfigError(f"run_name: {quote_path(out)} already exists{state}; pass --resume to continue it or "
                          "choose another run_name")
    if resume and not out.is_dir():
        raise ConfigError(f"--resume: {quote_path(out)} does not exist; set run_name to the run to continue")
    if resume:
        check_no_links(out)
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"--resume: {quote_path(out)} is not writable")
        _check_stored_config(out, config_file, config_tree, ignore)
        _check_code_version(out)
        _check_not_owned(out)
    return out


def _check_output_dir(output_dir: Path, resume: bool) -> None:
    """Raise ConfigError naming output_dir when it (or its nearest existing ancestor) is not a folder we can
    write into, so nothing is created for a run that cannot store its results (with resume, the run folder
    itself must be writable instead)."""
    probe = output_dir
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        probe.stat()
    except OSError as exc:
        raise ConfigError(f"output_dir: {quote_path(probe)}: {exc.strerror}") from None
    if not probe.is_dir():
        what = ("exists and is not a folder" if probe == output_dir
                else f"cannot be made: {quote_path(probe)} is a file")
        raise ConfigError(f"output_dir: {quote_path(output_dir)} {what}")
    if not resume and not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == output_dir else f" (its nearest existing folder {quote_path(probe)})"
        raise ConfigError(f"output_dir: {quote_path(output_dir)}{where} is not writable")


def _check_stored_config(out: Path, config_file: str, tree: dict, ignore: tuple[str, ...]) -> None:
    """Raise ConfigError when the stored `config_file` differs from `tree` outside `ignore`, is not YAML, or is
    missing from a folder that already holds results (they could not be told apart from another config's). A
    folder without results and without the file (a run killed as it started) takes the new config."""
    path = out / config_file
    if not path.is_file():
        if any((out / name).exists() for name in RESULT_FILES):
            raise ConfigError(f"--resume: {quote_path(path)} is missing, so the config of the results in "
                              f"{quote_path(out)} cannot be checked; restore it or start a new run_name")
        return
    stored = read_tree(path, "--resume")  # capped, alias bombs and deep nesting refused in one line
    diff = changed_keys(stored, tree, ignore)
    if diff:
        shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise ConfigError(f"--resume: the config differs from the one {quote_path(out)} was started with in "
                          f"{shown}; resume with the same config or start a new run_name")


def _check_code_version(out: Path) -> None:
    """Raise ConfigError when the folder holds finished points and its provenance.json does not name this code's
    results_code_version(): resuming would mix rows of two versions of the chip model or the lowering under the same
    point ids. A folder without results (a run killed as it started) takes this code."""
    if not any((out / name).exists() for name in RESULT_FILES):
        return
    path = out / "provenance.json"
    try:
        stored = read_provenance(path).get("code_version") if path.exists() else None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: {exc}") from None
    here = results_code_version()
    if stored != here:
        was = f"code {quote(str(stored))}" if stored else "code whose version is not recorded"
        raise ConfigError(f"--resume: {quote_path(out)} was started by {was}, this is code {quote(here)}; its "
                          "finished points would mix with rows of other code: start a new run_name")


def _in_use(out: Path) -> bool:
    """True when a live process holds the folder's lock (False when it cannot be opened: the caller's message
    stands)."""
    try:
        with _locked(out):
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def _check_not_owned(out: Path) -> None:
    """Raise ConfigError when a live process holds the folder's lock."""
    try:
        with _locked(out):
            return
    except BlockingIOError:
        raise ConfigError(f"--resume: {quote_path(out)} is in use by {_owner_text(out)}; wait for it to finish"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"--resume: cannot open {quote_path(out / LOCK_NAME)}: {exc.strerror}") from None


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[int]:
    """Hold an exclusive non-blocking flock on out/LOCK_NAME (raises BlockingIOError when another holds it)."""
    import fcntl
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield fd
    finally:
        os.close(fd)


def _write_owner(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def clean_leftovers(out: Path) -> list[Path]:
    """Remove temp files a killed writer left in the run folder (call only while owning it); returns them."""
    removed = []
    for pattern in LEFTOVER_GLOBS:
        for path in out.glob(pattern):
            if path.is_file() and path.name != LOCK_NAME:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _create(out: Path, resume: bool) -> None:
    if resume:
        check_no_links(out)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(out)
    except FileExistsError:
        raise ConfigError(f"run_name: {quote_path(out)} already exists (another run created it just now); "
                          "choose another run_name") from None
    except OSError as exc:
        raise ConfigError(f"output_dir: cannot create {quote_path(out)}: "
                          f"{os.strerror(exc.errno or errno.EIO)}") from None


@contextlib.contextmanager
def own_run_folder(out: Path, resume: bool, config_file: str, config_text: str) -> Iterator[Path]:
    """Create (or, with resume, reopen) the run folder `out` and own it for the duration of the block.

    The folder is made with os.mkdir (exclusive), locked with flock (a second owner gets ConfigError naming the
    first owner's pid and host), stripped of temp files left by a killed run, marked `.incomplete`, and given its
    config file (`config_file` <- `config_text`) when that does not exist yet. `.incomplete` is removed when the
    block finishes without an exception. Raises ConfigError for a folder that cannot be created or is owned.
    """
    _create(out, resume)
    try:
        lock = _locked(out)
        fd = lock.__enter__()
    except BlockingIOError:
        raise ConfigError(f"run_name: {quote_path(out)} is in use by {_owner_text(out)}") from None
    except OSError as exc:
        raise ConfigError(f"output_dir: cannot write {quote_path(out / LOCK_NAME)}: {exc.strerror}") from None
    try:
        _write_owner(fd)
        clean_leftovers(out)
        (out / INCOMPLETE_NAME).touch()
        if not (out / config_file).exists():
            write_atomic(out / config_file, config_text)
        yield out
        (out / INCOMPLETE_NAME).unlink(missing_ok=True)
    finally:
        lock.__exit__(None, None, None)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file renamed over it (mode 0644 less the umask)."""
    from codesign.store.results import atomic_write
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
