"""The typer application, global options, and error reporting as one readable line."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from .._version import __version__
from ..errors import SynthlungError

app = typer.Typer(
    name="synthlung",
    help="Synthetic lung-tumor CT: ingest labeled CT, extract tumor seeds and lung hosts, "
    "morph and insert tumors, write labeled datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
_state = {"debug": False}


PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
CaseProgress = Callable[[int, int, str], None]


def case_updater(bar: Progress, name: str) -> CaseProgress:
    """A task on ``bar`` and the ``progress(done, total, case_id)`` callback that moves it."""
    task = bar.add_task(name, total=None)

    def update(done: int, total: int, case_id: str) -> None:
        bar.update(task, completed=done, total=total, description=f"{name} {case_id}")
    return update


@contextlib.contextmanager
def case_progress(name: str) -> Iterator[CaseProgress]:
    """A transient per-case progress bar on stderr; yields its ``progress`` callback."""
    with Progress(*PROGRESS_COLUMNS, console=err_console, transient=True) as bar:
        yield case_updater(bar, name)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"synthlung {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Synthetic lung-tumor CT generator."""
    _state["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; errors print one line (a traceback only with ``--debug``). Returns the exit status.

    Typer handles its own exits and usage errors (standalone mode, whichever click
    it carries); synthlung's errors and OS errors become one readable line.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="synthlung", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (SynthlungError, OSError) as exc:
        if _state["debug"] or "--debug" in args:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    return 0
