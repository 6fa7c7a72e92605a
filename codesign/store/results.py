"""Results store of a run: an append-only JSON-lines log (durable per point) plus CSV/Parquet snapshots.

A design point is finished once its line is in `results.jsonl` and fsync'ed; a SIGKILL can at worst leave a torn
last line, which `ResultStore` drops on open. `results.csv` and `results.parquet` are rewritten atomically after
every point, and again when a store with rows is opened (a process stopped between a row's fsync and the
snapshots leaves them a point short), so they hold exactly the finished points.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from codesign.store.links import check_no_links
from hwmodels.atomic import write_atomic

LOG_NAME = "results.jsonl"
KEY_COLUMN = "point_id"


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temp file beside `path`, give it mode 0644 less the umask, then rename it over
    `path`: readers see the old or the new file, never a half-written one (hwmodels.atomic.write_atomic)."""
    write_atomic(path, write, mode=0o644)


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
        if self.rows:  # a process stopped between a row's fsync and its snapshots leaves them a point short
            self.write_snapshots()

    def _read(self) -> list[dict]:
        """Rows of the log; a torn last line (without its closing newline: the write stopped before it finished, so
        the point was never stored) is cut off the file, so the next row starts on a line of its own. Raises
        ValueError naming the file and line for a whole line that is not a results row (the file was damaged:
        the finished rows after it are neither dropped nor cut off)."""
        if not self.log.exists():
            return []
        rows, good_bytes, seen = [], 0, set()
        with open(self.log, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    break
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    row = None
                if not isinstance(row, dict) or not isinstance(row.get(KEY_COLUMN), str):
                    raise ValueError(f"{str(self.log)[:80]}: line {number} is not a results row (a JSON object "
                                     f"with a '{KEY_COLUMN}'); repair or remove the file")
                if row[KEY_COLUMN] not in seen:
                    seen.add(row[KEY_COLUMN])
                    rows.append(row)
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
        """results.csv and results.parquet from the log (atomic replace). A column holding mappings (an axis over
        whole dicts such as hardware.overrides, `{}` included, which Parquet cannot store as a struct without
        fields) goes to Parquet as their JSON text."""
        write_results(self.run_dir, self.table())


def write_results(run_dir: Path, df: pd.DataFrame) -> None:
    """results.csv and results.parquet of `df`, the same rows in the same order (each replaced atomically); a
    column holding mappings goes to Parquet as their JSON text."""
    atomic_write(Path(run_dir) / "results.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(Path(run_dir) / "results.parquet", lambda p: _json_mappings(df).to_parquet(p, index=False))


def _json_mappings(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every dict in an object column replaced by its JSON text (sorted keys)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, dict)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict) else v)
    return out


#: columns every results.csv written by run, sweep, search or allocate has
REQUIRED_COLUMNS = ("method", "ratio", "accuracy", "energy_j", "latency_s", "params")
#: columns of results.csv that hold numbers (and every *_ci_low / *_ci_high)
NUMERIC_COLUMNS = ("ratio", "accuracy", "accuracy_hw", "params", "energy_j", "latency_s", "latency_p95_s", "synops",
                   "spikes", "cores_used")
#: a point id read from results.csv names a folder under points/ only when it is one plain path component
SAFE_POINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def read_results(run_dir: str | os.PathLike, required: tuple[str, ...] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """A run folder's results.csv as a DataFrame (point_id read as text).

    Raises FileNotFoundError when the folder or file is missing and ValueError (one line naming the file) when
    it is not a readable CSV, is empty or lacks a column of `required` (default REQUIRED_COLUMNS).
    """
    path = Path(run_dir) / "results.csv"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder '{str(run_dir)[:80]}' does not exist or is not a folder")
    if not path.is_file():
        raise FileNotFoundError(f"'{str(path)[:80]}' does not exist (is '{str(run_dir)[:80]}' a run folder?)")
    check_no_links(Path(run_dir), "run folder")
    try:
        df = pd.read_csv(path, dtype={KEY_COLUMN: str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"'{str(path)[:80]}' is not a results table: {str(exc).splitlines()[0][:120]}") from None
    missing = [c for c in required if c not in df.columns]
    if missing or df.empty:
        what = f"lacks the columns {', '.join(missing)}" if missing else "has no rows"
        raise ValueError(f"'{str(path)[:80]}' {what}; it must be written by codesign run, sweep, search or "
                         "allocate")
    _check_columns(df, str(path)[:80])
    return df


def _check_columns(df: pd.DataFrame, name: str) -> None:
    """ValueError naming the file and column when a numeric column of NUMERIC_COLUMNS holds text, a method cell is
    empty, or a point id is not one plain path component (SAFE_POINT_ID: points/<id>/ is read and figures are
    named from it) or is listed twice."""
    for col in df.columns:
        if (col in NUMERIC_COLUMNS or col.endswith(("_ci_low", "_ci_high"))) and \
                not pd.api.types.is_numeric_dtype(df[col]):
            bad = next((v for v in df[col] if not _is_number(v)), None)
            raise ValueError(f"'{name}': column {col!r} holds text ({str(bad)[:40]!r}); it must hold numbers")
    if "method" in df.columns and df["method"].isna().any():
        row = int(df["method"].isna().to_numpy().argmax())
        raise ValueError(f"'{name}': column 'method' is empty in row {row + 2} (line of the file); every design "
                         "point names its method")
    if KEY_COLUMN in df.columns:
        ids = df[KEY_COLUMN].dropna()
        bad = next((i for i in ids if not SAFE_POINT_ID.fullmatch(i)), None)
        if bad is not None:
            raise ValueError(f"'{name}': point_id {bad[:60]!r} is not a plain name (letters, digits, '._-')")
        dup = ids[ids.duplicated()]
        if len(dup):
            raise ValueError(f"'{name}': point_id {dup.iloc[0][:60]!r} is listed twice; each design point is one row")


def _is_number(value) -> bool:
    """True for what pandas reads as a number (NaN included)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
