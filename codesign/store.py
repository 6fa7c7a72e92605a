"""Results store of a run: an append-only JSON-lines log (durable per point) plus CSV/Parquet snapshots.

A design point is finished once its line is in `results.jsonl` and fsync'ed; a SIGKILL can at worst leave a torn
last line, which `ResultStore` drops on open. `results.csv` and `results.parquet` are rewritten atomically after
every point, so they always hold exactly the finished points.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

LOG_NAME = "results.jsonl"
KEY_COLUMN = "point_id"


def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename tmp over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultStore:
    """Finished design points of one run folder, keyed by `point_id`.

    lead_columns: columns written first in the CSV/Parquet snapshots (others follow in first-seen order).
    """

    def __init__(self, run_dir: str | os.PathLike, lead_columns: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / LOG_NAME
        self.lead_columns = list(lead_columns or [])
        self.rows: list[dict] = self._read()

    def _read(self) -> list[dict]:
        """Rows of the log; a torn (unparseable) last line is cut off the file."""
        if not self.log.exists():
            return []
        rows, good_bytes = [], 0
        with open(self.log, "rb") as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
                good_bytes += len(line)
        if good_bytes != self.log.stat().st_size:
            with open(self.log, "r+b") as fh:
                fh.truncate(good_bytes)
        return rows

    @property
    def done(self) -> set[str]:
        """point_ids already finished."""
        return {r[KEY_COLUMN] for r in self.rows}

    def append(self, row: dict) -> None:
        """Record one finished point durably (write + flush + fsync), then refresh the snapshots.

        Raises ValueError when the row has no point_id or that point is already stored.
        """
        if KEY_COLUMN not in row:
            raise ValueError(f"result row: missing '{KEY_COLUMN}'")
        if row[KEY_COLUMN] in self.done:
            raise ValueError(f"result row: point {row[KEY_COLUMN]} is already stored")
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(row)
        self.write_snapshots()

    def table(self) -> pd.DataFrame:
        """All finished points as a DataFrame, lead columns first."""
        df = pd.DataFrame(self.rows)
        if df.empty:
            return df
        lead = [c for c in self.lead_columns if c in df.columns]
        return df[lead + [c for c in df.columns if c not in lead]]

    def write_snapshots(self) -> None:
        """results.csv and results.parquet from the log (atomic replace)."""
        df = self.table()
        _atomic_write(self.run_dir / "results.csv", lambda p: df.to_csv(p, index=False))
        _atomic_write(self.run_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
