"""Per-voxel arithmetic of the blending kernels, written once for both targets.

Each ``*_op(real)`` / ``*_ops(jit, real)`` factory returns plain functions
that compute in ``real``: ``np.float64`` for ``cpu`` (compiled with
``numba.njit``), ``np.float32`` for ``cuda`` (compiled as CUDA device
functions, so that the device code has no float64 arithmetic). Weights
``wz, wy, wx`` are ``1 / h^2`` (mm^-2), ``d = 2 (wz + wy + wx)`` is the
diagonal of the 7-point operator, ``inv = 1 / d``.
"""
from __future__ import annotations


def alpha_op(real):
    """``out[t] = clip(host * (1 - w) + seed * w, lo, hi)``."""
    def alpha(host, seed, weight, out, lo, hi, t):
        w = real(weight[t])
        v = real(host[t]) * (real(1.0) - w) + real(seed[t]) * w
        out[t] = min(max(v, lo), hi)

    return alpha


def rhs_op(real):
    """Right-hand side ``b`` and start value ``x`` (the seed) at voxel (i, j, k); returns b^2."""
    def rhs(fixed, mask, seed, host, wz, wy, wx, mixed, b, x, i, j, k):
        if not mask[i, j, k]:
            return real(0.0)
        acc = real(0.0)
        sp = real(seed[i, j, k])
        hp = real(host[i, j, k])
        for n in range(6):
            axis = n // 2
            s = 1 - 2 * (n % 2)
            qi = i + s if axis == 0 else i
            qj = j + s if axis == 1 else j
            qk = k + s if axis == 2 else k
            w = wz if axis == 0 else (wy if axis == 1 else wx)
            g = sp - real(seed[qi, qj, qk])
            if mixed:
                gh = hp - real(host[qi, qj, qk])
                if abs(gh) > abs(g):
                    g = gh
            acc += w * g
            if not mask[qi, qj, qk]:
                acc += w * real(fixed[qi, qj, qk])
        b[i, j, k] = acc
        x[i, j, k] = sp
        return acc * acc

    return rhs


def neigh_sum(u, wz, wy, wx, i, j, k):
    """Weighted sum of the 6 face neighbours of (i, j, k) (types follow the arguments)."""
    return (wz * (u[i - 1, j, k] + u[i + 1, j, k])
            + wy * (u[i, j - 1, k] + u[i, j + 1, k])
            + wx * (u[i, j, k - 1] + u[i, j, k + 1]))


def stencil_ops(jit, real):
    """``(resid, matvec)`` on the 7-point operator; ``jit`` compiles for one target."""
    neigh = jit(neigh_sum)

    def resid(u, b, mask, d, wz, wy, wx, r, i, j, k):
        """r = b - A u on the mask; returns r^2."""
        if not mask[i, j, k]:
            return real(0.0)
        v = b[i, j, k] - (d * u[i, j, k] - neigh(u, wz, wy, wx, i, j, k))
        r[i, j, k] = v
        return v * v

    def matvec(p, mask, d, wz, wy, wx, q, i, j, k):
        """q = A p on the mask; returns p.q there."""
        if not mask[i, j, k]:
            return real(0.0)
        v = d * p[i, j, k] - neigh(p, wz, wy, wx, i, j, k)
        q[i, j, k] = v
        return v * p[i, j, k]

    return jit(resid), jit(matvec)


def tap_op(real):
    """Fine index and weight of restriction tap ``t`` (0..3) of coarse cell ``c`` along one axis.

    Factor 2: fine cells 2c-2 .. 2c+1 weigh 1/4, 3/4, 3/4, 1/4 (the transpose of
    cell-centred linear interpolation); factor 1: the fine cell ``c`` itself.
    """
    def tap(c, f, t, n):
        if f == 1:
            return c, (real(1.0) if t == 1 else real(0.0))
        i = 2 * c - 2 + t
        if i >= n:
            return n - 1, real(0.0)
        return i, (real(0.75) if (t == 1 or t == 2) else real(0.25))

    return tap


def interp_op(real):
    """Coarse index and weight of prolongation tap ``t`` (0..1) of fine cell ``i`` along one axis."""
    def interp(i, f, t):
        if f == 1:
            return i, (real(1.0) if t == 0 else real(0.0))
        c = (i + 1) // 2
        if t == 0:
            return c, real(0.75)
        return (c + 1 if i % 2 == 0 else c - 1), real(0.25)

    return interp


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
