"""Where inserted tumors go: rejection sampling of centres inside a host's placement zone.

A placement is accepted when

* at least ``min_inside_fraction`` of the morphed tumor's voxels lie inside the lung,
* no tumor voxel lies more than ``max_outside_mm`` outside the lung (nothing runs
  past the pleura into the chest wall; the margin is the partial-volume edge),
* the tumor, grown by ``separation_mm``, touches no tumor already there (the host's
  own or one placed earlier in the same case),
* the whole blending box (the morphed seed's box) lies inside the host volume.

Seeds that touched the pleura in their own scan (contact fraction at least
``contact_min_fraction``, :mod:`synthlung.seeds.contact`) go **against the
pleura**: a site is drawn on the host's lung surface where the outward normal
(minus the gradient of the distance to the lung boundary) is within 60 degrees
(cosine ``contact_alignment``) of the seed's own contact normal, so that a
tumour from the chest wall goes to a chest wall and one from the diaphragm to a
lung base; the seed is rotated so that its contact normal points along the
host's (:func:`rotation_aligning`, a random twist about it) and pressed onto
the pleura (:func:`place_against_pleura`): what would lie beyond the lung, at
most ``pleural_clip_fraction`` of the tumour, is cut off where the host's wall
begins (soft tissue above ``wall_hu``), so it flattens against the wall as real
juxtapleural tumours do and never runs into it. The place is kept when the
tumour's contact measured in the host is at least ``contact_keep`` of the
seed's own (and ``contact_min_fraction``), facing within 60 degrees of the
site's normal. Free seeds go into parenchyma, at least one radius deep; a share
``juxtapleural_probability`` of them is taken 0.6-1 radius deep instead.
Every loop is bounded: a tumor that does not fit in ``max_tries`` draws is
reported, never retried forever.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import array_module, asnumpy
from ..morphology import ndimage_for, shell_distance_mm

JUXTA_MIN_DEPTH = 0.6
"""Shallowest juxtapleural centre, in tumor radii from the lung boundary."""


@dataclass(frozen=True)
class PlacementRules:
    """Acceptance rules for a tumor centre (lengths in mm)."""

    min_inside_fraction: float = 0.95
    max_outside_mm: float = 2.0
    separation_mm: float = 3.0
    juxtapleural_probability: float = 0.0
    max_tries: int = 60
    contact_min_fraction: float = 0.05
    contact_alignment: float = 0.5
    contact_keep: float = 0.3
    contact_sites: int = 8
    pleural_clip_fraction: float = 0.15
    wall_hu: float = -300.0


@dataclass(frozen=True)
class Placement:
    """An accepted position: the morphed seed's box starts at host voxel ``offset``."""

    offset: tuple[int, int, int]
    centre_voxel: tuple[int, int, int]
    juxtapleural: bool
    inside_fraction: float
    tries: int
    pleural_normal: tuple[float, float, float] | None = None
    """Host's outward lung normal (world RAS) at the site, for a seed placed against the pleura."""
    contact: dict | None = None
    """Its pleural contact measured in the host (:meth:`synthlung.seeds.contact.Contact.to_record`)."""


def box_slices(offset: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """Host slices of a box of ``shape`` voxels starting at ``offset``."""
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(offset, shape))


def separation_voxels(spacing_mm: tuple[float, float, float], separation_mm: float) -> np.ndarray:
    """Per-axis box growth (voxels) that covers ``separation_mm`` at this spacing."""
    return np.ceil(separation_mm / np.asarray(spacing_mm, dtype=np.float64)).astype(np.int64)


class CentreSampler:
    """Draws candidate tumor centres from a host's zone, uniformly over zone voxels.

    The flat indices of the zone are computed once per host (int32 below 2^31
    voxels: half the memory of NumPy's int64); each draw is one integer from the
    case's generator.
    """

    def __init__(self, zone: Any, distance_mm: Any):
        xp = array_module(zone)
        self.shape = tuple(int(s) for s in zone.shape)
        self.distance_mm = distance_mm
        self.candidates = xp.flatnonzero(zone.ravel()).astype(xp.int32 if zone.size < 2**31 else xp.int64)
        self.size = int(self.candidates.size)

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """One zone voxel, chosen with ``rng``."""
        flat = int(self.candidates[int(rng.integers(self.size))])
        i, rest = divmod(flat, self.shape[1] * self.shape[2])  # np.unravel_index's C order, in ints
        return (i, *divmod(rest, self.shape[2]))


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
    xp = array_module(mask)
    n_tumor = float(xp.count_nonzero(mask))
    inside = float(xp.count_nonzero(mask & lungs[region])) / max(n_tumor, 1.0)
    lo = [max(o - int(g), 0) for o, g in zip(offset, grow)]
    hi = [min(o + s + int(g), n) for o, s, g, n in zip(offset, mask.shape, grow, shape)]
    near = occupied[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    if bool(near.any()):
        grown = xp.zeros(near.shape, dtype=bool)
        a = [o - l for o, l in zip(offset, lo)]
        grown[a[0]:a[0] + mask.shape[0], a[1]:a[1] + mask.shape[1], a[2]:a[2] + mask.shape[2]] = mask
        grown = _dilate_box(grown, grow)
        if bool((grown & near).any()):
            return None, inside
    return offset, inside


def runs_past_lung(mask: Any, lungs_box: Any, spacing_mm: tuple[float, float, float],
                   max_outside_mm: float) -> bool:
    """True when a ``mask`` voxel lies more than ``max_outside_mm`` outside ``lungs_box`` (same box)."""
    outside = mask & ~lungs_box
    if not bool(outside.any()):
        return False
    # a voxel's shell distance in the complement of the lungs is its distance to them, inf beyond the reach
    to_lungs = shell_distance_mm(~lungs_box, spacing_mm, max_outside_mm)
    return bool(array_module(mask).isinf(to_lungs[outside]).any())


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
        if offset is not None and inside >= rules.min_inside_fraction and not runs_past_lung(
                mask, lungs[box_slices(offset, mask.shape)], spacing_mm, rules.max_outside_mm):
            return Placement(offset, centre, juxta, inside, attempt)
    return None


# ---------------------------------------------------------------- against the pleura

def pleural_sites(zone: Any, distance_mm: Any, spacing_mm: tuple[float, float, float]) -> CentreSampler:
    """A sampler of zone voxels on the lung surface (within one coarsest voxel of the boundary)."""
    surface = zone & (distance_mm <= float(max(spacing_mm)) + 1e-3)
    return CentreSampler(surface, distance_mm)


def outward_normal(distance_mm: Any, voxel: tuple[int, int, int], affine: np.ndarray,
                   reach: int = 2) -> np.ndarray | None:
    """Unit outward lung normal (world RAS) at ``voxel``: minus the mean gradient of the distance map
    over the ``2 reach + 1`` voxel cube around it; None where the gradient vanishes."""
    lo = [max(int(v) - reach - 1, 0) for v in voxel]
    hi = [min(int(v) + reach + 2, n) for v, n in zip(voxel, distance_mm.shape)]
    cube = asnumpy(distance_mm[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]).astype(np.float64)
    if min(cube.shape) < 3:
        return None
    grad_vox = np.array([g[1:-1, 1:-1, 1:-1].mean() for g in np.gradient(cube)])  # mm per voxel step
    grad = np.linalg.inv(np.asarray(affine, dtype=np.float64)[:3, :3]).T @ grad_vox
    norm = float(np.linalg.norm(grad))
    return None if norm < 1e-6 else -grad / norm


def rotation_aligning(u: np.ndarray, v: np.ndarray, twist_rad: float) -> np.ndarray:
    """The rotation that takes unit vector ``u`` to unit vector ``v``, then turns by ``twist_rad`` about ``v``."""
    u = np.asarray(u, dtype=np.float64) / np.linalg.norm(u)
    v = np.asarray(v, dtype=np.float64) / np.linalg.norm(v)
    axis = np.cross(u, v)
    s, c = float(np.linalg.norm(axis)), float(np.dot(u, v))
    if s < 1e-9:  # parallel or opposite: any axis normal to u
        axis = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
        s, axis = 0.0, axis / np.linalg.norm(axis)
        align = np.eye(3) if c > 0 else 2.0 * np.outer(axis, axis) - np.eye(3)
    else:
        align = _rodrigues(axis / s, math.atan2(s, c))
    return _rodrigues(v, twist_rad) @ align


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def place_against_pleura(mask: Any, centre_in_box: tuple[int, int, int], site: tuple[int, int, int],
                         normal: np.ndarray, affine: np.ndarray, lungs: Any, occupied: Any, hu: Any,
                         spacing_mm: tuple[float, float, float], rules: PlacementRules,
                         tries: int) -> tuple[Placement, Any] | None:
    """Press a tumor (already turned so that its contact face looks along ``normal``) onto the pleura.

    Positions run along the host's outward ``normal`` through the surface ``site``
    (host voxel), from the tumor's centre on the site inward a voxel at a time;
    the first where at most ``pleural_clip_fraction`` of the tumor lies beyond
    the lung is taken, and that part is cut off: the tumor flattens against the
    pleura as a real one does. What may stay is the lung mask and, within
    ``max_outside_mm`` of it, host voxels (``hu``, the host image) darker than
    ``wall_hu``: the partial-volume band at the pleura, so that no sliver of
    lung is left between tumor and wall; never the wall itself. Returns the
    placement and the box mask of what may stay, or None.
    """
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    ijk = np.argwhere(asnumpy(mask)) - np.asarray(centre_in_box)
    height = float((ijk @ lin.T @ normal).max())  # mm from the centre to the face, along the normal
    step = float(min(spacing_mm))
    to_voxel = np.linalg.inv(lin) @ normal  # host voxels per mm along the normal
    grow = separation_voxels(spacing_mm, rules.separation_mm)
    for k in range(int(height / step) + 2):
        centre = tuple(int(v) for v in np.rint(np.asarray(site) - to_voxel * (k * step)))
        offset, inside = try_place(mask, centre_in_box, centre, lungs, occupied, grow)
        if offset is None or 1.0 - inside > rules.pleural_clip_fraction:
            continue
        region = box_slices(offset, mask.shape)
        lung = lungs[region]
        near_lung = array_module(lung).isfinite(shell_distance_mm(~lung, spacing_mm, rules.max_outside_mm))
        keep = lung | (near_lung & (hu[region] < rules.wall_hu))
        kept = float((mask & keep).sum()) / max(float(mask.sum()), 1.0)
        return Placement(offset, centre, True, inside / max(kept, 1e-9), tries,
                         tuple(float(v) for v in normal)), keep
    return None
