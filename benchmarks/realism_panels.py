"""Real beside synthetic: the PNG panels of the README and RESULTS, rendered as the reader kit renders.

``docs/figures/real_vs_synthetic.png``: lung1's real tumour in its own scan
(5 mm slices), then inserted by the default pipeline into the real chest CT
(1.5 mm) as drawn (a nodule) and scaled to a mass. ``docs/figures/pleural_placement.png``:
the phantom's chest-wall tumour in its own scan, then pressed onto the real
chest CT's pleura. Every view is 64 mm across, lung window over mediastinal
window, axial / coronal / sagittal. ``python benchmarks/realism_panels.py [OUT_DIR]``
(data from ``$SYNTHLUNG_TEST_DATA`` or ``../shared/data``).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from synthlung.datasets.phantom import chest_phantom
from synthlung.hosts import make_host
from synthlung.io import load
from synthlung.qa.preview import tumour_centre_mm
from synthlung.qa.reader_kit import render_case
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import SynthesisConfig, synthesize
from synthlung.synthesis.sizing import SizePolicy

DATA = Path(os.environ.get("SYNTHLUNG_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _inserted(host, bank, key, sizes):
    """The sheet and title of the first tumour of the case of ``key`` with one tumour of these sizes."""
    case = synthesize(host, bank, case_rng(*key), SynthesisConfig(n_tumors=(1,), sizes=sizes))
    t = case.record["tumors"][0]
    centre = tumour_centre_mm(case.record, case.instances.array, case.image.affine, 1)
    where = "against the pleura" if t["pleural_contact"] else "in parenchyma"
    title = (f"synthetic: {t['seed_id']} in the chest CT (1.5 mm), {t['size']['diameter_mm']:.0f} mm, {where}"
             f", case key {key}")
    return render_case(case.image.array, case.image.affine, centre), title


def _figure(rows, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 1, figsize=(6.2, 4.5 * len(rows)), squeeze=False)
    for ax, (sheet, title) in zip(axes[:, 0], rows):
        ax.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.text(0.5, 0.005, "rows: lung window, mediastinal window; columns: axial, coronal, sagittal; 64 mm across",
             ha="center", fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.02, hspace=0.12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KB")


def main(out_dir: Path) -> None:
    lung1 = [load(DATA / "pyradiomics-lung1" / f"lung1_{k}.nrrd") for k in ("image", "label")]
    seeds = extract_seeds(*lung1, case_id="lung1")
    bank = SeedBank.write(seeds, tempfile.mkdtemp())
    host = make_host(load(DATA / "totalseg-chest" / "chest_ct.nii.gz"), host_id="chest")
    own = seeds[0].record
    rows = [(render_case(lung1[0].array, lung1[0].affine, np.asarray(own["centroid_mm"])),
             f"real: lung1's tumour in its own scan (5 mm slices), {own['equivalent_diameter_mm']:.0f} mm")]
    rows.append(_inserted(host, bank, (0, 0), SizePolicy(((13.0, 15.0),), (1.0,))))
    rows.append(_inserted(host, bank, (0, 1), SizePolicy(((26.0, 28.0),), (1.0,))))
    _figure(rows, out_dir / "real_vs_synthetic.png")

    donor = chest_phantom(n_tumors=3, seed=0)
    juxta = [s for s in extract_seeds(donor.image, donor.label, case_id="phantom", lungs=donor.lungs)
             if s.record["contact"]["site"] != "none"]
    jbank = SeedBank.write(juxta, tempfile.mkdtemp())
    rec = juxta[0].record
    title = (f"phantom chest-wall tumour in its own scan, {rec['equivalent_diameter_mm']:.0f} mm, "
             f"contact {rec['contact']['fraction']:.2f} ({rec['contact']['site']})")
    rows = [(render_case(donor.image.array, donor.image.affine, np.asarray(rec["centroid_mm"])), title)]
    rows.append(_inserted(host, jbank, (7, 0), SizePolicy(((30.0, 34.0),), (1.0,))))
    _figure(rows, out_dir / "pleural_placement.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "figures")
