"""Where the default pipeline puts tumours and how big: N cases in the real chest CT.

Seeds: lung1's real tumour (free in its lung) and the phantom's three tumours
(one against the chest wall). Prints, over ``N`` cases with the default
:class:`synthlung.SynthesisConfig`: tumours per size class, how the seeds that
touched the pleura were placed (contact in the host, facing), how far any
label voxel lies outside the lung mask, the burden per case, and where the
masses (> 30 mm) went (lower third of the lung's height, periphery).
``python benchmarks/placement_report.py [N]`` (data from ``$SYNTHLUNG_TEST_DATA``
or ``../shared/data``).
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
from synthlung.morphology import distance_mm
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.seeds.contact import measure_contact
from synthlung.synthesis.case import SynthesisConfig, synthesize

DATA = Path(os.environ.get("SYNTHLUNG_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def main(n_cases: int = 30) -> None:
    lung1 = [load(DATA / "pyradiomics-lung1" / f"lung1_{k}.nrrd") for k in ("image", "label")]
    donor = chest_phantom(n_tumors=3, seed=0)
    seeds = extract_seeds(*lung1, case_id="lung1") + extract_seeds(donor.image, donor.label, case_id="phantom",
                                                                   lungs=donor.lungs)
    bank = SeedBank.write(seeds, tempfile.mkdtemp())
    host = make_host(load(DATA / "totalseg-chest" / "chest_ct.nii.gz"), host_id="chest")
    config = SynthesisConfig()
    lungs = host.lungs.array > 0
    outside_mm = distance_mm(~lungs, host.image.spacing)
    z = np.flatnonzero(lungs.any(axis=(0, 1)))
    lower = z[0] + (z[-1] - z[0]) / 3.0
    by_id = {s.id: s.record for s in seeds}
    rows, burdens, masses_per_lung, asked = [], [], [], 0
    for i in range(n_cases):
        case = synthesize(host, bank, case_rng(0, i), config)
        asked += case.record["tumors_requested"]
        burdens.append(sum(t["size"]["volume_ml"] for t in case.record["tumors"]))
        per_lung: dict[int, int] = {}
        for k, t in enumerate(case.record["tumors"], start=1):
            mask = case.instances.array == k
            c = measure_contact(mask, host.lungs.array, host.image.affine)
            d = t["size"]["diameter_mm"]
            if d >= config.burden.mass_mm:
                per_lung[t["size"]["lung"]] = per_lung.get(t["size"]["lung"], 0) + 1
            facing = None if c.normal is None or t["pleural_normal"] is None \
                else float(np.dot(c.normal, t["pleural_normal"]))
            rows.append({"d": d, "contact": c.fraction, "facing": facing,
                         "pressed": t["pleural_contact"] is not None,
                         "seed_contact": (by_id[t["seed_id"]]["contact"] or {}).get("fraction", 0.0),
                         "outside_mm": float(outside_mm[mask].max()), "z": t["centre_voxel"][2],
                         "depth": float(host.distance_mm.array[tuple(t["centre_voxel"])])})
        masses_per_lung.append(max(per_lung.values(), default=0))
    d = np.array([r["d"] for r in rows])
    print(f"{n_cases} cases in the chest CT, default config; {len(rows)} of {asked} tumours asked for placed\n")
    print("| size class (mm) | tumours |")
    print("| --- | ---: |")
    for lo, hi in config.sizes.ranges_mm:
        print(f"| {lo:g}-{hi:g} | {int(((d >= lo) & (d < hi)).sum())} |")
    pressed = [r for r in rows if r["pressed"]]
    print(f"\nseeds with pleural contact: {len(pressed)} placed against the pleura; contact in the host "
          f"median {np.median([r['contact'] for r in pressed]):.3f} (the seed's own "
          f"{np.median([r['seed_contact'] for r in pressed]):.3f}), facing the site normal: cosine min "
          f"{min(r['facing'] for r in pressed):.2f}" if pressed else "\nno seed placed against the pleura")
    free = [r for r in rows if not r["pressed"]]
    print(f"free seeds: {len(free)}, pleural contact in the host max {max(r['contact'] for r in free):.3f}"
          if free else "no free seed")
    print(f"label voxels outside the lung mask: at most {max(r['outside_mm'] for r in rows):.2f} mm from it")
    print(f"burden per case: median {np.median(burdens):.1f} ml, max {max(burdens):.1f} ml "
          f"(limit {config.burden.max_total_ml:g}); masses in one lung: at most {max(masses_per_lung)}")
    big = [r for r in rows if r["d"] >= config.burden.mass_mm]
    if big:
        print(f"masses (>= {config.burden.mass_mm:g} mm): {len(big)}; centre in the lower third of the lung "
              f"height: {sum(r['z'] < lower for r in big)}; against the pleura: {sum(r['pressed'] for r in big)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
