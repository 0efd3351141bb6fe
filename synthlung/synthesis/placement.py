"""Where inserted tumors go: rejection sampling of centres inside a host's placement zone.

A placement is accepted when

* at least ``min_inside_fraction`` of the morphed tumor's voxels lie inside the lung,
* the tumor, grown by ``separation_mm``, touches no tumor already there (the host's
  own or one placed earlier in the same case),
* the whole blending box (the morphed seed's box) lies inside the host volume.

Juxtapleural placement (a tumor touching the pleura) is drawn with probability
``juxtapleural_probability``: the centre is then taken where the distance to the
lung boundary is a little below the tumor's radius, otherwise at least one radius deep. Every loop is bounded: a tumor that
does not fit in ``max_tries`` draws is reported, never retried forever.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import array_module
from ..morphology import ndimage_for

JUXTA_MIN_DEPTH = 0.6
"""Shallowest juxtapleural centre, in tumor radii from the lung boundary."""


@dataclass(frozen=True)
class PlacementRules:
    """Acceptance rules for a tumor centre (lengths in mm)."""

    min_inside_fraction: float = 0.95
    separation_mm: float = 3.0
    juxtapleural_probability: float = 0.0
    max_tries: int = 60


@dataclass(frozen=True)
class Placement:
    """An accepted position: the morphed seed's box starts at host voxel ``offset``."""

    offset: tuple[int, int, int]
    centre_voxel: tuple[int, int, int]
    juxtapleural: bool
    inside_fraction: float
    tries: int


def box_slices(offset: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """Host slices of a box of ``shape`` voxels starting at ``offset``."""
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(offset, shape))


def separation_voxels(spacing_mm: tuple[float, float, float], separation_mm: float) -> np.ndarray:
    """Per-axis box growth (voxels) that covers ``separation_mm`` at this spacing."""
    return np.ceil(separation_mm / np.asarray(spacing_mm, dtype=np.float64)).astype(np.int64)


class CentreSampler:
    """Draws candidate tumor centres from a host's zone, uniformly over zone voxels.

    The flat indices of the zone are computed once per host; each draw is one
    integer from the case's generator.
    """

    def __init__(self, zone: Any, distance_mm: Any):
        xp = array_module(zone)
        self.shape = tuple(int(s) for s in zone.shape)
        self.distance_mm = distance_mm
        self.candidates = xp.flatnonzero(zone.ravel())
        self.size = int(self.candidates.size)

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """One zone voxel, chosen with ``rng``."""
        flat = int(self.candidates[int(rng.integers(self.size))])
        return tuple(int(v) for v in np.unravel_index(flat, self.shape))


def try_place(mask: Any, centre_in_box: tuple[int, int, int], centre: tuple[int, int, int],
              lungs: Any, occupied: Any, grow: np.ndarray) -> tuple[tuple[int, int, int] | None, float]:
    """Test one centre. Returns (offset, inside fraction) or (None, fraction) if rejected.

    ``mask`` is the morphed tumor mask (box voxels), ``lungs`` a boolean host lung
    mask, ``occupied`` the boolean host map of tumors already present.
    """
    shape = lungs.shape
    offset = tuple(int(c) - int(m) for c, m in zip(centre, centre_in_box))
    if any(o < 0 or o + s > n for o, s, n in zip(offset, mask.shape, shape)):
        return None, 0.0
    region = box_slices(offset, mask.shape)
    n_tumor = float(mask.sum())
    inside = float((mask & lungs[region]).sum()) / max(n_tumor, 1.0)
    lo = [max(o - int(g), 0) for o, g in zip(offset, grow)]
    hi = [min(o + s + int(g), n) for o, s, g, n in zip(offset, mask.shape, grow, shape)]
    near = occupied[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    if bool(near.any()):
        xp = array_module(mask)
        grown = xp.zeros(near.shape, dtype=bool)
        a = [o - l for o, l in zip(offset, lo)]
        grown[a[0]:a[0] + mask.shape[0], a[1]:a[1] + mask.shape[1], a[2]:a[2] + mask.shape[2]] = mask
        grown = _dilate_box(grown, grow)
        if bool((grown & near).any()):
            return None, inside
    return offset, inside


def _dilate_box(mask: Any, grow: np.ndarray) -> Any:
    """Dilate a boolean mask by a box of half-size ``grow`` voxels per axis."""
    ndi = ndimage_for(array_module(mask))
    return ndi.maximum_filter(mask, size=tuple(2 * int(g) + 1 for g in grow))


def sample_placement(mask: Any, centre_in_box: tuple[int, int, int], radius_mm: float,
                     sampler: CentreSampler, lungs: Any, occupied: Any,
                     spacing_mm: tuple[float, float, float], rules: PlacementRules,
                     rng: np.random.Generator) -> Placement | None:
    """Rejection-sample a centre for one morphed tumor; ``None`` when nothing fits.

    ``radius_mm`` is the tumor's equivalent radius. An ordinary placement puts the
    centre at least that deep in the lung (the tumor clear of the pleura); a
    juxtapleural one between ``JUXTA_MIN_DEPTH`` and 1 radius deep, so that the
    tumor reaches the pleura while most of it stays in the lung (a sphere
    0.75 radius deep has 97 % of its volume inside).
    """
    if sampler.size == 0:
        return None
    juxta = bool(rng.random() < rules.juxtapleural_probability)
    grow = separation_voxels(spacing_mm, rules.separation_mm)
    for attempt in range(1, rules.max_tries + 1):
        centre = sampler.draw(rng)
        depth = float(sampler.distance_mm[centre])
        if juxta != (depth < radius_mm) or (juxta and depth < JUXTA_MIN_DEPTH * radius_mm):
            continue
        offset, inside = try_place(mask, centre_in_box, centre, lungs, occupied, grow)
        if offset is not None and inside >= rules.min_inside_fraction:
            return Placement(offset, centre, juxta, inside, attempt)
    return None
