"""Poisson blending: synthlung's MGPCG (cpu; cuda on a GPU) vs scipy.sparse.linalg.cg.

The system: a ball-shaped solve region of diameter N (64, 128) in an (N+2)^3
box at 1.5 mm, host lung with texture and noise held outside, guidance from a
seed with a bright tumour inside; both solvers start from the seed's values and
stop at relative residual 1e-5 (||b - A x|| <= 1e-5 ||b||).
Run: pytest benchmarks/bench_blend.py --benchmark-enable
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.kernels import blend as K

SPACING = (1.5, 1.5, 1.5)
TOL = 1e-5


def _system(n):
    shape = (n + 2,) * 3
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:n + 2, :n + 2, :n + 2]
    c = (n + 1) / 2
    r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
    solve = r < n / 2
    host = (-800 + 30 * np.sin(x / 7.0) + 20 * rng.normal(size=shape)).astype(np.float32)
    seed = (-700 + 400 * (r < n / 4) + 20 * rng.normal(size=shape)).astype(np.float32)
    return host, solve, seed, host


@pytest.fixture(scope="module", params=[64, 128], ids=lambda n: f"{n}^3")
def system(request):
    return request.param, _system(request.param)


def test_mgpcg_cpu(benchmark, system):
    n, (fixed, solve, seed, host) = system
    K.cpu.poisson(fixed, solve, seed, host, SPACING, tol=TOL)  # JIT warm-up
    out, it, rel = benchmark.pedantic(K.cpu.poisson, args=(fixed, solve, seed, host, SPACING),
                                      kwargs={"tol": TOL}, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(iterations=it, rel_residual=rel, unknowns=int(solve.sum()))
    assert rel <= TOL


def test_scipy_cg(benchmark, system):
    from scipy.sparse.linalg import cg

    n, (fixed, solve, seed, host) = system
    A, b, x0 = K.assemble(fixed, solve, seed, host, SPACING)
    x, info = benchmark.pedantic(cg, args=(A, b), kwargs={"x0": x0, "rtol": TOL, "maxiter": 10000},
                                 rounds=3, warmup_rounds=0)
    rel = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    benchmark.extra_info.update(rel_residual=rel, unknowns=int(solve.sum()))
    assert info == 0 and rel <= TOL


@pytest.mark.gpu
def test_mgpcg_cuda(benchmark, system):
    cp = pytest.importorskip("cupy")
    n, arrays = system
    fixed, solve, seed, host = (cp.asarray(a) for a in arrays)

    def run():
        res = K.cuda.poisson(fixed, solve, seed, host, SPACING, tol=TOL)
        cp.cuda.Device().synchronize()
        return res

    run()
    out, it, rel = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    # minimum traffic: fixed, seed, host (float32) and the mask read once, the result written once
    benchmark.extra_info.update(iterations=it, rel_residual=rel, size=f"{n}^3", voxels=int(fixed.size),
                                bytes=17 * int(fixed.size))
    assert rel <= TOL
