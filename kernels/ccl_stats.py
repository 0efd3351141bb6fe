"""Per-component statistics of a label array, in one pass over the voxels.

``cpu``/``cuda``/``reference`` take ``(labels, n)`` (3-D labels 0..n, 0 = background)
and return ``(counts, bbox_lo, bbox_hi, centroid)``: voxel count (int64, (n,)),
bounding box in voxels with ``lo`` inclusive and ``hi`` exclusive (int64, (n, 3)),
and centroid as the mean voxel index (float64, (n, 3)). Row ``i`` is label ``i + 1``.
Counts and boxes agree exactly across implementations, centroids to 1e-9 relative.
A label with no voxels gets count 0, lo = shape, hi = 0 and a NaN centroid.
A label outside 0..n (above ``n``, or negative) is refused with ``InputError``
naming it; nothing is written out of bounds. Sums are integers (exact) on both
paths; ``cpu`` and ``cuda`` walk the labels in their memory order (C or Fortran
alike, see :mod:`.layout`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .layout import memory_view


def _check(labels, n: int) -> None:
    if labels.ndim != 3:
        raise InputError(f"labels must be 3-D, got shape {tuple(labels.shape)}")
    if labels.dtype.kind not in "ui":
        raise InputError(f"labels must be integers, got dtype {labels.dtype}")
    if n < 0:
        raise InputError(f"n={n}: the number of components cannot be negative")


def _check_range(hi: int, lo: int, n: int) -> None:
    """Refuse labels seen above ``n`` (``hi`` > n) or below 0 (``lo`` < 0)."""
    if hi > n:
        raise InputError(f"component_stats: label {hi} is above n={n} (labels must be 0..n)")
    if lo < 0:
        raise InputError(f"component_stats: label {lo} is negative (labels must be 0..n)")


def _finish(counts, lo, hi, sums):
    """Centroid = coordinate sums / counts (NaN for an empty label)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = sums / counts[:, None]
    return counts, lo, hi, centroid


def reference(labels, n: int):
    """Plain NumPy: one ``np.nonzero`` per label (the test oracle)."""
    labels = np.asarray(labels)
    _check(labels, n)
    if labels.size:
        _check_range(int(labels.max()), int(labels.min()), n)
    counts = np.zeros(n, np.int64)
    lo = np.tile(np.array(labels.shape, np.int64), (n, 1))
    hi = np.zeros((n, 3), np.int64)
    centroid = np.full((n, 3), np.nan)
    for i in range(n):
        idx = np.argwhere(labels == i + 1)
        counts[i] = len(idx)
        if len(idx):
            lo[i] = idx.min(0)
            hi[i] = idx.max(0) + 1
            centroid[i] = idx.mean(0)
    return counts, lo, hi, centroid


@njit(cache=True, parallel=True)
def _stats(lab, n, nchunks):
    """Per-chunk accumulation over rows of ``lab`` (C order); labels outside 0..n are skipped and reported."""
    nz, ny, nx = lab.shape
    counts = np.zeros((nchunks, n + 1), np.int64)
    lo = np.empty((nchunks, n + 1, 3), np.int64)
    hi = np.zeros((nchunks, n + 1, 3), np.int64)
    sums = np.zeros((nchunks, n + 1, 3), np.int64)  # 2 x coordinate sums (run midpoints are halves)
    bad = np.zeros((nchunks, 2), np.int64)  # largest label above n, smallest below 0 (0: none)
    nrows = nz * ny
    for c in prange(nchunks):
        for l in range(n + 1):
            lo[c, l, 0] = nz
            lo[c, l, 1] = ny
            lo[c, l, 2] = nx
        for r in range(c * nrows // nchunks, (c + 1) * nrows // nchunks):
            z = r // ny
            y = r - z * ny
            x = 0
            while x < nx:  # one update per run of equal labels
                v = lab[z, y, x]
                s = x
                x += 1
                while x < nx and lab[z, y, x] == v:
                    x += 1
                if v == 0:
                    continue
                if v > n or v < 0:
                    bad[c, 0] = max(bad[c, 0], np.int64(v))
                    bad[c, 1] = min(bad[c, 1], np.int64(v))
                    continue
                length = x - s
                counts[c, v] += length
                sums[c, v, 0] += 2 * z * length
                sums[c, v, 1] += 2 * y * length
                sums[c, v, 2] += (s + x - 1) * length
                lo[c, v, 0] = min(lo[c, v, 0], z)
                lo[c, v, 1] = min(lo[c, v, 1], y)
                lo[c, v, 2] = min(lo[c, v, 2], s)
                hi[c, v, 0] = max(hi[c, v, 0], z + 1)
                hi[c, v, 1] = max(hi[c, v, 1], y + 1)
                hi[c, v, 2] = max(hi[c, v, 2], x)
    tc = counts[0].copy()
    tlo = lo[0].copy()
    thi = hi[0].copy()
    tsum = sums[0].copy()
    tbad = bad[0].copy()
    for c in range(1, nchunks):
        tc += counts[c]
        tsum += sums[c]
        tbad[0] = max(tbad[0], bad[c, 0])
        tbad[1] = min(tbad[1], bad[c, 1])
        for l in range(n + 1):
            for a in range(3):
                tlo[l, a] = min(tlo[l, a], lo[c, l, a])
                thi[l, a] = max(thi[l, a], hi[c, l, a])
    return tc[1:], tlo[1:], thi[1:], tsum[1:], tbad


def _to_input_axes(perm, lo, hi, sums):
    """Columns of the memory-order view's axes back to the input's axes."""
    cols = [perm.index(a) for a in range(3)]
    return lo[:, cols], hi[:, cols], sums[:, cols]


def cpu(labels, n: int):
    """Numba, rows split over all cores, each run of equal labels counted once."""
    import numba
    labels = np.asarray(labels)
    _check(labels, n)
    view, perm = memory_view(labels)
    nrows = view.shape[0] * view.shape[1]
    nchunks = max(1, min(numba.get_num_threads(), nrows))
    counts, lo, hi, sums, bad = _stats(view, int(n), nchunks)
    _check_range(int(bad[0]), int(bad[1]), n)
    lo, hi, sums = _to_input_axes(perm, lo, hi, sums)
    return _finish(counts, lo, hi, sums / 2.0)


def cuda(labels, n: int):
    """One thread per voxel (``threadIdx.x`` on the contiguous axis), integer atomics once per run; on the device.

    The one host copy is the out-of-range report (two int64).
    """
    from ._ccl_stats_cuda import THREADS, accumulate

    xp = cuda_module(labels, "component_stats")
    _check(labels, n)
    view, perm = memory_view(labels)
    counts = xp.zeros(n, xp.int64)
    lo = xp.tile(xp.asarray(view.shape, dtype=xp.int64), (n, 1))
    hi = xp.zeros((n, 3), xp.int64)
    sums = xp.zeros((n, 3), xp.int64)
    bad = xp.zeros(2, xp.int64)
    if labels.size:
        grid = tuple(max(1, math.ceil(s / b)) for s, b in zip(view.shape[::-1], THREADS))
        accumulate[grid, THREADS](view, n, counts, lo, hi, sums, bad)
        hi_bad, lo_bad = (int(v) for v in bad.tolist())
        _check_range(hi_bad, lo_bad, n)
    lo, hi, sums = _to_input_axes(perm, lo, hi, sums)
    return _finish(counts, lo, hi, sums / 2.0)
