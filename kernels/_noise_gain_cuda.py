"""CUDA kernel of :mod:`synthlung.kernels.noise_gain`, imported (and compiled) on first use.

One thread per frequency of the half spectrum; ``threadIdx.x`` along its last
(contiguous) axis. The per-frequency work is ``noise_gain.power_op`` compiled as
a device function; the sum and square root follow on the device (CuPy).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .noise_gain import _compile

THREADS = (32, 4, 2)  # (x: contiguous axis, y, z)
_frequency_dev, _power_dev = _compile(cuda.jit(device=True))


@cuda.jit
def noise_power(table, n0, n1, inv0, inv1, inv2, axis, step_r, step_z, out):
    k, j, i = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        f0 = _frequency_dev(i, n0, inv0)
        f1 = _frequency_dev(j, n1, inv1)
        f2 = np.float32(k) * inv2
        if axis == 0:
            out[i, j, k] = _power_dev(table, f1, f2, f0, step_r, step_z)
        elif axis == 1:
            out[i, j, k] = _power_dev(table, f0, f2, f1, step_r, step_z)
        else:
            out[i, j, k] = _power_dev(table, f0, f1, f2, step_r, step_z)
