"""Figures over a results table: accuracy, parameters, energy (stacked by component) and latency against the
compression ratio, the accuracy/energy Pareto front (front points labelled with their ratio and setting), and
energy, latency and accuracy against each swept hardware parameter (`hardware.*` axis columns). Each figure is
rendered to PNG and SVG bytes; energies and latencies are drawn with an SI prefix chosen from the data (µJ, µs).

Energy and latency per point carry their bootstrap confidence interval over the simulated samples as error bars
when the table has the `<metric>_ci_low` / `<metric>_ci_high` columns (hwmodels.SimResult.as_row); tables
written before those columns existed plot without them."""
from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from codesign.reporting.pareto import front_accuracy  # noqa: E402
from codesign.reporting.units import si_scale  # noqa: E402
from hwmodels.energy.costs import ENERGY_COMPONENTS  # noqa: E402

ENERGY_PREFIX = "energy_"
ENERGY_SUFFIX = "_j"
#: energy_<name>_j columns that are not components of the total (the total itself, total minus static)
NOT_COMPONENTS = ("dynamic",)
#: results columns of swept hardware parameters start with this (sweep / search axis keys)
HARDWARE_PREFIX = "hardware."
#: metrics drawn against each hardware parameter: column, base unit (None: a fraction shown in %), axis label
HARDWARE_METRICS = (("energy_j", "J", "energy per inference"), ("latency_s", "s", "latency per inference"),
                    ("accuracy", None, "accuracy"))
#: at most this many curves get a legend entry
MAX_LEGEND = 12
#: up to this many Pareto points are labelled beside the point; more are numbered, with a key beside the plot
MAX_DIRECT_LABELS = 4


@dataclass(frozen=True)
class Figure:
    """One report figure: file stem, caption, PNG and SVG bytes."""

    name: str
    caption: str
    png: bytes
    svg: bytes


def render(name: str, caption: str, fig) -> Figure:
    """A Figure from a matplotlib figure (closed afterwards)."""
    out = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return Figure(name, caption, out["png"], out["svg"])


def energy_components(df: pd.DataFrame) -> list[str]:
    """Names of the energy components present as `energy_<component>_j` columns, in the order of
    hwmodels.energy.costs.ENERGY_COMPONENTS; in column order when some are not among them (the four of older run
    folders: synapse, neuron, network, static). The total and NOT_COMPONENTS are excluded."""
    found = [c[len(ENERGY_PREFIX):-len(ENERGY_SUFFIX)] for c in df.columns
             if c.startswith(ENERGY_PREFIX) and c.endswith(ENERGY_SUFFIX) and c != "energy_j"]
    found = [c for c in found if c and c not in NOT_COMPONENTS]
    if set(found) <= set(ENERGY_COMPONENTS):
        return [c for c in ENERGY_COMPONENTS if c in found]
    return found


def ci_errors(df: pd.DataFrame, column: str, scale: float = 1.0) -> np.ndarray | None:
    """Error-bar lengths (2, rows) below and above `column` x scale from its `<column>_ci_low` / `_ci_high`
    columns (negative lengths, from an interval that misses the point value, are clipped to 0; NaN bounds draw
    no bar), or None when the table has no such columns."""
    low, high = f"{column}_ci_low", f"{column}_ci_high"
    if low not in df.columns or high not in df.columns:
        return None
    value = df[column].to_numpy(float)
    below = value - df[low].to_numpy(float)
    above = df[high].to_numpy(float) - value
    return np.clip(np.stack([below, above]), 0.0, None) * scale


def legend(ax, **kw) -> None:
    """ax.legend(**kw) when something on `ax` has a label (matplotlib warns "No artists with labels found" and
    draws an empty box otherwise, e.g. when no point fitted the chip)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def series_of(df: pd.DataFrame) -> pd.Series:
    """The curve each row belongs to: the `series` column of a sweep, else the method."""
    return df["series"] if "series" in df.columns else df["method"]


def line_figure(df: pd.DataFrame, column: str, scale: float, ylabel: str, title: str):
    """`column` x scale against the ratio, one curve per series, with CI error bars when the table has them."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, part in df.groupby(series_of(df), sort=False):
        part = part.sort_values("ratio")
        ax.errorbar(part["ratio"], part[column] * scale, yerr=ci_errors(part, column, scale), marker="o",
                    capsize=3, label=str(name))
    ax.set_xlabel("compression ratio")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)
    return fig


def point_tags(df: pd.DataFrame) -> list[str]:
    """A short label per row for the Pareto plot: 'r=<ratio>', after the series (method and its sweep or search
    settings, hardware ones included) when the table has more than one series."""
    several = series_of(df).nunique() > 1
    return [f"{s}, r={r:g}" if several else f"r={r:g}" for s, r in zip(series_of(df), df["ratio"])]


def _label_front(ax, front: pd.DataFrame, scale: float) -> None:
    """Label the front points (column `tag`) in order of energy: beside each point when there are at most
    MAX_DIRECT_LABELS, else with a number and a key '<n>: <tag>' to the right of the plot."""
    front = front.sort_values("energy_j")
    direct = len(front) <= MAX_DIRECT_LABELS
    for k, (tag, x, y) in enumerate(zip(front["tag"], front["energy_j"], front[front_accuracy(front)]), 1):
        ax.annotate(tag if direct else str(k), (x * scale, y * 100), xytext=(3, 3 + 7 * (k % 2) * direct),
                    textcoords="offset points", fontsize=6)
    if not direct:
        key = "\n".join(f"{k}: {tag}" for k, tag in enumerate(front["tag"], 1))
        ax.text(1.02, 1.0, key, transform=ax.transAxes, va="top", ha="left", fontsize=6)


def pareto_figure(df: pd.DataFrame):
    """Accuracy against energy; front points in colour, each labelled with `point_tags`. The accuracy is the one
    the front was chosen on (pareto.front_accuracy: the chip's, accuracy_hw, when the table says so)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    scale, unit = si_scale(df["energy_j"], "J")
    front, accuracy = df["pareto"].astype(bool), front_accuracy(df)
    for part, color, size, label in ((df[~front], "#999", 4, "point"), (df[front], "C3", 5, "on the Pareto front")):
        ax.errorbar(part["energy_j"] * scale, part[accuracy] * 100, xerr=ci_errors(part, "energy_j", scale),
                    fmt="o", color=color, markersize=size, elinewidth=0.8, capsize=2, label=label)
    _label_front(ax, df[front].assign(tag=np.array(point_tags(df), dtype=object)[front.to_numpy()]), scale)
    ax.set_xlabel(f"energy per inference ({unit})")
    ax.set_ylabel("accuracy on the chip's samples (%)" if accuracy == "accuracy_hw" else "accuracy (%)")
    ax.set_title("Accuracy vs energy (Pareto front over the run's objectives)", fontsize=9)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)
    return fig


def energy_figure(df: pd.DataFrame):
    """Energy per point stacked by component, with the CI of the total as error bars."""
    fig, ax = plt.subplots(figsize=(max(4.6, 0.5 * len(df)), 3.2))
    scale, unit = si_scale(df["energy_j"], "J")
    labels = [f"{m}\n{r:g}" for m, r in zip(series_of(df), df["ratio"])]
    bottom = pd.Series(0.0, index=df.index)
    for comp in energy_components(df):
        vals = df[f"{ENERGY_PREFIX}{comp}{ENERGY_SUFFIX}"] * scale
        ax.bar(range(len(df)), vals, bottom=bottom, label=comp)
        bottom = bottom + vals
    errors = ci_errors(df, "energy_j", scale)
    if errors is not None:
        ax.errorbar(range(len(df)), df["energy_j"] * scale, yerr=errors, fmt="none", ecolor="k", capsize=3,
                    label="95 % CI of the total")
    ax.set_xticks(range(len(df)), labels, fontsize=6, rotation=90 if len(df) > 8 else 0)
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.set_title("Energy per inference by component")
    legend(ax, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def _as_text(values: pd.Series) -> pd.Series:
    """Values as strings, missing ones (an axis a row's grid does not have) as '-'."""
    return values.map(lambda v: "-" if pd.isna(v) else str(v))


def hardware_axes(df: pd.DataFrame) -> list[str]:
    """Columns of swept hardware parameters: sweep or search axes whose key starts with HARDWARE_PREFIX and that
    take more than one value."""
    return [c for c in df.columns if c.startswith(HARDWARE_PREFIX) and _as_text(df[c].dropna()).nunique() > 1]


def _positions(values: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """x positions of a parameter's values: the numbers themselves, or (for names such as presets) 0, 1, ...
    in first-seen order with the names as tick labels."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(float), None
    text = _as_text(values).tolist()
    names = list(dict.fromkeys(text))
    return np.array([names.index(v) for v in text], float), names


def _curve_labels(df: pd.DataFrame, key: str) -> pd.Series:
    """The curve of each row in a plot against `key`: method, ratio and every other axis setting that varies."""
    others = [c for c in df.columns if "." in c and c not in (key, "compression.method", "compression.ratio")
              and _as_text(df[c]).nunique() > 1]
    parts = [_as_text(df["method"]), "r=" + df["ratio"].map("{:g}".format)]
    parts += [c.split(".")[-1] + "=" + _as_text(df[c]) for c in others]
    return pd.Series([", ".join(p) for p in zip(*parts)], index=df.index)


def _metric_panel(ax, df: pd.DataFrame, key: str, metric: tuple) -> None:
    """One metric against hardware parameter `key`, one curve per `_curve_labels` group."""
    column, unit, label = metric
    scale, shown = (100.0, "%") if unit is None else si_scale(df[column], unit)
    x, names = _positions(df[key])
    labels = _curve_labels(df, key).to_numpy()
    for name in dict.fromkeys(labels):
        rows = np.flatnonzero(labels == name)
        rows = rows[np.argsort(x[rows], kind="stable")]
        ax.plot(x[rows], df[column].to_numpy(float)[rows] * scale, marker="o", label=name)
    if names is not None:
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30, ha="right")
    ax.set_xlabel(key, fontsize=8)
    ax.set_ylabel(f"{label} ({shown})")
    ax.grid(alpha=0.3)


def hardware_figure(df: pd.DataFrame, key: str):
    """Energy, latency and accuracy (one panel each) against the swept hardware parameter `key`."""
    part = df[df[key].notna()].reset_index(drop=True)
    metrics = [m for m in HARDWARE_METRICS if m[0] in part.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        _metric_panel(ax, part, key, metric)
    if _curve_labels(part, key).nunique() <= MAX_LEGEND:
        legend(axes[0][-1], fontsize=6)
    fig.suptitle(f"Against {key}", fontsize=9)
    fig.tight_layout()
    return fig


def figure_stem(key: str) -> str:
    """A file-name-safe stem for the figure of parameter `key` ('hw-' + key, other characters as '_')."""
    return "hw-" + "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)


def result_figures(df: pd.DataFrame) -> list[Figure]:
    """Pareto front (when the table has a `pareto` column), then accuracy, parameters, energy by component and
    latency against the ratio, then energy, latency and accuracy against each swept hardware parameter
    (`hardware_axes`); points that did not fit the chip (energy NaN) are left out. Energy and latency show
    their confidence intervals as error bars when the table has them (`ci_errors`)."""
    df = df[df["energy_j"].notna()].reset_index(drop=True) if "energy_j" in df.columns else df
    figs = [render("pareto", "Pareto front: accuracy against energy per inference", pareto_figure(df))] \
        if "pareto" in df.columns else []
    lat_scale, lat_unit = si_scale(df["latency_s"], "s") if "latency_s" in df.columns else (1.0, "s")
    figs += [
        render("accuracy", "Accuracy against compression", line_figure(df, "accuracy", 100.0, "accuracy (%)", "Accuracy")),
        render("params", "Parameters against compression", line_figure(df, "params", 1.0, "parameters", "Parameters")),
        render("energy", "Energy per inference, stacked by component", energy_figure(df)),
        render("latency", "Latency per inference against compression",
               line_figure(df, "latency_s", lat_scale, f"latency per inference ({lat_unit})", "Latency")),
    ]
    return figs + [render(figure_stem(key), f"Energy, latency and accuracy against {key}", hardware_figure(df, key))
                   for key in hardware_axes(df)]
