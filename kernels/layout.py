"""Memory order of 3-D arrays, so that kernels walk (and CUDA threads map) the contiguous axis.

NIfTI/NRRD readers return Fortran-ordered arrays (axis 0 contiguous). A kernel
that indexes ``a[i, j, k]`` with ``k`` innermost (CPU) or on ``threadIdx.x``
(CUDA) reads such an array with a large stride on every step. Instead the
kernels run on :func:`memory_view`'s transposed view, whose last axis is the
contiguous one, and give their output in the input's own memory order.
"""
from __future__ import annotations

import math

__all__ = ["memory_order", "memory_view", "inverse"]


def memory_order(a) -> tuple[int, int, int]:
    """Axis permutation that puts ``a``'s axes in memory order (largest stride first).

    Axes of length 1 count as outermost, so that rows stay as long as possible.
    """
    strides = [abs(s) if n > 1 else math.inf for s, n in zip(a.strides, a.shape)]
    return tuple(sorted(range(a.ndim), key=lambda ax: -strides[ax]))


def inverse(perm) -> tuple[int, ...]:
    """The permutation that undoes ``perm`` (``x.transpose(perm).transpose(inverse(perm))`` is ``x``)."""
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def memory_view(a, perm=None):
    """``(a.transpose(perm), perm)`` with ``perm`` = :func:`memory_order` of ``a`` unless given."""
    perm = memory_order(a) if perm is None else tuple(perm)
    return a.transpose(perm), perm
