"""``Volume``: a voxel array and the affine that places it in the world (RAS, mm).

Nothing else is stored: spacing, shape and orientation are derived from the
affine and the array, so they can never disagree with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import array_module, asnumpy

GRID_ATOL_MM = 1e-3
"""How far (mm, per affine entry) two affines may differ and still place voxels on one grid."""


def same_grid(affine: Any, other: Any) -> bool:
    """Whether two voxel -> world affines put the voxels in the same places (within :data:`GRID_ATOL_MM`)."""
    return bool(np.allclose(affine, other, atol=GRID_ATOL_MM))


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image: ``array`` (NumPy or CuPy, axes i, j, k) and ``affine``.

    ``affine`` is a 4x4 float64 NumPy matrix mapping voxel indices (i, j, k, 1)
    to RAS world coordinates in millimetres, the NIfTI convention.
    """

    array: Any
    affine: np.ndarray

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3-D, got shape {tuple(self.array.shape)}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in voxels."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis runs toward, e.g. ``('R', 'A', 'S')``."""
        import nibabel as nib
        return tuple(nib.orientations.aff2axcodes(self.affine))

    @property
    def xp(self):
        """The array module of ``array`` (numpy or cupy)."""
        return array_module(self.array)

    def with_array(self, array: Any) -> "Volume":
        """The same geometry with another array of the same shape."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {tuple(array.shape)} differs from volume shape {self.shape}")
        return Volume(array, self.affine)

    def on(self, xp: Any) -> "Volume":
        """This volume with its array on module ``xp`` (numpy or cupy); an explicit copy
        between host and device when it lives elsewhere, else ``self``."""
        if self.xp is xp:
            return self
        return Volume(xp.asarray(self.array) if xp is not np else asnumpy(self.array), self.affine)

    def voxel_to_world(self, ijk: Any) -> np.ndarray:
        """World RAS mm of voxel indices ``ijk`` (shape (..., 3))."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: Any) -> np.ndarray:
        """Fractional voxel indices of world RAS mm points ``xyz`` (shape (..., 3))."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def crop(self, lo: Any, hi: Any) -> "Volume":
        """The box ``lo <= ijk < hi`` (voxels, clipped to the volume) with its own affine."""
        lo = np.maximum(np.asarray(lo, dtype=np.int64), 0)
        hi = np.minimum(np.asarray(hi, dtype=np.int64), self.shape)
        sub = self.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        affine = self.affine.copy()
        affine[:3, 3] = self.voxel_to_world(lo)
        return Volume(sub, affine)

    def __repr__(self) -> str:
        sp = "x".join(f"{s:.4g}" for s in self.spacing)
        return (f"Volume(shape={self.shape}, spacing_mm={sp}, orientation={''.join(self.orientation)}, "
                f"dtype={self.array.dtype}, module={self.xp.__name__})")
