"""CUDA kernel of :mod:`synthlung.kernels.ccl_stats`, imported (and compiled) on first use.

One thread per voxel of the memory-order view (``threadIdx.x`` on its last,
contiguous axis). Threads do not each update the accumulators: a thread that
starts a run of equal labels within its block's row segment (``THREADS[0]``
voxels) scans the run (cached reads) and adds the whole run with one set of
integer atomics, so a large component costs one update per run instead of ten
atomics on the same addresses per voxel. Sums are doubled coordinates (integers,
exact; the run's x-sum is ``(start + end - 1) * length``). A label outside 1..n
writes nothing but ``bad``: the largest label above ``n`` and the smallest below 0.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

THREADS = (64, 4, 1)  # (x: contiguous axis, y, z); a block's row segment is THREADS[0] voxels


@cuda.jit
def accumulate(lab, n, counts, lo, hi, sums, bad):
    x, y, z = cuda.grid(3)
    nz, ny, nx = lab.shape
    if z >= nz or y >= ny or x >= nx:
        return
    v = np.int64(lab[z, y, x])
    if v == 0:
        return
    if v > n or v < 0:
        cuda.atomic.max(bad, 0, v)
        cuda.atomic.min(bad, 1, v)
        return
    seg = x - x % THREADS[0]
    if x > seg and lab[z, y, x - 1] == lab[z, y, x]:
        return  # not the first voxel of its run: the run's first thread counts it
    e = x + 1
    end = min(seg + THREADS[0], nx)
    while e < end and lab[z, y, e] == lab[z, y, x]:
        e += 1
    i = v - 1
    length = e - x
    cuda.atomic.add(counts, i, length)
    cuda.atomic.add(sums, (i, 0), 2 * z * length)
    cuda.atomic.add(sums, (i, 1), 2 * y * length)
    cuda.atomic.add(sums, (i, 2), (x + e - 1) * length)
    cuda.atomic.min(lo, (i, 0), z)
    cuda.atomic.min(lo, (i, 1), y)
    cuda.atomic.min(lo, (i, 2), x)
    cuda.atomic.max(hi, (i, 0), z + 1)
    cuda.atomic.max(hi, (i, 1), y + 1)
    cuda.atomic.max(hi, (i, 2), e)
