"""``synthlung generate``, ``synthlung preview`` and ``synthlung demo``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ._app import app, progress_bar


@app.command()
def generate(
    hosts: Path = typer.Option(..., "--hosts", help="Host bank folder (from `synthlung hosts`)."),
    seeds: Path = typer.Option(..., "--seeds", help="Seed bank folder (from `synthlung seeds`)."),
    n: int = typer.Option(..., "--n", help="Number of synthetic cases."),
    out: Path = typer.Option(..., "--out", help="Output dataset folder."),
    seed: int = typer.Option(0, "--seed", help="Run seed, 0 to 2**64-1: case i draws from Philox key (seed, i)."),
    workers: int = typer.Option(1, "--workers", help="Worker processes, 1 or more (1: this process)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of synthesis options."),
    layout: str = typer.Option("nnunet", "--layout", help="Output layout: nnunet (v2 raw) or msd."),
    resume: bool = typer.Option(False, "--resume", help="Make only the cases missing from the manifest."),
    scheduler: str = typer.Option("local", "--scheduler", help="local (process pool) or dask."),
    address: Optional[str] = typer.Option(None, "--address", help="Dask scheduler address (default: a local cluster)."),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda: make each case on the GPU (CuPy)."),
) -> None:
    """Generate N synthetic labeled cases: deterministic, atomic, resumable; banks verified first."""
    from ..run.offline import generate as run_generate
    from ..run.offline import read_manifest
    from ..synthesis.case import SynthesisConfig

    cfg = SynthesisConfig.from_yaml(config) if config else SynthesisConfig()
    already = len(read_manifest(out)) if resume else 0
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(*columns) as bar:
        task = bar.add_task("cases", total=n, completed=min(already, n))
        entries = run_generate(hosts, seeds, n, out, seed=seed, workers=workers, config=cfg, layout=layout,
                               resume=resume, scheduler=scheduler, address=address, device=device,
                               progress=lambda _entry: bar.advance(task))
    inserted = sum(e["tumors_inserted"] for e in entries)
    typer.echo(f"{len(entries)} cases, {inserted} tumors inserted, in {out}")


@app.command()
def preview(
    case: Path = typer.Argument(..., help="A case's record (records/case_XXXX.json) or image file."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    contour: bool = typer.Option(False, "--contour", help="Draw the tumor label's outline (off: the seam shows)."),
) -> None:
    """Zoomed axial, coronal and sagittal views of each inserted tumor, before and after, lung and
    mediastinal windows."""
    from ..qa.preview import preview as run_preview

    typer.echo(str(run_preview(case, out, contour=contour)))


@app.command()
def demo(
    out: Path = typer.Argument(Path("synthlung-demo"), help="Output folder."),
    n: int = typer.Option(4, "--n", help="Number of synthetic cases."),
    seed: int = typer.Option(0, "--seed", help="Run seed."),
    workers: int = typer.Option(1, "--workers", help="Worker processes."),
) -> None:
    """The whole pipeline on the built-in chest phantom: seeds, hosts, synthetic cases, previews."""
    from ..run.demo import run_demo

    run_demo(out, n_cases=n, seed=seed, workers=workers, say=typer.echo)
