"""Console output of the `codesign` CLI: user values print as text (never as Rich markup), tables print whole
when stdout is not a terminal (a log file or a pipe), and errors print as one line.

On a terminal the console is at least MIN_WIDTH columns wide; elsewhere it is WIDE columns, so no table cell is
cut or folded and no line is wrapped, and progress bars are off (they would flood a log).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape as markup_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

EXIT_USAGE = 2
#: the summary table needs this many columns; a narrower terminal would truncate its headers
MIN_WIDTH = 120
#: console width when stdout is not a terminal: wide enough that no table is cut
WIDE = 100_000


def printable(text: object) -> str:
    """`text` with its control characters (ESC, carriage return, ...; newlines kept) written as Python escapes
    (\\x1b, \\r), for plain output: a user value (a path, a stage name) cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii")
                   for c in str(text))


def escape(text: object) -> str:
    """`text` for Rich: its markup escaped and its control characters written as Python escapes (`printable`), so
    a user value can neither style the output nor drive the terminal."""
    return markup_escape(printable(text))


def make_console(stderr: bool = False) -> Console:
    """A Console on stdout (or stderr): at least MIN_WIDTH wide on a terminal, WIDE otherwise."""
    probe = Console(stderr=stderr)
    width = max(probe.width, MIN_WIDTH) if probe.is_terminal else WIDE
    return Console(stderr=stderr, width=width)


def text_log(console: Console) -> Callable[[str], None]:
    """A log callback for the pipeline that prints each message as plain text (brackets in run names, paths and
    labels are shown, not read as markup)."""
    def log(message) -> None:
        """Print one message as plain text (control characters as escapes)."""
        console.print(escape(message), highlight=False, soft_wrap=True)
    return log


def fail(exc: BaseException, debug: bool) -> None:
    """Print `exc` as one line on stderr, `error: <message>` (or raise it for the traceback with `debug`) and
    exit with status EXIT_USAGE."""
    if debug:
        raise exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    make_console(stderr=True).print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


@contextlib.contextmanager
def progress_bar(console: Console, label: str, enabled: bool = True):
    """A rich progress bar; yields update(done, total) (a no-op when disabled or not a terminal)."""
    if not enabled or not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
