"""Run reports: `report.md`, a self-contained `report.html` and figures as PNG and SVG.

The page holds the summary, the table of every design point, extra tables (e.g. claim verdicts, allocations), the
energy breakdown by component and the latency percentiles with their bootstrap confidence intervals, the
result figures (codesign.reporting.figures), the hardware figures of highlighted points (codesign.reporting.hwfigures: core occupancy,
NoC link load, per-layer SynOps and energy, latency per timestep), the provenance and the resolved config. Figures
are embedded as base64 PNG, so the HTML needs no network or side files. Everything the page shows is read from
files in the run folder, so `rebuild_report(run_dir)` (`codesign report RUN_DIR`) recreates it.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Annotated

import matplotlib
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from codesign.reporting.figures import ENERGY_PREFIX, ENERGY_SUFFIX, Figure, energy_components, render, result_figures
from codesign.reporting.hwfigures import PointDetails, detail_figures
from codesign.reporting.units import MICRO
from codesign.store.runfolder import INCOMPLETE_NAME

META_NAME = "report_meta.json"
#: columns shown in the report table, with the unit factor and label used for people
DISPLAY_COLUMNS = {
    "series": (None, "series"), "method": (None, "method"), "ratio": (None, "ratio"),
    "accuracy": (100.0, "accuracy (%)"), "accuracy_hw": (100.0, "accuracy on chip (%)"), "params": (None, "params"),
    "synops": (None, "SynOps / inf."),
    "spikes": (None, "spikes / inf."), "cores_used": (None, "cores"), "model_bits": (1 / 8192, "model (KiB)"),
    "memory_bits": (1 / 8192, "synapse mem. (KiB)"), "energy_j": (1e6, f"energy / inf. ({MICRO}J)"),
    "latency_s": (1e6, f"latency / inf. ({MICRO}s)"), "fits": (None, "fits"), "pareto": (None, "Pareto"),
}
MAX_HIGHLIGHTS = 3
ENERGY_TABLE = f"Energy per inference by component ({MICRO}J)"
LATENCY_TABLE = f"Latency per inference ({MICRO}s) and accuracy on the chip (%)"


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The results converted to people's units (%, KiB, µJ, µs) with readable column names."""
    out = {}
    for col, (scale, label) in DISPLAY_COLUMNS.items():
        if col in df.columns:
            out[label] = df[col] * scale if scale else df[col]
    return pd.DataFrame(out)


def _labels(df: pd.DataFrame) -> pd.DataFrame:
    """The columns naming each point in derived tables: its series (or method) and ratio."""
    name = "series" if "series" in df.columns else "method"
    return pd.DataFrame({name: df[name], "ratio": df["ratio"]})


def _interval(df: pd.DataFrame, column: str, scale: float) -> pd.Series | None:
    """'[low, high]' of the `<column>_ci_low/_ci_high` columns x scale, or None when the table has none."""
    low, high = f"{column}_ci_low", f"{column}_ci_high"
    if low not in df.columns or high not in df.columns:
        return None
    return pd.Series([f"[{format_value(float(lo) * scale)}, {format_value(float(hi) * scale)}]" for lo, hi in zip(df[low], df[high])],
                     index=df.index)


def _with_interval(out: pd.DataFrame, df: pd.DataFrame, column: str, scale: float, label: str) -> None:
    """Add `label` (column x scale) and, when present, its confidence interval to `out` (in place)."""
    if column not in df.columns:
        return
    out[label] = df[column] * scale
    ci = _interval(df, column, scale)
    if ci is not None:
        out[f"{label} 95 % CI"] = ci


def energy_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Energy per inference of every point by component, the total and its bootstrap CI, in µJ (None when the
    results have no energy components, e.g. no point fitted the chip)."""
    comps = energy_components(df)
    if not comps or "energy_j" not in df.columns or "ratio" not in df.columns:
        return None
    out = _labels(df)
    for comp in comps:
        out[comp] = df[f"{ENERGY_PREFIX}{comp}{ENERGY_SUFFIX}"] * 1e6
    _with_interval(out, df, "energy_j", 1e6, "total")
    return out


def latency_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Mean latency per inference with its bootstrap CI and the p50/p95/p99 percentiles over samples, and
    the accuracy of the chip's own predictions on the simulated samples with its CI (%), where the results have
    them (None when they have no latency percentiles, e.g. an older run folder). Latencies in µs."""
    pct = [c for c in ("latency_p50_s", "latency_p95_s", "latency_p99_s") if c in df.columns]
    if not pct or "ratio" not in df.columns:
        return None
    out = _labels(df)
    _with_interval(out, df, "latency_s", 1e6, "mean")
    for c in pct:
        out[c[len("latency_"):-len("_s")]] = df[c] * 1e6
    _with_interval(out, df, "accuracy_hw", 100.0, "accuracy on chip")
    return out


def derived_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The energy and latency tables of the points that were simulated (energy_j not NaN)."""
    ok = df[df["energy_j"].notna()].reset_index(drop=True) if "energy_j" in df.columns else df
    tables = {ENERGY_TABLE: energy_table(ok), LATENCY_TABLE: latency_table(ok)}
    return {name: t for name, t in tables.items() if t is not None and not t.empty}


def format_value(v) -> str:
    """A cell for people: booleans as yes / no (e.g. fits, Pareto), floats to 4 significant digits (thousands
    separated), ints with separators."""
    if isinstance(v, (bool, np.bool_)):  # a bool is an int: it read 1 / 0
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_cell(text: str) -> str:
    """`text` made safe inside a markdown table cell: '|' as '\\|' and line breaks as spaces (a label such as
    'sca | bits=4' stays one cell)."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of `df` (cells and headers escaped with `markdown_cell`)."""
    head = "| " + " | ".join(markdown_cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(markdown_cell(format_value(v)) for v in row) + " |"
            for row in df.astype(object).itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _html_table(df: pd.DataFrame) -> str:
    """An HTML table of `df`; headers and cells are HTML-escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
                   for row in df.astype(object).itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}td,th{border:1px solid #ccc;"
        "padding:3px 7px;text-align:right}th{background:#f3f3f3}.figs{display:flex;flex-wrap:wrap;gap:12px}"
        "figure{margin:0}figcaption{font-size:13px;color:#555}pre{background:#f7f7f7;padding:8px;"
        "overflow:auto;font-size:12px}img{max-width:100%}")


def highlight_points(df: pd.DataFrame) -> list[str]:
    """point_ids whose hardware figures the report shows: the lowest and highest ratio of the first series and
    the lowest-energy Pareto point (at most MAX_HIGHLIGHTS, no repeats)."""
    if "point_id" not in df.columns or df.empty:
        return []
    ok = df[df["energy_j"].notna()] if "energy_j" in df.columns else df
    if ok.empty:
        return []
    first = ok[ok.get("series", ok["method"]) == ok.get("series", ok["method"]).iloc[0]].sort_values("ratio")
    picks = [first["point_id"].iloc[0], first["point_id"].iloc[-1]]
    if "pareto" in ok.columns and ok["pareto"].astype(bool).any():
        picks.append(ok[ok["pareto"].astype(bool)].sort_values("energy_j")["point_id"].iloc[0])
    return list(dict.fromkeys(picks))[:MAX_HIGHLIGHTS]


def _point_label(df: pd.DataFrame, pid: str) -> str:
    row = df[df["point_id"] == pid].iloc[0]
    series = row["series"] if "series" in df.columns else row["method"]
    return f"{series}, ratio {row['ratio']:g}"


def point_figures(run_dir: Path, df: pd.DataFrame) -> list[tuple[str, list[Figure]]]:
    """Hardware figures of the highlighted points whose details are stored under run_dir/points/<id>/."""
    out = []
    for pid in highlight_points(df):
        folder = run_dir / "points" / str(pid)
        if not (folder / "cores.csv").exists():
            continue
        figs = [render(f"{name}-{pid}", cap, fig) for name, cap, fig in detail_figures(PointDetails.load(folder))]
        out.append((_point_label(df, pid), figs))
    return out


def _img(f: Figure) -> str:
    return (f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,'
            f'{base64.b64encode(f.png).decode()}"><figcaption>{html.escape(f.caption)}</figcaption></figure>')


def render_markdown(meta: dict, df: pd.DataFrame, figures: list[Figure], points: list, tables: dict,
                    provenance: dict, config_yaml: str) -> str:
    """report.md: summary, results, extra tables, figures (PNG links), hardware figures, provenance, config."""
    parts = [f"# {meta['title']}", "", *[f"- {s}" for s in meta["summary"]], "", "## Results", "",
             markdown_table(display_table(df)), ""]
    for name, table in tables.items():
        parts += [f"## {name}", "", markdown_table(table), ""]
    parts += ["## Figures", "", *[f"![{f.caption}](figures/{f.name}.png)" for f in figures], ""]
    for label, figs in points:
        parts += [f"## Hardware view: {label}", "", *[f"![{f.caption}](figures/{f.name}.png)" for f in figs], ""]
    parts += ["## Provenance", "", "```json", json.dumps(provenance, indent=1), "```", "",
              "## Resolved config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(parts)


def render_html(meta: dict, df: pd.DataFrame, figures: list[Figure], points: list, tables: dict,
                provenance: dict, config_yaml: str) -> str:
    """report.html: self-contained page (inline CSS, figures as base64 PNG data URIs, no scripts)."""
    title = html.escape(meta["title"])
    items = "".join(f"<li>{html.escape(s)}</li>" for s in meta["summary"])
    body = [f"<h1>{title}</h1><ul>{items}</ul><h2>Results</h2>{_html_table(display_table(df))}"]
    body += [f"<h2>{html.escape(n)}</h2>{_html_table(t)}" for n, t in tables.items()]
    body.append(f"<h2>Figures</h2><div class='figs'>{''.join(_img(f) for f in figures)}</div>")
    body += [f"<h2>Hardware view: {html.escape(label)}</h2><div class='figs'>{''.join(_img(f) for f in figs)}</div>"
             for label, figs in points]
    body.append(f"<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=1))}</pre>"
                f"<h2>Resolved config</h2><pre>{html.escape(config_yaml)}</pre>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")


#: a file named in report_meta.json is one plain file name inside the run folder (or its tables/ folder)
SAFE_FILE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ReportMeta(BaseModel):
    """report_meta.json: what `rebuild_report` shows besides results.csv. File names are plain names inside the
    run folder, so a crafted meta file cannot make the report read outside it."""

    model_config = ConfigDict(extra="ignore")
    title: str
    summary: list[str]
    tables: dict[str, Annotated[str, StringConstraints(pattern=SAFE_FILE)]]
    config_file: Annotated[str, StringConstraints(pattern=SAFE_FILE)]


def _short(path: Path) -> str:
    """A path for a one-line message: its last 80 characters, so the file name always shows."""
    text = str(path)
    return text if len(text) <= 80 else "..." + text[-77:]


def _read_meta(path: Path) -> ReportMeta:
    """report_meta.json as a ReportMeta; ValueError (one line naming the file and the field) when it is not."""
    try:
        return ReportMeta.model_validate(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "the file"
            raise ValueError(f"report: '{_short(path)}': {where}: {e['msg']}") from None
        raise ValueError(f"report: '{_short(path)}' is not JSON ({str(exc).splitlines()[0][:80]})") from None


def _read_json(path: Path, default):
    """A JSON file of the run folder (default when missing); ValueError naming the file when it is not JSON."""
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ValueError(f"report: '{_short(path)}' is not JSON ({str(exc).splitlines()[0][:80]})") from None


def _read_tables(run_dir: Path, meta: ReportMeta) -> dict[str, pd.DataFrame]:
    out = {}
    for name, file in meta.tables.items():
        path = run_dir / "tables" / file
        try:
            out[name] = pd.read_csv(path, dtype=str).fillna("")
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"report: '{_short(path)}' is not a table ({str(exc).splitlines()[0][:80]})"
                             ) from None
    return out


def _claims_table(run_dir: Path, df: pd.DataFrame, claims_json: str | None = None) -> dict[str, pd.DataFrame]:
    """The "Claims" table of the verdicts in `claims_json` (text), else in the folder's claims.json (none: {});
    titled stale when claims.json was judged on other design points than the results `df` now hold (a sweep
    resumed after codesign validate)."""
    path = run_dir / "claims.json"
    verdicts = _read_json(path, None) if claims_json is None else json.loads(claims_json)
    if verdicts is None:
        return {}
    from codesign.claims.verdicts import results_digest, verdict_table
    try:
        table = verdict_table(verdicts)
        judged = {(v.get("results_digest"), v.get("results_points")) for v in verdicts if "results_digest" in v}
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError(f"report: '{_short(path)}' is not a verdicts file written by codesign validate") from None
    now = results_digest(df)
    stale = [n for digest, n in judged if digest != now]
    if stale:
        return {f"Claims (STALE: judged on {stale[0]} design points, the results now hold {len(df)}; run codesign "
                "validate again)": table}
    return {"Claims": table}


def rebuild_report(run_dir: str | Path, claims_json: str | None = None) -> Path:
    """Recreate figures/, report.md and report.html from the files of a run folder; returns report.html. Every
    file is read and the pages rendered before anything is written (each file is then replaced atomically).
    claims_json: the text of a new claims.json (codesign validate's verdicts), shown instead of the folder's and
    written first of the files, so a report that cannot be rebuilt leaves the old verdicts in place.

    Raises FileNotFoundError when the folder has no results.csv or no report_meta.json, and ValueError (one line)
    for a run folder holding a symbolic link or a results.csv that read_results refuses.
    """
    run_dir = Path(run_dir)
    for need in ("results.csv", META_NAME):
        if not (run_dir / need).exists():
            if (run_dir / INCOMPLETE_NAME).exists():
                raise FileNotFoundError(f"report: the run in '{run_dir}' has not finished ({need} is not written "
                                        "yet): wait for it, or resume a stopped one with --set run_name="
                                        f"{run_dir.name} --resume")
            raise FileNotFoundError(f"report: '{run_dir / need}' does not exist (is '{run_dir}' a run folder?)")
    from codesign.store.results import atomic_write, read_results
    df = read_results(run_dir)  # first: it refuses a folder holding a symbolic link before any file is read
    meta_model = _read_meta(run_dir / META_NAME)
    meta = meta_model.model_dump()
    tables = {**_read_tables(run_dir, meta_model), **derived_tables(df), **_claims_table(run_dir, df, claims_json)}
    provenance = _read_json(run_dir / "provenance.json", {})
    if not isinstance(provenance, dict):
        raise ValueError(f"report: '{_short(run_dir / 'provenance.json')}' must hold a JSON object")
    config_path = run_dir / meta_model.config_file
    config_yaml = config_path.read_text(errors="replace") if config_path.is_file() else ""
    with matplotlib.rc_context({"text.parse_math": False}):  # a '$' in a method or series name is text, not TeX
        figures = result_figures(df)  # the costly part, once every file has been read
        points = point_figures(run_dir, df)
    args = (meta, df, figures, points, tables, provenance, config_yaml)
    markdown, page = render_markdown(*args), render_html(*args)  # everything read and rendered before any write
    if claims_json is not None:
        atomic_write(run_dir / "claims.json", lambda tmp: Path(tmp).write_text(claims_json))
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in figures + [f for _, figs in points for f in figs]:
        atomic_write(fig_dir / f"{f.name}.png", lambda tmp, data=f.png: Path(tmp).write_bytes(data))
        atomic_write(fig_dir / f"{f.name}.svg", lambda tmp, data=f.svg: Path(tmp).write_bytes(data))
    atomic_write(run_dir / "report.md", lambda tmp: Path(tmp).write_text(markdown))
    atomic_write(run_dir / "report.html", lambda tmp: Path(tmp).write_text(page))
    return run_dir / "report.html"


def write_report(run_dir: Path, df: pd.DataFrame, config_yaml: str, summary: list[str],
                 title: str = "Co-design run", tables: dict[str, pd.DataFrame] | None = None,
                 config_file: str = "config.resolved.yaml") -> Path:
    """Store what the report shows (results.csv and results.parquet, report_meta.json, tables/*.csv, the config
    file when given as text) and build the page with `rebuild_report`. Returns the path of report.html."""
    from codesign.store.results import atomic_write, write_results
    run_dir = Path(run_dir)
    write_results(run_dir, df)  # the final table (pareto column, report order) in both files
    if not (run_dir / config_file).exists():
        atomic_write(run_dir / config_file, lambda tmp: Path(tmp).write_text(config_yaml))
    names = {}
    if tables:
        (run_dir / "tables").mkdir(exist_ok=True)
        for i, (name, table) in enumerate(tables.items()):
            names[name] = f"table{i}.csv"
            atomic_write(run_dir / "tables" / names[name], lambda tmp, t=table: t.to_csv(tmp, index=False))
    meta = {"title": title, "summary": summary, "tables": names, "config_file": config_file}
    atomic_write(run_dir / META_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return rebuild_report(run_dir)
