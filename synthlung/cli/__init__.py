"""The ``synthlung`` command. Each area adds its subcommands in a module of this package."""
from __future__ import annotations

# Subcommand modules register themselves on ``app`` when imported; one line each.
from . import (
    generate_cmd,  # noqa: E402,F401
    hosts_cmd,  # noqa: E402,F401
    ingest_cmd,  # noqa: E402,F401
    qa_cmd,  # noqa: E402,F401
    seeds_cmd,  # noqa: E402,F401
)
from ._app import app, main

__all__ = ["app", "main"]
