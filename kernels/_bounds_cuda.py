"""CUDA kernel of :mod:`synthlung.kernels.bounds`, imported (and compiled) on first use.

One thread per voxel of the memory-order view; a nonzero voxel folds its index
into the six bounds with ``atomic.min`` / ``atomic.max`` (int64).
"""
from __future__ import annotations

from numba import cuda

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)


@cuda.jit
def bounds(mask, out):
    k, j, i = cuda.grid(3)
    if i < mask.shape[0] and j < mask.shape[1] and k < mask.shape[2] and mask[i, j, k]:
        cuda.atomic.min(out, (0, 0), i)
        cuda.atomic.max(out, (0, 1), i)
        cuda.atomic.min(out, (1, 0), j)
        cuda.atomic.max(out, (1, 1), j)
        cuda.atomic.min(out, (2, 0), k)
        cuda.atomic.max(out, (2, 1), k)
