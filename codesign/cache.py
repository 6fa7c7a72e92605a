"""Content-addressed cache of stage outputs (trained models, compressed models, lowered graphs and traces).

A stage output lives in `<root>/<stage>/<key>/`, where key is the hash of the config that produced it. An entry
is written into a temporary folder and renamed into place, so a killed process never leaves a half entry; two
processes racing on one key both succeed and the first rename wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

KEY_CHARS = 16


def config_key(*parts) -> str:
    """Stable hash (16 hex chars) of JSON-serialisable parts (dict keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


class StageCache:
    """Folders of stage outputs under `root`, one per (stage, key). Thread- and process-safe by atomic rename."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        """Folder of the entry (it exists only once complete)."""
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        """True when the entry is complete."""
        return self.path(stage, key).is_dir()

    def get_or_make(self, stage: str, key: str, make: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Return the entry folder, calling `make(tmp_folder)` to fill it first when it is missing.

        `meta` is written to meta.json inside the entry (what produced it). Exceptions from `make` propagate
        and leave nothing behind.
        """
        final = self.path(stage, key)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.tmp-"))
        try:
            make(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=1, sort_keys=True, default=str))
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return final
