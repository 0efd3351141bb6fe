"""Shell distance: a mask's voxel-centre distance (mm) to its outside, exact up to a reach.

``out[v]`` is 0 outside the mask; inside, the Euclidean distance (mm, with the
voxel spacing) to the nearest voxel outside the mask when that is at most
``reach_mm``, and ``+inf`` for voxels deeper than that. Voxels beyond the array
edge do not count as outside (as in SciPy's ``distance_transform_edt``). It is a
full distance transform's values in a tumour's outer shell, for a fraction of
its cost on a tumour's box: each voxel tries the offsets of the ball of radius
``reach_mm`` nearest first and stops at the first outside voxel (a few tens of
offsets for a shell of a couple of voxels).

* ``cpu``: Numba, one pass in memory order over a copy of the mask padded with
  inside voxels (no bounds checks in the offset loop).
* ``cuda``: one thread per voxel (CuPy arrays, or NumPy under the simulator).
* ``reference``: ``scipy.ndimage.distance_transform_edt``, then ``inf`` beyond the reach.

``cpu`` and ``cuda`` walk the mask in its memory order (C or Fortran alike: see
:mod:`.layout`) and return float32 in that order.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .layout import inverse, memory_view


def reference(mask, spacing_mm, reach_mm):
    """The oracle: SciPy's exact distance transform, ``inf`` where it exceeds ``reach_mm``."""
    from scipy import ndimage
    mask = np.asarray(mask, dtype=bool)
    d = ndimage.distance_transform_edt(mask, sampling=tuple(float(s) for s in spacing_mm)).astype(np.float32)
    return np.where(d > np.float32(reach_mm), np.float32(np.inf), d)


def ball_offsets(spacing_mm, reach_mm) -> tuple[np.ndarray, np.ndarray]:
    """The voxel offsets (K, 3) within ``reach_mm`` (mm) of a voxel, itself excluded, nearest first,
    and their float32 lengths (mm); read-only, made once per spacing and reach."""
    spacing = tuple(float(v) for v in np.asarray(spacing_mm, dtype=np.float64).ravel())
    if len(spacing) != 3 or not min(spacing) > 0 or not reach_mm >= 0:
        raise InputError(f"shell_distance needs 3 spacings > 0 mm and a reach >= 0 mm, got {spacing_mm} "
                         f"and {reach_mm}")
    return _ball(spacing, float(reach_mm))


@functools.cache
def _ball(spacing: tuple[float, float, float], reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.floor(reach_mm / np.asarray(spacing)).astype(np.int64)
    offsets = (np.indices(tuple(2 * r + 1)) - r[:, None, None, None]).reshape(3, -1).T
    squared = ((offsets * np.asarray(spacing)) ** 2).sum(axis=1)
    keep = (squared > 0) & (squared <= reach_mm ** 2)
    order = np.argsort(squared[keep], kind="stable")
    offsets, lengths = offsets[keep][order], np.sqrt(squared[keep][order]).astype(np.float32)
    for a in (offsets, lengths):
        a.flags.writeable = False
    return offsets, lengths


def shell_distance_op(padded, steps, lengths, f):
    """The distance (float32 mm) of the voxel at flat index ``f`` of ``padded`` (1 inside,
    0 outside): 0 outside, the length of the first offset (``steps``: flat, nearest first)
    that lands outside, else ``inf``. The per-voxel work shared by the CPU loop and the
    CUDA kernel (compile the result)."""
    if padded[f] == 0:
        return np.float32(0.0)
    for o in range(steps.shape[0]):
        if padded[f + steps[o]] == 0:
            return lengths[o]
    return np.float32(np.inf)


_shell_distance_cpu = njit(cache=True)(shell_distance_op)


@njit(cache=True, parallel=True)
def _cpu(padded, steps, lengths, pad, out):
    n0, n1, n2 = out.shape
    p1, p2 = n1 + 2 * pad[1], n2 + 2 * pad[2]
    for i in prange(n0):
        for j in range(n1):
            row = ((i + pad[0]) * p1 + j + pad[1]) * p2 + pad[2]
            for k in range(n2):
                out[i, j, k] = _shell_distance_cpu(padded, steps, lengths, row + k)


def _prepare(xp, mask, spacing_mm, reach_mm):
    """The padded flat mask in memory order, flat offset steps, lengths, pads, output and permutation."""
    if mask.ndim != 3:
        raise InputError(f"shell_distance needs a 3-D mask, got shape {tuple(mask.shape)}")
    view, perm = memory_view(mask)
    offsets, lengths = ball_offsets(tuple(float(spacing_mm[a]) for a in perm), reach_mm)
    pad = tuple(int(v) for v in (np.abs(offsets).max(axis=0) if len(offsets) else np.zeros(3, np.int64)))
    padded = xp.ones(tuple(n + 2 * p for n, p in zip(view.shape, pad)), dtype=np.uint8)
    padded[tuple(slice(p, p + n) for n, p in zip(view.shape, pad))] = view
    steps = (offsets[:, 0] * padded.shape[1] + offsets[:, 1]) * padded.shape[2] + offsets[:, 2]
    out = xp.empty(view.shape, dtype=np.float32)
    return padded.ravel(), xp.asarray(steps.astype(np.int64)), xp.array(lengths), pad, out, perm


def cpu(mask, spacing_mm, reach_mm):
    """Shell distances on the CPU (float32 mm, ``inf`` beyond ``reach_mm``, the mask's memory order)."""
    padded, steps, lengths, pad, out, perm = _prepare(np, np.asarray(mask), spacing_mm, reach_mm)
    _cpu(padded, steps, lengths, np.array(pad, dtype=np.int64), out)
    return out.transpose(inverse(perm))


def cuda(mask, spacing_mm, reach_mm):
    """Shell distances on the GPU: one thread per voxel; output on the mask's device."""
    from ._shell_distance_cuda import THREADS, shell_distance

    xp = cuda_module(mask, "shell_distance")
    padded, steps, lengths, pad, out, perm = _prepare(xp, mask, spacing_mm, reach_mm)
    blocks = tuple(-(-s // t) for s, t in zip(out.shape[::-1], THREADS))
    shell_distance[blocks, THREADS](padded, steps, lengths, *pad, out)
    return out.transpose(inverse(perm))
