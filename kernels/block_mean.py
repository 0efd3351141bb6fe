"""Block mean downsampling: the mean of each ``f0 x f1 x f2`` block of a 3-D array.

``out[a, b, c]`` is the float32 mean of ``x[a*f0:(a+1)*f0, b*f1:(b+1)*f1,
c*f2:(c+1)*f2]``; the output has ``ceil(n / f)`` voxels per axis, the last
block of an axis holding whatever is left (its mean is over the voxels it
has). Integer and float inputs; sums are accumulated in float64.

* ``cpu``: Numba, parallel over output planes, one pass over the input.
* ``cuda``: one thread per output voxel (CuPy arrays, or NumPy under the simulator).
* ``reference``: NumPy ``add.reduceat`` along each axis.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from synthlung.backend import array_module
from synthlung.errors import InputError


def _out_shape(shape, factors) -> tuple[int, int, int]:
    if len(shape) != 3 or len(factors) != 3 or min(factors) < 1:
        raise InputError(f"block_mean needs a 3-D array and 3 factors >= 1, got {shape} and {factors}")
    return tuple(-(-int(n) // int(f)) for n, f in zip(shape, factors))


def reference(x, factors):
    """The oracle: sums by ``np.add.reduceat`` divided by block sizes."""
    x = np.asarray(x, dtype=np.float64)
    _out_shape(x.shape, factors)
    out = x
    for axis, f in enumerate(factors):
        starts = np.arange(0, x.shape[axis], int(f))
        sizes = np.diff(np.append(starts, x.shape[axis]))
        shape = [1, 1, 1]
        shape[axis] = -1
        out = np.add.reduceat(out, starts, axis=axis) / sizes.reshape(shape)
    return out.astype(np.float32)


def _block_mean_v(x, a, b, c, f0, f1, f2):
    """Mean of block (a, b, c): the per-voxel work shared by the CPU loop and the CUDA kernel."""
    n0, n1, n2 = x.shape
    i1 = min((a + 1) * f0, n0)
    j1 = min((b + 1) * f1, n1)
    k1 = min((c + 1) * f2, n2)
    acc = 0.0
    for i in range(a * f0, i1):
        for j in range(b * f1, j1):
            for k in range(c * f2, k1):
                acc += x[i, j, k]
    return acc / ((i1 - a * f0) * (j1 - b * f1) * (k1 - c * f2))


_block_mean_cpu = njit(cache=True)(_block_mean_v)


@njit(cache=True, parallel=True)
def _cpu(x, f0, f1, f2, out):
    m0, m1, m2 = out.shape
    for a in prange(m0):
        for b in range(m1):
            for c in range(m2):
                out[a, b, c] = _block_mean_cpu(x, a, b, c, f0, f1, f2)


def cpu(x, factors):
    """Block means on the CPU (float32, shape ``ceil(x.shape / factors)``)."""
    out = np.empty(_out_shape(x.shape, factors), dtype=np.float32)
    _cpu(x, int(factors[0]), int(factors[1]), int(factors[2]), out)
    return out


def cuda(x, factors):
    """Block means on the GPU: one thread per output voxel; output on the input's device."""
    shape = _out_shape(x.shape, factors)
    from . import _lung_cuda
    out = array_module(x).empty(shape, dtype=np.float32)
    threads = (4, 8, 8)
    blocks = tuple(-(-s // t) for s, t in zip(shape, threads))
    _lung_cuda.block_mean[blocks, threads](x, int(factors[0]), int(factors[1]), int(factors[2]), out)
    return out
