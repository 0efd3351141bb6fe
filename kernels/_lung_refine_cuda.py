"""CUDA kernel of :mod:`synthlung.kernels.lung_refine`, imported (and compiled) on first use.

The per-voxel work is ``lung_refine._refine_v`` compiled as a device function.
``threadIdx.x`` runs along the last (contiguous) axis of the memory-order views
the front end passes.
"""
from __future__ import annotations

from numba import cuda

from .lung_refine import _refine_v

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)
_refine_dev = cuda.jit(device=True)(_refine_v)


@cuda.jit
def lung_refine(hu, labels, core, f0, f1, f2, threshold, out):
    k, j, i = cuda.grid(3)
    n0, n1, n2 = hu.shape
    if i < n0 and j < n1 and k < n2:
        out[i, j, k] = _refine_dev(hu, labels, core, i, j, k, f0, f1, f2, threshold)
