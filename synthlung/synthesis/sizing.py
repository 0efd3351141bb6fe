"""How big inserted tumours are: target diameters in mm, and the tumour burden of one case.

Sizes are diameters of the sphere of equal volume (mm). A :class:`SizePolicy`
draws a size class by weight, then a diameter uniform in it, and the seed is
scaled isotropically to reach it, within ``scale_limits`` of its own size. A
:class:`Burden` caps a case: its total inserted volume (ml) and the number of
masses (diameter above ``mass_mm``) per lung. The defaults and the reasons for
them are in the README ("Where tumours go, and how big").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


def sphere_ml(diameter_mm: float) -> float:
    """Volume (ml) of a sphere of ``diameter_mm``."""
    return math.pi / 6.0 * diameter_mm ** 3 / 1000.0


def sphere_diameter_mm(volume_ml: float) -> float:
    """Diameter (mm) of the sphere of ``volume_ml``."""
    return (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)


@dataclass(frozen=True)
class SizePolicy:
    """Target diameters (mm): ``ranges_mm`` with relative ``weights``; seeds scaled within ``scale_limits``."""

    ranges_mm: tuple[tuple[float, float], ...] = ((4.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 60.0))
    weights: tuple[float, ...] = (0.3, 0.3, 0.25, 0.15)
    scale_limits: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        ranges = tuple(tuple(float(v) for v in r) for r in self.ranges_mm)
        if not ranges or any(len(r) != 2 or not 0 < r[0] <= r[1] for r in ranges):
            raise InputError(f"sizes.ranges_mm {self.ranges_mm!r}: expected (lo, hi) mm pairs with 0 < lo <= hi")
        if len(self.weights) != len(ranges) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise InputError(f"sizes.weights {self.weights!r}: expected one weight >= 0 per range")
        lo, hi = (float(v) for v in self.scale_limits)
        if not 0 < lo <= 1.0 <= hi:
            raise InputError(f"sizes.scale_limits {self.scale_limits!r}: expected 0 < lo <= 1 <= hi")
        object.__setattr__(self, "ranges_mm", ranges)
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "scale_limits", (lo, hi))

    def draw(self, rng: np.random.Generator, max_mm: float = math.inf, mass_mm: float = math.inf) -> float | None:
        """A target diameter (mm) no larger than ``max_mm`` and below ``mass_mm``; None if no class allows one."""
        top = min(max_mm, mass_mm)
        usable = [(lo, min(hi, top), w) for (lo, hi), w in zip(self.ranges_mm, self.weights) if lo < top and w > 0]
        if not usable:
            return None
        w = np.array([u[2] for u in usable])
        lo, hi, _ = usable[int(rng.choice(len(usable), p=w / w.sum()))]
        return float(rng.uniform(lo, hi))

    def reachable(self, seed_mm: np.ndarray, target_mm: float) -> np.ndarray:
        """Which seeds (own diameters, mm) reach ``target_mm`` within the scale limits."""
        lo, hi = self.scale_limits
        return (seed_mm * lo <= target_mm) & (target_mm <= seed_mm * hi)

    def factor(self, seed_mm: float, target_mm: float) -> float:
        """The isotropic scale that takes a seed of ``seed_mm`` to ``target_mm``, clipped to the limits."""
        lo, hi = self.scale_limits
        return float(np.clip(target_mm / seed_mm, lo, hi))


@dataclass(frozen=True)
class Burden:
    """Per case: at most ``max_total_ml`` of inserted tumour, ``max_masses_per_lung`` above ``mass_mm``."""

    max_total_ml: float = 120.0
    mass_mm: float = 30.0
    max_masses_per_lung: int = 1


@dataclass
class BurdenTally:
    """What a case holds so far: inserted volume (ml) and masses per lung label."""

    burden: Burden
    total_ml: float = 0.0
    masses: dict[int, int] = field(default_factory=dict)

    def room_mm(self) -> float:
        """The largest diameter (mm) the remaining volume allows."""
        return sphere_diameter_mm(max(self.burden.max_total_ml - self.total_ml, 0.0))

    def mass_allowed(self, lungs: tuple[int, ...] = (1, 2)) -> bool:
        """True while some lung may still take a mass."""
        return any(self.masses.get(k, 0) < self.burden.max_masses_per_lung for k in lungs)

    def fits(self, volume_ml: float, diameter_mm: float, lung: int) -> bool:
        """Whether a tumour of this volume and diameter in lung label ``lung`` stays within the burden."""
        if self.total_ml + volume_ml > self.burden.max_total_ml:
            return False
        return diameter_mm < self.burden.mass_mm or self.masses.get(lung, 0) < self.burden.max_masses_per_lung

    def add(self, volume_ml: float, diameter_mm: float, lung: int) -> None:
        self.total_ml += volume_ml
        if diameter_mm >= self.burden.mass_mm:
            self.masses[lung] = self.masses.get(lung, 0) + 1
