"""Reference (oracle) versions of the blending kernels: plain NumPy and SciPy, for tests and benchmarks."""
from __future__ import annotations

import numpy as np

from .mgpcg import check


def alpha(host, seed, weight, lo: float, hi: float):
    """:func:`.blend.alpha_cpu` in plain NumPy (float64 arithmetic, float32 result)."""
    h, s, w = (np.asarray(a, dtype=np.float64) for a in (host, seed, weight))
    return np.clip(h * (1.0 - w) + s * w, np.float32(lo), np.float32(hi)).astype(np.float32)


def assemble(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0), mixed: bool = False):
    """The Poisson system over the voxels of ``solve_mask`` (C order) with SciPy.

    Returns ``(A, b, x0)``: CSR matrix (float64), right-hand side and the
    start value (the seed's HU) that the solvers use.
    """
    import scipy.sparse as sps

    host = seed if host is None else host
    m = np.asarray(solve_mask, dtype=bool)
    check(fixed, m, seed, host, spacing)
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


def poisson(fixed, solve_mask, seed, host=None, spacing=(1.0, 1.0, 1.0),
                      mixed: bool = False, tol: float = 1e-5, max_iter: int = 100):
    """:func:`.blend.poisson_cpu` by a sparse direct solve (``tol`` and ``max_iter`` unused; 0 iterations)."""
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
