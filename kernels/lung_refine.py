"""Full-resolution lung labels from a coarse label grid and a HU threshold.

Each full-resolution voxel ``(i, j, k)`` looks up its coarse voxel
``(i // f0, j // f1, k // f2)``: coarse label 0 gives 0; a coarse voxel marked
``core`` gives its label; any other labelled coarse voxel (the band along the
lung surface) gives its label only where the voxel's own HU is below
``threshold`` (air-like), else 0. One fused pass: upsampling and the boundary
decision never make an intermediate full-size array.

* ``cpu``: Numba, parallel over the first axis.
* ``cuda``: one thread per output voxel.
* ``reference``: NumPy repeat + where.

``cpu`` and ``cuda`` walk ``hu`` in its memory order (C or Fortran alike, see
:mod:`.layout`; ``threadIdx.x`` on the contiguous axis) and return the labels in
that order. ``threshold`` is compared in ``hu``'s own type (as ``ceil(threshold)``
for integer HU, float32 for float32 HU).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .layout import inverse, memory_view


def _check(hu, labels, core, factors) -> None:
    want = tuple(-(-int(n) // int(f)) for n, f in zip(hu.shape, factors))
    if labels.shape != want or core.shape != want:
        raise InputError(f"coarse grids {labels.shape}/{core.shape} do not match {hu.shape} / {factors} = {want}")


def reference(hu, labels, core, factors, threshold):
    """The oracle: repeat the coarse grids up, then choose per voxel."""
    _check(hu, labels, core, factors)
    up = [np.asarray(a) for a in (labels, core)]
    for axis, f in enumerate(factors):
        up = [np.repeat(a, int(f), axis=axis) for a in up]
    lab, cor = (a[:hu.shape[0], :hu.shape[1], :hu.shape[2]] for a in up)
    keep = (cor != 0) | (np.asarray(hu) < threshold)
    return np.where(keep, lab, 0).astype(np.uint8)


def _refine_v(hu, labels, core, i, j, k, f0, f1, f2, threshold):
    """Label of full-resolution voxel (i, j, k): shared by the CPU loop and the CUDA kernel."""
    a = i // f0
    b = j // f1
    c = k // f2
    lab = labels[a, b, c]
    if lab != 0 and (core[a, b, c] != 0 or hu[i, j, k] < threshold):
        return lab
    return 0


_refine_cpu = njit(cache=True)(_refine_v)


@njit(cache=True, parallel=True)
def _cpu(hu, labels, core, f0, f1, f2, threshold, out):
    n0, n1, n2 = hu.shape
    for i in prange(n0):
        for j in range(n1):
            for k in range(n2):
                out[i, j, k] = _refine_cpu(hu, labels, core, i, j, k, f0, f1, f2, threshold)


def _views(xp, hu, labels, core, factors, threshold):
    """Kernel arguments as memory-order views of ``hu``'s order, the output, and the permutation."""
    _check(hu, labels, core, factors)
    huv, perm = memory_view(hu)
    out = xp.empty(huv.shape, dtype=np.uint8)
    f = tuple(int(factors[a]) for a in perm)
    if hu.dtype.kind in "iu":  # integer HU: hu < t exactly when hu < ceil(t); no float compare
        t = int(math.ceil(threshold))
    else:
        t = np.float32(threshold) if hu.dtype == np.float32 else float(threshold)
    # the coarse grids (1/prod(factors) of the voxels) are copied into the same order
    coarse = [xp.ascontiguousarray(a.transpose(perm)) for a in (labels, core)]
    return (huv, *coarse, *f, t, out), perm


def cpu(hu, labels, core, factors, threshold):
    """Refined uint8 labels at the resolution of ``hu`` (CPU)."""
    args, perm = _views(np, hu, labels, core, factors, threshold)
    _cpu(*args)
    return args[-1].transpose(inverse(perm))


def cuda(hu, labels, core, factors, threshold):
    """Refined uint8 labels on the GPU, one thread per voxel; output on the input's device."""
    from ._lung_refine_cuda import THREADS, lung_refine

    args, perm = _views(cuda_module(hu, "lung_refine"), hu, labels, core, factors, threshold)
    out = args[-1]
    blocks = tuple(-(-s // t) for s, t in zip(out.shape[::-1], THREADS))
    lung_refine[blocks, THREADS](*args)
    return out.transpose(inverse(perm))
