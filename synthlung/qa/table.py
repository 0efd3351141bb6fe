"""The per-tumour realism table of a generated dataset, its summary and its outliers.

One row per inserted tumour, measured on the case's files against its host
before insertion and its seed morphed again from the record (HU, mm, ml), with
the measures of :mod:`synthlung.qa.realism`: core HU against the morphed
seed's, the halo (2-5 mm ring, after minus before) and the unlabelled change
0-5 mm outside, the 10-90 % edge rise against the seed's own in its scan and
along / across the seed's slice axis, the core's noise against the host's soft
tissue (noise ratio) and the overlap of their noise spectra (in-plane, along
the scan axis), the HU change per mm along / across the slice axis, vessel
continuity, the share of the tumour inside the host's lungs, its pleural
contact in the host (:mod:`synthlung.seeds.contact`), volume and diameter.

An outlier is a tumour outside a :data:`CHECKS` range (the realism targets) or,
with at least five tumours, more than 3.5 robust standard deviations (1.4826
median absolute deviations, at least :data:`ROBUST_FLOOR`) from the dataset's
median of a realism measure (sizes and places vary by design and are not
flagged). Measures a tumour is too small for (no voxel more than one voxel
inside its surface, so no core; too few voxels deep inside for a noise
spectrum) are left empty.
"""
from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path, write_json
from ..seeds.contact import measure_contact
from ..synthesis.morphing import MorphParams, morph
from .generated import GeneratedDataset
from .realism import highpass_noise_hu, realism, rise_distance_mm, slice_axis_after

CHECKS = {"core_error_hu": (-30.0, 30.0), "halo_hu": (-20.0, 20.0), "inside_lung_fraction": (0.95, 1.0),
          "rise_vs_seed": (0.5, 2.0), "noise_ratio": (0.75, 1.33), "hu_change_along_across": (0.0, 1.1),
          "rise_along_across": (0.0, 1.15)}
"""Per measure, the range a realistic tumour stays in (HU, fraction, ratio; the last three are issue 10's targets)."""
ROBUST_Z = 3.5
ROBUST_FLOOR = {"core_error_hu": 2.0, "halo_hu": 2.0, "rise_vs_seed": 0.05, "noise_ratio": 0.05,
                "hu_change_along_across": 0.05, "rise_along_across": 0.05, "outside_change_hu": 2.0}
"""Realism measures checked for robust outliers, with the smallest spread (HU, ratio) a flag needs."""
ID_COLUMNS = ("case", "tumour", "seed_id", "host", "method", "contact_site", "seed_contact_site")


def _box_affine(affine: np.ndarray, lo: list[int]) -> np.ndarray:
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3, 3] = out[:3, :3] @ np.asarray(lo, dtype=np.float64) + out[:3, 3]
    return out


def host_soft_tissue(image: Any) -> tuple[float, Any]:
    """A host's soft-tissue high-pass noise (HU) and noise spectrum, measured as the realism measures do."""
    from ..hosts.noise import measure_spectrum, scan_axis, soft_tissue_mask
    array = np.asarray(image.array)
    tissue = soft_tissue_mask(array, image.spacing)
    return highpass_noise_hu(array, tissue), measure_spectrum(array, tissue, image.spacing, scan_axis(image.affine))


def tumour_rows(dataset: GeneratedDataset) -> list[dict[str, Any]]:
    """The table's rows, in case and tumour order."""
    rows: list[dict[str, Any]] = []
    seed_rise: dict[str, float] = {}
    tissue: dict[str, tuple[float, Any]] = {}
    records = sorted(dataset.records(), key=lambda r: (r["host"]["id"], r.get("case", "")))
    for record in records:
        if not record.get("tumors"):
            continue
        image = dataset.volume(record, "image")
        instances = np.asarray(dataset.volume(record, "instances").array)
        before, lungs = dataset.host(record["host"]["id"])
        if record["host"]["id"] not in tissue:
            tissue[record["host"]["id"]] = host_soft_tissue(before)
        host_noise_hu, spectrum = tissue[record["host"]["id"]]
        spacing = image.spacing
        voxel_ml = float(np.prod(spacing)) / 1000.0
        for k, t in enumerate(record["tumors"], start=1):
            box = tuple(slice(o, o + s) for o, s in zip(t["offset_voxels"], t["box_shape"]))
            mask = instances[box] == k
            seed = dataset.seed_bank.get(t["seed_id"])
            params = MorphParams.from_record(t["morph"]["params"])
            morphed = morph(seed, params, target=image.affine)
            axis = slice_axis_after(seed.image.affine, params.linear())
            args = (np.asarray(before.array[box]), np.asarray(image.array[box]), morphed.image.array, mask,
                    spacing, image.affine, axis)
            with warnings.catch_warnings():  # a tumour too small for a core gives NaN, said in the docstring
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    rep = realism(*args, spectrum)
                except InputError:  # too few voxels deep inside for a noise spectrum: no overlaps
                    rep = realism(*args)
            contact = measure_contact(mask, np.asarray(lungs.array[box]), _box_affine(image.affine,
                                                                                        [b.start for b in box]))
            if seed.id not in seed_rise:
                seed_rise[seed.id] = rise_distance_mm(seed.image.array, seed.mask.array, seed.image.spacing)
            volume_ml = float(mask.sum()) * voxel_ml
            own = (seed.record.get("contact") or {}).get("site")
            rows.append({
                "case": record.get("case"), "tumour": k, "seed_id": seed.id, "host": record["host"]["id"],
                "method": t["blend"]["method"],
                "volume_ml": volume_ml, "diameter_mm": (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0),
                "inside_lung_fraction": contact.inside_lung_fraction,
                "pleural_contact": contact.fraction, "contact_site": contact.site, "seed_contact_site": own,
                "core_hu": rep.core_hu, "seed_core_hu": rep.seed_core_hu, "core_error_hu": rep.core_error_hu,
                "halo_hu": rep.halo_hu, "rise_mm": rep.rise_mm, "seed_rise_mm": seed_rise[seed.id],
                "rise_vs_seed": rep.rise_mm / seed_rise[seed.id] if seed_rise[seed.id] > 0 else float("nan"),
                "rise_along_mm": rep.rise_along_mm, "rise_across_mm": rep.rise_across_mm,
                "rise_along_across": rep.rise_ratio, "hu_change_along_across": rep.hu_change_ratio,
                "noise_hu": rep.noise_hu, "host_tissue_noise_hu": host_noise_hu,
                "noise_ratio": rep.noise_hu / host_noise_hu if host_noise_hu > 0 else float("nan"),
                "nps_overlap_inplane": rep.inplane_overlap, "nps_overlap_axial": rep.axial_overlap,
                "vessel_continuity": rep.vessel_continuity, "outside_change_hu": rep.outside_change_hu,
            })
    return rows


def _numeric(rows: list[dict], column: str) -> np.ndarray:
    return np.array([float(r[column]) if r[column] is not None else np.nan for r in rows], dtype=np.float64)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measure: count, median, 5th and 95th percentiles, min, max; and the outliers with the reason."""
    columns = [c for c in (rows[0] if rows else {}) if c not in ID_COLUMNS and c != "tumour"]
    measures, outliers = {}, []
    for column in columns:
        values = _numeric(rows, column)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            measures[column] = {"n": 0}
            continue
        med = float(np.median(finite))
        measures[column] = {"n": int(finite.size), "median": med, "p05": float(np.percentile(finite, 5)),
                            "p95": float(np.percentile(finite, 95)), "min": float(finite.min()),
                            "max": float(finite.max())}
        scale = max(1.4826 * float(np.median(np.abs(finite - med))), ROBUST_FLOOR.get(column, np.inf))
        for row, v in zip(rows, values):
            if not np.isfinite(v):
                continue
            why = None
            if column in CHECKS and not CHECKS[column][0] <= v <= CHECKS[column][1]:
                why = f"outside {CHECKS[column][0]:g}..{CHECKS[column][1]:g}"
            elif finite.size >= 5 and np.isfinite(scale) and abs(v - med) > ROBUST_Z * scale:
                why = f"{abs(v - med) / scale:.1f} robust SD from the median {med:.3g}"
            if why:
                outliers.append({"case": row["case"], "tumour": row["tumour"], "seed_id": row["seed_id"],
                                 "measure": column, "value": v, "why": why})
    return {"n_tumours": len(rows), "n_cases": len({r["case"] for r in rows}), "checks": CHECKS,
            "measures": measures, "outliers": outliers}


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a readable markdown page."""
    lines = [f"# Realism of {summary['n_tumours']} inserted tumours in {summary['n_cases']} cases", "",
             "| measure | n | median | 5 % | 95 % | min | max | realistic range |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, m in summary["measures"].items():
        if m["n"] == 0:
            continue
        rng = CHECKS.get(name)
        lines.append(f"| {name} | {m['n']} | {m['median']:.3g} | {m['p05']:.3g} | {m['p95']:.3g} | "
                     f"{m['min']:.3g} | {m['max']:.3g} | {'' if rng is None else f'{rng[0]:g} .. {rng[1]:g}'} |")
    lines += ["", f"## Outliers ({len(summary['outliers'])})", ""]
    lines += [f"- {o['case']} tumour {o['tumour']} ({o['seed_id']}): {o['measure']} = {o['value']:.3g}, {o['why']}"
              for o in summary["outliers"]] or ["none"]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Write ``tumours.csv`` and ``tumours.json`` (the rows), ``summary.json`` and ``summary.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "tumours.csv", "json": out / "tumours.json",
             "summary_json": out / "summary.json", "summary_md": out / "summary.md"}
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(text.getvalue())
    write_json(paths["json"], [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in r.items()} for r in rows])
    summary = summarise(rows)
    write_json(paths["summary_json"], summary)
    with atomic_path(paths["summary_md"]) as tmp:
        tmp.write_text(summary_markdown(summary))
    return paths
