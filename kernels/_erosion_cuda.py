"""CUDA kernel of :mod:`synthlung.kernels.erosion`, imported (and compiled) on first use.

One thread per voxel of the memory-order view (``threadIdx.x`` along its
contiguous axis); the per-voxel test is ``erosion.eroded_op`` compiled as a
device function.
"""
from __future__ import annotations

from numba import cuda

from .erosion import eroded_op

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)
_eroded_dev = cuda.jit(device=True)(eroded_op)


@cuda.jit
def erosion(mask, out):
    k, j, i = cuda.grid(3)
    n0, n1, n2 = out.shape
    if i < n0 and j < n1 and k < n2:
        if 0 < i < n0 - 1 and 0 < j < n1 - 1 and 0 < k < n2 - 1:
            out[i, j, k] = _eroded_dev(mask, i, j, k)
        else:
            out[i, j, k] = 0
