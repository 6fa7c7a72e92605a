"""Figures over a results table: accuracy, parameters, energy (stacked by component) and latency against the
compression ratio, and the accuracy/energy Pareto front. Each figure is rendered to PNG and SVG bytes.

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

from hwmodels.energy import ENERGY_COMPONENTS  # noqa: E402

ENERGY_PREFIX = "energy_"
ENERGY_SUFFIX = "_j"
#: energy_<name>_j columns that are not components of the total (the total itself, total minus static)
NOT_COMPONENTS = ("dynamic",)


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
    hwmodels.energy.ENERGY_COMPONENTS; in column order when some are not among them (the four of older run
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


def series_of(df: pd.DataFrame) -> pd.Series:
    """The curve each row belongs to: the `series` column of a sweep, else the method."""
    return df["series"] if "series" in df.columns else df["method"]


def _line(df: pd.DataFrame, column: str, scale: float, ylabel: str, title: str):
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, part in df.groupby(series_of(df), sort=False):
        part = part.sort_values("ratio")
        ax.errorbar(part["ratio"], part[column] * scale, yerr=ci_errors(part, column, scale), marker="o",
                    capsize=3, label=str(name))
    ax.set_xlabel("compression ratio")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _pareto(df: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    front = df["pareto"].astype(bool)
    for part, color, size, label in ((df[~front], "#999", 4, "point"), (df[front], "C3", 5, "on the Pareto front")):
        ax.errorbar(part["energy_j"] * 1e6, part["accuracy"] * 100, xerr=ci_errors(part, "energy_j", 1e6),
                    fmt="o", color=color, markersize=size, elinewidth=0.8, capsize=2, label=label)
    ax.set_xlabel("energy per inference (uJ)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs energy (front over accuracy, energy, latency)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _energy(df: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(max(4.6, 0.5 * len(df)), 3.2))
    labels = [f"{m}\n{r:g}" for m, r in zip(series_of(df), df["ratio"])]
    bottom = pd.Series(0.0, index=df.index)
    for comp in energy_components(df):
        vals = df[f"{ENERGY_PREFIX}{comp}{ENERGY_SUFFIX}"] * 1e6
        ax.bar(range(len(df)), vals, bottom=bottom, label=comp)
        bottom = bottom + vals
    errors = ci_errors(df, "energy_j", 1e6)
    if errors is not None:
        ax.errorbar(range(len(df)), df["energy_j"] * 1e6, yerr=errors, fmt="none", ecolor="k", capsize=3,
                    label="95 % CI of the total")
    ax.set_xticks(range(len(df)), labels, fontsize=6, rotation=90 if len(df) > 8 else 0)
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_title("Energy per inference by component")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def result_figures(df: pd.DataFrame) -> list[Figure]:
    """Pareto front (when the table has a `pareto` column), then accuracy, parameters, energy by component and
    latency against the ratio; points that did not fit the chip (energy NaN) are left out. Energy and latency
    show their confidence intervals as error bars when the table has them (`ci_errors`)."""
    df = df[df["energy_j"].notna()].reset_index(drop=True) if "energy_j" in df.columns else df
    figs = [render("pareto", "Pareto front: accuracy against energy per inference", _pareto(df))] \
        if "pareto" in df.columns else []
    return figs + [
        render("accuracy", "Accuracy against compression", _line(df, "accuracy", 100.0, "accuracy (%)", "Accuracy")),
        render("params", "Parameters against compression", _line(df, "params", 1.0, "parameters", "Parameters")),
        render("energy", "Energy per inference, stacked by component", _energy(df)),
        render("latency", "Latency per inference against compression",
               _line(df, "latency_s", 1e6, "latency per inference (us)", "Latency")),
    ]
