"""Realism checks of an inserted tumor: core density, halo, edge sharpness (HU, mm).

* core: mean HU of the tumor voxels more than one voxel inside its surface;
* halo: mean HU in the ring 2-5 mm outside the tumor, after insertion minus before;
* edge: the 10-90 % rise distance (mm) of the mean HU profile across the surface,
  binned by signed distance to the surface.

They run on NumPy boxes; tests and benchmarks use them to compare blending methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..morphology import signed_distance_mm


def core_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels more than one voxel inside the surface (6-connected erosion)."""
    return ndi.binary_erosion(np.asarray(mask, dtype=bool), iterations=1)


def ring_mask(mask: np.ndarray, spacing_mm: tuple[float, float, float],
              inner_mm: float = 2.0, outer_mm: float = 5.0) -> np.ndarray:
    """Voxels between ``inner_mm`` and ``outer_mm`` outside the tumor surface."""
    d = signed_distance_mm(mask, spacing_mm)
    return (d > inner_mm) & (d <= outer_mm)


def rise_distance_mm(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float],
                     bin_mm: float = 0.5, reach_mm: float = 6.0) -> float:
    """10-90 % rise distance (mm) of the radial mean-HU profile across the tumor surface.

    Voxels are binned by signed distance to the surface; the profile's plateau
    levels are the core mean and the 2-5 mm ring mean. Returns NaN when the
    tumor is too small to have a core or the contrast is below 50 HU.
    """
    image = np.asarray(image, dtype=np.float64)
    d = signed_distance_mm(mask, spacing_mm)
    core = core_mask(mask)
    ring = (d > 2.0) & (d <= 5.0)
    if not core.any() or not ring.any():
        return float("nan")
    high, low = image[core].mean(), image[ring].mean()
    if abs(high - low) < 50.0:
        return float("nan")
    edges = np.arange(-reach_mm, reach_mm + bin_mm, bin_mm)
    which = np.digitize(d, edges)
    sums = np.bincount(which.ravel(), weights=image.ravel(), minlength=len(edges) + 1)
    counts = np.bincount(which.ravel(), minlength=len(edges) + 1)
    keep = counts[1:len(edges)] > 0
    centres = 0.5 * (edges[:-1] + edges[1:])[keep]
    profile = (sums[1:len(edges)] / np.maximum(counts[1:len(edges)], 1))[keep]
    frac = (profile - low) / (high - low)  # 1 inside, 0 outside
    frac = np.minimum.accumulate(frac)  # monotone envelope from inside to outside
    d90 = np.interp(0.9, frac[::-1], centres[::-1])
    d10 = np.interp(0.1, frac[::-1], centres[::-1])
    return float(d10 - d90)


@dataclass(frozen=True)
class RealismReport:
    """Realism numbers for one inserted tumor (HU and mm)."""

    core_hu: float
    seed_core_hu: float
    ring_hu_after: float
    ring_hu_before: float
    rise_mm: float

    @property
    def core_error_hu(self) -> float:
        return self.core_hu - self.seed_core_hu

    @property
    def halo_hu(self) -> float:
        return self.ring_hu_after - self.ring_hu_before


def realism(before: np.ndarray, after: np.ndarray, seed_image: np.ndarray, mask: np.ndarray,
            spacing_mm: tuple[float, float, float]) -> RealismReport:
    """Compare a host box before and after insertion of a tumor (``mask``, box voxels).

    ``seed_image`` is the morphed seed on the same box, whose core HU the inserted
    tumor should keep.
    """
    mask = np.asarray(mask, dtype=bool)
    core = core_mask(mask)
    ring = ring_mask(mask, spacing_mm)
    after = np.asarray(after, dtype=np.float64)
    return RealismReport(
        core_hu=float(after[core].mean()),
        seed_core_hu=float(np.asarray(seed_image, dtype=np.float64)[core].mean()),
        ring_hu_after=float(after[ring].mean()),
        ring_hu_before=float(np.asarray(before, dtype=np.float64)[ring].mean()),
        rise_mm=rise_distance_mm(after, mask, spacing_mm),
    )


def evaluate_methods(host: Any, seed_bank: Any, rng: np.random.Generator,
                     methods: tuple[str, ...] | None = None,
                     config: Any = None) -> dict[str, list[RealismReport]]:
    """Insert the same drawn tumors (same seeds, morphs, centres) with each blending method.

    Returns the realism report of every tumor per method, on NumPy hosts. This is
    how the default method was chosen (see ``benchmarks/RESULTS.md``).
    """
    from ..synthesis.case import BLEND_METHODS, SynthesisConfig, sample_placements
    from ..synthesis.insertion import insert
    from ..synthesis.placement import box_slices

    config = config or SynthesisConfig()
    planned, _ = sample_placements(host, seed_bank, rng, config)
    spacing = host.image.spacing
    reports: dict[str, list[RealismReport]] = {}
    for method in methods or BLEND_METHODS:
        image = host.image.array.copy()
        label = np.zeros(image.shape, dtype=np.uint8)
        instances = np.zeros(image.shape, dtype=np.uint16)
        for k, tumor in enumerate(planned, start=1):
            insert(image, label, instances, tumor.morphed, tumor.placement.offset, k, spacing,
                   method=method, hu_range=config.hu_range, **config.blend)
        reports[method] = []
        for tumor in planned:
            region = box_slices(tumor.placement.offset, tumor.morphed.image.shape)
            reports[method].append(realism(host.image.array[region], image[region], tumor.morphed.image.array,
                                           tumor.morphed.mask.array, spacing))
    return reports
