"""CUDA kernel of :mod:`synthlung.kernels.block_mean`, imported (and compiled) on first use.

The per-voxel work is ``block_mean.block_mean_op`` compiled as a device
function (float32 sum). ``threadIdx.x`` runs along the last (contiguous) axis of
the memory-order views the front end passes.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .block_mean import block_mean_op

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)
_block_mean_dev = cuda.jit(device=True)(block_mean_op(np.float32))


@cuda.jit
def block_mean(x, f0, f1, f2, out):
    c, b, a = cuda.grid(3)
    m0, m1, m2 = out.shape
    if a < m0 and b < m1 and c < m2:
        out[a, b, c] = _block_mean_dev(x, a, b, c, f0, f1, f2)
