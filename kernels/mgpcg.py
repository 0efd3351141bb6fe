"""The conjugate-gradient driver of the Poisson solve, written once over a target's operations.

Per iteration (Hestenes-Stiefel CG, preconditioner M = one V-cycle):
``z = M r; rz = r.z; p = z + (rz / rz_old) p; q = A p; alpha = rz / p.q;
x += alpha p; r -= alpha q``; it stops at ``||r|| <= tol ||b||`` (the
criterion of ``scipy.sparse.linalg.cg``) or after ``max_iter`` iterations.
A target's ``ops`` object provides ``setup`` (right-hand side, start value,
first residual), ``norms`` (``b.b`` and the first ``r.r``), ``iterate`` (one
iteration, all on the target), ``read`` (that iteration's ``r.r``: on a GPU the
one device-to-host copy of an iteration) and ``result``.
"""
from __future__ import annotations

import math

from synthlung.errors import InputError

from .multigrid import hierarchy


def check(fixed, solve_mask, seed, host, spacing) -> None:
    """Refuse boxes of different shapes, too small a box, bad spacing and a solve mask on the faces."""
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


def solve(ops, fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter):
    """``(out float32 HU, iterations, relative residual)``; see :mod:`synthlung.kernels.blend`."""
    host = seed if host is None else host
    check(fixed, solve_mask, seed, host, spacing)
    state = ops.setup(hierarchy(fixed.shape, spacing), fixed, solve_mask, seed, host, bool(mixed),
                      int(max_iter))
    bb, rr = ops.norms(state)
    bnorm = math.sqrt(bb)
    it, rel = 0, 0.0
    if bnorm > 0.0:
        rel = math.sqrt(rr) / bnorm
        while rel > tol and it < max_iter:
            ops.iterate(state, it)
            rel = math.sqrt(ops.read(state, it)) / bnorm
            it += 1
    return ops.result(state), it, rel
