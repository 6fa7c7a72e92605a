"""Writing a file atomically: into a temporary file beside it, then renamed over it, so a reader sees the old file
or the new one, never half of one, and a failed write leaves the old file as it was."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call write(tmp) with the path of a new empty file in `path`'s folder (".<name>.<random>.tmp", mode 0600 as
    mkstemp makes it), then rename it to `path`; on any failure the temporary file is removed and the error
    raised. The folder must exist: OSError when it is missing or not writable, and whatever `write` raises."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
