"""Exceptions with messages meant for people: they name the file or value and what is wrong."""
from __future__ import annotations


class SynthlungError(Exception):
    """Base class of every error synthlung raises on purpose."""


class InputError(SynthlungError, ValueError):
    """Bad input: a file, a value or a dataset layout that cannot be used as given."""


class MissingExtraError(SynthlungError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, what: str = ""):
        purpose = f" for {what}" if what else ""
        super().__init__(
            f"{module} is needed{purpose} but is not installed: "
            f"pip install 'synthlung[{extra}]'"
        )
        self.module = module
        self.extra = extra


class OutputError(SynthlungError, OSError):
    """An output cannot be written (disk full, no permission); the message names the path."""


class BusyError(SynthlungError):
    """Another synthlung run holds the output folder's writer lock; the message names the folder and run."""
