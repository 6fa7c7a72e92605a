"""Symbolic links in a run folder: refused wherever a run folder is read or written (a planted link would make
a run, `report` or `validate` read or write through it outside the folder). So are FIFOs, sockets and devices
(reading a planted FIFO would block `report` or `validate` forever)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from codesign.config.run import ConfigError, quote

#: how deep check_no_links looks into a run folder (the folder, points/, points/<id>/)
LINK_DEPTH = 3


def check_no_links(out: Path, what: str = "--resume") -> None:
    """Raise ConfigError (starting `what:`) when the run folder holds a symbolic link (at its top, in points/ or
    in a point's folder): a planted link would make a run, report or validate read or write through it outside
    the folder; or a FIFO, socket or device, which reading would block on."""
    base = len(out.parts)
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in dirs + files:
            try:
                mode = os.lstat(os.path.join(root, name)).st_mode
            except FileNotFoundError:  # a temporary file renamed meanwhile
                continue
            if stat.S_ISLNK(mode):
                raise ConfigError(f"{what}: {quote(os.path.join(root, name))} is a symbolic link; a run folder "
                                  "must hold only its own files (remove the link or start a new run_name)")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ConfigError(f"{what}: {quote(os.path.join(root, name))} is not a regular file or folder (a "
                                  "FIFO, socket or device); a run folder must hold only its own files")
        if len(Path(root).parts) - base >= LINK_DEPTH - 1:
            dirs[:] = []
