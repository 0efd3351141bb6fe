"""CUDA kernels of ``block_mean`` and ``lung_refine``.

Imported only when a ``cuda`` function first runs (this module imports
``numba.cuda``); module-level so Numba's simulator can run them too.
"""
from __future__ import annotations

from numba import cuda


@cuda.jit
def block_mean(x, f0, f1, f2, out):
    a, b, c = cuda.grid(3)
    m0, m1, m2 = out.shape
    if a >= m0 or b >= m1 or c >= m2:
        return
    n0, n1, n2 = x.shape
    i1 = min((a + 1) * f0, n0)
    j1 = min((b + 1) * f1, n1)
    k1 = min((c + 1) * f2, n2)
    acc = 0.0
    for i in range(a * f0, i1):
        for j in range(b * f1, j1):
            for k in range(c * f2, k1):
                acc += x[i, j, k]
    out[a, b, c] = acc / ((i1 - a * f0) * (j1 - b * f1) * (k1 - c * f2))


@cuda.jit
def lung_refine(hu, labels, core, f0, f1, f2, threshold, out):
    i, j, k = cuda.grid(3)
    n0, n1, n2 = hu.shape
    if i >= n0 or j >= n1 or k >= n2:
        return
    a = i // f0
    b = j // f1
    c = k // f2
    lab = labels[a, b, c]
    if lab != 0 and (core[a, b, c] != 0 or hu[i, j, k] < threshold):
        out[i, j, k] = lab
    else:
        out[i, j, k] = 0
