"""Thick-slice seeds made fine across their slices: shape-based interpolation, not a ramp.

A tumour cut from 5 mm slices is a stack of a few contours. Resampled as it is
(trilinear), its surface becomes planar facets between the slices and its
texture parallel stripes, which show once the seed is rotated. Here the stack
is resliced once, at extraction, to slices of at most ``target_mm``:

* the mask by shape-based interpolation: each slice's in-plane signed distance
  to its contour (mm, positive inside) is interpolated linearly between slices
  and thresholded at 0; past the tumour's last slice the distance is taken as
  minus the deepest in-plane depth, so the tumour closes in a rounded cap about
  half a slice beyond its last contour instead of a flat face; then all
  distances are shifted by one offset (mm) that gives the resliced mask the
  labelled volume (the stack's voxel count times the voxel volume);
* the image by composing two fields on that mask: the tumour's HU, taken only from
  voxels free of partial volume across the slices (those whose whole slab the
  resliced tumour fills; the cap slices of a 5 mm stack are part lung), smoothed
  in-plane to the resolution the slices have across them (normalised within those
  voxels: a Gaussian of sigma ``spacing / 2``, the slice profile's
  ``spacing / sqrt(12)`` and the linear interpolation's ``spacing / sqrt(6)``
  together; the detail lost is the host noise's to give back,
  :mod:`synthlung.synthesis.texture`) and carried to every other voxel from the
  nearest of them; and the surroundings' HU, likewise from the nearest voxel whose
  slab holds no tumour. Each is interpolated linearly between slices and they
  are mixed by a partial-volume ramp (2 x the finest spacing wide) of the resliced
  mask's 3-D boundary distance (as :func:`synthlung.seeds.extraction.soft_mask`), so the edge along the slice axis is no longer the thick
  slices' blur. (A ramp as wide as the seed's own in-plane edge was tried:
  the alpha weight, not this ramp, sets the inserted edge, so it only darkened the
  tumour's core.)
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..morphology import signed_distance_mm
from ..smoothing import local_mean

RESLICE_MM = 1.0
"""Default largest slice spacing (mm) of a resliced seed."""
PURE_SHARE = 0.999
"""Share of a slice's slab one kind (tumour or not) must fill for the voxel to count as pure."""
THICK_RATIO = 2.0
"""A seed is resliced when its slice spacing exceeds this many times its finest spacing."""


def slice_axis(spacing_mm: tuple[float, float, float]) -> int:
    """The array axis across the slices: the coarsest spacing."""
    return int(np.argmax(spacing_mm))


def needs_reslice(spacing_mm: tuple[float, float, float], target_mm: float | None) -> bool:
    """Whether a seed of this spacing is thick-sliced enough to be resliced to ``target_mm``."""
    thick = max(spacing_mm)
    return target_mm is not None and thick > THICK_RATIO * min(spacing_mm) and thick > target_mm


def _in_plane(mask: np.ndarray, axis: int, spacing_mm: tuple[float, float, float], **kw):
    """The EDT of ``mask`` within each slice: the slice axis gets a spacing no in-plane path can beat."""
    far = 1e6 * max(spacing_mm)
    sampling = tuple(far if a == axis else float(s) for a, s in enumerate(spacing_mm))
    return ndi.distance_transform_edt(mask, sampling=sampling, **kw)


def _upsample(values: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Linear interpolation along ``axis``: ``factor`` fine slices per coarse step, ends kept."""
    n = values.shape[axis]
    pos = np.arange((n - 1) * factor + 1) / factor
    lo = np.minimum(np.floor(pos).astype(int), n - 2) if n > 1 else np.zeros(pos.shape, int)
    frac = (pos - lo).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    a, b = np.take(values, lo, axis=axis), np.take(values, np.minimum(lo + 1, n - 1), axis=axis)
    return a + frac * (b - a)


def _nearest(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Index arrays of the nearest ``mask`` voxel (mm) to every voxel."""
    return tuple(ndi.distance_transform_edt(~mask, sampling=spacing_mm, return_distances=False,
                                            return_indices=True))


def _slab_mean(fine: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Mean of the fine slices within each coarse slice's slab (``j / k`` within half a slice)."""
    n = (fine.shape[axis] - 1) // k + 1
    out = []
    for i in range(n):
        j = np.arange(max(i * k - k // 2, 0), min(i * k + k // 2, fine.shape[axis] - 1) + 1)
        out.append(np.take(fine, j, axis=axis).mean(axis=axis))
    return np.stack(out, axis=axis)


def _volume_offset(phi: np.ndarray, volume_mm3: float, voxel_mm3: float, reach_mm: float) -> float:
    """The offset (mm, within +-``reach_mm``) that gives ``phi + offset > 0`` the volume ``volume_mm3``."""
    lo, hi = -reach_mm, reach_mm
    for _ in range(30):  # bisection: the volume grows with the offset
        mid = 0.5 * (lo + hi)
        if (phi > -mid).sum() * voxel_mm3 < volume_mm3:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def reslice_stack(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float],
            target_mm: float = RESLICE_MM) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Reslice a thick-slice seed crop (see module doc).

    Returns the fine image (float32 HU), the fine mask (uint8), the slice axis and
    the factor ``k``: fine slice ``j`` lies at coarse slice ``j / k``, so the first
    slice keeps its place and the slice spacing becomes ``spacing / k``.
    """
    axis = slice_axis(spacing_mm)
    k = max(1, math.ceil(spacing_mm[axis] / target_mm - 1e-9))
    inside = np.asarray(mask, dtype=bool)
    half = 0.5 * min(s for a, s in enumerate(spacing_mm) if a != axis)
    d_out = _in_plane(inside, axis, spacing_mm)
    d_in = _in_plane(~inside, axis, spacing_mm)
    phi = np.where(inside, d_out - half, half - d_in)  # in-plane boundary distance, + inside
    filled = inside.any(axis=tuple(a for a in range(3) if a != axis))
    if inside.any():
        cap = -float(phi[inside].max())
        empty = [slice(None)] * 3
        empty[axis] = ~filled
        phi[tuple(empty)] = cap
    img = np.asarray(image, dtype=np.float32)
    fine_spacing = [s / k if a == axis else s for a, s in enumerate(spacing_mm)]
    phi_f = _upsample(phi, axis, k)
    phi_f += _volume_offset(phi_f, int(inside.sum()) * float(np.prod(spacing_mm)), float(np.prod(fine_spacing)),
                            max(spacing_mm))
    # Partial volume across the slices: each field only from voxels whose slab is all of one kind.
    share = _slab_mean((phi_f > 0).astype(np.float32), axis, k)
    full, clear = inside & (share >= PURE_SHARE), ~inside & (share <= 1.0 - PURE_SHARE)
    full, clear = (full if full.any() else inside), (clear if clear.any() else ~inside)
    m = full.astype(np.float32)
    sigma = [0.0 if a == axis else 0.5 * spacing_mm[axis] / s for a, s in enumerate(spacing_mm)]
    level = local_mean(img, m, sigma)
    tumour = level[_nearest(full, spacing_mm)]  # HU of the nearest voxel the tumour fills
    around = img[_nearest(clear, spacing_mm)]  # HU of the nearest voxel free of it
    fine_mask = phi_f > 0
    depth = -0.5 * signed_distance_mm(fine_mask, fine_spacing)  # 3-D boundary distance, + inside
    weight = np.clip(0.5 + depth / (2.0 * min(fine_spacing)), 0.0, 1.0)
    fine = weight * _upsample(tumour, axis, k) + (1.0 - weight) * _upsample(around, axis, k)
    return fine.astype(np.float32), fine_mask.astype(np.uint8), axis, k
