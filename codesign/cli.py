"""The `codesign` command line (typer + rich): `run` and `presets`.

Errors in user input print one line (`error: <field>: <problem>`) and exit with status 2; `--debug` shows the
traceback instead.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neuromorphic hardware co-design for compressed spiking neural networks.")
presets_app = typer.Typer(no_args_is_help=True, help="List and show chip presets.")
app.add_typer(presets_app, name="presets")
EXIT_USAGE = 2
#: the summary table needs this many columns; narrower (or captured) output would truncate its headers
MIN_WIDTH = 120


def _quiet_torch_logs() -> None:
    """Silence torch's one-line 'Triton not available' warnings (CPU machines) in CLI output."""
    import logging
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)


def _fail(exc: BaseException, debug: bool) -> None:
    """Print `exc` as one line on stderr (or the traceback with --debug) and exit with status 2."""
    if debug:
        raise exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def _summary_table(df) -> Table:
    from codesign.report import display_table, _fmt
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
    _quiet_torch_logs()
    try:
        cfg = load_config(config, set_)
        from codesign.pipeline import run as run_pipeline
        result = run_pipeline(cfg, progress=not no_progress, log=console.print, resume=resume)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    console.print(_summary_table(result.table))
    for line in result.summary:
        console.print(f"- {line}")
    console.print(f"report: {result.run_dir / 'report.html'}")


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
    _quiet_torch_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    extra = ([f"execution.workers={workers}"] if workers is not None else []) + \
        ([f"execution.scheduler={scheduler}"] if scheduler else [])
    try:
        from codesign.sweep import sweep as run_sweep
        result = run_sweep(load_spec(spec, [*set_, *extra]), resume=resume, log=console.print)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    console.print(_summary_table(result.table))
    for line in result.summary:
        console.print(f"- {line}")
    console.print(f"report: {result.run_dir / 'report.html'}")


@app.command()
def search(spec: Optional[Path] = typer.Argument(None, help="YAML sweep spec with a `search` section; default: "
                                                          "the embedded MNIST search (codesign/configs/search.yaml)"),
           set_: list[str] = typer.Option([], "--set", help="override a spec key, e.g. --set search.n_trials=10"),
           resume: bool = typer.Option(False, "--resume", help="continue the study of the run named by run_name"),
           debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Multi-objective optuna search (NSGA-II or TPE) with the simulator in the loop; writes the Pareto front.

    Examples:
      codesign search search.yaml
      codesign search search.yaml --set search.n_trials=30 --set search.sampler=tpe
      codesign search search.yaml --set run_name=s1 --resume
    """
    from codesign.config import ConfigError
    from codesign.spec import load_spec
    _quiet_torch_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        from codesign.search import search as run_search
        result = run_search(load_spec(spec or default_search_path(), set_), resume=resume, log=console.print)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    console.print(_summary_table(result.table[result.table["pareto"]]))
    for line in result.summary:
        console.print(f"- {line}")
    console.print(f"report: {result.run_dir / 'report.html'}")


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
    _quiet_torch_logs()
    console = Console(width=max(Console().width, MIN_WIDTH))
    try:
        from codesign.allocator import AllocatorConfig, run_allocator
        cfg = load_config(config, set_)
        result, table = run_allocator(cfg, ratio, AllocatorConfig(energy_weight=energy_weight,
                                                                  latency_weight=latency_weight), log=console.print)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(exc, debug)
    console.print(_summary_table(result.table))
    for line in result.summary:
        console.print(f"- {line}")
    console.print(f"report: {result.run_dir / 'report.html'}")


@presets_app.command("list")
def presets_list() -> None:
    """List the chip presets shipped with hwmodels."""
    import hwmodels
    for name in hwmodels.list_presets():
        print(name)


@presets_app.command("show")
def presets_show(name: str, debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Show a preset's resolved parameters (SI units) as YAML."""
    import yaml
    import hwmodels
    try:
        chip = hwmodels.load_preset(name)
    except ValueError as exc:
        _fail(exc, debug)
    print(yaml.safe_dump(chip.model_dump(mode="json"), sort_keys=False))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="codesign")


if __name__ == "__main__":
    sys.exit(main())
