"""``synthlung seeds CATALOG OUT``: tumor seeds of every labelled case into a seed bank."""
from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, case_progress, err_console


@app.command("seeds")
def seeds_command(
    catalog: Path = typer.Argument(..., help="catalog.json written by `synthlung ingest` (or its folder)."),
    out: Path = typer.Argument(..., help="Seed bank folder (index.json + seeds/*.npz); added to if present."),
    margin_mm: float = typer.Option(10.0, "--margin-mm", help="Context margin around each tumor, mm."),
    min_volume_mm3: float = typer.Option(30.0, "--min-volume-mm3", help="Drop components smaller than this, mm^3."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Note unreadable cases and go on."),
) -> None:
    """Cut one seed per connected tumor component (26-connected) out of each labelled case."""
    from ..seeds import SeedBank, build_seed_bank
    with case_progress("seeds") as progress:
        report = build_seed_bank(catalog, out, margin_mm, min_volume_mm3, skip_bad, progress=progress)
    for note in report.notes:
        err_console.print(f"note: {note}", highlight=False)
    bank = SeedBank.open(out, create=True)
    err_console.print(f"{len(report.done)} cases extracted, {len(report.reused)} already in the bank, "
                      f"{len(report.skipped)} skipped, {len(report.failed)} failed; "
                      f"{len(bank)} seeds in {out}", highlight=False)
    if report.failed:
        raise typer.Exit(code=1)
