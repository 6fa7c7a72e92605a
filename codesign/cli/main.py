"""The `codesign` command line (typer + rich): run, sweep, search, allocate, validate, report, simulate, presets.

Errors in user input print one line (`error: <field>: <problem>`) and exit with status 2; `--debug` shows the
traceback instead. `validate` exits with status 1 when a claim FAILs.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from codesign.cli.console import escape, fail, make_console, printable, progress_bar, text_log
from codesign.cli.presets import presets_app
from codesign.cli.simulate import simulate
from codesign.execute.logs import quiet_shutdown

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neuromorphic hardware co-design for compressed spiking neural networks.")
app.add_typer(presets_app, name="presets")
from codesign.cli.cache import cache_app  # noqa: E402  (registered beside presets)
app.add_typer(cache_app, name="cache")
#: exit status of `validate` when at least one claim FAILs
EXIT_CLAIM_FAILED = 1
#: distribution name in pyproject.toml, whose installed version `--version` prints
PACKAGE = "snn-codesign"


def package_version() -> str:
    """The installed version of PACKAGE (importlib.metadata), or 'unknown (not installed)'."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    """--version: print 'codesign (snn-codesign) <version>' and exit."""
    if value:
        typer.echo(f"codesign ({PACKAGE}) {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the package version and exit")) -> None:
    """Neuromorphic hardware co-design for compressed spiking neural networks."""


def _quiet_logs() -> None:
    """Silence torch's 'Triton not available' and the lowering's weight-fit warnings in CLI output
    (codesign.execute.logs.quiet_logs)."""
    from codesign.execute.logs import quiet_logs
    quiet_logs()


def _summary_table(df) -> Table:
    """The results in people's units (codesign.reporting.report.display_table) as a rich table; every cell is text."""
    from codesign.reporting.report import format_value, display_table
    shown = display_table(df)
    if "series" in shown.columns:
        shown = shown.drop(columns=["method"])
    table = Table(title="Design points (per inference)")
    for col in shown.columns:
        table.add_column(escape(col), justify="left" if col == "series" else "right",
                         min_width=30 if col == "series" else None)
    for row in shown.astype(object).itertuples(index=False):
        table.add_row(*[escape(format_value(v)) for v in row])
    return table


def _print_result(console: Console, result, table=None) -> None:
    """The summary table (of `table`, default every point), the summary lines and the report path."""
    console.print(_summary_table(result.table if table is None else table))
    for line in result.summary:
        console.print(f"- {escape(str(line))}", soft_wrap=True)
    console.print(f"report: {escape(str(result.run_dir / 'report.html'))}", soft_wrap=True)


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
    from codesign.config.run import ConfigError, load_config
    console = make_console()
    _quiet_logs()
    try:
        cfg = load_config(config, set_)
        from codesign.execute.run import run as run_pipeline
        result = run_pipeline(cfg, progress=not no_progress, log=text_log(console), resume=resume)
    except (ValueError, OSError) as exc:
        fail(exc, debug)
    _print_result(console, result)


def _execution_overrides(workers: Optional[int], scheduler: Optional[str], sets: list[str]) -> list[str]:
    """--workers / --scheduler as spec overrides. Raises ConfigError when a --set of the same key (`sets`) says
    otherwise: which one was meant cannot be told (simulate refuses such a pair too)."""
    from codesign.config.run import ConfigError, quote, safe_yaml
    flags = {"execution.workers": ("--workers", workers), "execution.scheduler": ("--scheduler", scheduler or None)}
    for item in sets:
        key, _, raw = item.partition("=")
        flag, value = flags.get(key.strip(), (None, None))
        if value is not None and safe_yaml(raw, item, "--set") != value:
            raise ConfigError(f"--set: {key.strip()}={quote(raw)} contradicts {flag} {value}; give one of them")
    return ([f"execution.workers={workers}"] if workers is not None else []) + \
        ([f"execution.scheduler={scheduler}"] if scheduler else [])


@app.command()
def sweep(spec: Optional[Path] = typer.Argument(None, help="YAML sweep spec (base config + axes)"),
          set_: list[str] = typer.Option([], "--set", help="override a spec key, e.g. --set execution.workers=2"),
          workers: Optional[int] = typer.Option(None, "--workers", help="local dask workers (0 = serial)"),
          scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler, e.g. tcp://host:8786"),
          resume: bool = typer.Option(False, "--resume", help="continue the run folder named by run_name"),
          no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
          debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Evaluate every point of a grid over the spec's axes (methods, ratios, bits, chip presets and overrides).

    Examples:
      codesign sweep sweep.yaml
      codesign sweep sweep.yaml --workers 2
      codesign sweep sweep.yaml --set run_name=s1 --resume
    """
    from codesign.config.run import ConfigError
    from codesign.config.sweep import load_spec
    _quiet_logs()
    console = make_console()
    try:
        extra = _execution_overrides(workers, scheduler, set_)
        from codesign.execute.sweep import sweep as run_sweep
        with progress_bar(console, "design points", enabled=not no_progress) as update:
            result = run_sweep(load_spec(spec, [*set_, *extra]), resume=resume, log=text_log(console),
                               on_point=update)
    except (ValueError, OSError) as exc:
        fail(exc, debug)
    _print_result(console, result)


@app.command()
def search(spec: Optional[Path] = typer.Argument(None, help="YAML sweep spec with a `search` section; default: "
                                                          "the embedded MNIST search (codesign/configs/search.yaml)"),
           set_: list[str] = typer.Option([], "--set", help="override a spec key, e.g. --set search.n_trials=10"),
           workers: Optional[int] = typer.Option(None, "--workers", help="local dask workers, one trial each "
                                                 "(0 = serial)"),
           scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler, e.g. tcp://host:8786"),
           resume: bool = typer.Option(False, "--resume", help="continue the study of the run named by run_name"),
           no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
           debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Multi-objective optuna search (NSGA-II or TPE) with the simulator in the loop; writes the Pareto front.

    Examples:
      codesign search search.yaml
      codesign search search.yaml --set search.n_trials=30 --set search.sampler=tpe
      codesign search search.yaml --set run_name=s1 --resume
      codesign search --workers 0                # trials one after another in this process
    """
    from codesign.config.run import ConfigError
    from codesign.config.sweep import load_spec
    _quiet_logs()
    console = make_console()
    try:
        set_ = [*set_, *_execution_overrides(workers, scheduler, set_)]
        from codesign.execute.search import search as run_search
        with progress_bar(console, "trials", enabled=not no_progress) as update:
            result = run_search(load_spec(spec or default_search_path(), set_, "search"), resume=resume,
                                log=text_log(console), on_trial=update)
    except (ValueError, OSError) as exc:
        fail(exc, debug)
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
             resume: bool = typer.Option(False, "--resume", help="continue the run folder named by run_name"),
             debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Hardware-aware per-layer pruning ratios from the simulator, against uniform ratios at equal parameters.

    Writes reports/allocate-<method>-r<ratio>-<UTC timestamp>/ unless run_name is set.

    Examples:
      codesign allocate --set compression.method=magnitude_channel --ratio 0.5
      codesign allocate --set compression.method=magnitude_channel --set run_name=a1 --resume
    """
    from codesign.config.run import ConfigError, load_config
    _quiet_logs()
    console = make_console()
    try:
        from codesign.execute.allocate import AllocatorConfig, run_allocator
        cfg = load_config(config, set_)
        result, table = run_allocator(cfg, ratio, AllocatorConfig(energy_weight=energy_weight,
                                                                  latency_weight=latency_weight),
                                      log=text_log(console), resume=resume)
    except (ValueError, OSError) as exc:
        fail(exc, debug)
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
    from codesign.claims.verdicts import load_claims, point_samples, validate as judge
    from codesign.config.run import ConfigError
    from codesign.reporting.report import rebuild_report
    console = make_console()
    try:
        spec = load_claims(claims)
        from codesign.claims.verdicts import check_metrics, results_digest
        from codesign.store.results import KEY_COLUMN, atomic_write, read_results
        results = read_results(run_dir, required=(KEY_COLUMN,))
        check_metrics(results, spec)
        verdicts = judge(results, spec, point_samples(run_dir))
        digest = results_digest(results)  # the points judged: a report rebuilt after more land says "stale"
        text = _verdicts_json([{**v, "results_digest": digest, "results_points": len(results)} for v in verdicts])
        if (run_dir / "report_meta.json").exists():  # claims.json written once the report is rendered
            report = rebuild_report(run_dir, claims_json=text)
        else:
            report = None
            atomic_write(run_dir / "claims.json", lambda tmp: Path(tmp).write_text(text))
    except (ValueError, OSError) as exc:
        fail(exc, debug)
    console.print(_claims_table(verdicts))
    console.print(escape(f"verdicts: {run_dir / 'claims.json'}" + (f"; report: {report}" if report else "")),
                  soft_wrap=True)
    if any(v["verdict"] == "FAIL" for v in verdicts):
        raise typer.Exit(EXIT_CLAIM_FAILED)


def _verdicts_json(verdicts: list[dict]) -> str:
    """The text of claims.json: the verdicts with their pairs (numpy numbers as plain JSON numbers, NaN as NaN)."""
    import json

    def plain(v):
        """A numpy number as a plain Python number."""
        return v.item() if hasattr(v, "item") else float(v)
    return json.dumps(verdicts, indent=1, default=plain)


def _claims_table(verdicts: list[dict]) -> Table:
    """The verdicts as a rich table: claim, verdict, pairs, median ratio a/b, CI span over the pairs, reason."""
    from codesign.claims.verdicts import verdict_table
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
    from codesign.reporting.report import rebuild_report
    try:
        path = rebuild_report(run_dir)
    except (ValueError, OSError) as exc:
        fail(exc, debug)
    print(f"report: {printable(path)}")


app.command()(simulate)


def main() -> None:
    """Console-script entry point. A usage error (unknown command or option, a value of the wrong type) is one
    line on stderr, `error: <what> (see '<command> --help')`, with exit status 2; Ctrl-C exits 130 with one line
    (_on_ctrl_c)."""
    signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        code = app(prog_name="codesign", standalone_mode=False)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except typer.exceptions.TyperException as exc:  # typer's click exceptions (UsageError, BadParameter, ...)
        if not hasattr(exc, "format_message"):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            sys.exit(2)
        message = " ".join(exc.format_message().split())
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"error: {message}{where}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    if code == 130:
        print("interrupted" + (": finished points are stored; rerun with --set run_name=<the folder named as the "
                               "run started> --resume to go on" if sys.argv[1:2] and sys.argv[1] in _RESUMABLE
                               else ""),
              file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


#: commands whose runs resume (--resume): their finished points are stored as they finish
_RESUMABLE = ("run", "sweep", "search", "allocate")


def _on_ctrl_c(signum, frame) -> None:
    """SIGINT handler of the CLI: silence dask's and asyncio's records of the shutdown that follows
    (codesign.execute.logs.quiet_shutdown: a local cluster closed mid-task logs what it cancels and kills), then
    raise KeyboardInterrupt as Python's default handler does."""
    quiet_shutdown()
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
