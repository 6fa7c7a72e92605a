"""Symbolic links in a run folder: refused wherever a run folder is read or written (a planted link would make
a run, `report` or `validate` read or write through it outside the folder)."""
from __future__ import annotations

import os
from pathlib import Path

from codesign.config.run import ConfigError, quote

#: how deep check_no_links looks into a run folder (the folder, points/, points/<id>/)
LINK_DEPTH = 3


def check_no_links(out: Path, what: str = "--resume") -> None:
    """Raise ConfigError (starting `what:`) when the run folder holds a symbolic link (at its top, in points/ or
    in a point's folder): a planted link would make a run, report or validate read or write through it outside
    the folder."""
    base = len(out.parts)
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise ConfigError(f"{what}: {quote(os.path.join(root, name))} is a symbolic link; a run folder "
                                  "must hold only its own files (remove the link or start a new run_name)")
        if len(Path(root).parts) - base >= LINK_DEPTH - 1:
            dirs[:] = []
