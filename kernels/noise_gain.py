"""Noise gain: the filter that gives white noise a measured CT noise power spectrum, on a box.

For a box of ``shape`` voxels (``spacing_mm``) the output is, at every frequency
of ``rfftn`` over the box (shape ``(n0, n1, n2 // 2 + 1)``, float32),
``sqrt(P(f) / mean P)``: ``P`` is the spectrum ``table[r, z]`` (radii ``r * step_r``
in the plane normal to ``scan_axis``, ``z * step_z`` along it, cycles/mm)
bilinearly interpolated at the frequency's in-plane radius and ``|axial|``,
clamped to the table and to >= 0; the mean runs over the whole spectrum (the
half that ``rfftn`` keeps counted twice where it stands for two), so that the
filtered noise has unit std. Multiplying ``rfftn`` of standard normal numbers by
it and transforming back gives noise of that spectrum, periodic over the box.

* ``cpu``: Numba, one pass per frequency and a float64 sum.
* ``cuda``: one thread per frequency, then the sum and square root on the device.
* ``reference``: NumPy (or CuPy) array expressions, the oracle.

On a tumour's box (10^3-20^3 voxels) the array expressions cost most of the
noise's time: about 20 small array operations for a few thousand numbers.
``cpu`` and ``cuda`` run the same per-frequency arithmetic (float32); they agree
with ``reference`` to ~1e-6 relative.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from synthlung.backend import array_module, cuda_module
from synthlung.errors import InputError

from .device_code import compiled


def _interp(u_max, step, f):
    """Table index below, index above and weight of frequency ``f`` (float32) on a table of
    ``u_max + 1`` entries ``step`` apart, clamped to the table."""
    u = min(max(f / step, np.float32(0.0)), np.float32(u_max))
    i0 = min(np.int64(math.floor(u)), max(u_max - 1, 0))
    return i0, min(i0 + 1, u_max), u - np.float32(i0)


def _frequency(index, n, inv_nd):
    """``fftfreq``'s frequency (float32, cycles/mm) of ``index`` on ``n`` points, ``inv_nd = 1/(n d)``."""
    m = index if 2 * index < n else index - n
    return np.float32(m) * inv_nd


def power_op(table, f_a, f_b, f_axial, step_r, step_z):
    """The table at in-plane frequencies ``f_a``, ``f_b`` and axial ``f_axial`` (float32 each):
    bilinear in (radius, |axial|), at least 0. Shared by the CPU loop and the CUDA kernel."""
    nr, nz = table.shape
    r0, r1, wr = _interp(nr - 1, step_r, math.sqrt(f_a * f_a + f_b * f_b))
    z0, z1, wz = _interp(nz - 1, step_z, abs(f_axial))
    one = np.float32(1.0)
    lo = (one - wz) * table[r0, z0] + wz * table[r0, z1]
    hi = (one - wz) * table[r1, z0] + wz * table[r1, z1]
    return max((one - wr) * lo + wr * hi, np.float32(0.0))


def _compile(jit) -> tuple:
    """``_frequency`` and ``power_op`` compiled with ``jit`` (``power_op`` calling the compiled ``_interp``)."""
    done = compiled((_interp, _frequency, power_op), jit)
    return done["_frequency"], done["power_op"]


_frequency_nb, _power_nb = _compile(njit(inline="always"))


@njit(cache=True)
def _cpu(table, inv0, inv1, inv2, axis, step_r, step_z, even, out):
    """The power into ``out``; returns its sum over the whole spectrum (float64)."""
    n0, n1, h2 = out.shape
    total = 0.0
    for i in range(n0):
        f0 = _frequency_nb(i, n0, inv0)
        for j in range(n1):
            f1 = _frequency_nb(j, n1, inv1)
            for k in range(h2):
                f2 = np.float32(k) * inv2
                if axis == 0:
                    p = _power_nb(table, f1, f2, f0, step_r, step_z)
                elif axis == 1:
                    p = _power_nb(table, f0, f2, f1, step_r, step_z)
                else:
                    p = _power_nb(table, f0, f1, f2, step_r, step_z)
                out[i, j, k] = p
                total += p if k == 0 or (even and k == h2 - 1) else 2.0 * p
    return total


def _prepare(xp, shape, spacing_mm, table, scan_axis, step_r, step_z):
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing_mm)
    if len(shape) != 3 or min(shape) < 1 or len(spacing) != 3 or not min(spacing) > 0:
        raise InputError(f"noise_gain: need 3 sizes >= 1 and 3 spacings > 0 mm, got {shape} and {spacing_mm}")
    if int(scan_axis) not in (0, 1, 2):
        raise InputError(f"noise_gain: scan_axis must be 0, 1 or 2, got {scan_axis}")
    if table.ndim != 2 or min(table.shape) < 1:
        raise InputError(f"noise_gain: the spectrum table must be 2-D (radii, axial), got shape {table.shape}")
    if not (step_r > 0 and step_z > 0):
        raise InputError(f"noise_gain: table steps must be > 0 cycles/mm, got {step_r} and {step_z}")
    inv = [np.float32(1.0 / (n * s)) for n, s in zip(shape, spacing)]
    out = xp.empty((shape[0], shape[1], shape[2] // 2 + 1), dtype=np.float32)
    return shape, inv, xp.ascontiguousarray(xp.asarray(table, dtype=xp.float32)), out


def _twice(xp, shape):
    """Weights of the rfft half spectrum along the last axis: 2, except 1 at 0 and (even size) at the end."""
    w = np.full(shape[2] // 2 + 1, 2.0, np.float32)
    w[0] = 1.0
    if shape[2] % 2 == 0:
        w[-1] = 1.0
    return xp.asarray(w)


def cpu(shape, spacing_mm, table, scan_axis, step_r, step_z):
    """The gain on the CPU (float32, ``(n0, n1, n2 // 2 + 1)``); see the module doc."""
    shape, inv, table, out = _prepare(np, shape, spacing_mm, np.asarray(table), scan_axis, step_r, step_z)
    total = _cpu(table, *inv, int(scan_axis), np.float32(step_r), np.float32(step_z), shape[2] % 2 == 0, out)
    np.sqrt(out / np.float32(max(total / float(np.prod(shape)), 1e-30)), out=out)
    return out


def cuda(shape, spacing_mm, table, scan_axis, step_r, step_z):
    """The gain on the GPU, on ``table``'s device (CuPy; NumPy under the simulator)."""
    from ._noise_gain_cuda import THREADS, noise_power

    xp = cuda_module(table, "noise_gain")
    shape, inv, table, out = _prepare(xp, shape, spacing_mm, table, scan_axis, step_r, step_z)
    blocks = tuple(-(-s // t) for s, t in zip(out.shape[::-1], THREADS))
    noise_power[blocks, THREADS](table, shape[0], shape[1], *inv, int(scan_axis), np.float32(step_r),
                                 np.float32(step_z), out)
    total = float((out * _twice(xp, shape)).sum(dtype=xp.float64))
    return xp.sqrt(out / np.float32(max(total / float(np.prod(shape)), 1e-30))).astype(xp.float32)


def _interp_reference(xp, table, step, f):
    u = xp.clip(f / step, 0.0, table - 1.0)
    i0 = xp.minimum(xp.floor(u).astype(xp.int64), max(int(table) - 2, 0))
    return i0, xp.minimum(i0 + 1, int(table) - 1), (u - i0).astype(xp.float32)


def reference(shape, spacing_mm, table, scan_axis, step_r, step_z):
    """The oracle: the same gain from whole-array expressions (NumPy, or CuPy for a CuPy table)."""
    xp = array_module(table)
    shape = tuple(int(n) for n in shape)
    plane = [a for a in range(3) if a != scan_axis]
    f = [xp.fft.fftfreq(n, float(s)).astype(xp.float32) for n, s in zip(shape[:2], spacing_mm[:2])]
    f.append(xp.fft.rfftfreq(shape[2], float(spacing_mm[2])).astype(xp.float32))
    table = xp.asarray(table, dtype=xp.float32)
    r0, r1, wr = _interp_reference(xp, table.shape[0], step_r, xp.hypot(f[plane[0]][:, None], f[plane[1]][None, :]))
    z0, z1, wz = _interp_reference(xp, table.shape[1], step_z, xp.abs(f[scan_axis]))
    along = (1 - wz) * table[:, z0] + wz * table[:, z1]  # (radii, axial frequencies)
    power = xp.moveaxis((1 - wr)[..., None] * along[r0] + wr[..., None] * along[r1], (0, 1, 2),
                        (plane[0], plane[1], scan_axis))
    power = xp.maximum(power, 0.0)
    total = float((power * _twice(xp, shape)).sum()) / float(np.prod(shape))
    return xp.sqrt(power / max(total, 1e-30)).astype(xp.float32)
