"""CUDA kernels of :mod:`synthlung.kernels.blend`, imported (and compiled) on first use.

Each kernel is one thread per voxel of a box (1-D launch); the per-voxel
arithmetic is the plain functions of ``blend`` compiled as device functions.
"""
from numba import cuda

from .blend import _alpha_v, _make_stencil_ops, _make_transfer_ops, _rhs_v

_dev = cuda.jit(device=True)


def _interior(t, shape):
    """(i, j, k) of flat index t and whether it is an interior voxel of ``shape``."""
    nz, ny, nx = shape
    k = t % nx
    j = (t // nx) % ny
    i = t // (nx * ny)
    ok = 0 < i < nz - 1 and 0 < j < ny - 1 and 0 < k < nx - 1
    return i, j, k, ok


alpha_v, rhs_v, interior = _dev(_alpha_v), _dev(_rhs_v), _dev(_interior)
smooth_v, resid_v, matvec_v = _make_stencil_ops(_dev)
restrict_v, prolong_v, coarsen_v = _make_transfer_ops(_dev)


@cuda.jit
def alpha(host, seed, weight, out, lo, hi):
    t = cuda.grid(1)
    if t < out.size:
        alpha_v(host, seed, weight, out, lo, hi, t)


@cuda.jit
def rhs(fixed, mask, seed, host, wz, wy, wx, mixed, b, x):
    i, j, k, ok = interior(cuda.grid(1), b.shape)
    if ok:
        rhs_v(fixed, mask, seed, host, wz, wy, wx, mixed, b, x, i, j, k)


@cuda.jit
def smooth(u, b, mask, wz, wy, wx, inv, color):
    i, j, k, ok = interior(cuda.grid(1), u.shape)
    if ok and (i + j + k) % 2 == color:
        smooth_v(u, b, mask, wz, wy, wx, inv, i, j, k)


@cuda.jit
def resid(u, b, mask, wz, wy, wx, r):
    i, j, k, ok = interior(cuda.grid(1), u.shape)
    if ok:
        resid_v(u, b, mask, wz, wy, wx, r, i, j, k)


@cuda.jit
def matvec(p, mask, wz, wy, wx, q):
    i, j, k, ok = interior(cuda.grid(1), p.shape)
    if ok:
        matvec_v(p, mask, wz, wy, wx, q, i, j, k)


@cuda.jit
def restrict(r, cmask, fz, fy, fx, bc):
    i, j, k, ok = interior(cuda.grid(1), bc.shape)
    if ok:
        restrict_v(r, cmask, fz, fy, fx, bc, i, j, k)


@cuda.jit
def prolong(uc, mask, fz, fy, fx, u):
    i, j, k, ok = interior(cuda.grid(1), u.shape)
    if ok:
        prolong_v(uc, mask, fz, fy, fx, u, i, j, k)


@cuda.jit
def coarsen(mask, fz, fy, fx, cmask):
    i, j, k, ok = interior(cuda.grid(1), cmask.shape)
    if ok:
        coarsen_v(mask, fz, fy, fx, cmask, i, j, k)
