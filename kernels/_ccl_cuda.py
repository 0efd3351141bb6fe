"""CUDA kernels of :mod:`synthlung.kernels.ccl`.

Imported only when a ``cuda`` function first runs (this module imports
``numba.cuda``); kernels compile on their first launch. They are module-level
functions so that Numba's CUDA simulator can run them too.

Labelling is a block-based union-find (BUF, Allegretti et al. 2020; union-find
after Playne & Hawick 2018). The volume is tiled into blocks of ``bshape``
(sz, sy, sx), each axis 1 or 2 voxels, chosen so that all voxels of a block are
adjacent under the connectivity (``BLOCK_SHAPES``); one thread handles one
block. A block's foreground is an 8-bit occupancy word, bit ``4 lz + 2 ly + lx``
for the voxel at local (lz, ly, lx). A block's union-find label lives in the
label array at the flat index of its first foreground voxel (C order), so the
root of a component, the lowest such index, is the component's first voxel.
"""
import numpy as np
from numba import cuda

# Block shape per reach (1, 2, 3 = 6-, 18-, 26-connectivity): any two voxels of a
# block differ by at most 1 along each axis and along at most ``reach`` axes.
BLOCK_SHAPES = {1: (1, 1, 2), 2: (1, 2, 2), 3: (2, 2, 2)}
VOXEL_SHAPE = (1, 1, 1)


def _offset(t):
    """(dz, dy, dx) of the t-th (0..12) backward neighbour: the 13 offsets before (0, 0, 0) in C order."""
    return t // 9 - 1, (t // 3) % 3 - 1, t % 3 - 1


def _adjacency(bshape, reach):
    """adj[t, p]: occupancy bits of the backward neighbour block t that local voxel bit p touches."""
    adj = np.zeros((13, 8), np.uint8)
    local = [(k >> 2, (k >> 1) & 1, k & 1) for k in range(8)]
    for t in range(13):
        d = _offset(t)
        for p, lp in enumerate(local):
            for q, lq in enumerate(local):
                delta = [abs(d[a] * bshape[a] + lq[a] - lp[a]) for a in range(3)]
                if max(delta) <= 1 and sum(delta) <= reach:
                    adj[t, p] |= 1 << q
    return adj


def table_index(bshape, reach):
    """Row of ``ADJACENCY`` for blocks of ``bshape`` (a ``BLOCK_SHAPES`` value or ``VOXEL_SHAPE``)."""
    return reach - 1 + (3 if bshape == VOXEL_SHAPE else 0)


ADJACENCY = np.stack([_adjacency(BLOCK_SHAPES[r], r) for r in (1, 2, 3)]
                     + [_adjacency(VOXEL_SHAPE, r) for r in (1, 2, 3)])


@cuda.jit(device=True, inline=True)
def find(par, x):
    p = par[x]
    while p != x:
        x = p
        p = par[x]
    return x


@cuda.jit(device=True, inline=True)
def union(par, a, b):
    """Join the trees of a and b: the higher root is pointed at the lower one by atomic min."""
    a = find(par, a)
    b = find(par, b)
    while a != b:
        if a < b:
            old = cuda.atomic.min(par, b, a)
            if old == b:
                return
            b = find(par, old)
        else:
            old = cuda.atomic.min(par, a, b)
            if old == a:
                return
            a = find(par, old)


@cuda.jit(device=True, inline=True)
def block_coords(b, shape, bshape):
    """Block index b -> (bz, by, bx, nby, nbx): its position in the block grid and the grid's y, x sizes."""
    nby = (shape[1] + bshape[1] - 1) // bshape[1]
    nbx = (shape[2] + bshape[2] - 1) // bshape[2]
    return b // (nby * nbx), (b // nbx) % nby, b % nbx, nby, nbx


@cuda.jit(device=True, inline=True)
def voxel_of(bz, by, bx, k, shape, bshape):
    """Flat index of local voxel bit k of block (bz, by, bx)."""
    z = bz * bshape[0] + (k >> 2)
    y = by * bshape[1] + ((k >> 1) & 1)
    return (z * shape[1] + y) * shape[2] + bx * bshape[2] + (k & 1)


@cuda.jit(device=True, inline=True)
def first_voxel(bz, by, bx, bits, shape, bshape):
    """Flat index of the block's first foreground voxel in C order (its lowest occupancy bit)."""
    k = 0
    while (bits >> k) & 1 == 0:
        k += 1
    return voxel_of(bz, by, bx, k, shape, bshape)


@cuda.jit(device=True, inline=True)
def block_bits(occ, b):
    """Occupancy word of block b; 0 past the end of the block grid."""
    return occ[b] if b < occ.size else 0


@cuda.jit
def block_init(mask, occ, lab, shape, bshape):
    """Occupancy word of each block; each non-empty block's label is its own first voxel."""
    b = cuda.grid(1)
    if b >= occ.size:
        return
    bz, by, bx, nby, nbx = block_coords(b, shape, bshape)
    bits = 0
    for k in range(8):
        z = bz * bshape[0] + (k >> 2)
        y = by * bshape[1] + ((k >> 1) & 1)
        x = bx * bshape[2] + (k & 1)
        if ((k >> 2) < bshape[0] and ((k >> 1) & 1) < bshape[1] and (k & 1) < bshape[2]
                and z < shape[0] and y < shape[1] and x < shape[2]
                and mask[(z * shape[1] + y) * shape[2] + x] != 0):
            bits |= 1 << k
    occ[b] = bits
    if bits != 0:
        r = first_voxel(bz, by, bx, bits, shape, bshape)
        lab[r] = r


@cuda.jit
def block_merge(occ, lab, shape, bshape, table):
    """Union each block with its 13 backward neighbour blocks where a foreground voxel pair touches."""
    adj = cuda.const.array_like(ADJACENCY)
    b = cuda.grid(1)
    bits = block_bits(occ, b)
    if bits == 0:
        return
    bz, by, bx, nby, nbx = block_coords(b, shape, bshape)
    me = first_voxel(bz, by, bx, bits, shape, bshape)
    for t in range(13):
        z = bz + t // 9 - 1
        y = by + (t // 3) % 3 - 1
        x = bx + t % 3 - 1
        if z < 0 or y < 0 or y >= nby or x < 0 or x >= nbx:
            continue
        other = occ[(z * nby + y) * nbx + x]
        if other == 0:
            continue
        touch = 0
        for k in range(8):  # uniform reads of the table across a warp
            touch |= adj[table, t, k] * ((bits >> k) & 1)
        if touch & other:
            union(lab, me, first_voxel(z, y, x, other, shape, bshape))


@cuda.jit
def block_compress(occ, lab, isroot, shape, bshape):
    """Point each block's label at its root; flag roots (first voxels of components) for the prefix sum."""
    b = cuda.grid(1)
    bits = block_bits(occ, b)
    if bits == 0:
        return
    bz, by, bx, nby, nbx = block_coords(b, shape, bshape)
    me = first_voxel(bz, by, bx, bits, shape, bshape)
    r = find(lab, me)
    lab[me] = r
    if r == me:
        isroot[me] = 1


@cuda.jit
def block_label(occ, lab, rank, shape, bshape):
    """Write the canonical number (rank of the root among roots in C order) into the block's foreground."""
    b = cuda.grid(1)
    bits = block_bits(occ, b)
    if bits == 0:
        return
    bz, by, bx, nby, nbx = block_coords(b, shape, bshape)
    v = rank[lab[first_voxel(bz, by, bx, bits, shape, bshape)]]
    for k in range(8):
        if (bits >> k) & 1:
            lab[voxel_of(bz, by, bx, k, shape, bshape)] = v
