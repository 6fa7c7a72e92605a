"""Writing a file atomically: into a temporary file beside it, then renamed over it, so a reader sees the old file
or the new one, never half of one, and a failed write leaves the old file as it was."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], mode: int = 0o666) -> None:
    """Call write(tmp) with the path of a new empty file in `path`'s folder (".<name>.<random>.tmp", made by
    mkstemp, so never a file or link planted there), give it the permission bits `mode` less the umask (0o666: as
    open() makes a file; mkstemp's own are 0600), then rename it to `path`; on any failure the temporary file is
    removed and the error raised. The folder must exist: OSError when it is missing or not writable, and whatever
    `write` raises; an OSError of the file system on the temporary file (no permission, a full disk, a read-only
    folder) names `path` instead, as "cannot write '<path>': <reason>" with the original errno (an OSError about
    another file, e.g. one `write` reads, is raised as it is)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(exc, path) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode & ~umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):  # not another file's
            raise write_error(exc, path) from None
        raise


def write_error(exc: OSError, path: str | os.PathLike) -> OSError:
    """An OSError of exc's class and errno whose message is "cannot write '<path>': <reason>": the
    user's file, where the original names the temporary file written beside it."""
    named = type(exc)(f"cannot write {str(path)!r}: {exc.strerror or exc}")  # one argument: str() is the message
    named.errno = exc.errno  # (setting strerror too would make str() "[Errno n] <strerror>" again)
    return named
