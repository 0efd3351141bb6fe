"""Erosion: a 3-D mask eroded by the 6-connected cross, beyond the array counting as unset.

``out[i, j, k]`` is True where the voxel and its six face neighbours are all set
(nonzero); a voxel on one of the array's faces has a neighbour beyond it, which
counts as unset: ``scipy.ndimage.binary_erosion(mask)`` with its default cross
and ``border_value=0``. Each insertion finds its tumour's core this way twice, on
boxes of 10^3-40^3 voxels, where scipy's call costs about ten times this pass
(0.31 against 0.026 ms, min, on lung1's tumour in a 20 mm box at 1.5 mm,
``benchmarks/bench_morphology.py``).

* ``cpu``: Numba, in memory order (:mod:`.layout`); the result in the mask's order.
* ``cuda``: one thread per voxel, ``threadIdx.x`` along the contiguous axis.
* ``reference``: ``scipy.ndimage.binary_erosion`` (``cupyx`` on CuPy), the oracle.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from synthlung.backend import array_module, cuda_module
from synthlung.errors import InputError

from .layout import inverse, memory_view


def eroded_op(mask, i, j, k):
    """The eroded value (0 or 1) of interior voxel (i, j, k) of ``mask`` (uint8, 0 or 1): the voxel
    and its six face neighbours ANDed. Shared by the CPU loop and the CUDA kernel (compile the
    result); voxels on the array's faces are 0 and not asked for."""
    return (mask[i, j, k] & mask[i - 1, j, k] & mask[i + 1, j, k] & mask[i, j - 1, k] & mask[i, j + 1, k]
            & mask[i, j, k - 1] & mask[i, j, k + 1])


_eroded_cpu = njit(inline="always")(eroded_op)


@njit(cache=True)
def _cpu(mask, out):
    """``out`` (zeros) gets the erosion of its interior; no branch in the innermost loop."""
    n0, n1, n2 = out.shape
    for i in range(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                out[i, j, k] = _eroded_cpu(mask, i, j, k)


def _as_bits(mask):
    """The mask as uint8 0/1 (a view of a bool mask, else ``mask != 0``)."""
    return (mask if mask.dtype == bool else mask != 0).view(np.uint8)


def _check(mask) -> None:
    if mask.ndim != 3:
        raise InputError(f"erosion: need a 3-D mask, got shape {tuple(mask.shape)}")


def cpu(mask):
    """The eroded mask (bool, the mask's shape and memory order); see the module doc."""
    mask = np.asarray(mask)
    _check(mask)
    view, perm = memory_view(_as_bits(mask))
    out = np.zeros(view.shape, dtype=np.uint8)
    _cpu(view, out)
    return out.view(bool).transpose(inverse(perm))


def cuda(mask):
    """The eroded mask on the GPU (CuPy; NumPy under the simulator), on the mask's device."""
    from ._erosion_cuda import THREADS, erosion

    xp = cuda_module(mask, "erosion")
    _check(mask)
    view, perm = memory_view(_as_bits(mask))
    out = xp.empty(view.shape, dtype=np.uint8)
    if view.size:
        blocks = tuple(-(-s // t) for s, t in zip(view.shape[::-1], THREADS))
        erosion[blocks, THREADS](xp.ascontiguousarray(view), out)  # a sliced mask: copied once
    return out.view(bool).transpose(inverse(perm))


def reference(mask):
    """The oracle: ``scipy.ndimage.binary_erosion`` (``cupyx.scipy.ndimage`` for CuPy)."""
    xp = array_module(mask)
    _check(mask)
    if xp is np:
        from scipy import ndimage
    else:
        from cupyx.scipy import ndimage
    return ndimage.binary_erosion(mask)
