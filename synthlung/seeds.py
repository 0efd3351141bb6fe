"""Tumor seeds: one crop per connected tumor component, and the on-disk seed bank.

A :class:`Seed` is a tumor cut out of a labelled CT with a context margin in mm:
its image crop (HU, the source dtype kept: CT int16 stays int16, exact), the
component's mask (uint8, other components zeroed), a soft partial-volume mask
and a ``record`` of measurements and provenance. All three volumes share one
affine, the crop's, so the seed's world position is known.

Seed bank layout (``OUT``)::

    OUT/index.json          schema below, rewritten atomically after each case
    OUT/seeds/<seed_id>.npz arrays image, mask, soft_mask, affine (one file per seed)

``index.json`` (``schema_version`` 1)::

    {"schema_version": 1, "synthlung_version": "0.1.0",
     "cases": {"<case_id>": {"source": {...}, "params": {"margin_mm": 10.0,
                              "min_volume_mm3": 30.0}, "seeds": ["<seed_id>", ...]}},
     "seeds": [{"seed_id": ..., "file": "seeds/<seed_id>.npz", <record fields>}, ...]}

Record fields: ``seed_id``, ``case_id``, ``source`` (file paths and sha256s as
given), ``component`` (label number of the 26-connected component in the
source label, canonical order), ``n_voxels``, ``volume_mm3``,
``equivalent_diameter_mm`` (of the sphere of equal volume), ``hu_mean`` /
``hu_std`` (inside the mask), ``bbox_lo`` / ``bbox_hi`` (component box in
source voxels, hi exclusive), ``crop_lo`` / ``crop_hi`` (crop box in source
voxels), ``centroid_mm`` (world RAS), ``spacing_mm``, ``margin_mm``,
``min_volume_mm3``, ``clipped`` (the crop was cut by the volume edge) and ``crop_shape``.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ._version import __version__
from .atomic import atomic_path, read_json_index, write_json
from .backend import asnumpy
from .components import component_stats, label as label_components
from .errors import InputError
from .morphology import signed_distance_mm
from .volume import Volume

SCHEMA_VERSION = 1
INDEX_NAME = "index.json"


@dataclass(frozen=True, eq=False)
class Seed:
    """One tumor: ``image`` (HU, source dtype), ``mask`` (uint8 0/1), ``soft_mask`` (float32 in [0, 1]).

    ``soft_mask`` ramps from 0 to 1 over 2 x the finest spacing (mm) across the
    boundary (see :func:`soft_mask`); ``soft_mask >= 0.5`` equals ``mask`` exactly, so resampling the soft mask
    with an identity transform and thresholding at 0.5 gives the mask back.
    """

    image: Volume
    mask: Volume
    soft_mask: Volume
    record: dict[str, Any]

    @property
    def affine(self) -> np.ndarray:
        """The crop's voxel -> world RAS mm matrix (shared by image, mask and soft_mask)."""
        return self.image.affine

    @property
    def id(self) -> str:
        return self.record["seed_id"]


def soft_mask(mask: np.ndarray, spacing: tuple[float, float, float], width_mm: float) -> np.ndarray:
    """Partial-volume mask: a linear ramp of the signed distance to the boundary, float32 in [0, 1].

    The boundary distance of a voxel is half the distance (mm) to the nearest
    voxel of the other class; the ramp is 0.5 on the boundary and reaches 0/1
    ``width_mm / 2`` away from it. Mask voxels are >= 0.5, others < 0.5.
    """
    inside = mask.astype(bool)
    if not inside.any():
        return np.zeros(mask.shape, np.float32)
    if inside.all():
        return np.ones(mask.shape, np.float32)
    phi = -0.5 * signed_distance_mm(inside, spacing)
    soft = np.clip(0.5 + phi / width_mm, 0.0, 1.0).astype(np.float32)
    # float32 rounding is monotone, so mask voxels stay >= 0.5; keep the others below it
    soft[~inside & (soft >= 0.5)] = np.nextafter(np.float32(0.5), np.float32(0))
    return soft


def _check_pair(image: Volume, label: Volume) -> None:
    if image.shape != label.shape:
        raise InputError(f"label shape {label.shape} differs from image shape {image.shape}")
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise InputError("label and image affines differ: they do not lie on one voxel grid")


def seed_params(margin_mm: float, min_volume_mm3: float) -> dict[str, float]:
    """The extraction parameters stored per case (a rerun with other values redoes the case)."""
    return {"margin_mm": float(margin_mm), "min_volume_mm3": float(min_volume_mm3)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def extract_seeds(image: Volume, label: Volume, margin_mm: float = 10.0, min_volume_mm3: float = 30.0,
                  case_id: str | None = None, source: dict | None = None) -> list[Seed]:
    """One seed per 26-connected component of ``label > 0``; components under ``min_volume_mm3`` dropped.

    The crop is the component's box grown by ``margin_mm`` on each side (per
    axis: ``ceil(margin_mm / spacing)`` voxels), clipped to the volume.
    ``case_id`` and ``source`` (e.g. file paths and sha256s) go into each record.
    Volumes are read on the host (CuPy volumes are copied explicitly).
    """
    _check_pair(image, label)
    if margin_mm < 0 or min_volume_mm3 < 0:
        raise InputError(f"margin_mm={margin_mm}, min_volume_mm3={min_volume_mm3}: must be >= 0")
    img = asnumpy(image.array)
    tumor = asnumpy(label.array) > 0
    labels, n = label_components(tumor, 26)
    stats = component_stats(labels, n)
    spacing = image.spacing
    voxel_mm3 = abs(float(np.linalg.det(image.affine[:3, :3])))
    margin = np.array([math.ceil(margin_mm / s - 1e-9) for s in spacing], dtype=np.int64)
    shape = np.array(image.shape)
    case_id = case_id or "case"
    seeds = []
    for i in range(n):
        count = int(stats.counts[i])
        volume = count * voxel_mm3
        if volume < min_volume_mm3:
            continue
        component = i + 1
        lo, hi = stats.bbox_lo[i], stats.bbox_hi[i]
        want_lo, want_hi = lo - margin, hi + margin
        crop_lo, crop_hi = np.maximum(want_lo, 0), np.minimum(want_hi, shape)
        box = tuple(slice(a, b) for a, b in zip(crop_lo, crop_hi))
        crop = image.crop(crop_lo, crop_hi)
        mask = (labels[box] == component).astype(np.uint8)
        values = img[box][mask.astype(bool)].astype(np.float64)
        seed_id = f"{_safe(case_id)}-c{component:03d}"
        record = {
            "seed_id": seed_id, "case_id": case_id, "source": source or {}, "component": component,
            "n_voxels": count, "volume_mm3": volume,
            "equivalent_diameter_mm": (6.0 * volume / math.pi) ** (1 / 3),
            "hu_mean": float(values.mean()), "hu_std": float(values.std()),
            "bbox_lo": lo.tolist(), "bbox_hi": hi.tolist(),
            "crop_lo": crop_lo.tolist(), "crop_hi": crop_hi.tolist(),
            "centroid_mm": image.voxel_to_world(stats.centroid[i]).tolist(),
            "spacing_mm": list(spacing), **seed_params(margin_mm, min_volume_mm3),
            "clipped": bool((want_lo < 0).any() or (want_hi > shape).any()),
            "crop_shape": list(mask.shape),
        }
        seeds.append(Seed(image=Volume(np.ascontiguousarray(img[box]), crop.affine),
                          mask=Volume(mask, crop.affine),
                          soft_mask=Volume(soft_mask(mask, spacing, 2 * min(spacing)), crop.affine),
                          record=record))
    return seeds


class SeedBank:
    """A folder of seeds: ``index.json`` plus one ``.npz`` per seed (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike, index: dict[str, Any]):
        self.root = Path(root)
        self._index = index
        self._by_id = {r["seed_id"]: k for k, r in enumerate(index["seeds"])}

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False) -> "SeedBank":
        """Open the bank in folder ``path`` (or its ``index.json``); ``create`` starts an empty one."""
        path = Path(path)
        root = path.parent if path.name == INDEX_NAME else path
        index_path = root / INDEX_NAME
        if not index_path.exists():
            if create:
                return cls(root, {"schema_version": SCHEMA_VERSION, "synthlung_version": __version__,
                                  "cases": {}, "seeds": []})
            raise InputError(f"{index_path}: no seed bank index here")
        return cls(root, read_json_index(index_path, "seed bank index", SCHEMA_VERSION))

    @classmethod
    def write(cls, seeds: Iterable[Seed], out: str | os.PathLike) -> "SeedBank":
        """Add ``seeds`` to the bank at ``out`` (created if missing); returns the bank."""
        bank = cls.open(out, create=True)
        bank.add(list(seeds))
        return bank

    def __len__(self) -> int:
        return len(self._index["seeds"])

    @property
    def ids(self) -> list[str]:
        return [r["seed_id"] for r in self._index["seeds"]]

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._index["seeds"])

    @property
    def cases(self) -> dict[str, dict[str, Any]]:
        """Per case: its ``source``, the ``params`` it was extracted with and its seed ids."""
        return dict(self._index["cases"])

    def __getitem__(self, i: int) -> Seed:
        return self._load(self._index["seeds"][i])

    def get(self, seed_id: str) -> Seed:
        """Load the seed named ``seed_id`` (one file read)."""
        if seed_id not in self._by_id:
            raise InputError(f"{self.root}: no seed {seed_id!r} in the bank")
        return self[self._by_id[seed_id]]

    def is_done(self, case_id: str, source: dict, params: dict) -> bool:
        """True when ``case_id`` was extracted from files of the same sha256s with the same parameters."""
        case = self._index["cases"].get(case_id)
        return (case is not None and case["params"] == params
                and case["source"].get("sha256", case["source"]) == source.get("sha256", source))

    def add(self, seeds: list[Seed], case_id: str | None = None, source: dict | None = None,
            params: dict | None = None) -> None:
        """Write ``seeds`` and record their case(s); a case's previous seeds are replaced.

        ``case_id``/``source``/``params`` register a case even when it gave no seed.
        """
        cases = {s.record["case_id"]: (s.record["source"],
                                       seed_params(s.record["margin_mm"], s.record["min_volume_mm3"]))
                 for s in seeds}
        if case_id is not None:
            cases[case_id] = (source or {}, params or {})
        for seed in seeds:
            self._write_seed(seed)
        keep = [r for r in self._index["seeds"] if r["case_id"] not in cases]
        new = [dict(s.record, file=f"seeds/{s.id}.npz") for s in seeds]
        stale = {r["file"] for r in self._index["seeds"]} - {r["file"] for r in keep + new}
        self._index["seeds"] = keep + new
        for cid, (src, prm) in cases.items():
            self._index["cases"][cid] = {"source": src, "params": prm,
                                         "seeds": [s.id for s in seeds if s.record["case_id"] == cid]}
        self._by_id = {r["seed_id"]: k for k, r in enumerate(self._index["seeds"])}
        write_json(self.root / INDEX_NAME, self._index)
        for name in stale:  # seeds of a redone case that it no longer has
            (self.root / name).unlink(missing_ok=True)

    def _write_seed(self, seed: Seed) -> None:
        with atomic_path(self.root / "seeds" / f"{seed.id}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, image=seed.image.array, mask=seed.mask.array,
                                soft_mask=seed.soft_mask.array, affine=seed.affine)

    def _load(self, record: dict[str, Any]) -> Seed:
        path = self.root / record["file"]
        try:
            with np.load(path) as data:
                affine = data["affine"]
                return Seed(image=Volume(data["image"], affine), mask=Volume(data["mask"], affine),
                            soft_mask=Volume(data["soft_mask"], affine),
                            record={k: v for k, v in record.items() if k != "file"})
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: cannot read seed file: {exc}") from exc

    def __repr__(self) -> str:
        return f"SeedBank({str(self.root)!r}, {len(self)} seeds, {len(self._index['cases'])} cases)"


@dataclass
class BankReport:
    """What :func:`build_seed_bank` did: case ids per outcome, and notes (skips, errors)."""

    done: list[str]
    reused: list[str]
    skipped: list[str]
    failed: list[str]
    notes: list[str]


def build_seed_bank(catalog: str | os.PathLike, out: str | os.PathLike, margin_mm: float = 10.0,
                    min_volume_mm3: float = 30.0, skip_bad: bool = False,
                    progress: Callable[[int, int, str], None] | None = None) -> BankReport:
    """Extract the seeds of every labelled case of ``catalog`` (a ``catalog.json``) into the bank ``out``.

    Rerunnable: a case already in the bank with the same file hashes and
    parameters is not redone. Unlabelled and failed-ingest cases are skipped
    with a note. A case that cannot be read raises, or with ``skip_bad`` is
    noted and left out. ``progress(done, total, case_id)`` is called per case.
    """
    from .datasets import load_catalog
    from .io import load
    cases = load_catalog(catalog).cases
    bank = SeedBank.open(out, create=True)
    params = seed_params(margin_mm, min_volume_mm3)
    report = BankReport([], [], [], [], [])
    for k, case in enumerate(cases):
        if progress is not None:
            progress(k, len(cases), case.id)
        if not case.ok or case.label is None:
            report.skipped.append(case.id)
            report.notes.append(f"case {case.id}: " + ("failed at ingest" if not case.ok else "no label"))
            continue
        source = {"image": str(case.image_path()), "label": str(case.label_path()), "sha256": case.sha256}
        if bank.is_done(case.id, source, params):
            report.reused.append(case.id)
            continue
        try:
            seeds = extract_seeds(load(case.image_path()), load(case.label_path()), margin_mm,
                                  min_volume_mm3, case_id=case.id, source=source)
        except InputError as exc:
            if not skip_bad:
                raise InputError(f"case {case.id}: {exc}") from exc
            report.failed.append(case.id)
            report.notes.append(f"case {case.id}: {exc}")
            continue
        bank.add(seeds, case.id, source, params)
        report.done.append(case.id)
    if progress is not None:
        progress(len(cases), len(cases), "")
    return report
