"""Connected-component labelling of 3-D masks (6, 18 or 26 connectivity).

Every implementation returns ``(labels, n)``: ``labels`` is ``uint32`` with the
shape of ``mask``, 0 on background, components numbered 1..n in one canonical
order: by their first voxel in C order, exactly what ``scipy.ndimage.label``
gives. Any non-zero mask value is foreground.

* ``cpu``: run-based two-pass labelling in Numba. The mask is scanned once, in
  memory order (any axis order is relabelled canonically afterwards, so
  Fortran-ordered arrays are not copied): rows are split into chunks, one per
  task in parallel; each row becomes a list of foreground runs (whole 8-byte
  words of 0 or 1 skipped) that is joined at once by union-find with the runs
  of its backward neighbour rows. Chunk borders are merged, labels assigned in
  one pass over the runs (roots are the first run in C order), and the runs
  written row by row in parallel into a zeroed output.
* ``cuda``: block-based union-find (BUF, Allegretti et al. 2020; atomic-min
  union after Playne & Hawick 2018), one thread per block: 2x2x2 voxels for
  26-connectivity, 1x2x2 for 18 and 1x1x2 for 6 (every pair of voxels in a
  block must be adjacent, which 2x2x2 is only under 26-connectivity). Kernels:
  init (8-bit occupancy word per block; a block's label is its first
  foreground voxel), merge (union with the 13 backward neighbour blocks where
  an occupied voxel touches one of theirs, from a precomputed adjacency table),
  compress (path compression, flag roots), label (each foreground voxel of a
  block gets the canonical number of the block's root). Roots are first voxels in C order, so a prefix sum over
  "is root" gives the canonical numbers. ``cuda_voxel`` is the same with 1x1x1
  blocks (per-voxel union-find), kept for benchmarks. CuPy arrays on a GPU,
  NumPy arrays under ``NUMBA_ENABLE_CUDASIM=1``. The only host copy is the
  component count.
* ``reference``: ``scipy.ndimage.label`` with the matching structuring element.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from synthlung.backend import cuda_module
from synthlung.errors import InputError

from .layout import memory_order

CONNECTIVITIES = (6, 18, 26)
_ALL1 = np.uint64(0x0101010101010101)

# Backward neighbour rows of row (z, y): (dz, dy, dilation along x). Dilation 1
# lets runs touch diagonally along x; 0 requires them to share an x.
_ROW_OFFSETS = {
    6: np.array([[0, -1, 0], [-1, 0, 0]], dtype=np.int64),
    18: np.array([[0, -1, 1], [-1, 0, 1], [-1, -1, 0], [-1, 1, 0]], dtype=np.int64),
    26: np.array([[0, -1, 1], [-1, 0, 1], [-1, -1, 1], [-1, 1, 1]], dtype=np.int64),
}


def _check(mask, connectivity: int) -> None:
    if connectivity not in CONNECTIVITIES:
        raise InputError(f"connectivity={connectivity!r}: expected one of 6, 18, 26 for a 3-D mask")
    if mask.ndim != 3:
        raise InputError(f"mask must be 3-D, got shape {tuple(mask.shape)}")


# ---------------------------------------------------------------- reference

def reference(mask, connectivity: int = 26):
    """``scipy.ndimage.label`` with the structuring element of ``connectivity`` (the oracle)."""
    from scipy import ndimage
    _check(mask, connectivity)
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    labels, n = ndimage.label(np.asarray(mask) != 0, structure=structure)
    return labels.astype(np.uint32), int(n)


# ---------------------------------------------------------------- cpu

@njit(cache=True, inline="always")
def _scan_bytes(m8, start, x0, x1, inrun, s, rs, re, k, write):
    """Advance the run scan over bytes x0..x1 of the row at ``start``; returns (inrun, s, k)."""
    for x in range(x0, x1):
        if m8[start + x] != 0:
            if not inrun:
                inrun = True
                s = x
        elif inrun:
            inrun = False
            if write:
                rs[k] = s
                re[k] = x
            k += 1
    return inrun, s, k


@njit(cache=True, inline="always")
def _scan_row(m8, m64, start, nx, rs, re, k, write):
    """Find the foreground runs [s, e) of the row at flat offset ``start``; return the run count.

    With ``m64`` (rows a multiple of 8 bytes) whole words of 0 or 1 bytes are skipped.
    ``write`` stores the runs at ``rs[k:]``, ``re[k:]``; without it they are only counted.
    """
    inrun = False
    s = 0
    if m64.size > 0:
        w0 = start >> 3
        for wi in range(nx >> 3):
            w = m64[w0 + wi]
            if (inrun and w == _ALL1) or (not inrun and w == 0):
                continue
            inrun, s, k = _scan_bytes(m8, start, wi * 8, wi * 8 + 8, inrun, s, rs, re, k, write)
    else:
        inrun, s, k = _scan_bytes(m8, start, 0, nx, inrun, s, rs, re, k, write)
    if inrun:
        if write:
            rs[k] = s
            re[k] = nx
        k += 1
    return k


@njit(cache=True, inline="always")
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, inline="always")
def _union(parent, a, b):
    """Join the sets of a and b; the root is always the lower run index."""
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@njit(cache=True, inline="always")
def _join_rows(parent, rs, re, a0, a1, b0, b1, d):
    """Union runs [a0, a1) of one row with runs [b0, b1) of a neighbour row that overlap (dilated by d)."""
    i = a0
    j = b0
    while i < a1 and j < b1:
        if re[j] + d <= rs[i]:
            j += 1
        elif re[i] + d <= rs[j]:
            i += 1
        else:
            _union(parent, i, j)
            if re[i] < re[j]:
                i += 1
            else:
                j += 1


@njit(cache=True, inline="always")
def _join_row(parent, rs, re, start, stop, r, ny, offsets, qmin, qmax):
    """Join row r with its backward neighbour rows q, qmin <= q < qmax."""
    z = r // ny
    y = r - z * ny
    for o in range(offsets.shape[0]):
        zz = z + offsets[o, 0]
        yy = y + offsets[o, 1]
        if zz < 0 or yy < 0 or yy >= ny:
            continue
        q = zz * ny + yy
        if q < qmin or q >= qmax:
            continue
        _join_rows(parent, rs, re, start[r], stop[r], start[q], stop[q], offsets[o, 2])


@njit(cache=True, parallel=True)
def _runs(m8, m64, nrows, ny, nx, offsets, nchunks):
    """Scan the rows into runs and join each row with its backward neighbours, in one pass.

    Chunk c of rows stores its runs from index ``r0 * cap`` on (cap = most runs a
    row can hold), so chunks need no count pass; the arrays are sized for the
    worst case but only the pages of runs that exist are ever touched. Run i of
    row r is ``[rs[i], re[i])`` for ``start[r] <= i < stop[r]``.
    """
    cap = (nx + 1) // 2
    rs = np.empty(nrows * cap, np.int32)
    re = np.empty(nrows * cap, np.int32)
    parent = np.empty(nrows * cap, np.int32)
    start = np.empty(nrows, np.int64)
    stop = np.empty(nrows, np.int64)
    for c in prange(nchunks):
        r0 = c * nrows // nchunks
        r1 = (c + 1) * nrows // nchunks
        k = r0 * cap
        for r in range(r0, r1):
            start[r] = k
            k = _scan_row(m8, m64, r * nx, nx, rs, re, k, True)
            stop[r] = k
            for i in range(start[r], k):
                parent[i] = i
            _join_row(parent, rs, re, start, stop, r, ny, offsets, r0, r1)
    # chunk borders: only the first ny + 1 rows of a chunk reach back into the previous one
    for c in range(1, nchunks):
        r0 = c * nrows // nchunks
        r1 = min((c + 1) * nrows // nchunks, r0 + ny + 1)
        for r in range(r0, r1):
            _join_row(parent, rs, re, start, stop, r, ny, offsets, 0, r0)
    return rs, re, parent, start, stop


@njit(cache=True)
def _number_runs(parent, start, stop):
    """Component number of every run, roots numbered in C order (parent[i] <= i always)."""
    lab = np.empty(parent.shape[0], np.uint32)
    n = 0
    for r in range(start.shape[0]):
        for i in range(start[r], stop[r]):
            p = parent[i]
            if p == i:
                n += 1
                lab[i] = n
            else:
                lab[i] = lab[p]
    return lab, n


@njit(cache=True)
def _renumber_by_key(lab, n, rs, start, stop, rowkey, xstride):
    """Renumber so that components are ordered by the smallest key of their voxels.

    The key of a run's first voxel is ``rowkey[row] + rs * xstride``: its C-order
    index in the caller's axis order, when that differs from memory order.
    """
    best = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    for r in range(start.shape[0]):
        for i in range(start[r], stop[r]):
            key = rowkey[r] + rs[i] * xstride
            if key < best[lab[i]]:
                best[lab[i]] = key
    order = np.argsort(best[1:])
    newnum = np.empty(n + 1, np.uint32)
    newnum[0] = 0
    for rank in range(n):
        newnum[order[rank] + 1] = rank + 1
    for r in range(start.shape[0]):
        for i in range(start[r], stop[r]):
            lab[i] = newnum[lab[i]]


@njit(cache=True, parallel=True)
def _paint(out, rs, re, lab, start, stop, nx):
    """Write each run's label into ``out`` (already zero: background is never written)."""
    for r in prange(start.shape[0]):
        base = r * nx
        for i in range(start[r], stop[r]):
            v = lab[i]
            for x in range(base + rs[i], base + re[i]):
                out[x] = v


def cpu(mask, connectivity: int = 26):
    """Label ``mask`` on the CPU (Numba, all cores). Returns ``(uint32 labels, n)``."""
    _check(mask, connectivity)
    mask = np.asarray(mask)
    perm = memory_order(mask)
    work = np.ascontiguousarray(mask.transpose(perm))
    m8 = work.view(np.uint8) if work.dtype == np.bool_ else (work != 0).view(np.uint8)
    nz, ny, nx = work.shape
    nrows = nz * ny
    flat = m8.reshape(-1)
    m64 = flat.view(np.uint64) if nx % 8 == 0 and flat.size else np.empty(0, np.uint64)
    nchunks = max(1, min(nz, 4 * _threads()))
    rs, re, parent, start, stop = _runs(flat, m64, nrows, ny, nx, _ROW_OFFSETS[connectivity], nchunks)
    lab, n = _number_runs(parent, start, stop)
    if perm != (0, 1, 2) and n > 1:
        cstrides = np.array([mask.shape[1] * mask.shape[2], mask.shape[2], 1], dtype=np.int64)
        s = cstrides[list(perm)]  # C-order stride of each memory axis
        rowkey = (np.arange(nz, dtype=np.int64)[:, None] * s[0] + np.arange(ny, dtype=np.int64) * s[1]).ravel()
        _renumber_by_key(lab, n, rs, start, stop, rowkey, s[2])
    out = np.zeros(work.shape, np.uint32)  # fresh zero pages from the OS, no memset
    _paint(out.reshape(-1), rs, re, lab, start, stop, nx)
    return out.transpose(np.argsort(perm)), int(n)


@functools.cache
def _threads() -> int:
    import numba
    return numba.get_num_threads()


# ---------------------------------------------------------------- cuda

def _launch_size(n: int) -> tuple[int, int]:
    from synthlung.backend import cuda_simulator_enabled
    block = 64 if cuda_simulator_enabled() else 256
    return max(1, math.ceil(n / block)), block


def cuda(mask, connectivity: int = 26):
    """Label ``mask`` on the GPU (CuPy array; NumPy under the simulator). Returns ``(uint32 labels, n)``.

    Block-based union-find: one thread per block of ``BLOCK_SHAPES[reach]`` voxels.
    All work stays on the device; the count ``n`` is the one scalar copied to the host.
    """
    return _cuda_label(mask, connectivity, per_voxel=False)


def cuda_voxel(mask, connectivity: int = 26):
    """``cuda`` with one thread per voxel (1x1x1 blocks): the per-voxel union-find, kept to benchmark against."""
    return _cuda_label(mask, connectivity, per_voxel=True)


def _cuda_label(mask, connectivity: int, per_voxel: bool):
    _check(mask, connectivity)
    xp = cuda_module(mask, "ccl")
    m = xp.ascontiguousarray(mask)
    m = (m.view(xp.uint8) if m.dtype == xp.bool_ else (m != 0).view(xp.uint8)).reshape(-1)
    shape = tuple(int(s) for s in mask.shape)
    size = m.size
    out = xp.zeros(mask.shape, dtype=xp.uint32)
    if size == 0:
        return out, 0
    if size >= 0xFFFFFFFF:
        raise InputError(f"mask of {size} voxels is too large for 32-bit labels")
    from ._ccl_cuda import (BLOCK_SHAPES, VOXEL_SHAPE, block_compress, block_init, block_label, block_merge,
                            table_index)
    reach = {6: 1, 18: 2, 26: 3}[connectivity]
    bshape = VOXEL_SHAPE if per_voxel else BLOCK_SHAPES[reach]
    nblocks = math.prod(-(-n // s) for n, s in zip(shape, bshape))
    grid, block = _launch_size(nblocks)
    occ = xp.empty(nblocks, dtype=xp.uint8)
    isroot = xp.zeros(size, dtype=xp.uint8)
    lab = out.reshape(-1)  # union-find labels at each block's first voxel, then the output
    block_init[grid, block](m, occ, lab, shape, bshape)
    block_merge[grid, block](occ, lab, shape, bshape, table_index(bshape, reach))
    block_compress[grid, block](occ, lab, isroot, shape, bshape)
    rank = xp.cumsum(isroot, dtype=xp.uint32)
    block_label[grid, block](occ, lab, rank, shape, bshape)
    return out, int(rank[-1])
