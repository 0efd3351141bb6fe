"""The CPU implementation of the blending kernels: Numba loops over NumPy arrays.

Arithmetic in float64 on float32 arrays (the per-voxel functions of
:mod:`.blend_voxel` compiled with ``real = np.float64``). The multigrid loops
run over each row's extent of the level's mask (rows outside it are skipped);
levels with fewer than ``_PARALLEL_MIN`` voxels run serial loops.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from . import blend_voxel as V
from .multigrid import vcycle

_DTYPE = np.float32       # the CG vectors and the V-cycle's levels (dot products accumulate in float64)
_PARALLEL_MIN = 48 ** 3   # levels with fewer voxels run serial loops

_cjit = njit(cache=True)
_alpha_c = _cjit(V.alpha_op(np.float64))
_rhs_c = _cjit(V.rhs_op(np.float64))
_neigh_c = _cjit(V.neigh_sum)
_resid_c, _matvec_c = V.stencil_ops(_cjit, np.float64)
_coarsen_c = _cjit(V.coarsen)
_tap = V.tap_op(np.float64)
_interp = V.interp_op(np.float64)


def _row_extents(mask):
    """(nz, ny, 2) int64: first and one-past-last k of each row's unknowns (0, 0 if none)."""
    nx = mask.shape[2]
    hit = mask.any(axis=2)
    lo = np.where(hit, mask.argmax(axis=2), 0)
    hi = np.where(hit, nx - mask[:, :, ::-1].argmax(axis=2), 0)
    return np.ascontiguousarray(np.stack([lo, hi], axis=-1), dtype=np.int64)


def _par(fn):
    """(parallel, serial) compilations of one loop: coarse levels are too small to split."""
    return njit(parallel=True, cache=True)(fn), njit(cache=True)(fn)


def _pick(L):
    return 1 if L["mask"].size >= _PARALLEL_MIN else 0


@njit(parallel=True, cache=True)
def alpha(host, seed, weight, out, lo, hi):
    """The alpha blend over flat arrays (see :func:`.blend_voxel.alpha_op`)."""
    for t in prange(out.size):
        _alpha_c(host, seed, weight, out, lo, hi, t)


@njit(parallel=True, cache=True)
def _rhs_cpu(fixed, mask, ext, seed, host, wz, wy, wx, mixed, b, x):
    acc = 0.0
    for i in prange(1, ext.shape[0] - 1):  # start 1 keeps i signed (shell is held)
        for j in range(ext.shape[1]):
            for k in range(ext[i, j, 0], ext[i, j, 1]):
                acc += _rhs_c(fixed, mask, seed, host, wz, wy, wx, mixed, b, x, i, j, k)
    return acc


def _sweep_cpu(u, b, mask, ext, wz, wy, wx, inv, first):
    """One red-black Gauss-Seidel sweep, colour ``first`` then the other, as a wavefront.

    Step s gives plane s the first colour and plane s - 1 the second: the second
    colour of a plane needs the first colour of its own and both neighbouring
    planes, all done by then, and nothing else. The result equals two colour
    passes over the whole box, but each plane is read while it is in cache, once
    per sweep instead of twice (the sweep is memory bound). Rows of a plane run
    in parallel: a colour's voxels only read the other colour.
    """
    nz = ext.shape[0]
    for s in range(1, nz):
        for step in range(2):
            i = s if step == 0 else s - 1
            if i < 1 or i > nz - 2:  # the held shell
                continue
            color = first if step == 0 else 1 - first
            for j in prange(ext.shape[1]):
                k0 = ext[i, j, 0]
                for k in range(k0 + ((i + j + k0 + color) & 1), ext[i, j, 1], 2):
                    # the update is written out here: a call per voxel (array reference
                    # counting) costs ~10x in this, the hottest loop
                    if mask[i, j, k]:
                        u[i, j, k] = (b[i, j, k] + _neigh_c(u, wz, wy, wx, i, j, k)) * inv


_sweep_cpu_par, _sweep_cpu_ser = _par(_sweep_cpu)


def _resid_cpu(u, b, mask, ext, d, wz, wy, wx, r):
    acc = 0.0
    for i in prange(1, ext.shape[0] - 1):  # start 1 keeps i signed (shell is held)
        for j in range(ext.shape[1]):
            for k in range(ext[i, j, 0], ext[i, j, 1]):
                acc += _resid_c(u, b, mask, d, wz, wy, wx, r, i, j, k)
    return acc


_resid_cpu_par, _resid_cpu_ser = _par(_resid_cpu)


def _matvec_cpu(p, mask, ext, d, wz, wy, wx, q):
    acc = 0.0
    for i in prange(1, ext.shape[0] - 1):  # start 1 keeps i signed (shell is held)
        for j in range(ext.shape[1]):
            for k in range(ext[i, j, 0], ext[i, j, 1]):
                acc += _matvec_c(p, mask, d, wz, wy, wx, q, i, j, k)
    return acc


_matvec_cpu_par, _matvec_cpu_ser = _par(_matvec_cpu)


def _taps(n_c, f, n):
    """Restriction taps of one axis: (n_c, 4) fine indices and weights (see ``tap_op``)."""
    t = [[_tap(c, f, a, n) for a in range(4)] for c in range(n_c)]
    return (np.array([[i for i, _ in row] for row in t], dtype=np.int64),
            np.array([[w for _, w in row] for row in t], dtype=np.float64))


def _interps(n, f):
    """Prolongation taps of one axis: (n, 2) coarse indices and weights (see ``interp_op``)."""
    t = [[_interp(i, f, a) for a in range(2)] for i in range(n)]
    return (np.array([[c for c, _ in row] for row in t], dtype=np.int64),
            np.array([[w for _, w in row] for row in t], dtype=np.float64))


def _restrict_cpu(r, cmask, cext, iz, wz, iy, wy, ix, wx, scale, bc):
    """bc = scale * R r, row by row: 16 fine rows summed into a line, then 4 taps along k."""
    for I in prange(1, cext.shape[0] - 1):
        line = np.zeros(r.shape[2])
        for J in range(1, cext.shape[1] - 1):
            K0, K1 = cext[I, J, 0], cext[I, J, 1]
            if K0 == K1:
                continue
            k0, k1 = ix[K0, 0], ix[K1 - 1, 3] + 1
            line[k0:k1] = 0.0
            for a in range(4):
                for b in range(4):
                    w = wz[I, a] * wy[J, b]
                    if w != 0.0:
                        i, j = iz[I, a], iy[J, b]
                        for k in range(k0, k1):
                            line[k] += w * r[i, j, k]
            for K in range(K0, K1):
                if cmask[I, J, K]:
                    acc = 0.0
                    for c in range(4):
                        acc += wx[K, c] * line[ix[K, c]]
                    bc[I, J, K] = scale * acc


_restrict_cpu_par, _restrict_cpu_ser = _par(_restrict_cpu)


def _prolong_cpu(uc, mask, ext, iz, wz, iy, wy, ix, wx, u):
    """u += P uc, row by row: 4 coarse rows combined into a line, then 2 taps along k."""
    for i in prange(1, ext.shape[0] - 1):
        line = np.zeros(uc.shape[2])
        for j in range(1, ext.shape[1] - 1):
            k0, k1 = ext[i, j, 0], ext[i, j, 1]
            if k0 == k1:
                continue
            K0 = min(ix[k0, 0], ix[k0, 1])
            K1 = max(ix[k1 - 1, 0], ix[k1 - 1, 1]) + 1
            line[K0:K1] = 0.0
            for a in range(2):
                for b in range(2):
                    w = wz[i, a] * wy[j, b]
                    if w != 0.0:
                        I, J = iz[i, a], iy[j, b]
                        for K in range(K0, K1):
                            line[K] += w * uc[I, J, K]
            for k in range(k0, k1):
                if mask[i, j, k]:
                    u[i, j, k] += wx[k, 0] * line[ix[k, 0]] + wx[k, 1] * line[ix[k, 1]]


_prolong_cpu_par, _prolong_cpu_ser = _par(_prolong_cpu)


@njit(parallel=True, cache=True)
def _coarsen_cpu(mask, fz, fy, fx, cmask):
    nz, ny, nx = cmask.shape
    for I in prange(1, nz - 1):
        for J in range(1, ny - 1):
            for K in range(1, nx - 1):
                _coarsen_c(mask, fz, fy, fx, cmask, I, J, K)


# flat (1-D view) vector ops: raveling inside a parallel function may copy
@njit(parallel=True, cache=True)
def _dot_cpu(a, b):
    acc = 0.0
    for t in prange(a.size):
        acc += a[t] * b[t]
    return acc


@njit(parallel=True, cache=True)
def _xpay_cpu(z, beta, p):
    for t in prange(p.size):
        p[t] = z[t] + beta * p[t]


@njit(parallel=True, cache=True)
def _axpy2_cpu(alpha, p, q, x, r):
    """x += alpha p; r -= alpha q; returns r.r."""
    acc = 0.0
    for t in prange(r.size):
        x[t] += alpha * p[t]
        v = r[t] - alpha * q[t]
        r[t] = v
        acc += v * v
    return acc


class _Levels:
    """Level-wise operations of :func:`.multigrid.vcycle` on NumPy arrays (a level is a dict)."""

    @staticmethod
    def sweep(L, first):
        (_sweep_cpu_ser, _sweep_cpu_par)[_pick(L)](L["u"], L["b"], L["mask"], L["ext"], *L["w"],
                                                     L["inv"], first)

    @staticmethod
    def resid(L, u, b, r):
        return (_resid_cpu_ser, _resid_cpu_par)[_pick(L)](u, b, L["mask"], L["ext"], L["d"], *L["w"], r)

    @staticmethod
    def restrict(L, C):
        (_restrict_cpu_ser, _restrict_cpu_par)[_pick(L)](L["r"], C["mask"], C["ext"], *L["taps"],
                                                         1.0 / math.prod(L["f"]), C["b"])

    @staticmethod
    def prolong(L, C):
        (_prolong_cpu_ser, _prolong_cpu_par)[_pick(L)](C["u"], L["mask"], L["ext"], *L["interps"],
                                                       L["u"])


def _level(spec, mask):
    return {"mask": mask, "w": spec.w, "d": spec.diagonal, "f": spec.f, "inv": 0.5 / sum(spec.w),
            "ext": _row_extents(mask), "u": np.zeros(spec.shape, _DTYPE), "b": np.zeros(spec.shape, _DTYPE),
            "r": np.zeros(spec.shape, _DTYPE)}


class Ops:
    """The operations of :func:`.mgpcg.solve` on NumPy arrays (state: a dict)."""

    @staticmethod
    def setup(levels, fixed, solve_mask, seed, host, mixed, max_iter):
        seed, host, fixed = (np.ascontiguousarray(a, dtype=np.float32) for a in (seed, host, fixed))
        lv = [_level(levels[0], np.ascontiguousarray(solve_mask, dtype=np.bool_))]
        for spec in levels[1:]:
            m = np.zeros(spec.shape, dtype=np.bool_)
            _coarsen_cpu(lv[-1]["mask"], *lv[-1]["f"], m)
            lv.append(_level(spec, m))
            L, C = lv[-2], lv[-1]
            L["taps"] = sum((_taps(C["mask"].shape[a], L["f"][a], L["mask"].shape[a]) for a in range(3)), ())
            L["interps"] = sum((_interps(L["mask"].shape[a], L["f"][a]) for a in range(3)), ())
        zeros = functools.partial(np.zeros, fixed.shape, _DTYPE)
        s = {"lv": lv, "fixed": fixed, "b": zeros(), "x": zeros(), "r": zeros(), "p": zeros(), "q": zeros()}
        L0 = lv[0]
        s["bb"] = float(_rhs_cpu(fixed, L0["mask"], L0["ext"], seed, host, *L0["w"], mixed, s["b"], s["x"]))
        s["rr"] = float(_Levels.resid(L0, s["x"], s["b"], s["r"]))
        return s

    @staticmethod
    def norms(s):
        return s["bb"], s["rr"]

    @staticmethod
    def iterate(s, it):
        lv, r, p, q = s["lv"], s["r"], s["p"], s["q"]
        L0 = lv[0]
        L0["b"][...] = r
        vcycle(_Levels, lv, 0)
        z = L0["u"]
        rz = _dot_cpu(r.reshape(-1), z.reshape(-1))
        if it == 0:
            p[...] = z
        else:
            _xpay_cpu(z.reshape(-1), rz / s["rz"], p.reshape(-1))
        s["rz"] = rz
        alpha = rz / (_matvec_cpu_ser, _matvec_cpu_par)[_pick(L0)](p, L0["mask"], L0["ext"], L0["d"], *L0["w"], q)
        s["rr"] = float(_axpy2_cpu(alpha, *(a.reshape(-1) for a in (p, q, s["x"], r))))

    @staticmethod
    def read(s, it):
        return s["rr"]

    @staticmethod
    def result(s):
        return np.where(s["lv"][0]["mask"], s["x"], s["fixed"])
