"""Checks that a voxel grid is usable: finite affine, voxel sizes above zero, axes not collinear."""
from __future__ import annotations

import numpy as np

from ..errors import InputError

MIN_VOXEL_MM = 1e-4         # smaller "voxel sizes" are a broken header (zero, or a unit slip)
MIN_SINE = 1e-3             # |det| / product of voxel sizes: the axes span a volume (not coplanar)


def check_affine(affine, source: object) -> None:
    """InputError naming ``source`` unless ``affine`` (4x4, voxel -> world mm) is a usable grid.

    Refused: non-finite entries, a last row other than 0 0 0 1, a voxel size
    (column length, mm) under ``MIN_VOXEL_MM``, and a singular or nearly
    singular direction matrix (the voxel axes do not span 3-D space).
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{source}: degenerate geometry: the affine must be a finite 4x4 matrix, "
                         f"got {np.array2string(affine, separator=', ').replace(chr(10), '')}")
    if not np.array_equal(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise InputError(f"{source}: degenerate geometry: the affine's last row is {affine[3].tolist()}, "
                         "expected [0, 0, 0, 1]")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < MIN_VOXEL_MM):
        raise InputError(f"{source}: degenerate geometry: voxel size {[round(float(s), 6) for s in spacing]} mm; "
                         f"every voxel size must be at least {MIN_VOXEL_MM} mm")
    sine = abs(float(np.linalg.det(affine[:3, :3]))) / float(np.prod(spacing))
    if sine < MIN_SINE:
        raise InputError(f"{source}: degenerate geometry: singular affine, the voxel axes do not span 3-D space "
                         f"(|det| / voxel volume = {sine:.3g})")
