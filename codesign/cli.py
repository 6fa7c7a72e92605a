"""The `codesign` command line (typer + rich): run, sweep, search, allocate, validate, report, simulate, presets.

Errors in user input print one line (`error: <field>: <problem>`) and exit with status 2; `--debug` shows the
traceback instead. `validate` exits with status 1 when a claim FAILs.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neuromorphic hardware co-design for compressed spiking neural networks.")
presets_app = typer.Typer(no_args_is_help=True, help="List and show chip presets.")
app.add_typer(presets_app, name="presets")
EXIT_USAGE = 2
#: exit status of `validate` when at least one claim FAILs
EXIT_CLAIM_FAILED = 1
#: the summary table needs this many columns; narrower (or captured) output would truncate its headers
MIN_WIDTH = 120


def _quiet_logs() -> None:
    """Silence torch's 'Triton not available' and the lowering's weight-fit warnings in CLI output
    (codesign.logs.quiet_logs)."""
    from codesign.logs import quiet_logs
    quiet_logs()


def _fail(exc: BaseException, debug: bool) -> None:
    """Print `exc` as one line on stderr (or the traceback with --debug) and exit with status 2."""
    if debug:
        raise exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def _summary_table(df) -> Table:
    from codesign.report import _fmt, display_table
    shown = display_table(df)
    if "series" in shown.columns:
        shown = shown.drop(columns=["method"])
    table = Table(title="Design points (per inference)")
    for col in shown.columns:
        table.add_column(col, justify="left" if col == "series" else "right",
                         min_width=30 if col == "series" else None)
    for row in shown.astype(object).itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    return table


@contextlib.contextmanager
def progress_bar(console: Console, label: str, enabled: bool = True):
    """A rich progress bar; yields update(done, total) (a no-op when disabled or not a terminal)."""
    if not enabled or not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _print_result(console: Console, result, table=None) -> None:
    """The summary table (of `table`, default every point), the summary lines and the report path."""
    console.print(_summary_table(result.table if table is None else table))
    for line in result.summary:
        console.print(f"- {line}")
    console.print(f"report: {result.run_dir / 'report.html'}")


@app.command()
def run(config: Optional[Path] = typer.Argument(None, help="YAML run config; default: the embedded default"),
        set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. --set train.epochs=2"),
        resume: bool = typer.Option(False, "--resume", help="continue the run folder named by run_name"),
        no_progress: bool = typer.Option(False, "--no-progress", help="hide progress bars"),
        debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Train, compress at every ratio, lower, map, simulate and write reports/<run>/.

    Examples:
      codesign run
      codesign run my.yaml --set compression.ratios=[0,0.5] --set hardware.n_samples=20
    """
    from codesign.config import ConfigError, load_config
    console = Console(width=max(Console().width, MIN_WIDTH))
    _quiet_logs()
    try:
        cfg = load_config(config, set_)
        from codesign.pipeline import run as run_pipeline
        result = run_pipeline(cfg, progress=not no_progress, log=console.print, resume=resume)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    _print_result(console, result)


def _execution_overrides(workers: Optional[int], scheduler: Optional[str]) -> list[str]:
    """--workers / --scheduler as spec overrides."""
    return ([f"execution.workers={workers}"] if workers is not None else []) + \
        ([f"execution.scheduler={scheduler}"] if scheduler else [])


@app.command()
def sweep(spec: Optional[Path] = typer.Argument(None, help="YAML sweep spec (base config + axes)"),
          set_: list[str] = typer.Option([], "--set", help="override a spec key, e.g. --set execution.workers=2"),
          workers: Optional[int] = typer.Option(None, "--workers", help="local dask workers (0 = serial)"),
          scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler, e.g. tcp://host:8786"),
          resume: bool = typer.Option(False, "--resume", help="continue the run folder named by run_name"),
          debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Evaluate every point of a grid over the spec's axes (methods, ratios, bits, chip presets and overrides).

    Examples:
      codesign sweep sweep.yaml
      codesign sweep sweep.yaml --workers 2
      codesign sweep sweep.yaml --set run_name=s1 --resume
    """
    from codesign.config import ConfigError
    from codesign.spec import load_spec
    _quiet_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    extra = _execution_overrides(workers, scheduler)
    try:
        from codesign.sweep import sweep as run_sweep
        with progress_bar(console, "design points") as update:
            result = run_sweep(load_spec(spec, [*set_, *extra]), resume=resume, log=console.print, on_point=update)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    _print_result(console, result)


@app.command()
def search(spec: Optional[Path] = typer.Argument(None, help="YAML sweep spec with a `search` section; default: "
                                                          "the embedded MNIST search (codesign/configs/search.yaml)"),
           set_: list[str] = typer.Option([], "--set", help="override a spec key, e.g. --set search.n_trials=10"),
           workers: Optional[int] = typer.Option(None, "--workers", help="local dask workers, one trial each "
                                                 "(0 = serial)"),
           scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler, e.g. tcp://host:8786"),
           resume: bool = typer.Option(False, "--resume", help="continue the study of the run named by run_name"),
           debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Multi-objective optuna search (NSGA-II or TPE) with the simulator in the loop; writes the Pareto front.

    Examples:
      codesign search search.yaml
      codesign search search.yaml --set search.n_trials=30 --set search.sampler=tpe
      codesign search search.yaml --set run_name=s1 --resume
      codesign search --workers 0                # trials one after another in this process
    """
    from codesign.config import ConfigError
    from codesign.spec import load_spec
    _quiet_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    set_ = [*set_, *_execution_overrides(workers, scheduler)]
    try:
        from codesign.search import search as run_search
        with progress_bar(console, "trials") as update:
            result = run_search(load_spec(spec or default_search_path(), set_), resume=resume, log=console.print,
                                on_trial=update)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    _print_result(console, result, result.table[result.table["pareto"]])


def default_search_path() -> Path:
    """Path of the embedded default search spec (package data)."""
    from importlib import resources
    return Path(str(resources.files("codesign").joinpath("configs/search.yaml")))


@app.command()
def allocate(config: Optional[Path] = typer.Argument(None, help="YAML run config (its method needs per-layer "
                                                               "ratios, e.g. magnitude_channel)"),
             ratio: float = typer.Option(0.5, "--ratio", help="uniform ratio whose parameter budget both share"),
             set_: list[str] = typer.Option([], "--set", help="override a config key"),
             energy_weight: float = typer.Option(1.0, help="weight of the energy saving in the layer score"),
             latency_weight: float = typer.Option(1.0, help="weight of the latency saving in the layer score"),
             debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Hardware-aware per-layer pruning ratios from the simulator, against uniform ratios at equal parameters.

    Examples:
      codesign allocate --set compression.method=magnitude_channel --ratio 0.5
    """
    from codesign.config import ConfigError, load_config
    _quiet_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        from codesign.allocator import AllocatorConfig, run_allocator
        cfg = load_config(config, set_)
        result, table = run_allocator(cfg, ratio, AllocatorConfig(energy_weight=energy_weight,
                                                                  latency_weight=latency_weight), log=console.print)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    _print_result(console, result)


@app.command()
def validate(claims: Path = typer.Argument(..., help="claims YAML (e.g. codesign/claims/hardware_friendliness.yaml)"),
             run_dir: Path = typer.Argument(..., help="a run folder with results.csv"),
             debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Judge declarative hardware-friendliness claims on a run's results: PASS, FAIL or UNDECIDED per claim,
    each pair judged on the bootstrap confidence interval of its ratio a/b over the simulated samples
    (points/<id>/samples.csv), with the numbers and design points behind it (claims.json, and a section of the
    rebuilt report).

    Exit status: 0 when no claim FAILs (PASS or UNDECIDED), 1 when at least one claim FAILs (claims.json and the
    report are written first), 2 for bad input (claims file, run folder).

    Examples:
      codesign validate codesign/claims/hardware_friendliness.yaml reports/claims
    """
    import pandas as pd
    from codesign.claims import load_claims, point_samples, validate as judge
    from codesign.config import ConfigError
    from codesign.report import rebuild_report
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        spec = load_claims(claims)
        results = run_dir / "results.csv"
        if not results.exists():
            raise FileNotFoundError(f"validate: '{results}' does not exist (is '{run_dir}' a run folder?)")
        verdicts = judge(pd.read_csv(results, dtype={"point_id": str}), spec, point_samples(run_dir))
        _write_verdicts(run_dir / "claims.json", verdicts)
        report = rebuild_report(run_dir) if (run_dir / "report_meta.json").exists() else None
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    console.print(_claims_table(verdicts))
    console.print(f"verdicts: {run_dir / 'claims.json'}" + (f"; report: {report}" if report else ""))
    if any(v["verdict"] == "FAIL" for v in verdicts):
        raise typer.Exit(EXIT_CLAIM_FAILED)


def _write_verdicts(path: Path, verdicts: list[dict]) -> None:
    """claims.json: the verdicts with their pairs (numpy numbers as plain JSON numbers, NaN as NaN)."""
    import json

    def plain(v):
        return v.item() if hasattr(v, "item") else float(v)
    path.write_text(json.dumps(verdicts, indent=1, default=plain))


def _claims_table(verdicts: list[dict]) -> Table:
    """The verdicts as a rich table: claim, verdict, pairs, median ratio a/b, CI span over the pairs, reason."""
    from rich.markup import escape
    from codesign.claims import verdict_table
    table = Table(title="Claims (ratio a/b: median over the pairs; CI: bootstrap interval span over the pairs)")
    for col in ("claim", "verdict", "pairs", "ratio a/b", "CI", "reason"):
        table.add_column(col)
    colors = {"PASS": "green", "FAIL": "red", "UNDECIDED": "yellow"}
    for row in verdict_table(verdicts).to_dict("records"):
        table.add_row(escape(row["claim"]), f"[{colors[row['verdict']]}]{row['verdict']}[/]", str(row["pairs"]),
                      f"{row['ratio a/b']:.3g}" if row["pairs"] else "-", escape(row["CI (all pairs)"]),
                      escape(row["reason"]))
    return table


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder written by run, sweep, search or allocate"),
           debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Rebuild report.md, report.html and figures/ of a run folder from its stored results.

    Examples:
      codesign report reports/sca-mnist5k-20261123-162923
    """
    from codesign.report import rebuild_report
    try:
        path = rebuild_report(run_dir)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    print(f"report: {path}")


@app.command()
def simulate(graph: Path = typer.Argument(..., help="lowered graph .npz (e.g. reports/<run>/artifacts/*.graph.npz)"),
             trace: Path = typer.Argument(..., help="event trace .npz or streamed trace folder"),
             preset: str = typer.Option("loihi", help="chip preset (codesign presets list)"),
             set_: list[str] = typer.Option([], "--set", help="chip override, e.g. --set core.neurons_per_core=256"),
             model: str = typer.Option("des", help="des or analytic"),
             placement: str = typer.Option("in_order", help="in_order, snake or comm_aware"),
             semantics: str = typer.Option("pipelined", help="pipelined or layer_serial"),
             debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Map and simulate a saved graph + trace on a chip preset (no torch needed) and print the result.

    Examples:
      codesign simulate g.npz t.npz --preset loihi --model analytic
      codesign simulate g.npz t.npz --preset loihi --set core.neurons_per_core=256 --placement comm_aware
    """
    import yaml
    import hwmodels
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        overrides = {}
        for item in set_:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"--set: '{item}' must look like key=value")
            overrides[key.strip()] = yaml.safe_load(raw)
        chip = hwmodels.load_preset(preset, overrides)
        g = hwmodels.NetworkGraph.load(graph)
        tr = hwmodels.EventTrace.open(trace) if trace.is_dir() else hwmodels.EventTrace.load(trace)
        mapping = hwmodels.map_network(g, chip, placement=placement, traffic=tr)
        with progress_bar(console, "samples simulated") as update:
            sim = hwmodels.simulate(g, tr, chip, mapping=mapping, model=model, semantics=semantics,
                                    on_progress=update)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        _fail(exc, debug)
    table = Table(title=f"{g.name} on {chip.name} ({model}, {semantics}, {tr.n_samples} samples)")
    table.add_column("quantity")
    table.add_column("per inference", justify="right")
    for key, value in sim.as_row().items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(_energy_split(sim))
    console.print(_population_table(sim))


def _energy_split(sim) -> Table:
    """Energy per inference by component (hwmodels.energy.ENERGY_COMPONENTS) in uJ and % of the total."""
    from hwmodels.energy import ENERGY_COMPONENTS
    table = Table(title="Energy per inference by component")
    for col in ("component", "uJ", "% of total"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for comp in ENERGY_COMPONENTS:
        joules = float(sim.energy_breakdown_j[comp])
        table.add_row(comp, f"{joules * 1e6:.4g}", f"{100 * joules / sim.energy_j:.1f}" if sim.energy_j else "-")
    table.add_row("total", f"{sim.energy_j * 1e6:.4g}", "100.0" if sim.energy_j else "-")
    return table


def _population_table(sim) -> Table:
    """Per population: cores, neurons, spikes, SynOps and energy per inference (total and by component, nJ;
    components that are 0 in every population are left out)."""
    from hwmodels.energy import ENERGY_COMPONENTS
    pops = sim.populations
    comps = [f"energy_{c}_j" for c in ENERGY_COMPONENTS if pops[f"energy_{c}_j"].abs().sum() > 0]
    cols = ["cores", "neurons", "spikes", "synops", "energy_j", *comps]
    table = Table(title="Per population (per inference; energy in nJ, components that are 0 everywhere left out)")
    table.add_column("population", no_wrap=True)
    for col in cols:
        name = col.removeprefix("energy_").removesuffix("_j") if col != "energy_j" else "energy"
        table.add_column(name.replace("synapse_", "syn. ").replace("neuron_", "neu. "), justify="right")
    for name, row in pops.iterrows():
        cells = [f"{row[c] * 1e9:.3g}" if c.startswith("energy_") else f"{row[c]:.4g}" for c in cols]
        table.add_row(str(name), *cells)
    return table


@presets_app.command("list")
def presets_list() -> None:
    """List the chip presets shipped with hwmodels."""
    import hwmodels
    for name in hwmodels.list_presets():
        print(name)


@presets_app.command("show")
def presets_show(name: str, debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Show a preset: every number with its source and note (SI units), what is folded into what, the
    remaining assumptions and derived estimates, and the full citations.

    Examples:
      codesign presets show loihi
    """
    from rich.markup import escape
    import hwmodels
    from hwmodels.presets import preset_assumptions, preset_leaves, read_preset
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        chip = hwmodels.load_preset(name)
        leaves, assumed = preset_leaves(name), preset_assumptions(name)
    except ValueError as exc:
        _fail(exc, debug)
    console.print(f"[bold]{escape(chip.name)}[/]: {escape(chip.description)}", soft_wrap=True)
    table = Table(title=f"{chip.name}: values (SI) with their sources")
    for col in ("key", "value", "source", "note"):
        table.add_column(col, overflow="fold")
    for leaf in leaves:
        table.add_row(*(escape(str(leaf[k])) for k in ("key", "value", "source", "note")))
    console.print(table)
    for what, mem in (("synapse memory", chip.core.synapse_memory), ("neuron-state memory", chip.core.state_memory)):
        state = "folded" if mem.folded else f"charged per bit ({mem.capacity} capacity, {mem.location})"
        console.print(f"- {what}: {state}: {escape(mem.reason)}", soft_wrap=True)
    console.print(f"- neuron rules: access {chip.core.neuron_access_rule}, update {chip.core.neuron_update_rule}; "
                  f"power gating {chip.power_gating}")
    for topic, text in chip.notes.items():
        console.print(f"- {escape(topic)}: {escape(text)}", soft_wrap=True)
    console.print(f"[bold]Assumptions and derived estimates ({len(assumed)}):[/]")
    for leaf in assumed:
        console.print(f"  {escape(leaf['key'])} = {leaf['value']}: {escape(leaf['note'])}", soft_wrap=True)
    console.print("[bold]Sources:[/]")
    for key, text in (read_preset(name).get("sources") or {}).items():
        console.print(f"  {escape(key)}: {escape(' '.join(str(text).split()))}", soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="codesign")


if __name__ == "__main__":
    sys.exit(main())
