"""`codesign presets`: list the shipped chip presets, show a preset or chip file (every number with its source),
and derive a new chip file from one (`presets derive loihi --set core.neurons_per_core=512 -o mychip.yaml`)."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from codesign.cli.console import escape, fail, make_console

presets_app = typer.Typer(no_args_is_help=True, help="List, show and derive chip presets and chip files.")


@presets_app.command("list")
def presets_list(debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """List the chip presets shipped with hwmodels, one name per line.

    Examples:
      codesign presets list
      codesign presets show $(codesign presets list | head -1)
    """
    import hwmodels
    try:
        names = hwmodels.list_presets()
    except (ValueError, OSError) as exc:
        fail(exc, debug)
    for name in names:
        print(name)


@presets_app.command("show")
def presets_show(name: str = typer.Argument(..., help="a preset name (codesign presets list) or a chip file path"),
                 debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Show a preset or chip file: every number with its source and note (SI units), the numbers without a
    source (allowed in chip files only), the numbers it leaves at ChipSpec's defaults, what is folded into what,
    the remaining assumptions and derived estimates, and the full citations.

    Examples:
      codesign presets show loihi
      codesign presets show mychip.yaml
    """
    import hwmodels
    from hwmodels.chip.presets import default_leaves, preset_assumptions, preset_leaves, read_preset
    console = make_console()
    try:
        chip = hwmodels.load_preset(name)
        leaves, assumed = preset_leaves(name), preset_assumptions(name)
        sources = read_preset(name).get("sources") or {}
    except (ValueError, OSError) as exc:
        fail(exc if str(exc).startswith("preset") else ValueError(f"preset: {exc}"), debug)
    console.print(f"[bold]{escape(chip.name)}[/]: {escape(chip.description)}", soft_wrap=True)
    console.print(_preset_table(chip.name, leaves))
    unsourced = [leaf["key"] for leaf in leaves if not leaf["source"]]
    if unsourced:
        console.print(escape(f"numbers without a source ({len(unsourced)}): {', '.join(unsourced)}"), soft_wrap=True)
    defaults = ", ".join(f"{d['key']} = {d['value']}" for d in default_leaves(name, chip))
    if defaults:
        console.print(escape(f"left at ChipSpec defaults (not in the file): {defaults}"), soft_wrap=True)
    for line in _preset_notes(chip):
        console.print(escape(line), soft_wrap=True)
    console.print(f"[bold]Assumptions and derived estimates ({len(assumed)}):[/]")
    for leaf in assumed:
        console.print(escape(f"  {leaf['key']} = {leaf['value']}: {leaf['note']}"), soft_wrap=True)
    console.print("[bold]Sources:[/]")
    for key, text in sources.items():
        console.print(escape(f"  {key}: {' '.join(str(text).split())}"), soft_wrap=True)


def _preset_table(chip_name: str, leaves: list[dict]) -> Table:
    """Every value of a preset with its source and note (all cells text; a number without one: '(missing)')."""
    table = Table(title=escape(f"{chip_name}: values (SI) with their sources"))
    for col in ("key", "value", "source", "note"):
        table.add_column(col, overflow="fold")
    for leaf in leaves:
        cells = {**leaf, "source": leaf["source"] or "(missing)"}
        table.add_row(*(escape(str(cells[k])) for k in ("key", "value", "source", "note")))
    return table


def _preset_notes(chip) -> list[str]:
    """Plain lines: how each memory is charged (or why it is folded), the neuron rules, the chip's notes and, for
    a derived chip, what it was derived from."""
    lines = []
    for what, mem in (("synapse memory", chip.core.synapse_memory), ("neuron-state memory", chip.core.state_memory)):
        state = "folded" if mem.folded else f"charged per bit ({mem.capacity} capacity, {mem.location})"
        lines.append(f"- {what}: {state}: {mem.reason}")
    lines.append(f"- neuron rules: access {chip.core.neuron_access_rule}, update {chip.core.neuron_update_rule}; "
                 f"power gating {chip.power_gating}")
    if chip.derived_from is not None:
        made = chip.derived_from
        changed = ", ".join(f"{k} {v.get('from')!r} -> {v.get('to')!r}" for k, v in made.changed.items())
        lines.append(f"- derived from {made.preset} on {made.date or '?'}; changed: {changed or 'nothing'}")
    return lines + [f"- {topic}: {text}" for topic, text in chip.notes.items()]


@presets_app.command("derive")
def presets_derive(base: str = typer.Argument(..., help="the base: a preset name or a chip file path"),
                   set_: list[str] = typer.Option([], "--set", help="a changed value, e.g. "
                                                  "--set core.neurons_per_core=512 (codesign presets show BASE "
                                                  "lists the keys)"),
                   out: Path = typer.Option(..., "-o", "--out", help="the chip file to write (.yaml or .yml)"),
                   name: Optional[str] = typer.Option(None, "--name", help="the chip's name (default: the output "
                                                      "file's stem)"),
                   force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
                   debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    """Write a new chip file derived from a preset or chip file: every value keeps its {value, source, note};
    changed values get source `derived` (the `derived` source says from what, when and what changed) and the
    file records `derived_from: {preset, date, changed}`. The file is checked to load before it is written
    (atomically; an existing file only with --force). Use it anywhere a preset is taken.

    Examples:
      codesign presets derive loihi --set core.neurons_per_core=512 -o mychip.yaml
      codesign run --set hardware.preset=mychip.yaml
      codesign simulate g.npz t.npz --preset mychip.yaml
    """
    from codesign.cli.simulate import parse_overrides
    from hwmodels.chip.derive import write_derived
    console = make_console()
    try:
        tree = write_derived(out, base, parse_overrides(set_), date.today().isoformat(), name, force)
    except OSError as exc:  # the write: "cannot write '<out>': <reason>", not the name of its temporary file
        reason = exc.strerror or str(exc)
        fail(exc if debug else OSError(f"--out: cannot write '{out}': {reason}"), debug)
    except ValueError as exc:
        fail(exc, debug)
    changed = tree["derived_from"]["changed"]
    summary = ", ".join(f"{k} {v['from']!r} -> {v['to']!r}" for k, v in changed.items()) or "no value"
    console.print(escape(f"wrote {out}: chip {tree['name']} derived from {base}; changed: {summary}"),
                  soft_wrap=True)
    console.print(escape(f"use it with --set hardware.preset={out} or codesign simulate --preset {out}"),
                  soft_wrap=True)
