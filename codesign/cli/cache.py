"""`codesign cache list` and `codesign cache clear`: what the stage cache (codesign.store.cache) holds, and removing it.

Every value that comes from the cache folder (stage and key names, meta.json content, paths) is printed escaped,
never read as Rich markup. Errors print one line and exit with status 2 (`--debug` shows the traceback).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from codesign.store.cache import CacheEntry, StageCache
from codesign.cli.console import escape, fail, printable

cache_app = typer.Typer(no_args_is_help=True, help="List and clear the stage cache (trained, compressed and "
                                                   "lowered models).")
#: exit status of `clear` when the removal is not confirmed
EXIT_DECLINED = 1
DEFAULT_CACHE_DIR = Path(".cache/codesign")
_CACHE_DIR_HELP = "the stage cache folder (a run config's cache_dir)"


def human_bytes(n: int) -> str:
    """A size in bytes with a binary prefix: 512 B, 1.5 KiB, 20.0 MiB, ..."""
    if n < 1024:
        return f"{int(n)} B"
    size, units = n / 1024, ["KiB", "MiB", "GiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size:.1f} {units[0]}"


def human_age(seconds: float) -> str:
    """An age in seconds as s, min, h or d (one decimal from hours on); negative ages (clock skew) show as 0 s."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def produced_by(entry: CacheEntry) -> str:
    """What made an entry, from its meta.json: the stage's own meta (key=value), code version, host and pid."""
    meta = entry.meta
    if meta is None:
        return "unreadable meta.json"
    if "files" not in meta:
        return "older cache format (made again on use)"
    own = meta.get("meta") if isinstance(meta.get("meta"), dict) else {}
    parts = [f"{k}={v}" for k, v in sorted(own.items()) if k != "stage"]
    parts.append(f"code {meta.get('code_version', '?')} on {meta.get('host', '?')} (pid {meta.get('pid', '?')})")
    return ", ".join(parts)


def _cache(cache_dir: Path) -> StageCache:
    """The StageCache at cache_dir; ValueError when the path exists and is not a folder, or is missing and is not
    DEFAULT_CACHE_DIR (a missing default is an empty cache: nothing was run here yet; another missing folder is
    most likely a mistyped path, which an empty listing would hide)."""
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ValueError(f"--cache-dir: {cache_dir} is not a folder")
    if not cache_dir.exists() and cache_dir != DEFAULT_CACHE_DIR:
        raise ValueError(f"--cache-dir: {str(cache_dir)!r}: no such folder (a run config's cache_dir, "
                         f"default {DEFAULT_CACHE_DIR})")
    return StageCache(cache_dir)


def _check_stage(cache: StageCache, stage: Optional[str]) -> None:
    """ValueError naming --stage and the cache's stages when `stage` is given and is not one of them."""
    stages = cache.stages()
    if stage is not None and stage not in stages:
        raise ValueError(f"--stage: {stage!r} is not a stage of {cache.root}; stages: {', '.join(stages) or 'none'}")


def entry_table(entries: list[CacheEntry], now_s: float) -> Table:
    """A rich table of entries (stage, key, size, age, produced by); every cell escaped."""
    table = Table(title="Stage cache entries")
    for col in ("stage", "key", "size", "age", "produced by"):
        table.add_column(col, justify="right" if col in ("size", "age") else "left")
    for e in entries:
        created = (e.meta or {}).get("created_unix_s")
        age = now_s - (created if isinstance(created, (int, float)) else e.modified_unix_s)
        table.add_row(escape(e.stage), escape(e.key), human_bytes(e.size_bytes), human_age(age),
                      escape(produced_by(e)))
    return table


def _entries(cache_dir: Path, stage: Optional[str], debug: bool) -> tuple[StageCache, list[CacheEntry]]:
    """The cache at `cache_dir` and its entries (one stage's when given); a bad folder or stage is one line,
    exit 2."""
    try:
        cache = _cache(cache_dir)
        _check_stage(cache, stage)
        return cache, cache.entries(stage)
    except (ValueError, OSError) as exc:
        fail(exc, debug)


@cache_app.command("list")
def list_entries(cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help=_CACHE_DIR_HELP),
                 stage: Optional[str] = typer.Option(None, "--stage", help="only this stage, e.g. dense"),
                 debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """List the cache entries: stage, key, size, age and what produced them (from each entry's meta.json).

    Examples:
      codesign cache list
      codesign cache list --cache-dir /scratch/cache --stage dense
    """
    console = Console(width=max(Console().width, 120))
    cache, entries = _entries(cache_dir, stage, debug)
    if not entries:
        console.print(f"no entries in {escape(str(cache_dir))}", highlight=False)
        return
    console.print(entry_table(entries, time.time()))
    total = sum(e.size_bytes for e in entries)
    console.print(f"{len(entries)} entries, {human_bytes(total)} in {escape(str(cache_dir))}", highlight=False)


@cache_app.command("clear")
def clear(cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help=_CACHE_DIR_HELP),
          stage: Optional[str] = typer.Option(None, "--stage", help="only this stage, e.g. lowered"),
          yes: bool = typer.Option(False, "--yes", "-y", help="remove without asking"),
          debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Remove cache entries (all, or one stage's) and the temporary folders of dead processes.

    Temporary folders of running processes are left. Asks first unless --yes (declined: exit status 1).

    Examples:
      codesign cache clear --yes
      codesign cache clear --stage lowered --cache-dir /scratch/cache
    """
    console = Console()
    cache, entries = _entries(cache_dir, stage, debug)
    what = f"{len(entries)} entries ({human_bytes(sum(e.size_bytes for e in entries))})"
    where = f"{cache_dir}" + (f", stage {stage}" if stage else "")
    if not yes:
        try:
            confirmed = typer.confirm(f"remove {what} from {printable(where)}?", default=False)
        except (click.exceptions.Abort, typer.Abort):  # typer vendors its own click: its Abort is another class
            confirmed = False
        if not confirmed:
            console.print("nothing removed (pass --yes to remove without asking)", highlight=False)
            raise typer.Exit(EXIT_DECLINED)
    try:
        removed = cache.remove(stage)
    except OSError as exc:
        fail(exc, debug)
    console.print(f"removed {removed} entries from {escape(where)}", highlight=False)
