"""Realism of every blending method: lung1's tumor into the chest CT, before and after issue 10.

For each size (lung1 as it is, about 14 mm, and scaled 3x, about 41 mm) and each
blending method, the same draws (seed, morph, centre per draw) are inserted with
the behaviour before issue 10 (5 mm stack resampled as it is, uniform rotations,
no texture, no vessels, Poisson margin 3 mm) and with today's defaults; prints
markdown tables of the means over draws (:mod:`synthlung.qa.realism` defines
every column), the real tumor's own values in its own scan, and the same for
seeds the defaults were not tuned on (the phantom's tumors; "before" is then the
texture, vessels and Poisson margin only).

``python benchmarks/realism_report.py [N_DRAWS]`` (data: ``$SYNTHLUNG_TEST_DATA`` or ``../shared/data``)
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from synthlung.datasets.phantom import chest_phantom
from synthlung.hosts import make_host
from synthlung.hosts.noise import measure_spectrum, scan_axis, soft_tissue_mask
from synthlung.io import load
from synthlung.qa.realism import (deep_core, edge_rise_along_across, evaluate_methods, host_tissue_noise_hu,
                                  hu_change_ratio, rise_distance_mm, tumor_noise_hu)
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import BLEND_METHODS, SynthesisConfig

DATA = Path(os.environ.get("SYNTHLUNG_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
BEFORE = dict(texture=False, blend={"vessel_hu": None, "margin_mm": 3.0}, morph={"max_tilt_deg": 180.0})
COLUMNS = ("core error (HU)", "halo 2-5 mm (HU)", "change 0-5 mm out (HU)", "rise (mm)",
           "noise ratio", "NPS overlap in-plane / axial", "HU change along/across", "rise along/across",
           "vessels kept")


def _row(reports, host_noise: float) -> list[str]:
    f = lambda k: float(np.nanmean([getattr(r, k) for r in reports]))
    return [f"{f('core_error_hu'):+.1f}", f"{f('halo_hu'):+.1f}", f"{f('outside_change_hu'):.1f}",
            f"{f('rise_mm'):.2f}", f"{f('noise_hu') / host_noise:.2f}",
            f"{f('inplane_overlap'):.2f} / {f('axial_overlap'):.2f}", f"{f('hu_change_ratio'):.2f}",
            f"{np.nanmean([r.rise_ratio for r in reports]):.2f}", f"{f('vessel_continuity'):.2f}"]


def own_scan(image, label) -> str:
    """The real tumor in its own scan: noise against that scan's soft tissue, edge and texture along/across z."""
    spacing, mask = image.spacing, label.array > 0
    tissue = host_tissue_noise_hu(image.array, spacing)
    along, across = edge_rise_along_across(image.array, mask, image.affine, image.affine[:3, 2])
    change = hu_change_ratio(image.array, deep_core(mask, spacing), image.affine, image.affine[:3, 2])
    return (f"noise ratio {tumor_noise_hu(image.array, mask, spacing) / tissue:.2f} (its scan's soft tissue "
            f"{tissue:.1f} HU), rise {rise_distance_mm(image.array, mask, spacing):.2f} mm, rise along/across "
            f"its 5 mm slices {along / across:.2f}, HU change along/across {change:.2f}")


def table(host, banks: dict, morph: dict, n_draws: int, host_noise: float, run: int) -> None:
    """Print one table: every method, before (``banks["before"]``) and after (``banks["after"]``)."""
    print("| method | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 1) + "|")
    for when in ("before", "after"):
        options = dict(BEFORE) if when == "before" else {}
        options["morph"] = {**options.get("morph", {}), **morph}
        config = SynthesisConfig(n_tumors=(1,), sizes=None, **options)  # size: the morph's scale alone
        rows: dict[str, list] = {m: [] for m in BLEND_METHODS}
        for i in range(n_draws):
            for method, reports in evaluate_methods(host, banks[when], case_rng(run, i), BLEND_METHODS,
                                                    config).items():
                rows[method].extend(reports)
        for method, reports in rows.items():
            print(f"| {method} ({when}) | " + " | ".join(_row(reports, host_noise)) + " |", flush=True)
    print()


def main(n_draws: int = 5) -> None:
    d = DATA / "pyradiomics-lung1"
    image, label = load(d / "lung1_image.nrrd"), load(d / "lung1_label.nrrd")
    banks = {"before": SeedBank.write(extract_seeds(image, label, case_id="lung1", reslice_mm=None),
                                      tempfile.mkdtemp()),
             "after": SeedBank.write(extract_seeds(image, label, case_id="lung1"), tempfile.mkdtemp())}
    host = make_host(load(DATA / "totalseg-chest" / "chest_ct.nii.gz"), host_id="chest")
    host_noise = host_tissue_noise_hu(host.image.array, host.image.spacing)
    tissue = soft_tissue_mask(host.image.array, host.image.spacing)
    spec = measure_spectrum(host.image.array, tissue, host.image.spacing, scan_axis(host.image.affine))
    print(f"host soft tissue: high-pass noise {host_noise:.1f} HU, NPS std {spec.std_hu:.1f} HU, "
          f"HU change along/across z {hu_change_ratio(host.image.array, tissue, host.image.affine, np.eye(3)[2]):.2f}")
    print(f"lung1's tumor in its own scan: {own_scan(image, label)}\n")
    for size, morph in (("lung1 as it is (~14 mm)", {}), ("lung1 scaled 3x (~41 mm)", {"scale": 3.0, "isotropic": True})):
        print(f"### {size}, {n_draws} draws, 1 tumor each\n")
        table(host, banks, morph, n_draws, host_noise, 0)
    donor = chest_phantom(n_tumors=3, seed=5, shape=(112, 96, 80), spacing_mm=(2.5, 2.5, 3.0))
    phantom = SeedBank.write(extract_seeds(donor.image, donor.label, case_id="phantom"), tempfile.mkdtemp())
    sizes = ", ".join(f"{s.record['equivalent_diameter_mm']:.0f}" for s in phantom)
    print(f"### Seeds not tuned to: the phantom's tumors ({sizes} mm, 2.5 x 2.5 x 3 mm voxels, "
          f"their own 25 HU noise), {n_draws} draws\n")
    table(host, {"before": phantom, "after": phantom}, {}, n_draws, host_noise, 11)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
