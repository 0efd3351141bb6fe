"""Realism of every blending method: lung1's tumor into the chest CT, several draws.

Prints a markdown table (mean over draws) of the core HU error, the halo in
the 2-5 mm ring and the 10-90 % edge rise distance, next to the seed's own
rise distance in its scan. ``python benchmarks/realism_report.py [N_DRAWS]``
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from synthlung.hosts import make_host
from synthlung.io import load
from synthlung.qa.realism import evaluate_methods, rise_distance_mm
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import BLEND_METHODS, SynthesisConfig

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main(n_draws: int = 5) -> None:
    d = DATA / "pyradiomics-lung1"
    seeds = extract_seeds(load(d / "lung1_image.nrrd"), load(d / "lung1_label.nrrd"), case_id="lung1")
    bank = SeedBank.write(seeds, tempfile.mkdtemp())
    host = make_host(load(DATA / "totalseg-chest" / "chest_ct.nii.gz"), host_id="chest")
    own = rise_distance_mm(seeds[0].image.array, seeds[0].mask.array, seeds[0].image.spacing)
    rows: dict[str, list] = {m: [] for m in BLEND_METHODS}
    for i in range(n_draws):
        for method, reports in evaluate_methods(host, bank, case_rng(0, i), BLEND_METHODS,
                                                SynthesisConfig(n_tumors=(1,))).items():
            rows[method].extend(reports)
    print(f"seed's own 10-90 % rise distance in lung1: {own:.2f} mm; {n_draws} draws, 1 tumor each\n")
    print("| method | core error (HU) | halo 2-5 mm (HU) | rise 10-90 % (mm) | rise / seed's |")
    print("| --- | --- | --- | --- | --- |")
    for method, reports in rows.items():
        core = np.mean([r.core_error_hu for r in reports])
        halo = np.mean([r.halo_hu for r in reports])
        rise = np.nanmean([r.rise_mm for r in reports])
        print(f"| {method} | {core:+.1f} | {halo:+.1f} | {rise:.2f} | {rise / own:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
