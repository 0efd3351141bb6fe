"""Fused warp: affine map + cubic B-spline elastic displacement + trilinear resampling, one pass.

For every voxel ``p = (i, j, k)`` of an output box of shape ``out_shape`` the
kernels compute the seed position (fractional seed voxel indices)::

    q = matrix[:, :3] @ p + matrix[:, 3] + D(p)
    D(p) = sum_{a,b,c} B(u_x - a) B(u_y - b) B(u_z - c) * control[:, a, b, c]
    u = (p - control_origin) / control_spacing

``B`` is the uniform cubic B-spline, ``control`` has shape ``(3, cx, cy, cz)``
and holds displacements in **seed voxel units**; control point ``(a, b, c)``
sits at output voxel position ``control_origin + (a, b, c) * control_spacing``
(both in output voxels, per axis). Control points outside the array count as
zero, so the displacement fades smoothly to zero beyond the control grid.
``D`` is evaluated inside the kernel; the full-resolution field never exists.

The seed image and soft mask are both sampled trilinearly at ``q``; a corner
outside the seed takes ``fill_image`` / ``fill_soft`` (scipy's
``mode='grid-constant'``). Inside the tumour the image is then adjusted by the
soft-mask weight ``w``: ``v + w * (v * (hu_scale - 1) + hu_shift)`` (HU), which
leaves finite values bit-exact for ``hu_scale=1, hu_shift=0``.

Exactness: positions are float64, ``floor`` + fraction, and the lerps are
``a + f * (b - a)``, so an integer position gives weight exactly 0/1: an
identity or integer-translation ``matrix`` with no control grid reproduces the
seed bit for bit. Sampling and the displacement sum are float32.

``cpu`` evaluates ``D`` separably: per output plane i the x taps reduce the
control grid to a plane, per row (i, j) the y taps reduce that to a profile
along z, spread over the row by a dense basis matrix; positions are computed in
a branch-free pass before the gathers.
``cuda`` runs one thread per voxel with the 4x4x4 taps (``threadIdx.x`` along
the output's contiguous last axis); it keeps only the affine map in float64 and
adds the float32 displacement to the float32 fraction (then re-splits), so the
elastic part never touches double precision.

``cpu`` and ``cuda`` agree to ~1e-6 relative (float32 summation order);
``reference`` builds the full field with NumPy and samples with
``scipy.ndimage.map_coordinates(order=1, mode='grid-constant')``.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .device_code import compiled, rebind

__all__ = ["cpu", "cuda", "reference", "control_shape_for", "bspline_basis", "inverse_jacobian_mean"]


# ---------------------------------------------------------------- shared scalar code
# Plain Python functions compiled twice: by njit for ``cpu`` and as CUDA device
# functions for ``cuda``, so both backends run the same arithmetic.

def _bspline(t):
    """Cubic B-spline weights (float32) of the four taps around fraction ``t`` in [0, 1)."""
    s = np.float32(1.0) - t
    t2 = t * t
    t3 = t2 * t
    w0 = s * s * s / np.float32(6.0)
    w1 = (np.float32(3.0) * t3 - np.float32(6.0) * t2 + np.float32(4.0)) / np.float32(6.0)
    w2 = (np.float32(-3.0) * t3 + np.float32(3.0) * t2 + np.float32(3.0) * t + np.float32(1.0)) / np.float32(6.0)
    w3 = t3 / np.float32(6.0)
    return w0, w1, w2, w3


def _split(x):
    """``(floor(x), x - floor(x))``: int64 corner and float32 fraction of float64 ``x``.

    The cast matters: on the CUDA target ``math.floor`` of a float returns a float.
    """
    x0 = math.floor(x)
    return np.int64(x0), np.float32(x - x0)


def _lerp(a, b, f):
    return a + f * (b - a)


def _corner(flat, x, y, z, sx, sy, sz, fill):
    if 0 <= x < sx and 0 <= y < sy and 0 <= z < sz:
        return flat[np.uint64((x * sy + y) * sz + z)]
    return fill


def _blend8(c000, c001, c010, c011, c100, c101, c110, c111, fx, fy, fz):
    c00 = _lerp(c000, c001, fz)
    c01 = _lerp(c010, c011, fz)
    c10 = _lerp(c100, c101, fz)
    c11 = _lerp(c110, c111, fz)
    return _lerp(_lerp(c00, c01, fy), _lerp(c10, c11, fy), fx)


def _trilinear(flat, sy, sz, x0, y0, z0, fx, fy, fz):
    """Trilinear sample of C-ordered ``flat`` (shape sx, sy, sz), all 8 corners inside."""
    p = (x0 * sy + y0) * sz + z0
    q = p + sy * sz
    return _blend8(flat[np.uint64(p)], flat[np.uint64(p + 1)], flat[np.uint64(p + sz)],
                   flat[np.uint64(p + sz + 1)], flat[np.uint64(q)], flat[np.uint64(q + 1)],
                   flat[np.uint64(q + sz)], flat[np.uint64(q + sz + 1)], fx, fy, fz)


def _trilinear_edge(flat, fill, sx, sy, sz, x0, y0, z0, fx, fy, fz):
    """As :func:`_trilinear` near the border: corners outside the seed take ``fill``."""
    return _blend8(_corner(flat, x0, y0, z0, sx, sy, sz, fill),
                   _corner(flat, x0, y0, z0 + 1, sx, sy, sz, fill),
                   _corner(flat, x0, y0 + 1, z0, sx, sy, sz, fill),
                   _corner(flat, x0, y0 + 1, z0 + 1, sx, sy, sz, fill),
                   _corner(flat, x0 + 1, y0, z0, sx, sy, sz, fill),
                   _corner(flat, x0 + 1, y0, z0 + 1, sx, sy, sz, fill),
                   _corner(flat, x0 + 1, y0 + 1, z0, sx, sy, sz, fill),
                   _corner(flat, x0 + 1, y0 + 1, z0 + 1, sx, sy, sz, fill), fx, fy, fz)


def _sample_corner(image, soft, sx, sy, sz, fill_image, fill_soft, x0, y0, z0, fx, fy, fz):
    """Image and soft-mask values (flat arrays, seed shape sx, sy, sz) at corner ``(x0, y0, z0)`` + fractions."""
    if 0 <= x0 < sx - 1 and 0 <= y0 < sy - 1 and 0 <= z0 < sz - 1:
        return (_trilinear(image, sy, sz, x0, y0, z0, fx, fy, fz),
                _trilinear(soft, sy, sz, x0, y0, z0, fx, fy, fz))
    if -1 <= x0 < sx and -1 <= y0 < sy and -1 <= z0 < sz:
        return (_trilinear_edge(image, fill_image, sx, sy, sz, x0, y0, z0, fx, fy, fz),
                _trilinear_edge(soft, fill_soft, sx, sy, sz, x0, y0, z0, fx, fy, fz))
    return fill_image, fill_soft


# ---------------------------------------------------------------- argument handling

def control_shape_for(out_shape, control_origin, control_spacing) -> tuple[int, int, int]:
    """Smallest control grid whose B-spline support covers the whole output box (points per axis)."""
    return tuple(int(math.floor((n - 1 - o) / h)) + 3 for n, o, h in zip(out_shape, control_origin, control_spacing))


def _prepare(xp, image, soft, matrix, out_shape, control, control_origin, control_spacing):
    image = xp.ascontiguousarray(xp.asarray(image, dtype=xp.float32))
    soft = xp.ascontiguousarray(xp.asarray(soft, dtype=xp.float32))
    if image.ndim != 3 or image.shape != soft.shape:
        raise InputError(f"warp: image and soft mask must be 3-D of one shape, got {image.shape} and {soft.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (4, 4):
        m = m[:3]
    if m.shape != (3, 4):
        raise InputError(f"warp: matrix must be 3x4 (or 4x4), got shape {m.shape}")
    out_shape = tuple(int(n) for n in out_shape)
    if len(out_shape) != 3 or min(out_shape) < 1:
        raise InputError(f"warp: out_shape must be three positive sizes, got {out_shape}")
    elastic = control is not None
    if elastic:
        control = xp.ascontiguousarray(xp.asarray(control, dtype=xp.float32))
        if control.ndim != 4 or control.shape[0] != 3 or min(control.shape) < 1:
            raise InputError(f"warp: control must have shape (3, cx, cy, cz), got {control.shape}")
    else:
        control = xp.zeros((3, 1, 1, 1), dtype=xp.float32)
    origin = tuple(float(v) for v in control_origin)
    spacing = tuple(float(v) for v in control_spacing)
    if min(spacing) <= 0:
        raise InputError(f"warp: control_spacing must be positive (output voxels), got {spacing}")
    return image, soft, m, out_shape, control, elastic, origin, spacing


def _scalars(fill_image, fill_soft, hu_scale, hu_shift):
    """float32 kernel scalars; the HU gain is ``hu_scale - 1`` (0 leaves values bit-exact)."""
    return (np.float32(fill_image), np.float32(fill_soft), np.float32(hu_scale - 1.0), np.float32(hu_shift))


def _compile_helpers(jit, cold_jit) -> dict:
    """The shared scalar helpers compiled with ``jit`` (``cold_jit`` for the rare border path)."""
    return compiled((_bspline, _split, _lerp, _corner, _blend8, _trilinear, _trilinear_edge, _sample_corner), jit,
                    cold=(_corner, _trilinear_edge), cold_jit=cold_jit)


# ---------------------------------------------------------------- CPU (Numba)

_CPU = _compile_helpers(njit(inline="always"), njit)
_bspline_nb = _CPU["_bspline"]
_split_nb = _CPU["_split"]
_sample_corner_nb = _CPU["_sample_corner"]


@njit(cache=True)
def _axis_taps(n, origin, spacing, ncontrol):
    """Per output index along one axis: first tap index (clamped) and 4 B-spline weights (0 off-grid)."""
    idx = np.empty((n, 4), dtype=np.int64)
    w = np.zeros((n, 4), dtype=np.float32)
    for x in range(n):
        cell, t = _split_nb((x - origin) / spacing)
        ws = _bspline_nb(t)
        for a in range(4):
            c = cell - 1 + a
            if 0 <= c < ncontrol:
                idx[x, a] = c
                w[x, a] = ws[a]
            else:
                idx[x, a] = 0
    return idx, w


@njit(cache=True, parallel=True)
def _warp_cpu(image, soft, m, out_image, out_soft, control, elastic, origin, spacing,
              fill_image, fill_soft, hu_gain, hu_shift):
    nx, ny, nz = out_image.shape
    sx, sy, sz = image.shape
    flat_image = image.ravel()
    flat_soft = soft.ravel()
    cz = control.shape[3]
    ix, wx = _axis_taps(nx, origin[0], spacing[0], control.shape[1])
    iy, wy = _axis_taps(ny, origin[1], spacing[1], control.shape[2])
    iz, wz = _axis_taps(nz, origin[2], spacing[2], cz)
    # z basis as a dense (cz, nz) matrix: spreading a row profile over z is then a contiguous,
    # vectorisable loop (cz is small: a few control points per tumour).
    basis_z = np.zeros((cz, nz), dtype=np.float32)
    for k in range(nz):
        for c in range(4):
            basis_z[iz[k, c], k] += wz[k, c]
    cy = control.shape[2]
    for i in prange(nx):
        # The tensor-product weights separate: per plane i the x taps collapse the control grid
        # to plane[d, b, c]; per row (i, j) the y taps collapse that to a profile prof[d, c]
        # along z, which basis_z spreads over the row.
        plane = np.zeros((3, cy, cz), dtype=np.float32)
        if elastic:
            for a in range(4):
                wa = wx[i, a]
                if wa != 0.0:
                    for d in range(3):
                        for b in range(cy):
                            for c in range(cz):
                                plane[d, b, c] += wa * control[d, ix[i, a], b, c]
        prof = np.zeros((3, cz), dtype=np.float32)
        disp = np.zeros((3, nz), dtype=np.float32)
        cx0 = np.empty(nz, dtype=np.int64)
        cy0 = np.empty(nz, dtype=np.int64)
        cz0 = np.empty(nz, dtype=np.int64)
        frx = np.empty(nz, dtype=np.float32)
        fry = np.empty(nz, dtype=np.float32)
        frz = np.empty(nz, dtype=np.float32)
        for j in range(ny):
            if elastic:
                prof[:] = 0.0
                for b in range(4):
                    wb = wy[j, b]
                    if wb != 0.0:
                        for d in range(3):
                            for c in range(cz):
                                prof[d, c] += wb * plane[d, iy[j, b], c]
                disp[:] = 0.0
                for d in range(3):
                    for c in range(cz):
                        pdc = prof[d, c]
                        if pdc != 0.0:
                            for k in range(nz):
                                disp[d, k] += pdc * basis_z[c, k]
            bx = m[0, 0] * i + m[0, 1] * j + m[0, 3]
            by = m[1, 0] * i + m[1, 1] * j + m[1, 3]
            bz = m[2, 0] * i + m[2, 1] * j + m[2, 3]
            row_image = out_image[i, j]
            row_soft = out_soft[i, j]
            dx = disp[0]
            dy = disp[1]
            dz = disp[2]
            # Two passes per row: positions first (a branch-free loop the compiler vectorises),
            # then the gathers.
            for k in range(nz):
                qx = bx + m[0, 2] * k + dx[k]
                qy = by + m[1, 2] * k + dy[k]
                qz = bz + m[2, 2] * k + dz[k]
                flx = math.floor(qx)
                fly = math.floor(qy)
                flz = math.floor(qz)
                cx0[k] = np.int64(flx)
                cy0[k] = np.int64(fly)
                cz0[k] = np.int64(flz)
                frx[k] = np.float32(qx - flx)
                fry[k] = np.float32(qy - fly)
                frz[k] = np.float32(qz - flz)
            for k in range(nz):
                vi, vs = _sample_corner_nb(flat_image, flat_soft, sx, sy, sz, fill_image, fill_soft,
                                           cx0[k], cy0[k], cz0[k], frx[k], fry[k], frz[k])
                row_image[k] = vi + vs * (vi * hu_gain + hu_shift)
                row_soft[k] = vs


def cpu(image: np.ndarray, soft: np.ndarray, matrix: Any, out_shape: tuple[int, int, int],
        control: np.ndarray | None = None, control_origin=(0.0, 0.0, 0.0), control_spacing=(1.0, 1.0, 1.0),
        fill_image: float = 0.0, fill_soft: float = 0.0, hu_scale: float = 1.0,
        hu_shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` (HU) and ``soft`` (0..1) into a box of ``out_shape``; returns float32 (image, soft).

    ``matrix``: 3x4 output voxel -> seed voxel map; ``control``: (3, cx, cy, cz)
    displacements in seed voxels, or None for none; ``control_origin`` /
    ``control_spacing``: control grid placement in output voxels. See module doc.
    """
    image, soft, m, out_shape, control, elastic, origin, spacing = _prepare(
        np, image, soft, matrix, out_shape, control, control_origin, control_spacing)
    out_image = np.empty(out_shape, dtype=np.float32)
    out_soft = np.empty(out_shape, dtype=np.float32)
    _warp_cpu(image, soft, m, out_image, out_soft, control, elastic, origin, spacing,
              *_scalars(fill_image, fill_soft, hu_scale, hu_shift))
    return out_image, out_soft


# ---------------------------------------------------------------- CUDA (Numba CUDA)

def _warp_cuda(image, soft, seed_shape, m, out_image, out_soft, control, elastic, origin, spacing,
               fill_image, fill_soft, hu_gain, hu_shift):
    """CUDA kernel body, one thread per output voxel (compiled by :func:`_cuda_kernel`).

    ``m``: the 3x4 matrix as 12 float64; ``origin``, ``spacing``: float32 (the
    elastic part runs in float32, so the kernel has 12 float64 instructions).
    """
    k, j, i = cuda.grid(3)  # noqa: F821 - bound to numba.cuda when compiled
    nx, ny, nz = out_image.shape
    if i >= nx or j >= ny or k >= nz:
        return
    # the affine map in float64: three fused multiply-adds per axis, then corner and fraction
    x0, fx = _split(m[3] + m[2] * k + m[1] * j + m[0] * i)
    y0, fy = _split(m[7] + m[6] * k + m[5] * j + m[4] * i)
    z0, fz = _split(m[11] + m[10] * k + m[9] * j + m[8] * i)
    if elastic:  # float32 from here on: control-grid coordinates, B-spline weights, displacement
        cx, tx = _split((np.float32(i) - origin[0]) / spacing[0])
        cy, ty = _split((np.float32(j) - origin[1]) / spacing[1])
        cz, tz = _split((np.float32(k) - origin[2]) / spacing[2])
        wx = _bspline(tx)
        wy = _bspline(ty)
        wz = _bspline(tz)
        dx = np.float32(0.0)
        dy = np.float32(0.0)
        dz = np.float32(0.0)
        for a in range(4):
            ia = cx - 1 + a
            if 0 <= ia < control.shape[1]:
                for b in range(4):
                    jb = cy - 1 + b
                    if 0 <= jb < control.shape[2]:
                        wab = wx[a] * wy[b]
                        for c in range(4):
                            kc = cz - 1 + c
                            if 0 <= kc < control.shape[3]:
                                w = wab * wz[c]
                                dx += w * control[0, ia, jb, kc]
                                dy += w * control[1, ia, jb, kc]
                                dz += w * control[2, ia, jb, kc]
        sx, fx = _split(fx + dx)
        sy, fy = _split(fy + dy)
        sz, fz = _split(fz + dz)
        x0 += sx
        y0 += sy
        z0 += sz
    vi, vs = _sample_corner(image, soft, seed_shape[0], seed_shape[1], seed_shape[2], fill_image, fill_soft,
                            x0, y0, z0, fx, fy, fz)
    out_image[i, j, k] = vi + vs * (vi * hu_gain + hu_shift)
    out_soft[i, j, k] = vs


@functools.cache
def _cuda_kernel():
    """The CUDA kernel, compiled on first use (importing numba.cuda only then)."""
    from numba import cuda as nbcuda

    names = _compile_helpers(nbcuda.jit(device=True), nbcuda.jit(device=True))
    names["cuda"] = nbcuda
    return nbcuda.jit(rebind(_warp_cuda, names))


def cuda(image: Any, soft: Any, matrix: Any, out_shape: tuple[int, int, int],
         control: Any = None, control_origin=(0.0, 0.0, 0.0), control_spacing=(1.0, 1.0, 1.0),
         fill_image: float = 0.0, fill_soft: float = 0.0, hu_scale: float = 1.0,
         hu_shift: float = 0.0) -> tuple[Any, Any]:
    """Same as :func:`cpu` on CuPy arrays (NumPy arrays under ``NUMBA_ENABLE_CUDASIM=1``)."""
    xp = cuda_module(image, "warp")
    image, soft, m, out_shape, control, elastic, origin, spacing = _prepare(
        xp, image, soft, matrix, out_shape, control, control_origin, control_spacing)
    out_image = xp.empty(out_shape, dtype=xp.float32)
    out_soft = xp.empty(out_shape, dtype=xp.float32)
    block = (32, 4, 2)
    grid = tuple((n + b - 1) // b for n, b in zip(out_shape[::-1], block))
    f32 = lambda v: tuple(np.float32(x) for x in v)  # noqa: E731 - the elastic part runs in float32
    _cuda_kernel()[grid, block](image.ravel(), soft.ravel(), image.shape, tuple(float(v) for v in m.ravel()),
                                out_image, out_soft, control, elastic, f32(origin), f32(spacing),
                                *_scalars(fill_image, fill_soft, hu_scale, hu_shift))
    return out_image, out_soft


# ---------------------------------------------------------------- reference (NumPy + SciPy)

def bspline_basis(u: np.ndarray, ncontrol: int, derivative: bool = False) -> np.ndarray:
    """(len(u), ncontrol) float64 cubic B-spline weights of control points 0..ncontrol-1 at grid
    coordinates ``u`` (or their derivatives d/du), evaluated directly from ``r = |u - c|``."""
    return _basis_nb(np.ascontiguousarray(u, dtype=np.float64).ravel(), int(ncontrol), bool(derivative))


# ---------------------------------------------------------------- elastic volume change (host-side, compiled)

@njit(cache=True)
def _contract(t, basis):
    """``out[..., k] = sum_c t[..., c] * basis[k, c]`` over the last axis of a 4-D array (the sum in
    ``c`` order; the loop over ``k`` innermost, contiguous)."""
    d0, d1, d2, nc = t.shape
    nk = basis.shape[0]
    basis_t = np.ascontiguousarray(basis.T)
    out = np.zeros((d0, d1, d2, nk))
    for a in range(d0):
        for b in range(d1):
            for c in range(d2):
                row = out[a, b, c]
                for q in range(nc):
                    tq = t[a, b, c, q]
                    wq = basis_t[q]
                    for k in range(nk):
                        row[k] += tq * wq[k]
    return out


@njit(cache=True)
def _basis_nb(u, ncontrol, derivative):
    """(len(u), ncontrol) cubic B-spline weights (or d/du) of control points 0..ncontrol-1 at ``u``."""
    out = np.zeros((u.shape[0], ncontrol))
    for p in range(u.shape[0]):
        for c in range(ncontrol):
            diff = u[p] - c
            r = abs(diff)
            if derivative:
                if r < 1:
                    v = (-12 * r + 9 * r * r) / 6
                elif r < 2:
                    v = -(2 - r) ** 2 / 2
                else:
                    v = 0.0
                out[p, c] = np.sign(diff) * v
            elif r < 1:
                out[p, c] = (4 - 6 * r * r + 3 * r ** 3) / 6
            elif r < 2:
                out[p, c] = (2 - r) ** 3 / 6
    return out


@njit(cache=True)
def inverse_jacobian_mean(control, axes, step, lattice_inv, to_mask, mask):
    """Mask-weighted mean of ``1 / det(I + grad D)`` over a K^3 tensor grid of points (host-side,
    float64; both backends' ``morph`` call it on NumPy control grids).

    ``control``: (3, nx, ny, nz) displacements (mm); ``axes``: (3, K) the points'
    control-grid coordinates along each axis (the grid is their tensor product);
    ``step``: control spacing in lattice voxels per axis; ``lattice_inv``: 3x3, world
    mm -> lattice voxel, so that ``J = I + G @ lattice_inv`` with
    ``G[c, a] = dD_c / d(lattice voxel a)``.
    ``to_mask``: 3x4, point index (i, j, k) -> voxel of ``mask`` (float32), sampled
    trilinearly, 0 outside ``[0, n - 1]`` (``map_coordinates(order=1, mode='constant')``).
    The field separates: one contraction per axis, no per-point sum over control points.
    """
    n = control.shape[1:]
    vals_x, vals_y, vals_z = (_basis_nb(axes[0], n[0], False), _basis_nb(axes[1], n[1], False),
                              _basis_nb(axes[2], n[2], False))
    ders_x, ders_y, ders_z = (_basis_nb(axes[0], n[0], True) / step[0], _basis_nb(axes[1], n[1], True) / step[1],
                              _basis_nb(axes[2], n[2], True) / step[2])
    kx = ky = kz = axes.shape[1]
    # z first, then y, then x; gx, gy, gz hold dD/d(axis) as (3, kz, ky, kx)
    tz_v = np.ascontiguousarray(_contract(control, vals_z).transpose(0, 1, 3, 2))  # (3, nx, kz, ny)
    tz_d = np.ascontiguousarray(_contract(control, ders_z).transpose(0, 1, 3, 2))
    vv = _contract(tz_v, vals_y)  # (3, nx, kz, ky)
    dv = _contract(tz_v, ders_y)
    vd = _contract(tz_d, vals_y)
    gx = _contract(np.ascontiguousarray(vv.transpose(0, 2, 3, 1)), ders_x)  # (3, kz, ky, kx)
    gy = _contract(np.ascontiguousarray(dv.transpose(0, 2, 3, 1)), vals_x)
    gz = _contract(np.ascontiguousarray(vd.transpose(0, 2, 3, 1)), vals_x)
    mx, my, mz = mask.shape
    total, norm = 0.0, 0.0
    jac = np.empty((3, 3))
    p = np.empty(3)
    for i in range(kx):
        for j in range(ky):
            for k in range(kz):
                inside = True
                for d in range(3):
                    p[d] = to_mask[d, 0] * i + to_mask[d, 1] * j + to_mask[d, 2] * k + to_mask[d, 3]
                    if not (0.0 <= p[d] <= mask.shape[d] - 1):
                        inside = False
                if not inside:
                    continue
                x0 = min(int(p[0]), max(mx - 2, 0))
                y0 = min(int(p[1]), max(my - 2, 0))
                z0 = min(int(p[2]), max(mz - 2, 0))
                fx, fy, fz = p[0] - x0, p[1] - y0, p[2] - z0
                w = 0.0
                for a in range(2):
                    for b in range(2):
                        for c in range(2):
                            wa = fx if a else 1.0 - fx
                            wb = fy if b else 1.0 - fy
                            wc = fz if c else 1.0 - fz
                            weight = wa * wb * wc
                            if weight != 0.0:
                                w += weight * mask[x0 + a, y0 + b, z0 + c]
                if w == 0.0:
                    continue
                for c in range(3):
                    g0, g1, g2 = gx[c, k, j, i], gy[c, k, j, i], gz[c, k, j, i]
                    for e in range(3):
                        jac[c, e] = (1.0 if c == e else 0.0) + g0 * lattice_inv[0, e] \
                            + g1 * lattice_inv[1, e] + g2 * lattice_inv[2, e]
                det = (jac[0, 0] * (jac[1, 1] * jac[2, 2] - jac[1, 2] * jac[2, 1])
                       - jac[0, 1] * (jac[1, 0] * jac[2, 2] - jac[1, 2] * jac[2, 0])
                       + jac[0, 2] * (jac[1, 0] * jac[2, 1] - jac[1, 1] * jac[2, 0]))
                total += w / det
                norm += w
    return total / norm


# ---------------------------------------------------------------- the oracle

def reference(image, soft, matrix, out_shape, control=None, control_origin=(0.0, 0.0, 0.0),
              control_spacing=(1.0, 1.0, 1.0), fill_image=0.0, fill_soft=0.0, hu_scale=1.0,
              hu_shift=0.0):
    """Test oracle: the full displacement field built explicitly, then ``map_coordinates(order=1)``."""
    from scipy.ndimage import map_coordinates
    m = np.asarray(matrix, dtype=np.float64)[:3]
    grid = np.indices(out_shape, dtype=np.float64)
    coords = np.einsum("dn,n...->d...", m[:, :3], grid) + m[:, 3].reshape(3, 1, 1, 1)
    if control is not None:
        control = np.asarray(control, dtype=np.float64)
        bx, by, bz = (bspline_basis((np.arange(n) - o) / h, c) for n, o, h, c in
                      zip(out_shape, control_origin, control_spacing, control.shape[1:]))
        coords += np.einsum("ia,jb,kc,dabc->dijk", bx, by, bz, control)
    image = np.asarray(image, dtype=np.float32)
    soft = np.asarray(soft, dtype=np.float32)
    vi = map_coordinates(image, coords, order=1, mode="grid-constant", cval=fill_image).astype(np.float64)
    vs = map_coordinates(soft, coords, order=1, mode="grid-constant", cval=fill_soft).astype(np.float64)
    vi = vi + vs * (vi * (hu_scale - 1.0) + hu_shift)
    return vi.astype(np.float32), vs.astype(np.float32)
