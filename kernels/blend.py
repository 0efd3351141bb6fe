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
V-cycle (MGPCG, :mod:`.mgpcg` over :mod:`.multigrid`): red-black Gauss-Seidel
smoothing (symmetric order, so the preconditioner is symmetric), cell-centred
trilinear prolongation and its transpose as restriction, coarse levels
re-discretised at twice the spacing with a coarse cell unknown when any of its
children is (held cells are homogeneous Dirichlet for the correction),
semi-coarsening for anisotropic voxels. The iteration starts from the seed's
values and stops at ``||b - A u|| <= tol * ||b||`` (the criterion of
``scipy.sparse.linalg.cg``) or after ``max_iter`` iterations; all three return
``(out float32, iterations, relative residual)``. The CG vectors are float32
with float64 accumulation of the dot products: the solve is memory bound, and
float64 vectors cost 10 % more time at 128^3 for no gain (the true residual of
the float32 iterate, recomputed in float64 by the tests, meets the same 1e-5).

The module holds the entry points; the work is split by job:
:mod:`.blend_voxel` (per-voxel arithmetic, written once for both targets),
:mod:`.multigrid` (levels, V-cycle), :mod:`.mgpcg` (CG driver, input checks),
:mod:`.blend_cpu` (Numba loops; float64 arithmetic), :mod:`._blend_cuda` (CUDA
kernels, imported on first use; float32 arithmetic, few fused launches, see
there) and :mod:`.blend_reference` (NumPy/SciPy oracles, the assembled system).
"""
from __future__ import annotations

import numpy as np

from synthlung.backend import array_module, cuda_module
from synthlung.errors import InputError

from . import blend_cpu, blend_reference
from .blend_reference import assemble
from .mgpcg import solve

__all__ = ["alpha_cpu", "alpha_cuda", "alpha_reference", "poisson_cpu", "poisson_cuda", "poisson_reference",
           "assemble", "cpu", "cuda", "reference"]


def _alpha(xp, host, seed, weight, lo, hi, launch):
    if not (host.shape == seed.shape == weight.shape):
        raise InputError(f"alpha: host, seed and weight shapes differ: "
                         f"{host.shape}, {seed.shape}, {weight.shape}")
    h, s, w = (xp.ascontiguousarray(a, dtype=xp.float32).ravel() for a in (host, seed, weight))
    out = xp.empty(h.shape, xp.float32)
    if out.size:
        launch(h, s, w, out, np.float32(lo), np.float32(hi))
    return out.reshape(host.shape)


def alpha_cpu(host, seed, weight, lo: float, hi: float):
    """``clip(host * (1 - weight) + seed * weight, lo, hi)`` as float32 HU, one fused pass (float64 arithmetic)."""
    return _alpha(array_module(host), host, seed, weight, lo, hi, blend_cpu.alpha)


def alpha_cuda(host, seed, weight, lo: float, hi: float):
    """:func:`alpha_cpu` as a CUDA kernel (float32 arithmetic)."""
    from ._blend_cuda import launch_alpha

    return _alpha(cuda_module(host, "alpha"), host, seed, weight, lo, hi, launch_alpha)


def poisson_cpu(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False,
                tol: float = 1e-5, max_iter: int = 100):
    """Poisson blend (see module doc): ``(out float32 HU, iterations, relative residual)``.

    ``fixed``: held values (HU) wherever ``solve_mask`` is false; ``seed``: guidance
    image (HU); ``host``: second guidance for ``mixed`` (may be None otherwise);
    ``spacing``: voxel size per axis in mm.
    """
    return solve(blend_cpu.Ops, fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter)


def poisson_cuda(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False,
                 tol: float = 1e-5, max_iter: int = 100):
    """:func:`poisson_cpu` with Numba CUDA kernels on CuPy arrays (NumPy under the simulator)."""
    from ._blend_cuda import Ops

    return solve(Ops(cuda_module(fixed, "poisson")), fixed, solve_mask, seed, host, spacing, mixed, tol, max_iter)


alpha_reference = blend_reference.alpha
poisson_reference = blend_reference.poisson


class _Impl:
    """One implementation: ``.alpha(...)`` and ``.poisson(...)``."""

    def __init__(self, alpha, poisson):
        self.alpha = alpha
        self.poisson = poisson


cpu = _Impl(alpha_cpu, poisson_cpu)
cuda = _Impl(alpha_cuda, poisson_cuda)
reference = _Impl(alpha_reference, poisson_reference)
