"""Run reports: figures against the compression ratio, `report.md` and a self-contained `report.html`.

Inputs are the results table (one row per design point, SI units) and the resolved config; figures are
drawn with matplotlib and embedded in the HTML as base64 PNG so the page needs no network or side files.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ENERGY_PREFIX = "energy_"
ENERGY_SUFFIX = "_j"
#: columns shown in the report table, with the unit factor and label used for people
DISPLAY_COLUMNS = {
    "series": (None, "series"), "method": (None, "method"), "ratio": (None, "ratio"), "accuracy": (100.0, "accuracy (%)"),
    "params": (None, "params"), "synops": (None, "SynOps / inf."), "spikes": (None, "spikes / inf."),
    "cores_used": (None, "cores"), "model_bits": (1 / 8192, "model (KiB)"),
    "memory_bits": (1 / 8192, "synapse mem. (KiB)"), "energy_j": (1e6, "energy / inf. (uJ)"),
    "latency_s": (1e6, "latency / inf. (us)"), "fits": (None, "fits"), "pareto": (None, "Pareto"),
}


@dataclass(frozen=True)
class Figure:
    """One report figure: file stem, caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


def energy_components(df: pd.DataFrame) -> list[str]:
    """Names of the energy components present as `energy_<component>_j` columns (total excluded)."""
    return [c[len(ENERGY_PREFIX):-len(ENERGY_SUFFIX)] for c in df.columns
            if c.startswith(ENERGY_PREFIX) and c.endswith(ENERGY_SUFFIX) and c != "energy_j"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def series_of(df: pd.DataFrame) -> pd.Series:
    """The curve each row belongs to: the `series` column of a sweep, else the method."""
    return df["series"] if "series" in df.columns else df["method"]


def _line_figure(df: pd.DataFrame, column: str, scale: float, ylabel: str, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for method, part in df.groupby(series_of(df), sort=False):
        part = part.sort_values("ratio")
        ax.plot(part["ratio"], part[column] * scale, marker="o", label=str(method))
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _pareto_figure(df: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    front = df["pareto"].astype(bool)
    ax.scatter(df.loc[~front, "energy_j"] * 1e6, df.loc[~front, "accuracy"] * 100, c="#999", s=14, label="point")
    part = df[front].sort_values("energy_j")
    ax.plot(part["energy_j"] * 1e6, part["accuracy"] * 100, "o-", c="C3", label="Pareto front")
    ax.set_xlabel("energy per inference (uJ)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs energy (front over accuracy, energy, latency)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _energy_figure(df: pd.DataFrame) -> bytes:
    comps = energy_components(df)
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    labels = [f"{m}\n{r:g}" for m, r in zip(series_of(df), df["ratio"])]
    bottom = pd.Series(0.0, index=df.index)
    for comp in comps:
        vals = df[f"{ENERGY_PREFIX}{comp}{ENERGY_SUFFIX}"] * 1e6
        ax.bar(labels, vals, bottom=bottom, label=comp)
        bottom = bottom + vals
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_title("Energy per inference by component")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def make_figures(df: pd.DataFrame) -> list[Figure]:
    """The four standard figures: accuracy, parameters, energy (stacked by component) and latency vs ratio."""
    df = df[df["energy_j"].notna()] if "energy_j" in df.columns else df
    figs = [Figure("pareto", "Pareto front: accuracy against energy per inference", _pareto_figure(df))] \
        if "pareto" in df.columns else []
    return figs + [
        Figure("accuracy", "Test accuracy against the pruning ratio",
               _line_figure(df, "accuracy", 100.0, "accuracy (%)", "Accuracy")),
        Figure("params", "Parameters against the pruning ratio",
               _line_figure(df, "params", 1.0, "parameters", "Parameters")),
        Figure("energy", "Energy per inference, stacked by component", _energy_figure(df)),
        Figure("latency", "Latency per inference against the pruning ratio",
               _line_figure(df, "latency_s", 1e6, "latency per inference (us)", "Latency")),
    ]


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The results converted to people's units (%, uJ, us) with readable column names."""
    out = {}
    for col, (scale, label) in DISPLAY_COLUMNS.items():
        if col in df.columns:
            out[label] = df[col] * scale if scale else df[col]
    return pd.DataFrame(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of `df`."""
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.astype(object).itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.astype(object).itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}.figs{display:flex;flex-wrap:wrap;gap:12px}"
        "figure{margin:0}figcaption{font-size:13px;color:#555}pre{background:#f7f7f7;padding:8px;"
        "overflow:auto;font-size:12px}")


def render_markdown(title: str, summary: list[str], df: pd.DataFrame, figures: list[Figure],
                    config_yaml: str, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """report.md: summary lines, the results table, extra tables, links to the PNG figures, the resolved config."""
    parts = [f"# {title}", "", *[f"- {s}" for s in summary], "", "## Results", "",
             markdown_table(display_table(df)), ""]
    for name, table in (tables or {}).items():
        parts += [f"## {name}", "", markdown_table(table), ""]
    parts += ["## Figures", ""]
    parts += [f"![{f.caption}](figures/{f.name}.png)" for f in figures]
    parts += ["", "## Resolved config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(parts)


def render_html(title: str, summary: list[str], df: pd.DataFrame, figures: list[Figure],
                config_yaml: str, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """report.html: self-contained page (inline CSS, figures as base64 PNG data URIs, no scripts)."""
    figs = "".join(
        f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(f.png).decode()}"><figcaption>{html.escape(f.caption)}</figcaption></figure>'
        for f in figures)
    items = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>"
            f"<h2>Results</h2>{_html_table(display_table(df))}"
            + "".join(f"<h2>{html.escape(n)}</h2>{_html_table(t)}" for n, t in (tables or {}).items())
            + f"<h2>Figures</h2><div class='figs'>{figs}</div>"
            f"<h2>Resolved config</h2><pre>{html.escape(config_yaml)}</pre></body></html>")


def write_report(run_dir: Path, df: pd.DataFrame, config_yaml: str, summary: list[str],
                 title: str = "Co-design run", tables: dict[str, pd.DataFrame] | None = None) -> None:
    """Write figures/, report.md and report.html into `run_dir`; `tables` adds named sections after the results."""
    figures = make_figures(df)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in figures:
        (fig_dir / f"{f.name}.png").write_bytes(f.png)
    (run_dir / "report.md").write_text(render_markdown(title, summary, df, figures, config_yaml, tables))
    (run_dir / "report.html").write_text(render_html(title, summary, df, figures, config_yaml, tables))
