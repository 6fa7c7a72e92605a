"""Figures of one simulated design point: core occupancy on the mesh, NoC link load, per-layer SynOps and energy,
latency per hardware step, and per-core utilisation with the bottleneck core marked and the layer on each core
named. Energies and latencies are drawn with an SI prefix chosen from the data (µJ, µs). Inputs are the
per-point tables a run stores (points/<id>/*.csv, from SimResult); the per-sample table (samples.csv) is what
claims are judged on (codesign.claims.verdicts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from codesign.reporting.units import si_scale  # noqa: E402
from hwmodels.npzfile import quote_path  # noqa: E402

DETAIL_TABLES = ("populations", "cores", "links", "steps", "samples")
#: columns the figures read from each detail table (every other one a number); links may be empty (no traffic)
FIGURE_COLUMNS = {"populations": ("population", "synops", "energy_j"), "cores": ("population", "tile_x", "tile_y",
                  "neurons"), "links": ("src_x", "src_y", "dst_x", "dst_y", "messages"), "steps": ("step", "latency_s")}
#: file of the per-sample table in a point's folder
SAMPLES_FILE = "samples.csv"


@dataclass(frozen=True)
class PointDetails:
    """Per-population, per-core, per-link, per-step and per-sample tables of one design point (SimResult's
    DataFrames). samples: one row per simulated sample (column `sample`): energy_j, energy_<component>_j (J),
    latency_s (s), synops, spikes, messages, hops, and label / prediction / correct when the trace records them;
    empty for a point folder written before per-sample tables were kept."""

    populations: pd.DataFrame
    cores: pd.DataFrame
    links: pd.DataFrame
    steps: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def from_sim(cls, sim, chip=None) -> "PointDetails":
        """From a hwmodels.SimResult; with its ChipSpec, the cores table also records the whole mesh extent
        (mesh_width, mesh_height over all chips) so the occupancy map shows unused tiles too."""
        steps = pd.DataFrame({"step": np.arange(len(sim.latency_per_step_s)), "latency_s": sim.latency_per_step_s})
        cores = sim.cores.reset_index()
        if chip is not None:
            per_row, rows = chip.chip_grid
            cores["mesh_width"], cores["mesh_height"] = chip.mesh_width * per_row, chip.mesh_height * rows
        return cls(sim.populations.reset_index(), cores, sim.links.reset_index(), steps, sim.samples.reset_index())

    def save(self, folder: Path) -> None:
        """Write the tables as CSV into `folder` (<table>.csv for each of DETAIL_TABLES), each atomically: a
        killed run never leaves half a table for `report`, `validate` or `--resume` to read."""
        from codesign.store.results import atomic_write
        folder.mkdir(parents=True, exist_ok=True)
        for name in DETAIL_TABLES:
            atomic_write(folder / f"{name}.csv", lambda tmp, t=getattr(self, name): t.to_csv(tmp, index=False))

    @classmethod
    def load(cls, folder: Path) -> "PointDetails":
        """Read tables written by `save` (an empty links.csv, or a samples.csv missing from an older run folder,
        gives an empty table). Raises FileNotFoundError when another table is missing and ValueError (one line
        naming the file) when a table is not a CSV table, or lacks a row or column the figures read or holds a
        value there that is not a finite number (a damaged or cut file: check_figure_table)."""
        def read(name: str) -> pd.DataFrame:
            """One table; empty when its file is empty (or is a missing samples.csv)."""
            path = folder / f"{name}.csv"
            if name == "samples" and not path.exists():
                return pd.DataFrame()
            try:
                return pd.read_csv(path)
            except pd.errors.EmptyDataError:
                return pd.DataFrame()
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError, TypeError, IndexError) as exc:  # pandas' own
        # TypeError/IndexError: a header it cannot index (e.g. "garbage,,," followed by binary bytes)
                first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                raise ValueError(f"'{str(path)[-120:]}' is not a {name} table: {first}") from None
        tables = {n: read(n) for n in DETAIL_TABLES}
        for name, columns in FIGURE_COLUMNS.items():
            check_figure_table(tables[name], columns, folder / f"{name}.csv", may_be_empty=name == "links")
        return cls(*tables.values())


def check_figure_table(table: pd.DataFrame, columns: tuple[str, ...], path: Path, may_be_empty: bool) -> None:
    """ValueError naming `path` unless `table` has rows (or `may_be_empty`) with `columns`, each after the first
    holding finite numbers: an empty, damaged or cut file is refused instead of a KeyError or a wrong figure."""
    where = f"'{str(path)[-120:]}'"
    if table.empty:
        if may_be_empty:
            return
        raise ValueError(f"{where} has no rows; a point's table holds at least one (the file is damaged)")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where} lacks the column {missing[0]!r}")
    for col in columns[1:]:
        values = pd.to_numeric(table[col], errors="coerce")
        if not np.isfinite(values).all():
            raise ValueError(f"{where}: column {col!r} holds a value that is not a finite number (a damaged or cut "
                             "file)")


def load_samples(folder: Path) -> pd.DataFrame | None:
    """The per-sample table of the point folder `folder` (indexed by sample), or None when it has none (an older
    run folder, or a point that did not fit the chip). Raises ValueError (one line naming the file) when the file
    is not a samples table (binary, unparsable, or without a `sample` column) or a column holds anything but
    finite numbers >= 0 (an empty cell allowed outside the energies and times)."""
    path = Path(folder) / SAMPLES_FILE
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path, index_col="sample")
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, TypeError, IndexError) as exc:  # pandas' own
        # TypeError/IndexError: a header it cannot index (e.g. "garbage,,," followed by binary bytes)
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ValueError(f"{quote_path(path)} is not a samples table: {first}") from None
    for col in table.columns:  # energies (J), times (s), counts, labels and 0/1 correctness: numbers >= 0
        values = pd.to_numeric(table[col], errors="coerce")
        bad = table[col][~((np.isfinite(values) & (values >= 0)) | (table[col].isna() & (not _timed(col))))]
        if len(bad):
            raise ValueError(f"{quote_path(path)}: column {col!r} holds {str(bad.iloc[0])[:40]!r}; "
                             f"{'energies and times' if _timed(col) else 'its values'} are finite numbers >= 0")
    return table


def _timed(col: str) -> bool:
    """Energies (J) and times (s): every sample has one (other columns, e.g. prediction, may be left empty)."""
    return col.endswith(("_j", "_s"))


def core_map(cores: pd.DataFrame, ax) -> None:
    """Mesh heatmap: neurons mapped per tile, annotated with cores used per tile (whole mesh when known); an input
    port's pseudo-core (column port, hwmodels.SimResult.cores) is not a core of its tile and is left out."""
    w, h = int(cores["tile_x"].max()) + 1, int(cores["tile_y"].max()) + 1
    if "mesh_width" in cores.columns:
        w, h = max(w, int(cores["mesh_width"].iloc[0])), max(h, int(cores["mesh_height"].iloc[0]))
    if "port" in cores.columns:
        cores = cores[~cores["port"].astype(bool)]
    grid = np.zeros((h, w))
    count = np.zeros((h, w), int)
    for _, c in cores.iterrows():
        grid[int(c["tile_y"]), int(c["tile_x"])] += c["neurons"]
        count[int(c["tile_y"]), int(c["tile_x"])] += 1
    im = ax.imshow(grid, cmap="viridis", origin="upper")
    for y in range(h):
        for x in range(w):
            if count[y, x]:
                ax.text(x, y, str(count[y, x]), ha="center", va="center", color="w", fontsize=7)
    ax.set_xticks(range(w))
    ax.set_yticks(range(h))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_title("Neurons per tile (number: cores used)", fontsize=9)
    plt.colorbar(im, ax=ax, shrink=0.8, label="neurons")


def link_heatmap(links: pd.DataFrame, ax) -> None:
    """Directed links of the mesh colored by messages per inference (offset so both directions show)."""
    if links.empty:
        ax.text(0.5, 0.5, "no message leaves its tile", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    src = links[["src_x", "src_y"]].to_numpy(float)
    dst = links[["dst_x", "dst_y"]].to_numpy(float)
    d = dst - src
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.where(norm == 0, 1, norm) * 0.12
    segs = np.stack([src + 0.15 * d + normal, dst - 0.15 * d + normal], axis=1)
    lc = LineCollection(segs, array=links["messages"].to_numpy(float), cmap="inferno_r", linewidths=3)
    ax.add_collection(lc)
    ax.set_xlim(-0.5, max(src[:, 0].max(), dst[:, 0].max()) + 0.5)
    ax.set_ylim(max(src[:, 1].max(), dst[:, 1].max(), 1) + 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(int(ax.get_xlim()[1]) + 1))
    ax.set_yticks(range(int(ax.get_ylim()[0]) + 1))
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_title("NoC link load (messages per inference)", fontsize=9)
    plt.colorbar(lc, ax=ax, shrink=0.8, label="messages")


def per_layer(populations: pd.DataFrame, ax) -> None:
    """SynOps (bars) and energy (line, right axis) per population."""
    names = populations["population"].astype(str).tolist()
    x = np.arange(len(names))
    ax.bar(x, populations["synops"], color="C0", label="SynOps")
    ax.set_ylabel("SynOps per inference")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax2 = ax.twinx()
    scale, unit = si_scale(populations["energy_j"], "J")
    ax2.plot(x, populations["energy_j"] * scale, "o-", color="C3", label="energy")
    ax2.set_ylabel(f"energy per inference ({unit})")
    ax.set_title("Per-layer SynOps (bars) and energy (line)", fontsize=9)


def step_latency(steps: pd.DataFrame, ax) -> None:
    """Latency of every hardware step of one inference."""
    scale, unit = si_scale(steps["latency_s"], "s")
    ax.bar(steps["step"], steps["latency_s"] * scale, color="C2")
    ax.set_xlabel("hardware step")
    ax.set_ylabel(f"latency ({unit})")
    ax.set_title("Latency per hardware timestep", fontsize=9)


def bottleneck_core(cores: pd.DataFrame) -> int | None:
    """Row position of the core with the most serial work per inference (busy_s), which bounds the pipelined
    throughput; None when the table has no busy_s (an older run folder) or no cores."""
    if "busy_s" not in cores.columns or cores.empty:
        return None
    return int(np.argmax(cores["busy_s"].to_numpy(float)))


def _layer_spans(cores: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(population, first, last) row positions of each run of consecutive cores holding the same population."""
    names = cores["population"].astype(str).tolist()
    spans, start = [], 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            spans.append((names[start], start, i - 1))
            start = i
    return spans


def _name_layers(ax, cores: pd.DataFrame, height: float) -> None:
    """Write each layer's name over its run of cores at `height` (upright over narrow runs)."""
    for name, first, last in _layer_spans(cores):
        ax.text((first + last) / 2, height, name, ha="center", va="bottom", fontsize=7,
                rotation=90 if last - first < 2 else 0)


def _mark_bottleneck(ax, cores: pd.DataFrame, util: np.ndarray, top: float) -> None:
    """A red triangle over the bottleneck core and a note naming it, its layer and its utilisation."""
    worst = bottleneck_core(cores)
    if worst is None:
        return
    core = cores["core"].iloc[worst] if "core" in cores.columns else worst
    ax.plot([worst], [util[worst] + 0.03 * top], "v", color="C3", markersize=7)
    ax.text(0.01, 0.98, f"\u25bc bottleneck: core {core} ({cores['population'].iloc[worst]}), "
            f"{util[worst]:.0f} % busy", transform=ax.transAxes, ha="left", va="top", fontsize=7, color="C3")


def core_utilization(cores: pd.DataFrame, ax) -> None:
    """Utilisation of every core (busy_s / latency_s, %), coloured by the layer it holds, with each layer's name
    over its cores and the bottleneck core (most busy_s) marked and named."""
    if "utilization" not in cores.columns or cores.empty:
        ax.text(0.5, 0.5, "no per-core busy time in this run folder", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    util = cores["utilization"].to_numpy(float) * 100
    layers = list(dict.fromkeys(cores["population"].astype(str)))
    ax.bar(np.arange(len(cores)), util, width=0.85,
           color=[f"C{layers.index(p) % 10}" for p in cores["population"].astype(str)])
    top = max(float(np.nanmax(util)), 1e-9)
    _name_layers(ax, cores, top * 1.08)
    _mark_bottleneck(ax, cores, util, top)
    ax.set_ylim(0, top * 1.5)
    ax.set_xlabel("core")
    ax.set_ylabel("utilisation (% of the inference)")
    ax.set_title("Per-core utilisation by layer (bottleneck marked)", fontsize=9)


#: figure name -> (caption, drawing function, table it needs)
DETAIL_FIGURES = {
    "core_map": ("Core occupancy of the mesh", core_map, "cores"),
    "link_load": ("NoC link-load heatmap", link_heatmap, "links"),
    "per_layer": ("Per-layer SynOps and energy", per_layer, "populations"),
    "step_latency": ("Latency per hardware timestep", step_latency, "steps"),
    "core_utilization": ("Per-core utilisation by layer, bottleneck core marked", core_utilization, "cores"),
}


def detail_figures(details: PointDetails):
    """(name, caption, matplotlib Figure) for each detail figure of one point."""
    out = []
    for name, (caption, draw, table) in DETAIL_FIGURES.items():
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        draw(getattr(details, table), ax)
        out.append((name, caption, fig))
    return out
