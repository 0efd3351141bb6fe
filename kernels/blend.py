"""Alpha and Poisson (gradient-domain) blending of a seed into a host, on one box.

``alpha`` is the fused ``host * (1 - w) + seed * w`` clipped to an HU range.

``poisson`` solves, for every voxel p of ``solve_mask``,

    sum_q w_q (u_p - u_q) = sum_q w_q g_pq,        w_q = 1 / h_axis(q)^2 (mm^-2)

over the 6 face neighbours q, with ``u_q = fixed_q`` wherever ``solve_mask`` is
false. The guidance ``g_pq = seed_p - seed_q``; with ``mixed=True`` it is the
host's difference instead wherever that one is larger in magnitude (so host
vessels crossing the blending ring survive). The textbook form (no inner
constraint) and the core-held form (tumour core kept at seed HU) are the same
call with different masks: a voxel is held exactly when it is outside
``solve_mask``, at its ``fixed`` value. The outer shell of the box must be
held (``solve_mask`` false on the six faces).

Solver: conjugate gradients preconditioned with one geometric multigrid
V-cycle (MGPCG): red-black Gauss-Seidel smoothing (symmetric order, so the
preconditioner is symmetric), cell-centred trilinear prolongation and its
transpose as restriction, coarse levels re-discretised at twice the spacing
with a coarse cell unknown when any of its children is (held cells are
homogeneous Dirichlet for the correction). Axes are coarsened only while their
spacing is within 1.5x of the finest axis (semi-coarsening), which keeps the
smoother effective for anisotropic voxels (e.g. 0.6 x 0.6 x 5 mm). The
iteration starts from the seed's values and stops at ``||b - A u|| <= tol *
||b||`` (the criterion of ``scipy.sparse.linalg.cg``) or after ``max_iter``
iterations; all three return ``(out float32, iterations, relative residual)``.
The CG vectors are float32 with float64 accumulation of the dot products: the
solve is memory bound, and float64 vectors cost 10 % more time at 128^3 for no
gain (the true residual of the float32 iterate, recomputed in float64 by the
tests, meets the same 1e-5).

The per-voxel arithmetic is written once as plain functions and compiled twice:
with ``numba.njit`` for ``cpu`` and as CUDA device functions for ``cuda``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from synthlung.backend import array_module
from synthlung.errors import InputError

_COARSEN_RATIO = 1.5     # coarsen an axis while h_axis <= 1.5 * min(h)
_MIN_INTERIOR = 3        # stop coarsening an axis once it has this few interior cells
_SWEEPS = 2              # red-black pre- and post-smoothing sweeps per level (2: 9 -> 7 iterations at 128^3, 25 % faster than 1)
_COARSE_SWEEPS = 8       # symmetric sweeps on the coarsest level
_MG_DTYPE = np.float32   # the V-cycle (preconditioner) works in single precision
_CG_DTYPE = np.float32   # so do the CG vectors (dot products accumulate in float64)
_PARALLEL_MIN = 48 ** 3  # cpu: levels with fewer voxels run serial loops

# --------------------------------------------------------------------------
# per-voxel arithmetic, compiled for both targets
# --------------------------------------------------------------------------


def _alpha_v(host, seed, weight, out, lo, hi, t):
    w = np.float64(weight[t])  # float64 arithmetic on every target (numba float() keeps float32)
    v = np.float64(host[t]) * (1.0 - w) + np.float64(seed[t]) * w
    out[t] = min(max(v, lo), hi)


def _rhs_v(fixed, mask, seed, host, wz, wy, wx, mixed, b, x, i, j, k):
    """Right-hand side and start value at voxel (i, j, k); returns b^2."""
    if not mask[i, j, k]:
        return 0.0
    acc = 0.0
    sp = np.float64(seed[i, j, k])
    hp = np.float64(host[i, j, k])
    for n in range(6):
        axis = n // 2
        s = 1 - 2 * (n % 2)
        qi = i + s if axis == 0 else i
        qj = j + s if axis == 1 else j
        qk = k + s if axis == 2 else k
        w = wz if axis == 0 else (wy if axis == 1 else wx)
        g = sp - np.float64(seed[qi, qj, qk])
        if mixed:
            gh = hp - np.float64(host[qi, qj, qk])
            if abs(gh) > abs(g):
                g = gh
        acc += w * g
        if not mask[qi, qj, qk]:
            acc += w * np.float64(fixed[qi, qj, qk])
    b[i, j, k] = acc
    x[i, j, k] = sp
    return acc * acc


def _neigh_sum(u, wz, wy, wx, i, j, k):
    return (wz * (u[i - 1, j, k] + u[i + 1, j, k])
            + wy * (u[i, j - 1, k] + u[i, j + 1, k])
            + wx * (u[i, j, k - 1] + u[i, j, k + 1]))


def _make_stencil_ops(jit):
    """Stencil ops built on ``_neigh_sum``; ``jit`` compiles for one target."""
    neigh = jit(_neigh_sum)

    def smooth(u, b, mask, wz, wy, wx, inv, i, j, k):
        """Gauss-Seidel update; ``inv`` = 1 / diagonal."""
        if mask[i, j, k]:
            u[i, j, k] = (b[i, j, k] + neigh(u, wz, wy, wx, i, j, k)) * inv

    def resid(u, b, mask, wz, wy, wx, r, i, j, k):
        """r = b - A u on the mask; returns r^2."""
        if not mask[i, j, k]:
            return 0.0
        v = b[i, j, k] - (2.0 * (wz + wy + wx) * u[i, j, k] - neigh(u, wz, wy, wx, i, j, k))
        r[i, j, k] = v
        return v * v

    def matvec(p, mask, wz, wy, wx, q, i, j, k):
        """q = A p on the mask; returns p.q there."""
        if not mask[i, j, k]:
            return 0.0
        v = 2.0 * (wz + wy + wx) * p[i, j, k] - neigh(p, wz, wy, wx, i, j, k)
        q[i, j, k] = v
        return v * p[i, j, k]

    return jit(smooth), jit(resid), jit(matvec)


def _tap(c, f, t, n):
    """Fine index and weight of tap ``t`` (0..3) of coarse cell ``c`` along one axis.

    Factor 2: fine cells 2c-2 .. 2c+1 weigh 1/4, 3/4, 3/4, 1/4 (the transpose of
    cell-centred linear interpolation); factor 1: the fine cell ``c`` itself.
    """
    if f == 1:
        return c, (1.0 if t == 1 else 0.0)
    i = 2 * c - 2 + t
    if i >= n:
        return n - 1, 0.0
    return i, (0.75 if (t == 1 or t == 2) else 0.25)


def _interp(i, f, t):
    """Coarse index and weight of tap ``t`` (0..1) of fine cell ``i`` along one axis."""
    if f == 1:
        return i, (1.0 if t == 0 else 0.0)
    c = (i + 1) // 2
    if t == 0:
        return c, 0.75
    return (c + 1 if i % 2 == 0 else c - 1), 0.25


def _make_transfer_ops(jit):
    tap = jit(_tap)
    interp = jit(_interp)

    def restrict(r, cmask, fz, fy, fx, bc, I, J, K):
        """bc = (1/F) R r at coarse cell (I, J, K)."""
        if not cmask[I, J, K]:
            return
        nz, ny, nx = r.shape
        acc = 0.0
        for a in range(4):
            i, wa = tap(I, fz, a, nz)
            if wa == 0.0:
                continue
            for bb in range(4):
                j, wb = tap(J, fy, bb, ny)
                if wb == 0.0:
                    continue
                for c in range(4):
                    k, wc = tap(K, fx, c, nx)
                    if wc != 0.0:
                        acc += wa * wb * wc * r[i, j, k]
        bc[I, J, K] = acc / (fz * fy * fx)

    def prolong(uc, mask, fz, fy, fx, u, i, j, k):
        """u += P uc at fine cell (i, j, k)."""
        if not mask[i, j, k]:
            return
        acc = 0.0
        for a in range(2):
            I, wa = interp(i, fz, a)
            for bb in range(2):
                J, wb = interp(j, fy, bb)
                for c in range(2):
                    K, wc = interp(k, fx, c)
                    acc += wa * wb * wc * uc[I, J, K]
        u[i, j, k] += acc

    def coarsen(mask, fz, fy, fx, cmask, I, J, K):
        """A coarse cell is unknown when any of its fine children is."""
        nz, ny, nx = mask.shape
        hit = False
        for i in range(max(fz * I - fz + 1, 0), min(fz * I + 1, nz)):
            for j in range(max(fy * J - fy + 1, 0), min(fy * J + 1, ny)):
                for k in range(max(fx * K - fx + 1, 0), min(fx * K + 1, nx)):
                    if mask[i, j, k]:
                        hit = True
        cmask[I, J, K] = hit

    return jit(restrict), jit(prolong), jit(coarsen)


_cjit = njit(cache=True)
_alpha_c = _cjit(_alpha_v)
_rhs_c = _cjit(_rhs_v)
_neigh_c = _cjit(_neigh_sum)
_, _resid_c, _matvec_c = _make_stencil_ops(_cjit)
_coarsen_c = _make_transfer_ops(_cjit)[2]  # cpu restrict/prolong: row-wise loops below

# --------------------------------------------------------------------------
# the multigrid hierarchy (shapes only; shared by cpu and cuda)
# --------------------------------------------------------------------------


def _coarse_shape(n: int, f: int) -> int:
    # coarse cell c covers fine cells 2c-1, 2c: the held outer shell stays held
    return n if f == 1 else (n - 1) // 2 + 2


def _hierarchy(shape, spacing):
    """[(shape, weights (wz, wy, wx), factors to the next level)] from fine to coarse."""
    levels = []
    h = [float(s) for s in spacing]
    shape = tuple(int(n) for n in shape)
    while True:
        hmin = min(h)
        f = tuple(2 if (h[a] <= _COARSEN_RATIO * hmin and shape[a] - 2 > _MIN_INTERIOR) else 1
                  for a in range(3))
        levels.append((shape, tuple(1.0 / (x * x) for x in h), f))
        if f == (1, 1, 1):
            return levels
        shape = tuple(_coarse_shape(shape[a], f[a]) for a in range(3))
        h = [h[a] * f[a] for a in range(3)]


# --------------------------------------------------------------------------
# the solver, written once over a table of target operations
# --------------------------------------------------------------------------


def _vcycle(ops, lv, l):
    """One symmetric V-cycle from level ``l``: lv[l]['u'] ~ A^-1 lv[l]['b']."""
    L = lv[l]
    L["u"].fill(0)
    last = l == len(lv) - 1
    sweeps = _COARSE_SWEEPS if last else _SWEEPS
    for _ in range(sweeps):
        ops.sweep(L, 0)  # red, then black
    if not last:
        ops.resid(L, L["u"], L["b"], L["r"])
        ops.restrict(L, lv[l + 1])
        _vcycle(ops, lv, l + 1)
        ops.prolong(L, lv[l + 1])
    for _ in range(sweeps):
        ops.sweep(L, 1)  # black, then red: the mirror order keeps the preconditioner symmetric


def _check(fixed, solve_mask, seed, host, spacing):
    shape = fixed.shape
    if fixed.ndim != 3 or any(a.shape != shape for a in (solve_mask, seed, host)):
        raise InputError(f"poisson: fixed, solve_mask, seed and host must be 3-D boxes of one shape, "
                         f"got {[a.shape for a in (fixed, solve_mask, seed, host)]}")
    if min(shape) < 3:
        raise InputError(f"poisson: box shape {shape} is too small (need >= 3 voxels per axis)")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"poisson: spacing_mm={tuple(spacing)} must be 3 positive numbers (mm)")
    m = solve_mask
    shell = (m[0].any() | m[-1].any() | m[:, 0].any() | m[:, -1].any()
             | m[:, :, 0].any() | m[:, :, -1].any())
    if bool(shell):
        raise InputError("poisson: solve_mask touches the box faces; the outer shell must be held "
                         "(pad the box by one voxel)")


def _solve(ops, xp, fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter):
    host = seed if host is None else host
    _check(fixed, solve_mask, seed, host, spacing)
    seed, host, fixed = (xp.ascontiguousarray(a, dtype=xp.float32) for a in (seed, host, fixed))
    mask = xp.ascontiguousarray(solve_mask, dtype=xp.bool_)
    lv = []
    for shape, w, f in _hierarchy(fixed.shape, spacing):
        if lv:
            m = xp.zeros(shape, dtype=xp.bool_)
            ops.coarsen(lv[-1], m)
        else:
            m = mask
        lv.append({"mask": m, "w": w, "f": f, "inv": 0.5 / sum(w), "u": xp.zeros(shape, _MG_DTYPE),
                   "b": xp.zeros(shape, _MG_DTYPE), "r": xp.zeros(shape, _MG_DTYPE)})
        ops.prepare(lv[-1])
        if len(lv) > 1:
            ops.prepare(lv[-2], lv[-1])
    zeros = functools.partial(xp.zeros, fixed.shape, _CG_DTYPE)
    b, x, r, p, q = zeros(), zeros(), zeros(), zeros(), zeros()
    L0 = lv[0]
    bnorm = math.sqrt(float(ops.rhs(L0, fixed, seed, host, bool(mixed), b, x)))
    it, rel = 0, 0.0
    if bnorm > 0.0:
        rel = math.sqrt(float(ops.resid(L0, x, b, r))) / bnorm
        z = L0["u"]
        while rel > tol and it < max_iter:
            lv[0]["b"][...] = r
            _vcycle(ops, lv, 0)
            rz = ops.dot(r, z)
            if it == 0:
                p[...] = z
            else:
                ops.xpay(z, rz / rz_old, p)
            rz_old = rz
            alpha = rz / ops.matvec(L0, p, q)
            rel = math.sqrt(float(ops.axpy2(alpha, p, q, x, r))) / bnorm
            it += 1
    out = xp.where(mask, x.astype(xp.float32), fixed)
    return out, it, rel


# --------------------------------------------------------------------------
# cpu: loops over each row's extent of the level's mask (rows outside it are skipped)
# --------------------------------------------------------------------------


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
def _alpha_cpu(host, seed, weight, out, lo, hi):
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


def _resid_cpu(u, b, mask, ext, wz, wy, wx, r):
    acc = 0.0
    for i in prange(1, ext.shape[0] - 1):  # start 1 keeps i signed (shell is held)
        for j in range(ext.shape[1]):
            for k in range(ext[i, j, 0], ext[i, j, 1]):
                acc += _resid_c(u, b, mask, wz, wy, wx, r, i, j, k)
    return acc


_resid_cpu_par, _resid_cpu_ser = _par(_resid_cpu)


def _matvec_cpu(p, mask, ext, wz, wy, wx, q):
    acc = 0.0
    for i in prange(1, ext.shape[0] - 1):  # start 1 keeps i signed (shell is held)
        for j in range(ext.shape[1]):
            for k in range(ext[i, j, 0], ext[i, j, 1]):
                acc += _matvec_c(p, mask, wz, wy, wx, q, i, j, k)
    return acc


_matvec_cpu_par, _matvec_cpu_ser = _par(_matvec_cpu)


def _taps(n_c, f, n):
    """Restriction taps of one axis: (n_c, 4) fine indices and weights (see ``_tap``)."""
    t = [[_tap(c, f, a, n) for a in range(4)] for c in range(n_c)]
    return (np.array([[i for i, _ in row] for row in t], dtype=np.int64),
            np.array([[w for _, w in row] for row in t], dtype=np.float64))


def _interps(n, f):
    """Prolongation taps of one axis: (n, 2) coarse indices and weights (see ``_interp``)."""
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


class _CpuOps:
    """Level-wise operations for :func:`_solve` on NumPy arrays (a level is a dict)."""

    @staticmethod
    def prepare(L, C=None):
        """Row extents of level L; with its coarse level C, the transfer tables between them."""
        if C is None:
            L["ext"] = _row_extents(L["mask"])
            return
        shape, cshape = L["mask"].shape, C["mask"].shape
        L["taps"] = sum((_taps(cshape[a], L["f"][a], shape[a]) for a in range(3)), ())
        L["interps"] = sum((_interps(shape[a], L["f"][a]) for a in range(3)), ())

    @staticmethod
    def rhs(L, fixed, seed, host, mixed, b, x):
        return _rhs_cpu(fixed, L["mask"], L["ext"], seed, host, *L["w"], mixed, b, x)

    @staticmethod
    def sweep(L, first):
        (_sweep_cpu_ser, _sweep_cpu_par)[_pick(L)](L["u"], L["b"], L["mask"], L["ext"], *L["w"],
                                                     L["inv"], first)

    @staticmethod
    def resid(L, u, b, r):
        return (_resid_cpu_ser, _resid_cpu_par)[_pick(L)](u, b, L["mask"], L["ext"], *L["w"], r)

    @staticmethod
    def matvec(L, p, q):
        return (_matvec_cpu_ser, _matvec_cpu_par)[_pick(L)](p, L["mask"], L["ext"], *L["w"], q)

    @staticmethod
    def restrict(L, C):
        (_restrict_cpu_ser, _restrict_cpu_par)[_pick(L)](L["r"], C["mask"], C["ext"], *L["taps"],
                                                         1.0 / math.prod(L["f"]), C["b"])

    @staticmethod
    def prolong(L, C):
        (_prolong_cpu_ser, _prolong_cpu_par)[_pick(L)](C["u"], L["mask"], L["ext"], *L["interps"],
                                                       L["u"])

    @staticmethod
    def coarsen(L, cmask):
        _coarsen_cpu(L["mask"], *L["f"], cmask)

    @staticmethod
    def dot(a, b):
        return _dot_cpu(a.reshape(-1), b.reshape(-1))

    @staticmethod
    def xpay(z, beta, p):
        _xpay_cpu(z.reshape(-1), beta, p.reshape(-1))

    @staticmethod
    def axpy2(alpha, p, q, x, r):
        return _axpy2_cpu(alpha, *(a.reshape(-1) for a in (p, q, x, r)))


# --------------------------------------------------------------------------
# cuda (Numba CUDA kernels on CuPy arrays; NumPy arrays under the simulator)
# --------------------------------------------------------------------------

_TPB = 128


def _blocks(n: int) -> int:
    return (n + _TPB - 1) // _TPB


class _CudaOps:
    """Stencils as Numba CUDA kernels; BLAS-1 and reductions with the array module (on device)."""

    def __init__(self, xp):
        from . import _blend_cuda

        self.k = _blend_cuda
        self.xp = xp

    @staticmethod
    def _go(kernel, out, *args):
        kernel[_blocks(out.size), _TPB](*args)

    def _dot(self, a, b):
        return (a * b).sum()

    @staticmethod
    def prepare(L, C=None):
        pass

    def rhs(self, L, fixed, seed, host, mixed, b, x):
        self._go(self.k.rhs, b, fixed, L["mask"], seed, host, *L["w"], mixed, b, x)
        return self._dot(b, b)

    def sweep(self, L, first):
        u = L["u"]
        for color in (first, 1 - first):
            self._go(self.k.smooth, u, u, L["b"], L["mask"], *L["w"], L["inv"], color)

    def resid(self, L, u, b, r):
        self._go(self.k.resid, u, u, b, L["mask"], *L["w"], r)
        return self._dot(r, r)

    def matvec(self, L, p, q):
        self._go(self.k.matvec, p, p, L["mask"], *L["w"], q)
        return self._dot(p, q)

    def restrict(self, L, C):
        self._go(self.k.restrict, C["b"], L["r"], C["mask"], *L["f"], C["b"])

    def prolong(self, L, C):
        self._go(self.k.prolong, L["u"], C["u"], L["mask"], *L["f"], L["u"])

    def coarsen(self, L, cmask):
        self._go(self.k.coarsen, cmask, L["mask"], *L["f"], cmask)

    def dot(self, a, b):
        return self._dot(a, b)

    def xpay(self, z, beta, p):
        p *= beta
        p += z

    def axpy2(self, alpha, p, q, x, r):
        x += alpha * p
        r -= alpha * q
        return self._dot(r, r)


# --------------------------------------------------------------------------
# public entry points: cpu, cuda, reference (each with .alpha and .poisson)
# --------------------------------------------------------------------------


def _alpha(host, seed, weight, lo, hi, launch):
    xp = array_module(host)
    if not (host.shape == seed.shape == weight.shape):
        raise InputError(f"alpha: host, seed and weight shapes differ: "
                         f"{host.shape}, {seed.shape}, {weight.shape}")
    h, s, w = (xp.ascontiguousarray(a, dtype=xp.float32).ravel() for a in (host, seed, weight))
    out = xp.empty(h.shape, xp.float32)
    if out.size:
        launch(h, s, w, out, np.float32(lo), np.float32(hi))
    return out.reshape(host.shape)


def alpha_cpu(host, seed, weight, lo: float, hi: float):
    """``clip(host * (1 - weight) + seed * weight, lo, hi)`` as float32 HU, one fused pass."""
    return _alpha(host, seed, weight, lo, hi, _alpha_cpu)


def alpha_cuda(host, seed, weight, lo: float, hi: float):
    """:func:`alpha_cpu` as a CUDA kernel."""
    from ._blend_cuda import alpha as kernel

    return _alpha(host, seed, weight, lo, hi,
                  lambda *a: kernel[_blocks(a[3].size), _TPB](*a))


def alpha_reference(host, seed, weight, lo: float, hi: float):
    """:func:`alpha_cpu` in plain NumPy (float64 arithmetic, float32 result)."""
    h, s, w = (np.asarray(a, dtype=np.float64) for a in (host, seed, weight))
    return np.clip(h * (1.0 - w) + s * w, np.float32(lo), np.float32(hi)).astype(np.float32)


def poisson_cpu(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False,
                tol: float = 1e-5, max_iter: int = 100):
    """Poisson blend (see module doc): ``(out float32 HU, iterations, relative residual)``.

    ``fixed``: held values (HU) wherever ``solve_mask`` is false; ``seed``: guidance
    image (HU); ``host``: second guidance for ``mixed`` (may be None otherwise);
    ``spacing``: voxel size per axis in mm.
    """
    return _solve(_CpuOps, np, fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter)


def poisson_cuda(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False,
                 tol: float = 1e-5, max_iter: int = 100):
    """:func:`poisson_cpu` with Numba CUDA kernels on CuPy arrays (NumPy under the simulator)."""
    xp = array_module(fixed)
    return _solve(_CudaOps(xp), xp, fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter)


def assemble(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False):
    """The Poisson system over the voxels of ``solve_mask`` (C order) with SciPy.

    Returns ``(A, b, x0)``: CSR matrix (float64), right-hand side and the
    start value (the seed's HU) that the solvers use.
    """
    import scipy.sparse as sps

    host = seed if host is None else host
    m = np.asarray(solve_mask, dtype=bool)
    _check(fixed, m, seed, host, spacing)
    f64 = [np.asarray(a, dtype=np.float64) for a in (fixed, seed, host)]
    fixed, seed, host = f64
    n = int(m.sum())
    index = np.full(m.shape, -1, dtype=np.int64)
    index[m] = np.arange(n)
    rows, cols = [np.arange(n)], [np.arange(n)]
    weights = [1.0 / (float(h) ** 2) for h in spacing]
    vals = [np.full(n, 2.0 * sum(weights))]
    b = np.zeros(n)
    for axis in range(3):
        for s in (1, -1):
            at_q = lambda a: np.roll(a, -s, axis=axis)[m]  # noqa: E731 - value at p + s
            w = weights[axis]
            g = seed[m] - at_q(seed)
            if mixed:
                gh = host[m] - at_q(host)
                g = np.where(np.abs(gh) > np.abs(g), gh, g)
            qm = at_q(m)
            b += w * g + np.where(qm, 0.0, w * at_q(fixed))
            rows.append(np.arange(n)[qm])
            cols.append(at_q(index)[qm])
            vals.append(np.full(int(qm.sum()), -w))
    A = sps.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(n, n))
    return A, b, seed[m]


def poisson_reference(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0),
                      mixed: bool = False, tol: float = 1e-5, max_iter: int = 100):
    """:func:`poisson_cpu` by a sparse direct solve (``tol`` and ``max_iter`` unused; 0 iterations)."""
    from scipy.sparse.linalg import spsolve

    m = np.asarray(solve_mask, dtype=bool)
    A, b, _ = assemble(fixed, m, seed, host, spacing, mixed)
    out = np.array(fixed, dtype=np.float32)
    if b.size == 0:
        return out, 0, 0.0
    x = spsolve(A.tocsc(), b)
    bn = float(np.linalg.norm(b))
    rel = float(np.linalg.norm(b - A @ x)) / bn if bn > 0 else 0.0
    out[m] = x
    return out, 0, rel


class _Impl:
    """One implementation: ``.alpha(...)`` and ``.poisson(...)``."""

    def __init__(self, alpha, poisson):
        self.alpha = alpha
        self.poisson = poisson


cpu = _Impl(alpha_cpu, poisson_cpu)
cuda = _Impl(alpha_cuda, poisson_cuda)
reference = _Impl(alpha_reference, poisson_reference)
