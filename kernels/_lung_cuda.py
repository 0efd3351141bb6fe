"""CUDA kernels of ``block_mean`` and ``lung_refine``.

Imported only when a ``cuda`` function first runs (this module imports
``numba.cuda``); module-level so Numba's simulator can run them too. The
per-voxel work is the plain functions of those modules compiled as device
functions, so the CPU and CUDA paths share one definition.
"""
from __future__ import annotations

from numba import cuda

from .block_mean import _block_mean_v
from .lung_refine import _refine_v

_block_mean_dev = cuda.jit(device=True)(_block_mean_v)
_refine_dev = cuda.jit(device=True)(_refine_v)


@cuda.jit
def block_mean(x, f0, f1, f2, out):
    a, b, c = cuda.grid(3)
    m0, m1, m2 = out.shape
    if a < m0 and b < m1 and c < m2:
        out[a, b, c] = _block_mean_dev(x, a, b, c, f0, f1, f2)


@cuda.jit
def lung_refine(hu, labels, core, f0, f1, f2, threshold, out):
    i, j, k = cuda.grid(3)
    n0, n1, n2 = hu.shape
    if i < n0 and j < n1 and k < n2:
        out[i, j, k] = _refine_dev(hu, labels, core, i, j, k, f0, f1, f2, threshold)
