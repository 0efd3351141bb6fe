"""The whole pipeline on the built-in chest phantom: the README's main job.

Two phantom chests with tumors give the seeds, and all four phantom chests
(two without tumors) are hosts; the demo ingests them like any dataset,
extracts seeds, segments the hosts' lungs, generates synthetic cases and
writes a preview of each.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..datasets.phantom import chest_phantom
from ..io import save

DONOR_SEEDS = (11, 12)
HOST_SEEDS = (21, 22)


def write_phantom_dataset(folder: Path, **phantom_kw) -> Path:
    """Write donor (labeled) and host (unlabeled) phantom scans as a generic image/label folder.

    ``phantom_kw`` (shape, spacing_mm) go to :func:`synthlung.datasets.phantom.chest_phantom`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for s in DONOR_SEEDS:
        ph = chest_phantom(n_tumors=3, seed=s, **phantom_kw)
        save(ph.image, folder / f"donor{s}_image.nii.gz")
        save(ph.label, folder / f"donor{s}_label.nii.gz")
    for s in HOST_SEEDS:
        ph = chest_phantom(n_tumors=0, seed=s, **phantom_kw)
        save(ph.image, folder / f"host{s}_image.nii.gz")
    return folder


def run_demo(out: str | Path, n_cases: int = 4, seed: int = 0, workers: int = 1,
             say: Callable[[str], None] = print) -> list[Path]:
    """Run ingest -> seeds -> hosts -> generate -> preview under ``out``; returns the preview PNGs."""
    from ..datasets import ingest
    from ..hosts import build_host_bank
    from ..qa.preview import preview
    from ..seeds import build_seed_bank
    from .offline import generate

    out = Path(out)
    data = write_phantom_dataset(out / "phantom")
    say(f"phantom scans written to {data}")
    ingest(data, out / "catalog")
    say(f"catalog: {out / 'catalog' / 'catalog.json'}")
    build_seed_bank(out / "catalog" / "catalog.json", out / "seeds")
    build_host_bank(out / "catalog" / "catalog.json", out / "hosts")
    say("seeds and hosts ready")
    entries = generate(out / "hosts", out / "seeds", n_cases, out / "synthetic", seed=seed,
                       workers=workers, resume=True)
    previews = []
    for entry in entries:
        png = out / "previews" / f"{entry['case']}.png"
        preview(out / "synthetic" / entry["record"], png)
        previews.append(png)
    say(f"{len(entries)} synthetic cases in {out / 'synthetic'}, previews in {out / 'previews'}")
    return previews
