"""The ``synthlung`` command. Each area adds its subcommands in a module of this package."""
from __future__ import annotations

from ._app import app, main

# Subcommand modules register themselves on ``app`` when imported; one line each.
from . import generate  # noqa: E402,F401
from . import hosts  # noqa: E402,F401
from . import ingest  # noqa: E402,F401
from . import seeds  # noqa: E402,F401

__all__ = ["app", "main"]
