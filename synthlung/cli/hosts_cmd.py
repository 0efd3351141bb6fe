"""``synthlung hosts CATALOG OUT``: segment the lungs of every case into a host bank."""
from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, case_progress, err_console, error_line


@app.command("hosts")
def hosts_command(
    catalog: Path = typer.Argument(..., help="catalog.json written by `synthlung ingest` (or its folder)."),
    out: Path = typer.Argument(..., help="Host bank folder: index.json and lungs/<id>.nii.gz."),
    method: str = typer.Option("threshold", "--method", help="threshold (no model) | lungmask (optional package)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record cases that fail in index.json and go on."),
) -> None:
    """Segment the lungs (1 left, 2 right) of every good catalog case and write a host bank."""
    from ..hosts import build_host_bank
    with case_progress("hosts") as progress:
        index = build_host_bank(catalog, out, method=method, skip_bad=skip_bad, progress=progress)
    err_console.print(f"{len(index['hosts'])} hosts, {len(index['errors'])} failed -> {out / 'index.json'}",
                      highlight=False)
    for row in index["errors"]:
        error_line(f"case {row['id']}: {row['error']}")
    if index["errors"]:
        raise typer.Exit(code=1)
