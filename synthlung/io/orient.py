"""Reorder a Volume's axes to RAS without resampling (``as_closest_canonical``-style)."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from ..volume import Volume


def to_canonical(volume: Volume) -> Volume:
    """The same voxels with axes permuted and flipped so they run toward R, A, S.

    Only transposes and flips (no interpolation): every voxel keeps its value
    and its world position (mm). Always a new Volume holding a new C-contiguous
    array, never ``volume`` itself nor a view of its array (also when it is
    already canonical), so writing to one never changes the other. Works on
    NumPy and CuPy arrays.
    """
    xp = volume.xp
    ornt = nib.orientations.io_orientation(volume.affine)
    order = np.argsort(ornt[:, 0])          # output axis a comes from input axis order[a]
    array = xp.transpose(volume.array, tuple(int(a) for a in order))
    flips = tuple(a for a in range(3) if ornt[order[a], 1] < 0)
    if flips:
        array = xp.flip(array, axis=flips)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape)
    return Volume(xp.array(array, order="C", copy=True), affine)
