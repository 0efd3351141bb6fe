"""``synthlung ingest SRC OUT`` and ``synthlung fetch msd-lung DEST``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..datasets.catalog import Catalog
from ._app import app, case_progress, case_updater, err_console, error_line, progress_bar

fetch_app = typer.Typer(help="Download public datasets and ingest them.", no_args_is_help=True)
app.add_typer(fetch_app, name="fetch")

_FORMAT_HELP = "auto | msd (dataset.json) | folder (X_image/X_label or images/+labels/) | pair (one image)"


def _report(catalog: Catalog) -> None:
    """Print the summary and every failed case; exit 1 when any case failed."""
    err_console.print(f"{len(catalog.cases)} cases ({len(catalog.labeled)} labeled, "
                      f"{len(catalog.unlabeled)} unlabeled, {len(catalog.failed)} failed) -> {catalog.path}",
                      highlight=False)
    for case in catalog.failed:
        for error in case.errors:
            error_line(f"case {case.id}: {error}")
    if catalog.failed:
        raise typer.Exit(code=1)


@app.command("ingest")
def ingest_command(
    src: Path = typer.Argument(..., help="Dataset folder, image file or DICOM series folder."),
    out: Path = typer.Argument(..., help="Output folder for catalog.json (and canonical copies)."),
    format: str = typer.Option("auto", "--format", help=_FORMAT_HELP),
    canonical: bool = typer.Option(False, "--canonical", help="Write RAS NIfTI copies under OUT and use them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record bad cases in the catalog and go on."),
    label: Optional[Path] = typer.Option(None, "--label", help="Label file of a single image SRC."),
    hu_rescale: Optional[str] = typer.Option(
        None, "--hu-rescale", metavar="SLOPE,INTERCEPT",
        help="The images are not in HU: HU = value * SLOPE + INTERCEPT; HU NIfTI copies are written under OUT."),
) -> None:
    """Check, measure and catalog a labeled CT dataset (MSD Task06_Lung, a folder, or one pair)."""
    from ..datasets import ingest
    rescale = None if hu_rescale is None else hu_rescale.split(",")
    with case_progress("ingest") as progress:
        catalog = ingest(src, out, format=format, canonical=canonical, skip_bad=skip_bad, label=label,
                         progress=progress, hu_rescale=rescale)
    _report(catalog)


@fetch_app.command("msd-lung")
def fetch_msd_lung_command(
    dest: Path = typer.Argument(..., help="Folder for the archive and its unpacked task."),
    out: Optional[Path] = typer.Option(None, "--out", help="Catalog folder (default: DEST)."),
    url: Optional[str] = typer.Option(None, "--url", help="Archive address (default: MONAI's Task06_Lung mirror)."),
    md5: Optional[str] = typer.Option(None, "--md5", help="Expected md5 of the archive."),
    canonical: bool = typer.Option(False, "--canonical", help="Write RAS NIfTI copies and use them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record bad cases in the catalog and go on."),
) -> None:
    """Download the Decathlon Task06_Lung archive (resumable, md5-checked), unpack and ingest it."""
    from ..datasets.fetch import MSD_LUNG_MD5, MSD_LUNG_URL, fetch_msd_lung
    with progress_bar() as bar:
        download = bar.add_task("download MiB", total=None)
        catalog = fetch_msd_lung(dest, out, url=url or MSD_LUNG_URL, md5=md5 or MSD_LUNG_MD5,
                                 canonical=canonical, skip_bad=skip_bad, progress=case_updater(bar, "ingest"),
                                 download_progress=lambda done, total: bar.update(
                                     download, completed=done / 2**20, total=total / 2**20 or None))
    _report(catalog)
