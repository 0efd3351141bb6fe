"""CUDA kernel of :mod:`synthlung.kernels.ccl_stats`, imported (and compiled) on first use.

One thread per voxel of the memory-order view (``threadIdx.x`` on its last,
contiguous axis); integer atomics into per-label accumulators (exact sums, no
float64 arithmetic). A label outside 1..n writes nothing but ``bad``: the
largest label above ``n`` and the smallest below 0.
"""
from __future__ import annotations

from numba import cuda

THREADS = (64, 4, 1)  # (x: contiguous axis, y, z)


@cuda.jit
def accumulate(lab, n, counts, lo, hi, sums, bad):
    x, y, z = cuda.grid(3)
    nz, ny, nx = lab.shape
    if z >= nz or y >= ny or x >= nx:
        return
    v = lab[z, y, x]
    if v == 0:
        return
    if v > n or v < 0:
        cuda.atomic.max(bad, 0, v)
        cuda.atomic.min(bad, 1, v)
        return
    i = v - 1
    pos = (z, y, x)
    cuda.atomic.add(counts, i, 1)
    for a in range(3):
        cuda.atomic.add(sums, (i, a), pos[a])
        cuda.atomic.min(lo, (i, a), pos[a])
        cuda.atomic.max(hi, (i, a), pos[a] + 1)
