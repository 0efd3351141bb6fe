"""Launches and host copies of the CUDA Poisson solve, counted in Numba's simulator (or on a GPU).

One CG iteration must be a few fused launches and one device-to-host copy
(issue 12: at most 80 launches for the 13 mm tumour's 26 x 28 x 30 box and 4
iterations, at most one copy per iteration). The Ops launch a fixed sequence
per level, so the count depends only on the number of levels, how many of them
run as separate launches (those above ``TAIL_MAX`` voxels) and the iterations;
the simulator is too slow for the real box, so the count is taken on a small
box given the same hierarchy structure (``TAIL_MAX`` lowered to match).
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.kernels import _blend_cuda
from synthlung.kernels import blend as K
from synthlung.kernels.multigrid import hierarchy

from _launches import on_device, on_host, record_launches

BOX_13MM = ((26, 28, 30), (1.5, 1.5, 1.5))


def _structure(shape, spacing, tail_max):
    """(levels, levels launched one by one) of a box's hierarchy."""
    levels = hierarchy(shape, spacing)
    sizes = [int(np.prod(sp.shape)) for sp in levels]
    return len(levels), next(n for n, s in enumerate(sizes) if s <= tail_max or n == len(sizes) - 1)


def _case(shape, seed=0):
    rng = np.random.default_rng(seed)
    host = rng.normal(-800, 30, shape).astype(np.float32)
    c = [(n - 1) / 2 for n in shape]
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    core = ((z - c[0]) / 3) ** 2 + ((y - c[1]) / 1.2) ** 2 + ((x - c[2]) / 1.2) ** 2 <= 1
    seed_img = (rng.normal(0, 60, shape) + 300 * core).astype(np.float32)
    solve = np.zeros(shape, bool)
    solve[1:-1, 1:-1, 1:-1] = True
    fixed = host.copy()
    fixed[core] = seed_img[core]
    return fixed, solve & ~core, seed_img, host


def _count_host_reads(monkeypatch):
    reads = []
    real = _blend_cuda.Ops._host

    def counted(a):
        reads.append(int(np.size(a)))
        return real(a)

    monkeypatch.setattr(_blend_cuda.Ops, "_host", staticmethod(counted))
    return reads


def test_13mm_box_within_80_launches_and_one_copy_per_iteration(monkeypatch):
    """Two iterations in the simulator (15 s each there): the set-up's launches, then the same
    sequence of launches in every iteration, so that 4 iterations cost the set-up and four
    times that sequence (the real box's 4 iterations: ``test_13mm_box_launches_on_the_gpu``)."""
    want = _structure(*BOX_13MM, _blend_cuda.TAIL_MAX)
    shape, spacing = (34, 4, 4), (0.1875, 1.5, 1.5)  # 5 levels like the real box, at 1/40 of its voxels
    tail_max = 300
    assert _structure(shape, spacing, tail_max) == want == (5, 1)
    monkeypatch.setattr(_blend_cuda, "TAIL_MAX", tail_max)
    log = record_launches(monkeypatch, _blend_cuda)
    reads = _count_host_reads(monkeypatch)
    fixed, solve, seed, host = _case(shape)
    out, it, rel = K.cuda.poisson(*on_device(fixed, solve, seed, host), spacing, True, tol=0.0, max_iter=2)
    out = on_host(out)
    assert it == 2
    names = [launch.name for launch in log]
    setup = names.count("coarsen") + names.count("start")
    assert names[:setup].count("coarsen") + names[:setup].count("start") == setup == 5  # the set-up comes first
    first, second = names[setup:setup + 8], names[setup + 8:]
    assert len(first) == 8 and first == second, (first, second)  # one fixed sequence per iteration
    assert setup + 4 * len(first) <= 80, f"{setup + 4 * len(first)} launches for 4 iterations"
    assert reads == [2] + [1] * it  # the first norms, then one r.r per iteration
    ref, it_ref, rel_ref = K.cpu.poisson(fixed, solve, seed, host, spacing, True, tol=0.0, max_iter=2)
    assert it_ref == it and abs(rel - rel_ref) <= 1e-3 * rel_ref
    np.testing.assert_allclose(out, ref, atol=2e-3)


@pytest.mark.parametrize("tail_max", [0, 10 ** 9], ids=["every level launched", "all in one block"])
def test_cuda_iterates_follow_cpu(monkeypatch, tail_max):
    """Both device paths (levels as launches, the one-block tail) give the CPU's iterates."""
    monkeypatch.setattr(_blend_cuda, "TAIL_MAX", tail_max)
    shape, spacing = (8, 7, 7), (1.0, 1.2, 0.9)
    fixed, solve, seed, host = _case(shape, seed=3)
    assert len(hierarchy(shape, spacing)) == 2
    out, it, rel = K.cuda.poisson(*on_device(fixed, solve, seed, host), spacing, True, tol=1e-12, max_iter=2)
    out = on_host(out)
    ref, it_ref, rel_ref = K.cpu.poisson(fixed, solve, seed, host, spacing, True, tol=1e-12, max_iter=2)
    assert it == it_ref == 2
    assert abs(rel - rel_ref) <= 1e-3 * rel_ref
    np.testing.assert_allclose(out, ref, atol=2e-3)
    assert np.array_equal(out[~solve], fixed[~solve])  # held voxels exactly


@pytest.mark.gpu
def test_13mm_box_launches_on_the_gpu(monkeypatch):
    """The real box on a GPU: the same count, and the CPU's result."""
    import cupy

    log = record_launches(monkeypatch, _blend_cuda)
    reads = _count_host_reads(monkeypatch)
    fixed, solve, seed, host = _case(BOX_13MM[0])
    out, it, rel = K.cuda.poisson(*(cupy.asarray(a) for a in (fixed, solve, seed, host)), BOX_13MM[1], True,
                                  tol=0.0, max_iter=4)
    assert it == 4 and len(log) == 37 and reads == [2] + [1] * it
    ref, _, rel_ref = K.cpu.poisson(fixed, solve, seed, host, BOX_13MM[1], True, tol=0.0, max_iter=4)
    assert abs(rel - rel_ref) <= 1e-3 * rel_ref
    np.testing.assert_allclose(out.get(), ref, atol=2e-3)
