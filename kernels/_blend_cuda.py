"""CUDA kernels of :mod:`synthlung.kernels.blend` and the solver's operations on the device.

Imported (and compiled) on first use. Every kernel computes in float32 (the
per-voxel functions of :mod:`.blend_voxel` with ``real = np.float32``, float32
weights); reductions sum a block's values in a float32 tree in shared memory
and add the block's total to a float64 accumulator (one atomic per block).
Launches are 1-D over a level's voxels in C order, so ``threadIdx.x`` runs
along the contiguous axis.

Few launches per CG iteration (the same arithmetic as the CPU path):

* ``sweep``: one whole red-black sweep in one launch. A voxel of the second
  colour recomputes the first-colour values of its 6 neighbours from the old
  iterate instead of waiting for another launch (old and new iterate are two
  buffers). ``mode`` 0 starts from zero (the first sweep of a V-cycle), 2 adds
  the prolonged coarse correction to the old iterate on the fly (prolongation
  fused with the first post-smoothing sweep); the last sweep of the finest
  level also accumulates ``r.z``.
* ``restrict``: the residual of the smoothed iterate and its restriction in
  one launch (a coarse cell computes the residual at its fine taps).
* ``tail_vcycle``: the V-cycle from the first level of at most ``TAIL_MAX``
  voxels down (every coarser level, the coarsest one's symmetric sweeps
  included) in one launch of one block, ``syncthreads`` where a launch would
  end; the tail levels live in three 4-D buffers, a level per corner.
* ``direction``: ``p = z + beta p`` fused with ``q = A p`` and ``p.q``;
  ``update``: ``x += alpha p``, ``r -= alpha q`` and ``r.r``.

Scalars (``r.z``, ``p.q``, ``r.r`` of every iteration) stay on the device in
one float64 array, a row per iteration, read by the kernels that need them;
the driver copies one of them (``r.r``) to the host per iteration. A level
launched on its own costs 5 launches per iteration (2 sweeps, the restriction,
2 sweeps), the tail 1, the CG update 2; the set-up one ``coarsen`` per coarse
level and one ``start``. The 26 x 28 x 30 box of a 13 mm tumour (5 levels, the
tail from the second): 8 launches per iteration, 5 for the set-up.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from synthlung.backend import cuda_simulator_enabled

from . import blend_voxel as V
from .multigrid import COARSE_SWEEPS, SWEEPS

TPB = 32 if cuda_simulator_enabled() else 128         # threads per block (a power of 2: tree sums)
TAIL_TPB = 32 if cuda_simulator_enabled() else 256    # the one block of the coarse tail
TAIL_MAX = 4096  # voxels: the first level at most this large and all coarser ones run in one block
_f32 = np.float32
_f64 = np.float64
_dev = cuda.jit(device=True)

alpha_v = _dev(V.alpha_op(np.float32))
rhs_v = _dev(V.rhs_op(np.float32))
neigh = _dev(V.neigh_sum)
tap = _dev(V.tap_op(np.float32))
interp = _dev(V.interp_op(np.float32))
coarsen_v = _dev(V.coarsen)


@_dev
def coords(t, shape):
    """(i, j, k) of flat C-order index t and whether it is an interior voxel of ``shape``."""
    nz, ny, nx = shape
    k = t % nx
    j = (t // nx) % ny
    i = t // (nx * ny)
    return i, j, k, 0 < i < nz - 1 and 0 < j < ny - 1 and 0 < k < nx - 1


@_dev
def block_sum(sh, v):
    """Sum of ``v`` over the block (float32 tree in shared ``sh``); every thread must call it."""
    tid = np.int64(cuda.threadIdx.x)  # uint32 mixed with int64 would promote to float64
    cuda.syncthreads()  # a previous sum's result may still be read
    sh[tid] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            sh[tid] += sh[tid + s]
        cuda.syncthreads()
        s //= 2
    return sh[0]


@_dev
def accumulate(S, slot, sh, v):
    """S[slot] += the block's sum of v (float64 accumulator, one atomic per block)."""
    total = block_sum(sh, v)
    if cuda.threadIdx.x == 0:
        cuda.atomic.add(S, slot, _f64(total))


@_dev
def prolong_at(uc, fz, fy, fx, i, j, k):
    """(P uc) at fine cell (i, j, k): cell-centred trilinear interpolation."""
    acc = _f32(0.0)
    for a in range(2):
        I, wa = interp(i, fz, a)
        for b in range(2):
            J, wb = interp(j, fy, b)
            for c in range(2):
                K, wc = interp(k, fx, c)
                acc += wa * wb * wc * uc[I, J, K]
    return acc


@_dev
def old(u, uc, mask, mode, fz, fy, fx, i, j, k):
    """The iterate before a sweep: 0 (mode 0), ``u`` (1) or ``u + P uc`` on the mask (2)."""
    if mode == 0:
        return _f32(0.0)
    v = u[i, j, k]
    if mode == 2 and mask[i, j, k]:
        v += prolong_at(uc, fz, fy, fx, i, j, k)
    return v


@_dev
def first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j, k):
    """A first-colour voxel's value after the first half-sweep (Gauss-Seidel from the old iterate)."""
    if not mask[i, j, k]:
        return old(u, uc, mask, mode, fz, fy, fx, i, j, k)
    s = (wz * (old(u, uc, mask, mode, fz, fy, fx, i - 1, j, k) + old(u, uc, mask, mode, fz, fy, fx, i + 1, j, k))
         + wy * (old(u, uc, mask, mode, fz, fy, fx, i, j - 1, k) + old(u, uc, mask, mode, fz, fy, fx, i, j + 1, k))
         + wx * (old(u, uc, mask, mode, fz, fy, fx, i, j, k - 1) + old(u, uc, mask, mode, fz, fy, fx, i, j, k + 1)))
    return (b[i, j, k] + s) * inv


@cuda.jit
def sweep(u, uc, b, mask, wz, wy, wx, inv, fz, fy, fx, mode, first, out, S, slot):
    """out = one red-black sweep (colour ``first``, then the other) from the old iterate; S[slot] += b.out."""
    sh = cuda.shared.array(TPB, numba.float32)
    i, j, k, ok = coords(cuda.grid(1), out.shape)
    v = _f32(0.0)
    if ok and mask[i, j, k]:
        if (i + j + k) % 2 == first:
            new = first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j, k)
        else:
            s = (wz * (first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i - 1, j, k)
                       + first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i + 1, j, k))
                 + wy * (first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j - 1, k)
                         + first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j + 1, k))
                 + wx * (first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j, k - 1)
                         + first_value(u, uc, b, mask, mode, fz, fy, fx, wz, wy, wx, inv, i, j, k + 1)))
            new = (b[i, j, k] + s) * inv
        out[i, j, k] = new
        v = b[i, j, k] * new
    if slot >= 0:
        accumulate(S, slot, sh, v)


@_dev
def restrict_at(u, b, mask, d, wz, wy, wx, fz, fy, fx, I, J, K):
    """(R (b - A u)) at coarse cell (I, J, K), the residual computed at its fine taps (not yet scaled)."""
    nz, ny, nx = u.shape
    acc = _f32(0.0)
    for a in range(4):
        i, wa = tap(I, fz, a, nz)
        if wa == 0:
            continue
        for bb in range(4):
            j, wb = tap(J, fy, bb, ny)
            if wb == 0:
                continue
            for c in range(4):
                k, wc = tap(K, fx, c, nx)
                if wc != 0 and mask[i, j, k]:
                    acc += wa * wb * wc * (b[i, j, k] - (d * u[i, j, k] - neigh(u, wz, wy, wx, i, j, k)))
    return acc


@cuda.jit
def restrict(u, b, mask, d, wz, wy, wx, cmask, fz, fy, fx, scale, bc):
    """bc = scale * R (b - A u) on the coarse mask: residual and restriction in one launch."""
    I, J, K, ok = coords(cuda.grid(1), bc.shape)
    if ok and cmask[I, J, K]:
        bc[I, J, K] = scale * restrict_at(u, b, mask, d, wz, wy, wx, fz, fy, fx, I, J, K)


@_dev
def block_sweeps(u, b, mask, wz, wy, wx, inv, sweeps, first):
    """``sweeps`` in-place red-black sweeps by one block (colour ``first``, then the other)."""
    tid = np.int64(cuda.threadIdx.x)  # uint32 mixed with int64 would promote to float64
    nt = np.int64(cuda.blockDim.x)
    for s in range(sweeps):
        for h in range(2):
            color = first if h == 0 else 1 - first
            for t in range(tid, u.size, nt):
                i, j, k, ok = coords(t, u.shape)
                if ok and mask[i, j, k] and (i + j + k) % 2 == color:
                    u[i, j, k] = (b[i, j, k] + neigh(u, wz, wy, wx, i, j, k)) * inv
            cuda.syncthreads()


@cuda.jit
def tail_vcycle(U, B, M, tab, wt, sweeps, coarse_sweeps, S, slot):
    """The V-cycle over the coarse tail of the hierarchy, all its levels in one launch of one block.

    Level l is the corner ``[l, :nz, :ny, :nx]`` of the 4-D buffers ``U``
    (iterate), ``B`` (right-hand side; the first level's is given) and ``M``
    (mask), ``tab[l]`` = nz, ny, nx, fz, fy, fx and ``wt[l]`` = wz, wy, wx, d,
    inv, restriction scale. (Views by slicing: a ``reshape`` in device code
    costs float64 compares in Numba's size check.) The order of :func:`.multigrid.vcycle`, with
    ``syncthreads`` where a launch would end. S[slot] += b.u of the first level.
    """
    sh = cuda.shared.array(TAIL_TPB, numba.float32)
    tid = np.int64(cuda.threadIdx.x)  # uint32 mixed with int64 would promote to float64
    nt = np.int64(cuda.blockDim.x)
    last = tab.shape[0] - 1
    for l in range(last + 1):
        u = U[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        b = B[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        m = M[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        for t in range(tid, u.size, nt):
            i, j, k, ok = coords(t, u.shape)
            u[i, j, k] = 0
        cuda.syncthreads()
        if l == last:
            block_sweeps(u, b, m, wt[l, 0], wt[l, 1], wt[l, 2], wt[l, 4], coarse_sweeps, 0)
            block_sweeps(u, b, m, wt[l, 0], wt[l, 1], wt[l, 2], wt[l, 4], coarse_sweeps, 1)
        else:
            block_sweeps(u, b, m, wt[l, 0], wt[l, 1], wt[l, 2], wt[l, 4], sweeps, 0)
            bc = B[l + 1, :tab[l + 1, 0], :tab[l + 1, 1], :tab[l + 1, 2]]
            cm = M[l + 1, :tab[l + 1, 0], :tab[l + 1, 1], :tab[l + 1, 2]]
            for t in range(tid, bc.size, nt):
                I, J, K, ok = coords(t, bc.shape)
                if ok and cm[I, J, K]:
                    bc[I, J, K] = wt[l, 5] * restrict_at(u, b, m, wt[l, 3], wt[l, 0], wt[l, 1], wt[l, 2],
                                                         tab[l, 3], tab[l, 4], tab[l, 5], I, J, K)
            cuda.syncthreads()
    for l in range(last - 1, -1, -1):
        u = U[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        b = B[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        m = M[l, :tab[l, 0], :tab[l, 1], :tab[l, 2]]
        uc = U[l + 1, :tab[l + 1, 0], :tab[l + 1, 1], :tab[l + 1, 2]]
        for t in range(tid, u.size, nt):
            i, j, k, ok = coords(t, u.shape)
            if ok and m[i, j, k]:
                u[i, j, k] += prolong_at(uc, tab[l, 3], tab[l, 4], tab[l, 5], i, j, k)
        cuda.syncthreads()
        block_sweeps(u, b, m, wt[l, 0], wt[l, 1], wt[l, 2], wt[l, 4], sweeps, 1)
    if slot >= 0:
        u = U[0, :tab[0, 0], :tab[0, 1], :tab[0, 2]]
        b = B[0, :tab[0, 0], :tab[0, 1], :tab[0, 2]]
        m = M[0, :tab[0, 0], :tab[0, 1], :tab[0, 2]]
        v = _f32(0.0)
        for t in range(tid, u.size, nt):
            i, j, k, ok = coords(t, u.shape)
            if ok and m[i, j, k]:
                v += b[i, j, k] * u[i, j, k]
        accumulate(S, slot, sh, v)


@_dev
def pval(z, p, mask, beta, first, i, j, k):
    """The new search direction z + beta p at (i, j, k) (z on the first iteration, 0 off the mask)."""
    if not mask[i, j, k]:
        return _f32(0.0)
    if first:
        return z[i, j, k]
    return z[i, j, k] + beta * p[i, j, k]


@cuda.jit
def direction(z, p, mask, d, wz, wy, wx, S, rz, rz_old, first, pn, q, pq):
    """pn = z + (S[rz] / S[rz_old]) p, q = A pn, S[pq] += pn.q."""
    sh = cuda.shared.array(TPB, numba.float32)
    i, j, k, ok = coords(cuda.grid(1), z.shape)
    beta = _f32(0.0)
    if not first:
        beta = _f32(S[rz]) / _f32(S[rz_old])
    v = _f32(0.0)
    if ok and mask[i, j, k]:
        c = pval(z, p, mask, beta, first, i, j, k)
        s = (wz * (pval(z, p, mask, beta, first, i - 1, j, k) + pval(z, p, mask, beta, first, i + 1, j, k))
             + wy * (pval(z, p, mask, beta, first, i, j - 1, k) + pval(z, p, mask, beta, first, i, j + 1, k))
             + wx * (pval(z, p, mask, beta, first, i, j, k - 1) + pval(z, p, mask, beta, first, i, j, k + 1)))
        w = d * c - s
        pn[i, j, k] = c
        q[i, j, k] = w
        v = w * c
    accumulate(S, pq, sh, v)


@cuda.jit
def update(p, q, mask, S, rz, pq, x, r, rr):
    """alpha = S[rz] / S[pq]; x += alpha p; r -= alpha q; S[rr] += r.r (on the mask)."""
    sh = cuda.shared.array(TPB, numba.float32)
    alpha = _f32(S[rz]) / _f32(S[pq])
    i, j, k, ok = coords(cuda.grid(1), p.shape)
    v = _f32(0.0)
    if ok and mask[i, j, k]:
        x[i, j, k] += alpha * p[i, j, k]
        w = r[i, j, k] - alpha * q[i, j, k]
        r[i, j, k] = w
        v = w * w
    accumulate(S, rr, sh, v)


@_dev
def sval(seed, mask, i, j, k):
    return seed[i, j, k] if mask[i, j, k] else _f32(0.0)


@cuda.jit
def start(fixed, mask, seed, host, wz, wy, wx, d, mixed, b, x, r, S):
    """b = right-hand side, x = seed on the mask (fixed elsewhere), r = b - A x; S[0] += b.b, S[1] += r.r."""
    sh = cuda.shared.array(TPB, numba.float32)
    t = cuda.grid(1)
    i, j, k, ok = coords(t, b.shape)
    vb = _f32(0.0)
    vr = _f32(0.0)
    if t < b.size:
        if ok and mask[i, j, k]:
            vb = rhs_v(fixed, mask, seed, host, wz, wy, wx, mixed, b, x, i, j, k)
            s = (wz * (sval(seed, mask, i - 1, j, k) + sval(seed, mask, i + 1, j, k))
                 + wy * (sval(seed, mask, i, j - 1, k) + sval(seed, mask, i, j + 1, k))
                 + wx * (sval(seed, mask, i, j, k - 1) + sval(seed, mask, i, j, k + 1)))
            w = b[i, j, k] - (d * seed[i, j, k] - s)
            r[i, j, k] = w
            vr = w * w
        else:
            x[i, j, k] = fixed[i, j, k]
    accumulate(S, 0, sh, vb)
    accumulate(S, 1, sh, vr)


@cuda.jit
def coarsen(mask, fz, fy, fx, cmask, cshape):
    """The coarse mask of shape ``cshape`` (the corner of ``cmask``; cells past a fine level's corner are 0)."""
    i, j, k, ok = coords(cuda.grid(1), cshape)
    if ok:
        coarsen_v(mask, fz, fy, fx, cmask, i, j, k)


@cuda.jit
def alpha(host, seed, weight, out, lo, hi):
    t = cuda.grid(1)
    if t < out.size:
        alpha_v(host, seed, weight, out, lo, hi, t)


def _blocks(n: int) -> int:
    return (n + TPB - 1) // TPB


def launch_alpha(host, seed, weight, out, lo, hi) -> None:
    """The alpha blend over flat device arrays."""
    alpha[_blocks(out.size), TPB](host, seed, weight, out, lo, hi)


_SLOTS = 4  # per iteration: r.z, p.q, r.r (and one spare, keeping rows aligned)


class Ops:
    """The operations of :func:`.mgpcg.solve` on device arrays (``xp``: CuPy, or NumPy in the simulator).

    Levels larger than ``TAIL_MAX`` voxels are separate 3-D arrays with two
    iterate buffers (``A``, ``B``: a sweep reads one and writes the other); the
    tail below them lives in three flat buffers, one view per level.
    """

    def __init__(self, xp):
        self.xp = xp

    def _zeros(self, shape, dtype=np.float32):
        return self.xp.zeros(shape, dtype=dtype)

    def _tail(self, specs):
        """The tail levels' 4-D buffers (a level is a corner of the first level's box) and per-level views."""
        xp = self.xp
        box = (len(specs), *specs[0].shape)
        tab = np.array([[*sp.shape, *sp.f] for sp in specs], dtype=np.int64)
        wt = np.array([[*sp.w, sp.diagonal, 0.5 / sum(sp.w), 1.0 / np.prod(sp.f)] for sp in specs], dtype=np.float32)
        T = {"U": self._zeros(box), "B": self._zeros(box), "M": self._zeros(box, xp.bool_),
             "tab": xp.asarray(tab), "wt": xp.asarray(wt)}
        views = [{k: T[k][n, :sp.shape[0], :sp.shape[1], :sp.shape[2]] for k in ("U", "B", "M")}
                 | {"box": T["M"][n]} for n, sp in enumerate(specs)]
        return T, views

    def setup(self, levels, fixed, solve_mask, seed, host, mixed, max_iter):
        xp = self.xp
        seed, host, fixed = (xp.ascontiguousarray(a, dtype=xp.float32) for a in (seed, host, fixed))
        nt = next(n for n, sp in enumerate(levels) if np.prod(sp.shape) <= TAIL_MAX or n == len(levels) - 1)
        tail, views = self._tail(levels[nt:])
        lv = []
        for n, spec in enumerate(levels):
            L = {"spec": spec, "w": tuple(_f32(v) for v in spec.w), "d": _f32(spec.diagonal),
                 "inv": _f32(0.5 / sum(spec.w))}
            if n < nt:
                m = self._zeros(spec.shape, xp.bool_)
                L.update(mask=m, box=m, A=self._zeros(spec.shape), B=self._zeros(spec.shape),
                         b=self._zeros(spec.shape))
            else:
                v = views[n - nt]
                L.update(mask=v["M"], box=v["box"], A=v["U"], b=v["B"])
            if n == 0:
                L["mask"][...] = xp.asarray(solve_mask, dtype=xp.bool_)
            else:  # the simulator takes contiguous arrays only: a tail level's mask is given as its box
                P = lv[-1]
                coarsen[_blocks(L["mask"].size), TPB](P["box"], *P["spec"].f, L["box"], spec.shape)
            lv.append(L)
        L0 = lv[0]
        s = {"lv": lv, "tail": tail, "nt": nt, "S": self._zeros(_SLOTS * (max_iter + 1), np.float64),
             "x": self._zeros(fixed.shape), "r": L0["b"],  # the finest level's right-hand side is the residual
             "p": (self._zeros(fixed.shape), self._zeros(fixed.shape)), "q": self._zeros(fixed.shape)}
        b = self._zeros(fixed.shape)
        start[_blocks(b.size), TPB](fixed, L0["mask"], seed, host, *L0["w"], L0["d"], mixed, b, s["x"], s["r"],
                                    s["S"])
        return s

    def _sweep(self, L, mode, src, uc, f, first, out, S, slot):
        sweep[_blocks(out.size), TPB](src, uc, L["b"], L["mask"], *L["w"], L["inv"], *f, mode, first, out, S, slot)

    def _vcycle(self, s, l, slot):
        """One V-cycle from level l; returns the buffer holding its result. The last sweep adds b.u to S[slot]."""
        lv, S = s["lv"], s["S"]
        if l == s["nt"]:
            T = s["tail"]
            tail_vcycle[1, TAIL_TPB](T["U"], T["B"], T["M"], T["tab"], T["wt"], SWEEPS, COARSE_SWEEPS, S, slot)
            return lv[l]["A"]
        L, C = lv[l], lv[l + 1]
        other = {id(L["A"]): L["B"], id(L["B"]): L["A"]}
        one = (1, 1, 1)
        cur = L["A"]
        self._sweep(L, 0, cur, cur, one, 0, cur, S, -1)
        for _ in range(SWEEPS - 1):
            nxt = other[id(cur)]
            self._sweep(L, 1, cur, cur, one, 0, nxt, S, -1)
            cur = nxt
        f = L["spec"].f
        restrict[_blocks(C["b"].size), TPB](cur, L["b"], L["mask"], L["d"], *L["w"], C["mask"], *f,
                                            _f32(1.0 / (f[0] * f[1] * f[2])), C["b"])
        uc = self._vcycle(s, l + 1, -1)
        for n in range(SWEEPS):
            nxt = other[id(cur)]
            self._sweep(L, 2 if n == 0 else 1, cur, uc, f if n == 0 else one, 1, nxt, S,
                        slot if n == SWEEPS - 1 else -1)
            cur = nxt
        return cur

    def norms(self, s):
        bb, rr = self._host(s["S"][0:2])
        return bb, rr

    def iterate(self, s, it):
        lv, S = s["lv"], s["S"]
        L0 = lv[0]
        row = _SLOTS * (it + 1)
        rz, pq, rr = row, row + 1, row + 2
        z = self._vcycle(s, 0, rz)
        p_old, p_new = s["p"][it % 2], s["p"][(it + 1) % 2]
        n = z.size
        direction[_blocks(n), TPB](z, p_old, L0["mask"], L0["d"], *L0["w"], S, rz, rz - _SLOTS, it == 0, p_new,
                                   s["q"], pq)
        update[_blocks(n), TPB](p_new, s["q"], L0["mask"], S, rz, pq, s["x"], s["r"], rr)

    def read(self, s, it):
        row = _SLOTS * (it + 1)
        return self._host(s["S"][row + 2:row + 3])[0]

    @staticmethod
    def _host(a) -> list[float]:
        """The one way a scalar reaches the host (a device-to-host copy on a GPU)."""
        return [float(v) for v in (a.get() if hasattr(a, "get") else a)]

    @staticmethod
    def result(s):
        return s["x"]
