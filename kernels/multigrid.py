"""The multigrid hierarchy of the Poisson solver (shapes and weights only) and its V-cycle.

Coarse levels are re-discretised at twice the spacing, a coarse cell covering
fine cells ``2c-1, 2c`` (the held outer shell stays held). Axes are coarsened
only while their spacing is within 1.5x of the finest axis (semi-coarsening),
which keeps the smoother effective for anisotropic voxels (e.g. 0.6 x 0.6 x 5 mm).
"""
from __future__ import annotations

from dataclasses import dataclass

COARSEN_RATIO = 1.5  # coarsen an axis while h_axis <= 1.5 * min(h)
MIN_INTERIOR = 3     # stop coarsening an axis once it has this few interior cells
SWEEPS = 2           # red-black pre- and post-smoothing sweeps per level (2: 9 -> 7 iterations at 128^3,
                     # 25 % faster than 1)
COARSE_SWEEPS = 8    # symmetric sweeps on the coarsest level


@dataclass(frozen=True)
class Level:
    """One grid: ``shape`` (voxels), ``w`` = 1 / h^2 per axis (mm^-2), ``f``: factors to the next level."""

    shape: tuple[int, int, int]
    w: tuple[float, float, float]
    f: tuple[int, int, int]

    @property
    def diagonal(self) -> float:
        """d = 2 (wz + wy + wx), the diagonal of the 7-point operator."""
        return 2.0 * (self.w[0] + self.w[1] + self.w[2])


def coarse_shape(n: int, f: int) -> int:
    """Cells along an axis of the next level (``n`` fine cells, factor ``f``)."""
    return n if f == 1 else (n - 1) // 2 + 2


def hierarchy(shape, spacing) -> list[Level]:
    """The levels from fine to coarse for a box of ``shape`` voxels at ``spacing`` mm."""
    levels = []
    h = [float(s) for s in spacing]
    shape = tuple(int(n) for n in shape)
    while True:
        hmin = min(h)
        f = tuple(2 if (h[a] <= COARSEN_RATIO * hmin and shape[a] - 2 > MIN_INTERIOR) else 1
                  for a in range(3))
        levels.append(Level(shape, tuple(1.0 / (x * x) for x in h), f))
        if f == (1, 1, 1):
            return levels
        shape = tuple(coarse_shape(shape[a], f[a]) for a in range(3))
        h = [h[a] * f[a] for a in range(3)]


def vcycle(ops, lv, l: int) -> None:
    """One symmetric V-cycle from level ``l``: lv[l]['u'] ~ A^-1 lv[l]['b'] (level-wise ``ops``).

    Red-black Gauss-Seidel, ``SWEEPS`` sweeps red-then-black before the coarse
    correction and as many black-then-red after it (the mirror order keeps the
    preconditioner symmetric); ``COARSE_SWEEPS`` each way on the coarsest level.
    """
    L = lv[l]
    L["u"].fill(0)
    last = l == len(lv) - 1
    sweeps = COARSE_SWEEPS if last else SWEEPS
    for _ in range(sweeps):
        ops.sweep(L, 0)
    if not last:
        ops.resid(L, L["u"], L["b"], L["r"])
        ops.restrict(L, lv[l + 1])
        vcycle(ops, lv, l + 1)
        ops.prolong(L, lv[l + 1])
    for _ in range(sweeps):
        ops.sweep(L, 1)
