"""Tri-planar views of a CT around a point, on one physical scale, in the radiological orientation.

Every view is resampled (linear) onto a square grid of ``pixel_mm`` pixels
covering ``fov_mm`` around a world point (RAS mm), whatever the scan's voxel
grid, so that a real tumour in its own scan and a synthetic one in its host
look alike but for what differs in the images themselves. Orientation:
axial seen from the feet (patient's right on the viewer's left, anterior up),
coronal seen from the front (right on the left, superior up), sagittal seen
from the patient's left (anterior on the left, superior up).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

LUNG_WINDOW = (-1350.0, 150.0)
"""Display range in HU: the lung window (level -600, width 1500)."""
MEDIASTINAL_WINDOW = (-160.0, 240.0)
"""Display range in HU: the mediastinal (soft-tissue) window (level 40, width 400)."""
WINDOWS = {"lung": LUNG_WINDOW, "mediastinal": MEDIASTINAL_WINDOW}
PLANES = ("axial", "coronal", "sagittal")

# Per plane: world directions (RAS) of the columns (left to right) and rows (top to bottom).
_AXES = {"axial": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
         "coronal": ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
         "sagittal": ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0))}


def plane_points(centre_mm: Any, plane: str, fov_mm: float, pixel_mm: float) -> np.ndarray:
    """World points (mm), shape (n, n, 3), of the pixels of one view; row 0 is the top."""
    n = round(fov_mm / pixel_mm)
    t = (np.arange(n) - (n - 1) / 2.0) * pixel_mm
    cols, rows = (np.asarray(a) for a in _AXES[plane])
    return np.asarray(centre_mm, dtype=np.float64) + t[:, None, None] * rows + t[None, :, None] * cols


def sample(array: Any, affine: np.ndarray, points_mm: np.ndarray, order: int = 1, fill: float = -1024.0) -> np.ndarray:
    """``array`` (voxels) at world ``points_mm`` (..., 3): float32, ``fill`` outside the volume.

    Only the voxels around the points are read (a box one voxel larger), so a
    view of a whole CT costs what the view costs.
    """
    ijk = (np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.c_[points_mm.reshape(-1, 3),
                                                                        np.ones(points_mm[..., 0].size)].T)[:3]
    lo = np.maximum(np.floor(ijk.min(axis=1)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(ijk.max(axis=1)).astype(int) + 2, array.shape)
    if np.any(hi <= lo):
        return np.full(points_mm.shape[:-1], fill, np.float32)
    box = np.asarray(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    out = ndi.map_coordinates(box, ijk - lo[:, None], order=order, mode="constant", cval=fill)
    return out.reshape(points_mm.shape[:-1]).astype(np.float32)


def triplanar(array: Any, affine: np.ndarray, centre_mm: Any, fov_mm: float = 64.0,
              pixel_mm: float = 0.4, order: int = 1) -> dict[str, np.ndarray]:
    """The axial, coronal and sagittal views (HU, float32) through ``centre_mm``."""
    return {p: sample(array, affine, plane_points(centre_mm, p, fov_mm, pixel_mm), order) for p in PLANES}


def windowed(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU to 8-bit grey in a display window."""
    lo, hi = window
    return np.rint(np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def sheet(views: dict[str, np.ndarray], gap: int = 4) -> np.ndarray:
    """One 8-bit image: a row per window (lung, mediastinal), a column per plane, ``gap`` black pixels between."""
    rows = []
    for window in WINDOWS.values():
        tiles = [windowed(views[p], window) for p in PLANES]
        n = tiles[0].shape[0]
        row = np.zeros((n, 3 * n + 2 * gap), np.uint8)
        for k, tile in enumerate(tiles):
            row[:, k * (n + gap):k * (n + gap) + n] = tile
        rows.append(row)
    out = np.zeros((2 * rows[0].shape[0] + gap, rows[0].shape[1]), np.uint8)
    out[:rows[0].shape[0]] = rows[0]
    out[rows[0].shape[0] + gap:] = rows[1]
    return out


def mask_centroid_mm(mask: Any, affine: np.ndarray) -> np.ndarray:
    """World centroid (mm) of a boolean mask's voxels."""
    ijk = np.argwhere(np.asarray(mask, dtype=bool)).mean(axis=0)
    return np.asarray(affine, dtype=np.float64)[:3, :3] @ ijk + np.asarray(affine, dtype=np.float64)[:3, 3]
