"""CUDA kernel of :mod:`synthlung.kernels.shell_distance`, imported (and compiled) on first use.

The per-voxel work is ``shell_distance.shell_distance_op`` compiled as a device
function. ``threadIdx.x`` runs along the last (contiguous) axis of the
memory-order view the front end pads and flattens.
"""
from __future__ import annotations

from numba import cuda

from .shell_distance import shell_distance_op

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)
_shell_distance_dev = cuda.jit(device=True)(shell_distance_op)


@cuda.jit
def shell_distance(padded, steps, lengths, pad0, pad1, pad2, out):
    k, j, i = cuda.grid(3)
    n0, n1, n2 = out.shape
    if i < n0 and j < n1 and k < n2:
        row = ((i + pad0) * (n1 + 2 * pad1) + j + pad1) * (n2 + 2 * pad2) + pad2
        out[i, j, k] = _shell_distance_dev(padded, steps, lengths, row + k)
