"""Tumor seeds: one crop per connected tumor component of a labelled CT.

A :class:`Seed` is a tumor cut out of a labelled CT with a context margin in mm:
its image crop (HU, the source dtype kept: CT int16 stays int16, exact), the
component's mask (uint8, other components zeroed), a soft partial-volume mask
and a ``record`` of measurements and provenance. All three volumes share one
affine, the crop's, so the seed's world position is known.

Record fields: ``seed_id``, ``case_id``, ``source`` (file paths and sha256s as
given), ``component`` (label number of the 26-connected component in the
source label, canonical order), ``n_voxels``, ``volume_mm3``,
``equivalent_diameter_mm`` (of the sphere of equal volume), ``hu_mean`` /
``hu_std`` (inside the mask), ``bbox_lo`` / ``bbox_hi`` (component box in
source voxels, hi exclusive), ``crop_lo`` / ``crop_hi`` (crop box in source
voxels), ``centroid_mm`` (world RAS), ``spacing_mm``, ``margin_mm``,
``min_volume_mm3``, ``clipped`` (the crop was cut by the volume edge), ``crop_shape``
(source voxels), ``contact`` (pleural contact in the source scan, :mod:`synthlung.seeds.contact`;
None with a ``contact_note`` when the source's lungs could not be segmented),
``reslice_mm`` (the largest slice spacing asked for, or None), ``resliced``
(``{"axis", "factor"}`` when a thick-slice crop was resliced, else None; see
:mod:`synthlung.seeds.reslice`) and ``seed_spacing_mm`` (the seed volumes' spacing).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import asnumpy
from ..components import component_stats
from ..components import label as label_components
from ..errors import InputError
from ..morphology import signed_distance_mm
from ..volume import Volume, same_grid
from .contact import measure_contact
from .reslice import RESLICE_MM, needs_reslice, reslice_stack


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
    if not same_grid(image.affine, label.affine):
        raise InputError("label and image affines differ: they do not lie on one voxel grid")


def seed_params(margin_mm: float, min_volume_mm3: float, reslice_mm: float | None = RESLICE_MM) -> dict:
    """The extraction parameters stored per case (a rerun with other values redoes the case)."""
    return {"margin_mm": float(margin_mm), "min_volume_mm3": float(min_volume_mm3),
            "reslice_mm": None if reslice_mm is None else float(reslice_mm)}


def _safe(name: str) -> str:
    """``name`` made file-name safe; a changed name gets 8 hex digits of its sha1, so that
    ids differing only in unsafe characters ("a b", "a_b") never share a seed file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return safe if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _source_lungs(image: Volume, lungs: Volume | None, case_id: str) -> tuple[np.ndarray | None, str | None]:
    """The source scan's lung labels (given, or segmented), or None and the reason."""
    if lungs is not None:
        if lungs.shape != image.shape:
            raise InputError(f"lung mask shape {lungs.shape} differs from image shape {image.shape}")
        return asnumpy(lungs.array), None
    from ..hosts.lungseg import segment_lungs
    try:
        return asnumpy(segment_lungs(image, name=case_id, allow_one_lung=True).array), None
    except InputError as exc:
        return None, f"no pleural contact measured: {exc}"


def extract_seeds(image: Volume, label: Volume, margin_mm: float = 10.0, min_volume_mm3: float = 30.0,
                  case_id: str | None = None, source: dict | None = None,
                  lungs: Volume | None = None, reslice_mm: float | None = RESLICE_MM) -> list[Seed]:
    """One seed per 26-connected component of ``label > 0``; components under ``min_volume_mm3`` dropped.

    The crop is the component's box grown by ``margin_mm`` on each side (per
    axis: ``ceil(margin_mm / spacing)`` voxels), clipped to the volume. A crop
    whose slices are thicker than twice its finest spacing and than ``reslice_mm``
    is resliced to slices of at most ``reslice_mm`` (shape-based interpolation,
    :func:`synthlung.seeds.reslice.reslice_stack`); None keeps every crop as it is.
    ``case_id`` and ``source`` (e.g. file paths and sha256s) go into each record.
    ``lungs`` (0/1 left/2 right, the image's grid) gives the source's lungs for the
    pleural contact; without it they are segmented (:func:`synthlung.segment_lungs`).
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
    lung_labels, contact_note = _source_lungs(image, lungs, case_id) if n else (None, None)
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
            "contact": None if lung_labels is None else
            measure_contact(mask, lung_labels[box], crop.affine).to_record(),
            "reslice_mm": seed_params(0, 0, reslice_mm)["reslice_mm"],
            "resliced": None, "seed_spacing_mm": list(spacing),
        }
        if contact_note:
            record["contact_note"] = contact_note
        pixels, affine, seed_spacing = np.ascontiguousarray(img[box]), crop.affine, spacing
        if needs_reslice(spacing, reslice_mm):  # after the contact: that is the source's
            fine, mask, axis, k = reslice_stack(pixels, mask, spacing, reslice_mm)
            if np.issubdtype(pixels.dtype, np.integer):
                fine = np.rint(fine)
            pixels = fine.astype(pixels.dtype)
            affine = crop.affine.copy()
            affine[:3, axis] /= k
            seed_spacing = tuple(s / k if a == axis else s for a, s in enumerate(spacing))
            record.update(resliced={"axis": axis, "factor": k}, seed_spacing_mm=list(seed_spacing))
        seeds.append(Seed(image=Volume(pixels, affine), mask=Volume(mask, affine),
                          soft_mask=Volume(soft_mask(mask, seed_spacing, 2 * min(seed_spacing)), affine),
                          record=record))
    return seeds
