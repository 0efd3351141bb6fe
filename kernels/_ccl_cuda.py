"""CUDA kernels of :mod:`synthlung.kernels.ccl` and :mod:`synthlung.kernels.ccl_stats`.

Imported only when a ``cuda`` function first runs (this module imports
``numba.cuda``); kernels compile on their first launch. They are module-level
functions so that Numba's CUDA simulator can run them too.
"""
from numba import cuda


@cuda.jit(device=True, inline=True)
def find(par, x):
    p = par[x]
    while p != x:
        x = p
        p = par[x]
    return x


@cuda.jit(device=True, inline=True)
def backward_neighbour(i, nz, ny, nx, reach, t):
    """Flat index of the t-th (0..12) backward neighbour of voxel i, or -1 if outside or not adjacent.

    t = 9 (dz + 1) + 3 (dy + 1) + (dx + 1) with dz in {-1, 0}: the 13 offsets
    before (0, 0, 0) in C order; ``reach`` = 1, 2, 3 for 6-, 18-, 26-connectivity.
    """
    dz = t // 9 - 1
    dy = (t // 3) % 3 - 1
    dx = t % 3 - 1
    if abs(dz) + abs(dy) + abs(dx) > reach:
        return -1
    z = i // (ny * nx)
    y = (i // nx) % ny
    x = i % nx
    if z + dz < 0 or y + dy < 0 or y + dy >= ny or x + dx < 0 or x + dx >= nx:
        return -1
    return i + (dz * ny + dy) * nx + dx


@cuda.jit
def init(mask, par, nz, ny, nx, reach):
    """Background -> 0xFFFFFFFF; foreground -> its lowest foreground backward neighbour, or itself."""
    i = cuda.grid(1)
    if i >= mask.size:
        return
    if mask[i] == 0:
        par[i] = 0xFFFFFFFF
        return
    best = i
    for t in range(13):
        j = backward_neighbour(i, nz, ny, nx, reach, t)
        if j >= 0 and j < best and mask[j] != 0:
            best = j
    par[i] = best


@cuda.jit
def merge(mask, par, nz, ny, nx, reach):
    """Union each foreground voxel with its backward foreground neighbours (atomic-min roots)."""
    i = cuda.grid(1)
    if i >= mask.size or mask[i] == 0:
        return
    for t in range(13):
        j = backward_neighbour(i, nz, ny, nx, reach, t)
        if j < 0 or mask[j] == 0:
            continue
        a = find(par, i)
        b = find(par, j)
        while a != b:
            if a < b:
                old = cuda.atomic.min(par, b, a)
                if old == b:
                    break
                b = find(par, old)
            else:
                old = cuda.atomic.min(par, a, b)
                if old == a:
                    break
                a = find(par, old)


@cuda.jit
def compress(par, isroot):
    """Point every voxel at its root; flag roots (1) for the prefix sum."""
    i = cuda.grid(1)
    if i >= par.size:
        return
    p = par[i]
    if p == 0xFFFFFFFF:
        isroot[i] = 0
        return
    r = find(par, i)
    par[i] = r
    isroot[i] = 1 if r == i else 0


@cuda.jit
def number(par, rank, out):
    """Canonical label: the rank of the voxel's root among roots in linear order."""
    i = cuda.grid(1)
    if i >= par.size:
        return
    p = par[i]
    out[i] = 0 if p == 0xFFFFFFFF else rank[p]


@cuda.jit
def accumulate(lab, counts, lo, hi, sums):
    z, y, x = cuda.grid(3)
    nz, ny, nx = lab.shape
    if z >= nz or y >= ny or x >= nx:
        return
    v = lab[z, y, x]
    if v == 0:
        return
    i = v - 1
    pos = (z, y, x)
    cuda.atomic.add(counts, i, 1)
    for a in range(3):
        cuda.atomic.add(sums, (i, a), pos[a])
        cuda.atomic.min(lo, (i, a), pos[a])
        cuda.atomic.max(hi, (i, a), pos[a] + 1)
