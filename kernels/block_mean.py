"""Block mean downsampling: the mean of each ``f0 x f1 x f2`` block of a 3-D array.

``out[a, b, c]`` is the float32 mean of ``x[a*f0:(a+1)*f0, b*f1:(b+1)*f1,
c*f2:(c+1)*f2]``; the output has ``ceil(n / f)`` voxels per axis, the last
block of an axis holding whatever is left (its mean is over the voxels it
has). Integer and float inputs; sums are accumulated in float64 on the CPU and
in float32 on the GPU (exact for integer HU: a block sum stays below 2^24).

* ``cpu``: Numba, parallel over output planes, one pass over the input.
* ``cuda``: one thread per output voxel (CuPy arrays, or NumPy under the simulator).
* ``reference``: NumPy ``add.reduceat`` along each axis.

``cpu`` and ``cuda`` walk the input in its memory order (C or Fortran alike:
see :mod:`.layout`; ``threadIdx.x`` runs along the contiguous axis) and return
the output in that order.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .layout import inverse, memory_view


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


def block_mean_op(real):
    """Mean of block (a, b, c), summed in ``real`` (np.float64 on the CPU, np.float32 on the GPU).

    The per-voxel work shared by the CPU loop and the CUDA kernel (compile the result).
    """
    def op(x, a, b, c, f0, f1, f2):
        n0, n1, n2 = x.shape
        i1 = min((a + 1) * f0, n0)
        j1 = min((b + 1) * f1, n1)
        k1 = min((c + 1) * f2, n2)
        acc = real(0.0)
        for i in range(a * f0, i1):
            for j in range(b * f1, j1):
                for k in range(c * f2, k1):
                    acc += real(x[i, j, k])
        return acc / real((i1 - a * f0) * (j1 - b * f1) * (k1 - c * f2))

    return op


_block_mean_cpu = njit(cache=True)(block_mean_op(np.float64))


@njit(cache=True, parallel=True)
def _cpu(x, f0, f1, f2, out):
    m0, m1, m2 = out.shape
    for a in prange(m0):
        for b in range(m1):
            for c in range(m2):
                out[a, b, c] = _block_mean_cpu(x, a, b, c, f0, f1, f2)


def _views(xp, x, factors):
    """Input and output in the input's memory order, the factors permuted alike, and the permutation."""
    shape = _out_shape(x.shape, factors)
    xv, perm = memory_view(x)
    out = xp.empty(tuple(shape[a] for a in perm), dtype=np.float32)
    return xv, out, tuple(int(factors[a]) for a in perm), perm


def cpu(x, factors):
    """Block means on the CPU (float32, shape ``ceil(x.shape / factors)``)."""
    xv, out, f, perm = _views(np, x, factors)
    _cpu(xv, *f, out)
    return out.transpose(inverse(perm))


def cuda(x, factors):
    """Block means on the GPU: one thread per output voxel, float32 sums; output on the input's device."""
    from ._block_mean_cuda import THREADS, block_mean

    xv, out, f, perm = _views(cuda_module(x, "block_mean"), x, factors)
    blocks = tuple(-(-s // t) for s, t in zip(out.shape[::-1], THREADS))
    block_mean[blocks, THREADS](xv, *f, out)
    return out.transpose(inverse(perm))
