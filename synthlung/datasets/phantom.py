"""A deterministic digital chest CT: anatomy, lung ground truth and tumor labels.

World coordinates are RAS+ millimetres (the NIfTI/nibabel convention): x grows
toward the patient's Right, y toward Anterior, z toward Superior, so the left
lung (label 1) and the heart lie at negative x.

The array axes i, j, k run toward R, A, S (affine ``diag(spacing)``), and the
volume is centred on the world origin. Intensities are HU (int16):

========================  ==================
air outside the body      -1000
fat layer                 about -100
muscle, mediastinum       about 40
blood (heart, aorta)      about 150
bone (ribs, spine)        700 and more
lung parenchyma           about -850
vessels                   about 40, tapering
tumors                    0-60, lobulated
========================  ==================

plus spatially correlated Gaussian noise (about 25 HU) everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume

_LEFT = -1.0  # sign of world x on the patient's left in RAS+ (x grows toward the Right)


@dataclass(frozen=True)
class ChestPhantom:
    """``image`` int16 HU, ``label`` uint8 tumor mask (0/1), ``lungs`` uint8 (1 left, 2 right)."""

    image: Volume
    label: Volume
    lungs: Volume


def _grid(shape, spacing):
    """Open world-coordinate grids (mm) of a volume centred on the origin, and its affine."""
    spacing = np.asarray(spacing, dtype=np.float64)
    origin = -(np.asarray(shape) - 1) / 2.0 * spacing
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    axes = [(origin[a] + spacing[a] * np.arange(shape[a])).astype(np.float32) for a in range(3)]
    return np.ix_(*axes), affine


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _soft(inside_mm, voxel_mm):
    """Partial-volume fraction of a voxel whose centre lies ``inside_mm`` inside an edge."""
    return np.clip(inside_mm / voxel_mm + 0.5, 0.0, 1.0)


def _segment_distance(pts, a, b):
    """Distance (mm) of points ``pts`` (..., 3) to the segment ``a``-``b``, and position t on it."""
    ab = b - a
    t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(pts - (a + t[..., None] * ab), axis=-1), t


def _vessel_tree(rng, root, direction, radius, depth):
    """Segments (a, b, r0, r1) of a random branching tree, radius tapering by ~0.72 per level."""
    segments = []
    stack = [(np.asarray(root, float), np.asarray(direction, float), radius, depth)]
    while stack:
        start, d, r, level = stack.pop()
        length = 5.0 * r + rng.uniform(2.0, 8.0)
        end = start + d / np.linalg.norm(d) * length
        segments.append((start, end, r, r * 0.8))
        if level > 0 and r > 0.7:
            for _ in range(2):
                child = d / np.linalg.norm(d) + rng.normal(0.0, 0.55, 3)
                stack.append((end, child, r * 0.72, level - 1))
    return segments


def _render_segments(field, origin, spacing, segments, value_mm):
    """Max-accumulate the soft occupancy of tapered tubes into ``field`` (in place), per bounding box."""
    shape = np.asarray(field.shape)
    for a, b, r0, r1 in segments:
        pad = max(r0, r1) + spacing.max()
        lo = np.maximum(np.floor((np.minimum(a, b) - pad - origin) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((np.maximum(a, b) + pad - origin) / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = [origin[i] + spacing[i] * np.arange(lo[i], hi[i]) for i in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        dist, t = _segment_distance(pts, a, b)
        occ = _soft(r0 + (r1 - r0) * t - dist, value_mm)
        box = field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(box, occ, out=box)


def _tumor(rng, pts_shape, origin, spacing, centre, radius):
    """Soft occupancy and bounding box of a lobulated tumor: a union of 3-6 overlapping spheres."""
    n = int(rng.integers(3, 7))
    offsets = rng.normal(0.0, 0.45 * radius, (n, 3))
    offsets[0] = 0.0
    radii = radius * rng.uniform(0.55, 0.9, n)
    radii[0] = radius * 0.85
    pad = radius * 2.2 + spacing.max()
    lo = np.maximum(np.floor((centre - pad - origin) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((centre + pad - origin) / spacing).astype(int) + 1, pts_shape)
    axes = [origin[i] + spacing[i] * np.arange(lo[i], hi[i]) for i in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    inside = np.full(pts.shape[:3], -np.inf)
    for off, r in zip(offsets, radii):
        inside = np.maximum(inside, r - np.linalg.norm(pts - (centre + off), axis=-1))
    return _soft(inside, float(spacing.min())), lo, hi


def chest_phantom(shape: tuple[int, int, int] = (160, 128, 112),
                  spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.5),
                  n_tumors: int = 3, seed: int = 0) -> ChestPhantom:
    """A digital chest CT (RAS, centred on the origin) with lung ground truth and tumor labels.

    The anatomy is laid out in millimetres for a field of view of about
    320 x 256 x 280 mm, scaled to the grid ``shape`` x ``spacing_mm``. The same
    ``seed`` gives identical arrays; the vessel trees, tumors and noise change
    with it. About a third of the tumors are juxtapleural (touching the chest wall).
    """
    rng = np.random.Generator(np.random.Philox(key=np.array([int(seed), 0xC4E57], dtype=np.uint64)))
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    (x, y, z), affine = _grid(shape, spacing)
    origin = affine[:3, 3]
    half = (np.asarray(shape) - 1) / 2.0 * spacing
    # Anatomy is designed for a 320 x 256 x 280 mm field; scale it to the grid actually asked for.
    s = np.minimum(half / np.array([160.0, 128.0, 140.0]), 10.0)
    x, y, z = x / s[0], y / s[1], z / s[2]
    vox = float(spacing.min())

    body = _ellipse(x, y, 0, 0, 150, 115)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[...] = np.where(body <= 1.0, -100.0, -1000.0)
    hu[...] = np.where(_ellipse(x, y, 0, 0, 140, 105) <= 1.0, 40.0, hu)

    # Ribs: a ring outside the pleural cavity, one rib every 24 mm, sloping down anteriorly.
    ring = np.sqrt(_ellipse(x, y, 0, 0, 128, 94))
    rib_z = np.mod(z + 0.25 * y + 6.0, 24.0) - 12.0
    ribs = (np.abs(ring - 1.0) * 110.0 < 4.5) & (np.abs(rib_z) < 4.5) & (y < 70)
    hu[ribs] = 750.0
    # Spine: vertebral bodies (discs every 30 mm) and the spinal canal behind them.
    disc = np.abs(np.mod(z, 30.0) - 15.0) < 2.5
    vert = _ellipse(x, y, 0, -78, 20, 17) <= 1.0
    hu[...] = np.where(vert, np.where(disc, 80.0, 700.0), hu)
    hu[...] = np.where(_ellipse(x, y, 0, -103, 8, 7) <= 1.0, 20.0, hu)
    hu[...] = np.where((_ellipse(x, y, 0, -103, 14, 12) <= 1.0) & ~(_ellipse(x, y, 0, -103, 8, 7) <= 1.0)
                       & ~disc, 800.0, hu)
    # Aorta (descending, left of the spine) with contrast blood.
    hu[...] = np.where(_ellipse(x, y, _LEFT * 22, -50, 13, 13) <= 1.0, 150.0, hu)

    # Lungs: ellipsoids inside the pleural cavity, a domed diaphragm below, the mediastinum between.
    cavity = _ellipse(x, y, 0, -5, 121, 88) <= 1.0
    heart = ((x - _LEFT * 18) / 58) ** 2 + ((y - 28) / 48) ** 2 + ((z + 55) / 55) ** 2
    lungs = np.zeros(shape, dtype=np.uint8)
    for label, side in ((1, _LEFT), (2, -_LEFT)):
        r2 = ((x - side * 66) / 52) ** 2 + ((y + 5) / 78) ** 2 + ((z - 15) / 135) ** 2
        dome = -95.0 + 35.0 * np.exp(-_ellipse(x, y, side * 60, 0, 45, 55))
        lung = (r2 <= 1.0) & cavity & (z > dome) & (side * x > 20.0) & (heart > 1.3)
        lungs[lung] = label
    in_lung = lungs > 0
    hu[in_lung] = -850.0
    # Heart with blood pool; its myocardium is soft tissue.
    hu[...] = np.where(heart <= 1.0, 40.0, hu)
    hu[...] = np.where(heart <= 0.55, 150.0, hu)

    # Trachea from the top slice to the carina, then the main bronchi into each hilum.
    top = float(half[2] / s[2]) + 10.0
    carina = np.array([0.0, 5.0, 55.0])
    airway = [(np.array([0.0, 5.0, top]), carina, 9.0, 8.5)]
    hila = {}
    for label, side in ((1, _LEFT), (2, -_LEFT)):
        hila[label] = np.array([side * 48.0, 0.0, 30.0])
        airway.append((carina, hila[label], 6.5, 5.0))
    walls = np.zeros(shape, dtype=np.float32)
    _render_segments(walls, origin / s, spacing / s, [(a, b, r0 + 2, r1 + 2) for a, b, r0, r1 in airway], vox)
    hu[...] = np.where(walls > 0.5, 40.0, hu)
    air = np.zeros(shape, dtype=np.float32)
    _render_segments(air, origin / s, spacing / s, airway, vox)

    # Vessel trees from each hilum, clipped to the lung.
    vessels = np.zeros(shape, dtype=np.float32)
    for label, side in ((1, _LEFT), (2, -_LEFT)):
        for direction in ([0.4 * side, 0.3, 1.0], [0.4 * side, -0.2, -1.0], [side, 0.8, -0.3],
                          [side, -0.9, 0.1], [0.3 * side, 1.0, 0.4], [0.3 * side, -1.0, -0.5]):
            tree = _vessel_tree(rng, hila[label] + [side * 6.0, 0, 0], direction, 4.5, 5)
            _render_segments(vessels, origin / s, spacing / s, tree, vox)
    vessels *= in_lung
    hu += vessels * (40.0 - hu) * in_lung

    # Lobulated solid tumors, some juxtapleural; the label is their half-occupancy inside the lung.
    label = np.zeros(shape, dtype=np.uint8)
    depth_mm = ndi.distance_transform_edt(in_lung, sampling=spacing / s)
    for n in range(n_tumors):
        radius = rng.uniform(6.0, 14.0)
        juxtapleural = n % 3 == 1
        want = (depth_mm > radius * 0.5) & (depth_mm < radius * 0.9) if juxtapleural else depth_mm > radius * 1.6
        candidates = np.flatnonzero(want)
        if candidates.size == 0:
            continue
        ijk = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], shape))
        centre = (origin + ijk * spacing) / s
        occ, lo, hi = _tumor(rng, np.asarray(shape), origin / s, spacing / s, centre, radius)
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        occ *= in_lung[box] | (hu[box] > -200.0)  # grows against the wall, never into outside air
        tumor_hu = rng.uniform(0.0, 60.0)
        hu[box] += occ * (tumor_hu - hu[box])
        label[box] |= ((occ >= 0.5) & in_lung[box]).astype(np.uint8)

    # Airway air last: the trachea and bronchi cut through lung and mediastinum alike.
    hu += air * (-1000.0 - hu)

    # Spatially correlated noise (FWHM ~ 1.5 voxels) plus lung texture.
    noise = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.8)
    noise *= 25.0 / max(float(noise.std()), 1e-6)
    hu += noise
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return ChestPhantom(Volume(image, affine), Volume(label, affine), Volume(lungs, affine))
