"""Morphology in millimetres on NumPy or CuPy masks: distance transforms, dilation, signed distance.

Radii are in mm and spacing differs per axis, so every operation goes through
a Euclidean distance transform with the voxel spacing (O(N), exact balls),
never through a structuring element counted in voxels (:func:`deeper_than_mm`
builds its element from the spacing: the same ball). On the CPU the transform
is the ``edt`` package (anisotropic; 4-5x faster than
``scipy.ndimage.distance_transform_edt`` on the chest CT's lungs here, same
values to float32 precision; threaded from :data:`EDT_PARALLEL_VOXELS` up), on
the GPU ``cupyx.scipy.ndimage``. Where only the first few mm below a surface
matter (a tumour's shell, a margin around the lungs), :func:`shell_distance_mm`
gives the same distances up to that reach without the whole transform.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from .backend import array_module, dispatch
from .kernels import bounds, erosion, shell_distance

EDT_PARALLEL_VOXELS = 1 << 20
"""Masks from this many voxels up get ``edt``'s threads; smaller ones (a tumour's box) run on one:
threads cost more than they save there (40^3: 0.9 ms on one thread, 3.4 ms on two on this 2-core VM)."""


def ndimage_for(xp: Any) -> Any:
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    if xp is np:
        from scipy import ndimage
        return ndimage
    from cupyx.scipy import ndimage
    return ndimage


def distance_mm(mask: Any, spacing_mm: tuple[float, float, float]) -> Any:
    """float32 distance (mm) of each voxel of ``mask`` to the nearest voxel outside it (0 outside).

    Voxels beyond the array edge do not count as outside (as in SciPy).
    """
    xp = array_module(mask)
    spacing = tuple(float(s) for s in spacing_mm)
    if xp is np:
        import edt
        return edt.edt(np.asarray(mask, dtype=bool), anisotropy=spacing, black_border=False,
                       parallel=(os.cpu_count() or 1) if mask.size >= EDT_PARALLEL_VOXELS else 1)
    return ndimage_for(xp).distance_transform_edt(mask, sampling=spacing).astype(xp.float32)


def shell_distance_mm(mask: Any, spacing_mm: tuple[float, float, float], reach_mm: float) -> Any:
    """:func:`distance_mm` where it is at most ``reach_mm`` (mm; same values to float32 rounding),
    ``inf`` deeper: a tumour's outer shell, or a margin of a few mm, for a fraction of a full
    transform (kernel :mod:`synthlung.kernels.shell_distance`: 0.08-0.10 ms against edt's
    1.6-1.9 ms on lung1's 27 x 29 x 29 tumour box, ``benchmarks/bench_morphology.py``)."""
    return dispatch(shell_distance, mask)(mask, spacing_mm, reach_mm)


_CROSS = np.abs(np.indices((3, 3, 3)) - 1).sum(axis=0) <= 1  # generate_binary_structure(3, 1)
_CROSS.flags.writeable = False


def eroded(mask: Any) -> Any:
    """``scipy.ndimage.binary_erosion(mask)`` of a 3-D mask (the 6-connected cross, beyond the array
    unset), bool, by one compiled pass (:mod:`synthlung.kernels.erosion`): scipy's call took 0.11 ms
    on a 12 x 13 x 11 tumour box here and 0.82 ms on 30 x 28 x 26, the pass 0.012 and 0.027 ms."""
    return dispatch(erosion, mask)(mask)


def deeper_than_mm(mask: Any, depth_mm: float, spacing_mm: tuple[float, float, float]) -> Any:
    """``distance_mm(mask, spacing_mm) > depth_mm`` (bool) by one erosion with the ball of voxel
    offsets within ``depth_mm`` (>= 0): for the shallow depths of a tumour's box, a fraction of the
    transform's cost. Voxels beyond the array edge do not count as outside (as in :func:`distance_mm`)."""
    xp = array_module(mask)
    ball = _ball(tuple(float(v) for v in spacing_mm), float(depth_mm))
    return ndimage_for(xp).binary_erosion(mask.astype(bool), xp.asarray(ball), border_value=1)


def core_below_mm(mask: Any, depth_mm: float, spacing_mm: tuple[float, float, float]) -> Any:
    """``deeper_than_mm(mask, depth_mm, spacing_mm) & eroded(mask)`` (bool): a mask's voxels deeper
    than ``depth_mm`` and off its outer voxel layer. One erosion where the depth's ball lies within
    the cross (1.5 mm on a grid of 1.5 mm or coarser), whose erosion then implies the ball's."""
    core = eroded(mask)
    spacing = tuple(float(v) for v in spacing_mm)
    if not _ball_within_cross(spacing, float(depth_mm)):
        core &= deeper_than_mm(mask, depth_mm, spacing)
    return core


@functools.cache
def _ball_within_cross(spacing_mm: tuple[float, float, float], depth_mm: float) -> bool:
    ball = _ball(spacing_mm, depth_mm)
    if max(ball.shape) > 3:
        return False
    pad = [((3 - n) // 2,) * 2 for n in ball.shape]
    return not bool((np.pad(ball, pad) & ~_CROSS).any())


@functools.cache
def _ball(spacing_mm: tuple[float, float, float], depth_mm: float) -> np.ndarray:
    """The structuring element of :func:`deeper_than_mm` (read-only, made once per spacing and depth)."""
    offsets, _ = shell_distance.ball_offsets(spacing_mm, depth_mm)
    reach = np.floor(depth_mm / np.asarray(spacing_mm, dtype=np.float64)).astype(int)
    ball = np.zeros(tuple(2 * reach + 1), dtype=bool)
    ball[tuple(reach)] = True
    ball[tuple((offsets + reach).T)] = True
    ball.flags.writeable = False
    return ball


def signed_distance_mm(mask: Any, spacing_mm: tuple[float, float, float]) -> Any:
    """Distance to the mask surface in mm: negative inside, positive outside."""
    mask = mask.astype(bool)
    return distance_mm(~mask, spacing_mm) - distance_mm(mask, spacing_mm)


def bounding_box(mask: Any, pad: tuple[int, int, int] = (0, 0, 0)) -> tuple[slice, ...] | None:
    """Slices of a 3-D mask's bounding box grown by ``pad`` voxels (clipped, :func:`grown`); None if
    empty. One compiled pass (:mod:`synthlung.kernels.bounds`): a tumour's boxes are found several
    times per insertion, where NumPy's reductions took 55 us on an 18 x 16 x 20 box here, nearly
    all of it call overhead."""
    found = dispatch(bounds, mask)(mask).tolist()
    if found[0][0] > found[0][1]:
        return None
    return grown(tuple(slice(lo, hi + 1) for lo, hi in found), pad, mask.shape)


def grown(box: tuple[slice, ...], pad: int | tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` (slices with start and stop) grown by ``pad`` voxels (one number, or one per axis)
    on every side, clipped to ``shape``."""
    pads = (int(pad),) * len(box) if np.ndim(pad) == 0 else tuple(int(p) for p in pad)
    if len(pads) != len(box):
        raise ValueError(f"grown: pad {pad!r} has {len(pads)} values for a {len(box)}-axis box")
    return tuple(slice(max(b.start - p, 0), min(b.stop + p, int(n))) for b, p, n in zip(box, pads, shape))


def dilate_mm(mask: Any, radius_mm: float, spacing_mm: tuple[float, float, float]) -> Any:
    """Dilation by a ball of ``radius_mm``; the transform runs on the padded bounding box only."""
    mask = mask.astype(bool)
    if radius_mm <= 0:
        return mask
    pad = tuple(int(np.ceil(radius_mm / s)) + 1 for s in spacing_mm)
    box = bounding_box(mask, pad)
    if box is None:
        return mask
    out = array_module(mask).zeros_like(mask)
    out[box] = distance_mm(~mask[box], spacing_mm) <= radius_mm
    return out
