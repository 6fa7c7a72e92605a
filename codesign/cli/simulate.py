"""`codesign simulate`: map and simulate a saved graph + trace on a chip preset and print the result with SI
prefixes (µJ, nJ, µs ...), or as one JSON object in base SI units (J, s, W) with `--json` / `--out FILE`."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, get_args

import typer
from rich.console import Console
from rich.table import Table

from codesign.cli.console import escape, fail, make_console, progress_bar
from codesign.reporting.units import si
from hwmodels.atomic import write_atomic

#: base SI unit of a quantity by the suffix of its name
UNIT_SUFFIXES = {"_j": "J", "_s": "s", "_w": "W"}


def unit_of(name: str) -> str | None:
    """The base SI unit named by the suffix of `name` (energy_j and its bound energy_j_ci_low -> 'J',
    latency_p95_s -> 's'), or None."""
    name = name.removesuffix("_ci_low").removesuffix("_ci_high")
    return next((unit for suffix, unit in UNIT_SUFFIXES.items() if name.endswith(suffix)), None)


def show(name: str, value) -> str:
    """A value for people: SI-prefixed when `name` has a unit suffix (energy_j 3.5e-5 -> '35 µJ')."""
    unit = unit_of(name)
    if isinstance(value, (float, int)) and not isinstance(value, bool) and unit:
        return si(value, unit)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_overrides(items: list[str]) -> dict:
    """--set key=value items as {key: YAML value}. Raises ValueError (ConfigError) for an item without '=' or a
    value that is not safe YAML (codesign.config.run.safe_yaml)."""
    from codesign.config.run import safe_yaml
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set: '{item}' must look like key=value")
        overrides[key.strip()] = safe_yaml(raw, item, "--set")
    return overrides


def check_out_path(out: Optional[Path], force: bool = False) -> None:
    """Raise FileNotFoundError when --out's parent folder does not exist, IsADirectoryError when it is a folder,
    FileExistsError when something else is there already: a regular file without `force` (--force), anything
    that is not a regular file (a symbolic link, dangling or not, a device, a FIFO, a socket: never replaced) even
    with it."""
    if out is None:
        return
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: folder '{out.parent}' of '{out}' does not exist")
    if out.is_dir():
        raise IsADirectoryError(f"--out: '{out}' is a folder; give a file name, e.g. '{out / 'sim.json'}'")
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise FileExistsError(f"--out: '{out}' exists and is not a regular file; give a new file name")
    if out.exists() and not force:
        raise FileExistsError(f"--out: '{out}' exists; pass --force to overwrite it")


def check_out_inputs(out: Optional[Path], graph: Path, trace: Path) -> None:
    """ValueError when --out would write over the graph or trace file it reads, or into the trace folder (even with
    --force: the inputs are never replaced)."""
    if out is None:
        return
    target, inputs = out.resolve(), (graph.resolve(), trace.resolve())
    if target in inputs or (trace.is_dir() and trace.resolve() in target.parents):
        raise ValueError(f"--out: '{out}' is (or is inside) an input of this simulation; give another file name")


def _plain(value):
    """A JSON-safe scalar: numpy numbers as Python numbers, NaN and inf as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def result_json(sim, graph_name: str, hardware=None) -> dict:
    """The result as one JSON-ready dict in base SI units: setup (with `hardware`, the run config's hardware
    section the simulation used: its preset or chip file, multicast and chip overrides, so a saved result says
    which chip made it), totals (SimResult.as_row), energy_j, energy_breakdown_j by component, latency_s and one
    record per population (layer)."""
    pops = sim.populations.reset_index()
    setup = {} if hardware is None else {"preset": hardware.preset, "multicast": hardware.multicast,
                                         "overrides": hardware.overrides}
    return {"graph": graph_name, "chip": sim.chip, **setup, "model": sim.model, "placement": sim.placement,
            "semantics": sim.semantics, "n_samples": sim.n_samples, "units": {"energy": "J", "latency": "s",
                                                                              "power": "W"},
            "totals": {k: _plain(v) for k, v in sim.as_row().items()},
            "energy_j": _plain(sim.energy_j),
            "energy_breakdown_j": {k: _plain(v) for k, v in sim.energy_breakdown_j.items()},
            "latency_s": _plain(sim.latency_s),
            "populations": [{k: _plain(v) for k, v in rec.items()} for rec in pops.to_dict("records")]}


def quantity_table(sim, title: str) -> Table:
    """Every scalar of SimResult.as_row: SI-prefixed, and in the base unit its name ends with."""
    table = Table(title=escape(title))
    table.add_column("quantity")
    table.add_column("per inference", justify="right")
    table.add_column("base SI unit (J, s, W)", justify="right")
    for key, value in sim.as_row().items():
        base = f"{value:.4g}" if isinstance(value, float) and unit_of(key) else ""
        table.add_row(escape(key), escape(show(key, value)), base)
    return table


def energy_split(sim) -> Table:
    """Energy per inference by component (hwmodels.energy.costs.ENERGY_COMPONENTS), SI-prefixed (13.5 pJ, not
    1.35e-05 µJ), and % of the total."""
    from hwmodels.energy.costs import ENERGY_COMPONENTS
    table = Table(title="Energy per inference by component")
    for col in ("component", "energy", "% of total"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for comp in ENERGY_COMPONENTS:
        joules = float(sim.energy_breakdown_j[comp])
        table.add_row(comp, si(joules, "J"), f"{100 * joules / sim.energy_j:.1f}" if sim.energy_j else "-")
    table.add_row("total", si(sim.energy_j, "J"), "100.0" if sim.energy_j else "-")
    return table


def population_table(sim) -> Table:
    """Per population: cores, neurons, spikes, SynOps and energy per inference (total and by component, each
    SI-prefixed; components that are 0 in every population are left out)."""
    from hwmodels.energy.costs import ENERGY_COMPONENTS
    pops = sim.populations
    comps = [f"energy_{c}_j" for c in ENERGY_COMPONENTS if pops[f"energy_{c}_j"].abs().sum() > 0]
    cols = ["cores", "neurons", "spikes", "synops", "energy_j", *comps]
    table = Table(title="Per population (per inference; components that are 0 everywhere left out)")
    table.add_column("population", no_wrap=True)
    for col in cols:
        name = col.removeprefix("energy_").removesuffix("_j") if col != "energy_j" else "energy"
        table.add_column(name.replace("synapse_", "syn. ").replace("neuron_", "neu. "), justify="right")
    for name, row in pops.iterrows():
        cells = [si(row[c], "J", 3) if c.startswith("energy_") else f"{row[c]:.4g}" for c in cols]
        table.add_row(escape(str(name)), *cells)
    return table


def hardware_sets(hardware: dict, items: list[str]) -> dict:
    """Apply --set items to a `hardware` config section (a dict, changed in place and returned) with a run's
    override semantics (values are YAML, codesign.config.run.safe_yaml): a hardware key of the run config
    (`multicast=true`, `semantics=layer_serial`; also written as in a run, `hardware.multicast=true`) sets that
    field; any other key is a chip override (`core.neurons_per_core=256`, also `overrides.core.neurons_per_core`)
    and goes into hardware.overrides. Raises ConfigError for an item without '=' and for a key that shapes the
    lowered graph and trace (codesign.execute.evaluate.LOWERING_KEYS: a saved trace is simulated as it was lowered)."""
    from codesign.config.run import ConfigError, HardwareConfig, current_key, quote, set_dotted
    from codesign.execute.evaluate import LOWERING_KEYS
    overrides = hardware.setdefault("overrides", {})
    for key, value in parse_overrides(items).items():
        key = current_key("hardware." + key.removeprefix("hardware.")).removeprefix("hardware.")
        head = key.split(".")[0]
        if head in LOWERING_KEYS:
            raise ConfigError(f"--set: {quote(key)} shapes the lowered graph and trace; simulate takes them as "
                              f"saved (lower them again with that key, e.g. codesign run --set hardware.{key}=...)")
        if key == "overrides" and isinstance(value, dict):
            overrides.update(value)
        elif head == "overrides" or head not in HardwareConfig.model_fields:
            overrides[key.removeprefix("overrides.")] = value
        else:
            set_dotted(hardware, key, value)  # a hardware field (current name: set_dotted sees no "hardware.")
    return hardware


def _default(field: str):
    """The run config's default of hardware `field` (codesign.config.run.HardwareConfig), which simulate's
    option for it shares."""
    from codesign.config.run import HardwareConfig
    return HardwareConfig.model_fields[field].default


#: the defaults of simulate's --preset, --model, --placement and --semantics, by hardware field
_FLAG_DEFAULTS = {field: _default(field) for field in ("preset", "latency_model", "placement", "semantics")}


def simulate_config(preset: str | None, model: str | None, placement: str | None, semantics: str | None,
                    items: list[str]):
    """The RunConfig a run with these hardware settings would have (defaults elsewhere; its seed seeds the
    bootstrap intervals as a run's does): the options (None: not given, its _FLAG_DEFAULTS value), then the --set
    items (hardware_sets). Raises ConfigError naming the flag for a --model, --semantics or --placement not
    accepted and for a --set that contradicts a flag given on the command line, and naming the field for a value
    the run config refuses."""
    from codesign.config.run import ConfigError, HardwareConfig, quote, validate_config
    flags = {"preset": preset, "latency_model": model, "placement": placement, "semantics": semantics}
    given = {field: _FLAG_DEFAULTS[field] if value is None else value for field, value in flags.items()}
    import hwmodels
    for flag, field in (("--model", "latency_model"), ("--semantics", "semantics"), ("--placement", "placement")):
        value = given[field]
        accepted = hwmodels.PLACEMENTS if field == "placement" else \
            get_args(HardwareConfig.model_fields[field].annotation)  # its Literal
        if value not in accepted:
            raise ConfigError(f"{flag}: {quote(value)} is not one of {', '.join(accepted)}")
    hardware = hardware_sets(dict(given), items)
    for field, value in flags.items():  # a flag given on the command line and a --set of its field that differs
        flag = "--model" if field == "latency_model" else f"--{field}"
        if value is not None and hardware[field] != value:
            raise ConfigError(f"--set: {field}={quote(hardware[field])} contradicts {flag} "
                              f"{quote(value)}; give one of them")
    try:
        return validate_config({"hardware": hardware})
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix("config: ")) from None


def simulate_chip(hardware):
    """The chip of a `hardware` config section, built once (hwmodels.load_preset, then apply_overrides, as
    codesign.execute.evaluate.load_chip does), with errors naming --preset or --set."""
    import hwmodels
    try:
        chip = hwmodels.load_preset(hardware.preset)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith("preset") else f"--preset: {message}") from None
    try:
        return hwmodels.apply_overrides(chip, hardware.overrides) if hardware.overrides else chip
    except ValueError as exc:
        raise ValueError(f"--set: {exc}") from None


def run_simulation(console: Console, graph: Path, trace: Path, preset: str | None, set_: list[str],
                   model: str | None, placement: str | None, semantics: str | None, progress: bool):
    """Load the preset, graph and trace, map and simulate through codesign.execute.evaluate.hardware_row (the evaluation
    a run makes of its lowered artifacts, every hardware key honoured); returns (SimResult, the hardware config
    section, graph name, table title). Raises hwmodels.MappingError when the network does not fit."""
    import hwmodels
    from codesign.execute.evaluate import hardware_row
    from workloads.exchange import load_graph
    cfg = simulate_config(preset, model, placement, semantics, set_)
    hw = cfg.hardware
    chip = simulate_chip(hw)
    g = load_graph(graph)  # a recurrent graph (cycles) too
    tr = hwmodels.EventTrace.open(trace) if trace.is_dir() else hwmodels.EventTrace.load(trace)
    with progress_bar(console, "samples simulated", enabled=progress) as update:
        row, sim = hardware_row(cfg, g, tr, chip, on_progress=update)
    if sim is None:
        raise hwmodels.MappingError(row["error"])
    setup = ", ".join([hw.latency_model, hw.semantics, *(["multicast"] if hw.multicast else [])])
    return sim, hw, g.name, f"{g.name} on {chip.name} ({setup}, {tr.n_samples} samples)"


def simulate(graph: Path = typer.Argument(..., help="lowered graph .npz (e.g. reports/<run>/artifacts/*.graph.npz)"),
             trace: Path = typer.Argument(..., help="event trace .npz or streamed trace folder"),
             preset: Optional[str] = typer.Option(None, help="chip preset (codesign presets list) or chip file path "
                                                            "(.yaml, e.g. from codesign presets derive; default: "
                                                            f"{_FLAG_DEFAULTS['preset']})"),
             set_: list[str] = typer.Option([], "--set", help="chip override or hardware key of a run config, e.g. "
                                                             "--set core.neurons_per_core=256, --set multicast=true"),
             model: Optional[str] = typer.Option(
                 None, help=f"des or analytic (default: {_FLAG_DEFAULTS['latency_model']})"),
             placement: Optional[str] = typer.Option(
                 None, help=f"in_order, snake or comm_aware (default: {_FLAG_DEFAULTS['placement']})"),
             semantics: Optional[str] = typer.Option(
                 None, help=f"pipelined or layer_serial (default: {_FLAG_DEFAULTS['semantics']})"),
             as_json: bool = typer.Option(False, "--json", help="print one JSON object (base SI units) instead "
                                                                "of tables"),
             out: Optional[Path] = typer.Option(None, "--out", help="also write that JSON object to this file "
                                                                   "(atomically; its folder must exist; an "
                                                                   "existing file only with --force)"),
             force: bool = typer.Option(False, "--force", help="let --out overwrite an existing file"),
             debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Map and simulate a saved graph + trace on a chip preset (no torch needed); print tables with SI prefixes
    (µJ, nJ, µs ...) or, with --json, one JSON object in base SI units (J, s, W).

    Examples:
      codesign simulate g.npz t.npz --preset loihi --model analytic
      codesign simulate g.npz t.npz --preset loihi --set core.neurons_per_core=256 --placement comm_aware
      codesign simulate g.npz t.npz --set multicast=true --set semantics=layer_serial
      codesign simulate g.npz t.npz --preset mychip.yaml
      codesign simulate g.npz t.npz --json --out sim.json
    """
    console = make_console()
    try:
        check_out_path(out, force)
        check_out_inputs(out, graph, trace)
        sim, hw, name, title = run_simulation(console, graph, trace, preset, set_, model, placement, semantics,
                                          progress=not as_json)
    except (ValueError, OSError, KeyError) as exc:
        fail(exc, debug)
    doc = json.dumps(result_json(sim, name, hw), indent=1)
    try:
        if out is not None:
            write_atomic(out, lambda tmp: Path(tmp).write_text(doc + "\n", encoding="utf-8"))
    except OSError as exc:  # "cannot write '<out>': <reason>"
        fail(exc if debug else OSError(f"--out: {exc}"), debug)
    if as_json:
        typer.echo(doc)
        return
    for table in (quantity_table(sim, title), energy_split(sim), population_table(sim)):
        console.print(table)
