"""The typer application, global options, and error reporting as one readable line."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from .._version import __version__
from ..errors import SynthlungError

try:  # typer >= 0.2x carries its own click; older typers raise click's exceptions
    from typer import TyperException as UsageProblem
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException as UsageProblem

app = typer.Typer(
    name="synthlung",
    help="Synthetic lung-tumor CT: ingest labeled CT, extract tumor seeds and lung hosts, "
    "morph and insert tumors, write labeled datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, soft_wrap=True)  # soft_wrap: a message is never cut into lines
_state = {"debug": False}


PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
CaseProgress = Callable[[int, int, str], None]


def case_updater(bar: Progress, name: str) -> CaseProgress:
    """A task on ``bar`` and the ``progress(done, total, case_id)`` callback that moves it."""
    task = bar.add_task(name, total=None)

    def update(done: int, total: int, case_id: str) -> None:
        bar.update(task, completed=done, total=total, description=f"{name} {case_id}")
    return update


def progress_bar(*columns) -> Progress:
    """A transient progress display on stderr, shown only when stderr is a terminal (a log
    file or pipe gets nothing from it, so an error stays the only line)."""
    return Progress(*(columns or PROGRESS_COLUMNS), console=err_console, transient=True,
                    disable=not err_console.is_terminal)


@contextlib.contextmanager
def case_progress(name: str) -> Iterator[CaseProgress]:
    """A transient per-case progress bar on stderr; yields its ``progress`` callback."""
    with progress_bar() as bar:
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
    """Run the CLI; every error prints one line (a traceback only with ``--debug``). Returns the exit status.

    Typer runs outside its standalone mode so that its usage errors (a bad
    option value, a missing argument) come here too: they, synthlung's errors
    and OS errors each become one ``error:`` line on stderr, never wrapped,
    whatever stderr is (terminal, pipe or file).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        status = app(args=args, prog_name="synthlung", standalone_mode=False)
    except UsageProblem as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the help text
            exc.show()
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        error_line(exc.format_message() + (f" (see: {ctx.command_path} --help)" if ctx else ""))
        return exc.exit_code
    except typer.Abort:
        error_line("aborted")
        return 1
    except (SynthlungError, OSError) as exc:
        if _state["debug"] or "--debug" in args:
            raise
        error_line(str(exc))
        return 1
    return status if isinstance(status, int) else 0


def error_line(message: str) -> None:
    """``error: MESSAGE`` as one line on stderr (line breaks inside the message become spaces)."""
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False)
