"""Lung segmentation without downloaded models: HU thresholds, components and morphology in mm.

Output labels: 0 background, **1 left lung, 2 right lung** (the patient's left
and right, decided in RAS world coordinates), in the input's voxel grid.

The method (``method="threshold"``) works on a coarse grid of block means
(about ``coarse_mm`` per voxel) and refines the lung surface at full
resolution in one fused pass, so a 512 x 512 x 300 CT takes about a second on
two CPU cores:

1. block means (kernel ``block_mean``), air = mean below ``air_hu``;
2. air outside the body: per slice (in the plane normal to the patient's
   superior axis), air connected to the slice border; lungs running through
   the first or last slice are kept, they are only open along that axis;
3. trachea and main bronchi: dark air (thresholds rising from -990 HU until
   the grown tree would leak) connected to a seed near the midline in the top
   slices, removed with a wall margin in mm;
4. connected components (``synthlung.label``), kept as lung when their
   parenchymal density is lung-like (few voxels of homogeneous gas darker than
   ``gas_hu``), their texture is not mottled (bowel content: over
   ``max_mottled_fraction`` of the full-resolution voxels both gas, below
   ``gas_hu``, and solid, above ``solid_hu``, from block means of the two
   indicators), their top lies near the highest such air (gas below the
   diaphragm never reaches the lung's top) and their volume is at least
   ``min_lung_ml``; a component spanning both sides of the midline is split
   at the anterior junction by erosion in mm;
5. per lung: hole filling and a closing of ``closing_mm`` (Euclidean distance
   transforms with the voxel spacing, O(N)) that brings vessels inside;
6. juxtapleural nodules: a larger closing of ``pleural_mm`` per lung whose
   additions are kept only on the pleural side, tested by three rays in mm
   (toward the lung centre in the axial plane and straight down both meet this
   lung first; along x toward the midline the other lung is not met first), so
   the mediastinum, hilum, heart and diaphragm dome stay out;
7. full resolution (kernel ``lung_refine``): voxels deep inside a coarse lung
   voxel take its label, voxels in the surface band keep it where their HU is
   below ``air_hu``; solid pleural additions (and the lung voxels next to
   them) take the label whole, so a nodule against the chest wall is inside.

Quality gates raise :class:`~synthlung.errors.InputError`: no lungs found; a
full-coverage scan whose lung volume is outside ``volume_range_l``; only one
lung found (unless ``allow_one_lung=True``, which warns instead). Partial
coverage (a lung cut by the first or last slice over more than a quarter of
its largest cross-section, e.g. an abdominal CT with the lung bases) is not
an error: :func:`lung_summary` reports it.

NumPy input runs scipy.ndimage and the CPU kernels; CuPy input stays on the
GPU (cupyx.scipy.ndimage and the CUDA kernels). One code path, two modules.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import array_module, asnumpy, dispatch, to_array
from ..components import component_stats, label
from ..errors import InputError
from ..kernels import block_mean, lung_refine
from ..morphology import bounding_box, dilate_mm, distance_mm, ndimage_for
from ..volume import Volume

LEFT, RIGHT = 1, 2


@dataclass(frozen=True)
class _Grid:
    """The coarse grid: block factors, its spacing (mm), the superior axis and its direction."""

    factors: tuple[int, int, int]
    spacing: tuple[float, float, float]
    s_axis: int
    up: int          # +1 when the index along s_axis grows toward Superior, else -1
    affine: np.ndarray  # coarse voxel centre -> world mm

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


def _coarse_grid(volume: Volume, coarse_mm: float) -> _Grid:
    factors = tuple(max(1, int(round(coarse_mm / s))) for s in volume.spacing)
    spacing = tuple(s * f for s, f in zip(volume.spacing, factors))
    s_axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    up = 1 if volume.affine[2, s_axis] > 0 else -1
    scale = np.diag([*factors, 1.0])
    scale[:3, 3] = (np.asarray(factors) - 1) / 2.0
    return _Grid(factors, spacing, s_axis, up, volume.affine @ scale)


class _Steps:
    """Wall-clock seconds per named step, accumulated into ``record`` when one is given."""

    def __init__(self, record: dict | None):
        self.record = record
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.record is not None:
            self.record[name] = self.record.get(name, 0.0) + now - self.t
        self.t = now


def _close(mask, radius_mm, spacing, ndi, xp):
    """Morphological closing with a ball of ``radius_mm`` via two distance transforms (O(N)).

    Works on the mask's bounding box padded by the radius; voxels beyond the
    array edge count as continuing the mask (lungs cut by the first slice stay open).
    """
    idx = xp.nonzero(mask)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    pad = [int(np.ceil(radius_mm / s)) + 1 for s in spacing]
    lo = [max(0, a - p) for a, p in zip(lo, pad)]
    hi = [min(n, b + p) for b, p, n in zip(hi, pad, mask.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = mask[box]
    closed = ~dilate_mm(~dilate_mm(sub, radius_mm, spacing), radius_mm, spacing)
    out = mask.copy()
    out[box] = closed | sub
    return out


def _world_x(grid: _Grid, shape, xp):
    """World x (mm, RAS: larger is the patient's right) of every coarse voxel, broadcastable."""
    a = grid.affine
    ax = [xp.arange(n, dtype=xp.float32).reshape([-1 if d == i else 1 for d in range(3)])
          for i, n in enumerate(shape)]
    return float(a[0, 3]) + sum(float(a[0, i]) * ax[i] for i in range(3))


def _body_air(coarse, air_hu, grid: _Grid, ndi, xp):
    """Air inside the body: per slice, air not connected to the slice's border."""
    air = coarse < air_hu
    structure = np.zeros((3, 3, 3), dtype=bool)
    sl = [slice(None)] * 3
    sl[grid.s_axis] = 1
    structure[tuple(sl)] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    body = ndi.binary_fill_holes(~air, structure=xp.asarray(structure))
    return air & body, body


def _top_slab(shape, grid: _Grid, depth_mm: float):
    """Index slice of the top ``depth_mm`` of the scan along the superior axis."""
    n = shape[grid.s_axis]
    k = max(1, int(np.ceil(depth_mm / grid.spacing[grid.s_axis])))
    sl = [slice(None)] * 3
    sl[grid.s_axis] = slice(n - k, n) if grid.up > 0 else slice(0, k)
    return tuple(sl)


def _airways(coarse, inner, grid: _Grid, midline_x, xworld, xp, max_airway_ml: float, seed_mm: float):
    """Trachea and main bronchi: dark air grown from a medial seed in the top slices, or None."""
    slab = _top_slab(coarse.shape, grid, 15.0)
    best = None
    prev_ml = 0.0
    for t in (-990.0, -975.0, -960.0, -945.0, -930.0, -915.0):
        dark = inner & (coarse < t)
        top = xp.zeros_like(dark)
        top[slab] = dark[slab]
        medial = top & (xp.abs(xworld - midline_x) < seed_mm)
        if not bool(medial.any()):
            continue
        labels, n = label(dark, connectivity=26)
        ids = xp.unique(labels[medial])
        ids = ids[ids > 0]
        counts = xp.bincount(labels.ravel(order="K"), minlength=n + 1)
        seed = int(ids[int(xp.argmax(counts[ids]))])
        ml = float(counts[seed]) * grid.voxel_ml
        if ml > max_airway_ml or (best is not None and ml > 3.0 * prev_ml and ml > 50.0):
            break  # leaked into the lungs: keep the previous threshold's tree
        best, prev_ml = labels == seed, ml
    return best


def _gas(coarse, cand, gas_hu, grid: _Grid, xp, ndi, min_ml: float = 5.0):
    """Pockets of homogeneous gas (coarse mean below ``gas_hu``, at least ``min_ml``) plus one coarse
    voxel around them: bowel and stomach gas that a thin diaphragm would otherwise join to a lung."""
    labels, n = label(cand & (coarse < gas_hu), connectivity=6)
    if n == 0:
        return xp.zeros(cand.shape, dtype=bool)
    big = xp.bincount(labels.ravel(order="K"), minlength=n + 1) * grid.voxel_ml >= min_ml
    big[0] = False
    return dilate_mm(big[labels], max(grid.spacing), grid.spacing)


def _split(component, grid: _Grid, ndi, xp):
    """Split one mask spanning both lungs at its narrowest link: erode (mm) until two cores appear.

    Returns labels 1/2 for the two parts (nearest core wins) or None if no split is found.
    """
    depth = distance_mm(component, grid.spacing)
    total = int(component.sum())
    step = min(grid.spacing)
    for r in np.arange(step, 40.0, step):
        labels, n = label(depth > r, connectivity=6)
        if n < 2:
            if n == 0:
                return None
            continue
        counts = xp.bincount(labels.ravel(order="K"))[1:]
        order = asnumpy(xp.argsort(-counts))
        if float(counts[order[1]]) < 0.05 * total:
            continue
        cores = xp.zeros(component.shape, dtype=xp.uint8)
        cores[labels == int(order[0]) + 1] = 1
        cores[labels == int(order[1]) + 1] = 2
        _, nearest = ndi.distance_transform_edt(cores == 0, sampling=grid.spacing, return_indices=True)
        parts = cores[tuple(nearest)]
        return xp.where(component, parts, 0).astype(xp.uint8)
    return None


def _select_lungs(cand, coarse, fine_gas, fine_solid, grid: _Grid, xworld, midline_x, xp, ndi, *, gas_hu,
                  max_gas_fraction, max_mottled_fraction, min_lung_ml, top_tolerance_mm):
    """Coarse labels 1 (left) / 2 (right) from the candidate air components (see module docstring)."""
    labels, n = label(cand, connectivity=6)
    if n == 0:
        return xp.zeros(cand.shape, dtype=xp.uint8)
    flat = labels.ravel()
    counts = xp.bincount(flat, minlength=n + 1).astype(xp.float64)
    gas = xp.bincount(flat, weights=(coarse < gas_hu).ravel().astype(xp.float64), minlength=n + 1)
    # Bowel content: full-resolution gas and solid voxels mixed within each block (stool with bubbles).
    mottled = xp.minimum(xp.bincount(flat, weights=fine_gas.ravel().astype(xp.float64), minlength=n + 1),
                         xp.bincount(flat, weights=fine_solid.ravel().astype(xp.float64), minlength=n + 1))
    xfull = xp.broadcast_to(xworld, cand.shape)
    left = xp.bincount(flat, weights=(xfull < midline_x).ravel().astype(xp.float64), minlength=n + 1)
    stats = component_stats(labels, n)
    counts, gas, left, mottled = (asnumpy(a)[1:] for a in (counts, gas, left, mottled))
    lo, hi = asnumpy(stats.bbox_lo)[:, grid.s_axis], asnumpy(stats.bbox_hi)[:, grid.s_axis] - 1
    top_mm = (hi if grid.up > 0 else (cand.shape[grid.s_axis] - 1 - lo)) * grid.spacing[grid.s_axis]
    ml = counts * grid.voxel_ml
    lunglike = (ml >= min_lung_ml) & (gas / counts <= max_gas_fraction) & (mottled / counts <= max_mottled_fraction)
    if not lunglike.any():
        return xp.zeros(cand.shape, dtype=xp.uint8)
    keep = lunglike & (top_mm >= top_mm[lunglike].max() - top_tolerance_mm)
    out = xp.zeros(cand.shape, dtype=xp.uint8)
    for i in np.flatnonzero(keep):
        comp = labels == i + 1
        frac_left = left[i] / counts[i]
        parts = _split(comp, grid, ndi, xp) if 0.15 < frac_left < 0.85 else None
        if parts is None:
            out[comp] = LEFT if frac_left >= 0.5 else RIGHT
            continue
        # Two parts: the one lying further toward the patient's left (smaller x) is the left lung.
        x1 = float(xp.mean(xfull[parts == 1]))
        x2 = float(xp.mean(xfull[parts == 2]))
        first = LEFT if x1 < x2 else RIGHT
        out[parts == 1] = first
        out[parts == 2] = LEFT + RIGHT - first
    return out


def _finish_lung(mask, grid: _Grid, closing_mm, ndi, xp):
    """Hole filling and closing (mm) of one coarse lung."""
    if not bool(mask.any()):
        return mask
    return ndi.binary_fill_holes(_close(ndi.binary_fill_holes(mask), closing_mm, grid.spacing, ndi, xp))


def _first_lung_hit(lungs, world, direction, length_mm, grid: _Grid, xp):
    """Label of the first lung voxel met marching from each point ``world`` (N x 3, mm) along
    ``direction`` (N x 3 unit vectors, world) for ``length_mm``, in half-voxel steps; 0 where none."""
    ainv = xp.asarray(np.linalg.inv(grid.affine), dtype=xp.float32)
    shape = xp.asarray(lungs.shape)
    first = xp.zeros(world.shape[0], dtype=lungs.dtype)
    step = min(grid.spacing) / 2.0
    for t in np.arange(step, length_mm + step / 2, step):
        ijk = xp.rint((world + t * direction) @ ainv[:3, :3].T + ainv[:3, 3]).astype(xp.int64)
        inside = ((ijk >= 0) & (ijk < shape)).all(axis=1)
        ijk = xp.clip(ijk, 0, shape - 1)
        hit = xp.where(inside, lungs[ijk[:, 0], ijk[:, 1], ijk[:, 2]], 0)
        first = xp.where(first == 0, hit, first)
    return first


def _pleural(add, lungs, value: int, grid: _Grid, midline_x: float, reach_mm: float, xp):
    """The voxels of ``add`` (closing additions to lung ``value``) on the lung's pleural side.

    Three rays (world mm) from each voxel: toward the lung centre in its axial plane
    (midline x, the lungs' mean y in that slice) and straight down must both meet this
    lung first within ``reach_mm`` (so not the mediastinum, the hilum, the heart or the
    diaphragm's dome), and the ray along x toward the midline must not meet the other
    lung first within 300 mm (so not between the two lungs).
    """
    idx = xp.argwhere(add)
    if idx.shape[0] == 0:
        return add
    a = xp.asarray(grid.affine, dtype=xp.float32)
    world = idx.astype(xp.float32) @ a[:3, :3].T + a[:3, 3]
    lung_idx = xp.argwhere(lungs > 0)
    lung_y = lung_idx.astype(xp.float32) @ a[1, :3] + a[1, 3]
    n = lungs.shape[grid.s_axis]
    count = xp.bincount(lung_idx[:, grid.s_axis], minlength=n)
    mean_y = xp.bincount(lung_idx[:, grid.s_axis], weights=lung_y, minlength=n) / xp.maximum(count, 1)
    zero = xp.zeros_like(world[:, 0])
    inward = xp.stack([midline_x - world[:, 0], mean_y[idx[:, grid.s_axis]] - world[:, 1], zero], axis=1)
    inward /= xp.maximum(xp.linalg.norm(inward, axis=1, keepdims=True), 1e-6)
    down = xp.broadcast_to(xp.asarray([0.0, 0.0, -1.0], dtype=xp.float32), world.shape)
    medial = xp.stack([xp.sign(midline_x - world[:, 0]), zero, zero], axis=1)
    keep = (_first_lung_hit(lungs, world, inward, reach_mm, grid, xp) == value) & \
           (_first_lung_hit(lungs, world, down, reach_mm, grid, xp) == value) & \
           (_first_lung_hit(lungs, world, medial, 300.0, grid, xp) != LEFT + RIGHT - value)
    out = xp.zeros_like(add)
    out[tuple(idx[keep].T)] = True
    return out


def _pleural_fill(lungs, coarse, grid: _Grid, midline_x: float, air_hu: float, radius_mm: float, blocked,
                  ndi, xp):
    """Juxtapleural nodules into the lungs: a closing of ``radius_mm`` per lung whose additions are kept
    only on the pleural side (:func:`_pleural`) and outside ``blocked`` (airways, gas). Adds them to
    ``lungs`` in place and returns those of solid density (mean HU at least ``air_hu``)."""
    added = xp.zeros(lungs.shape, dtype=bool)
    if radius_mm <= 0:
        return added
    adds = []
    for value in (LEFT, RIGHT):
        mask = lungs == value
        if not bool(mask.any()):
            continue
        add = xp.zeros_like(mask)
        box = bounding_box(mask)  # nodules bulge into the lung: never beyond its extent
        # ... nor larger than about a third of the lung's narrowest in-plane width (small or cut lungs).
        width = min((b.stop - b.start) * s for a, (b, s) in enumerate(zip(box, grid.spacing)) if a != grid.s_axis)
        radius = min(radius_mm, width / 3.0)
        # A lung cut by the first or last slice continues straight on beyond it (edge padding).
        pad = [(0, 0)] * 3
        pad[grid.s_axis] = (int(np.ceil(radius / grid.spacing[grid.s_axis])) + 1,) * 2
        crop = tuple(slice(a, a + n) for (a, _), n in zip(pad, mask.shape))
        closed = _close(xp.pad(mask, pad, mode="edge"), radius, grid.spacing, ndi, xp)[crop]
        add[box] = (closed & (lungs == 0) & ~blocked)[box]
        adds.append((value, _pleural(add, lungs, value, grid, midline_x, radius + max(grid.spacing), xp)))
    for value, add in adds:
        add &= ~added
        lungs[add] = value
        added |= add
    return added & (coarse >= air_hu)


def lung_summary(lungs: Volume) -> dict[str, Any]:
    """Volumes (mL) of the left and right lung and whether the scan covers them only partly.

    ``partial_coverage`` is true when a lung is cut by the first or last slice
    along the superior axis over more than a quarter of its largest cross-section.
    """
    arr = to_array(lungs.array)
    xp = array_module(arr)
    s_axis = int(np.argmax(np.abs(lungs.affine[2, :3])))
    voxel_ml = float(np.prod(lungs.spacing)) / 1000.0
    out: dict[str, Any] = {}
    partial = False
    other = tuple(a for a in range(3) if a != s_axis)
    for name, value in (("left", LEFT), ("right", RIGHT)):
        m = arr == value
        out[f"{name}_ml"] = round(float(xp.count_nonzero(m)) * voxel_ml, 1)
        area = asnumpy(m.sum(axis=other))
        if area.max() > 0 and max(area[0], area[-1]) > 0.25 * area.max():
            partial = True
    out["total_ml"] = round(out["left_ml"] + out["right_ml"], 1)
    out["partial_coverage"] = partial
    return out


def _check_lungs(lungs: Volume, name: str, allow_one_lung: bool, volume_range_l) -> None:
    s = lung_summary(lungs)
    if s["total_ml"] == 0:
        raise InputError(f"no lungs found in {name}: no lung-like air inside the body "
                         "(is this a chest CT in HU? abdomen-only or head scans hold no lung)")
    missing = [side for side in ("left", "right") if s[f"{side}_ml"] == 0]
    if missing:
        found = "right" if missing == ["left"] else "left"
        msg = (f"only one lung found in {name}: the {found} lung ({s[f'{found}_ml'] / 1000:.2f} L), "
               f"no {missing[0]} lung")
        if not allow_one_lung:
            raise InputError(msg + "; pass allow_one_lung=True to accept it")
        warnings.warn(msg, UserWarning, stacklevel=3)
    lo, hi = volume_range_l
    if not s["partial_coverage"] and not lo * 1000 <= s["total_ml"] <= hi * 1000:
        raise InputError(f"implausible lung volume in {name}: {s['total_ml'] / 1000:.2f} L "
                         f"(expected {lo:g}-{hi:g} L for a full chest)")


def segment_lungs(volume: Volume, method: str = "threshold", backend: str | None = None, *,
                  name: str | None = None, air_hu: float = -400.0, gas_hu: float = -950.0,
                  max_gas_fraction: float = 0.25, solid_hu: float = -200.0, max_mottled_fraction: float = 0.1,
                  coarse_mm: float = 4.0, closing_mm: float = 10.0,
                  pleural_mm: float = 30.0, airway_wall_mm: float = 4.0, max_airway_ml: float = 300.0,
                  min_lung_ml: float = 10.0, top_tolerance_mm: float = 20.0, allow_one_lung: bool = False,
                  volume_range_l: tuple[float, float] = (1.0, 10.0), timings: dict | None = None) -> Volume:
    """Left (1) and right (2) lung labels (uint8) of a CT in HU, in the CT's own voxel grid.

    ``method="threshold"`` needs no downloaded model (see the module docstring
    for the steps and gates); ``method="lungmask"`` runs the optional
    ``lungmask`` package. ``backend`` overrides the kernels' cpu/cuda choice.
    ``name`` (a file name) appears in error messages. ``timings``, when given,
    receives seconds per step. All thresholds are HU and all radii mm.
    """
    name = name or "the volume"
    if method == "lungmask":
        from .lungmask_model import segment_lungs_lungmask
        out = segment_lungs_lungmask(volume, name)
    elif method == "threshold":
        out = _segment_threshold(volume, backend, name, air_hu, gas_hu, max_gas_fraction, solid_hu,
                                 max_mottled_fraction, coarse_mm, closing_mm, pleural_mm, airway_wall_mm,
                                 max_airway_ml, min_lung_ml, top_tolerance_mm, _Steps(timings))
    else:
        raise InputError(f"method={method!r}: expected 'threshold' or 'lungmask'")
    steps = _Steps(timings)
    _check_lungs(out, name, allow_one_lung, volume_range_l)
    steps("gates")
    return out


def _segment_threshold(volume, backend, name, air_hu, gas_hu, max_gas_fraction, solid_hu, max_mottled_fraction,
                       coarse_mm, closing_mm, pleural_mm, airway_wall_mm, max_airway_ml, min_lung_ml,
                       top_tolerance_mm, steps) -> Volume:
    from ..io.hu import check_hu
    hu = to_array(volume.array)
    xp = array_module(hu)
    ndi = ndimage_for(xp)
    check_hu(hu, name)
    grid = _coarse_grid(volume, coarse_mm)
    coarse = dispatch(block_mean, hu, backend)(hu, grid.factors)
    steps("downsample")

    inner, body = _body_air(coarse, air_hu, grid, ndi, xp)
    xworld = _world_x(grid, coarse.shape, xp)
    midline_x = float(xp.sum(xp.where(body, xworld, 0.0)) / max(int(body.sum()), 1))
    steps("body")

    airway = _airways(coarse, inner, grid, midline_x, xworld, xp, max_airway_ml, seed_mm=30.0)
    walled = xp.zeros(inner.shape, dtype=bool) if airway is None else \
        dilate_mm(airway, max(airway_wall_mm, *grid.spacing), grid.spacing)
    cand = inner & ~walled
    gas = _gas(coarse, cand, gas_hu, grid, xp, ndi)
    cand = cand & ~gas
    steps("airways")

    mean = dispatch(block_mean, hu, backend)
    fine_gas = mean((hu < gas_hu).view(xp.uint8), grid.factors)
    fine_solid = mean((hu > solid_hu).view(xp.uint8), grid.factors)
    steps("texture")
    coarse_labels = _select_lungs(cand, coarse, fine_gas, fine_solid, grid, xworld, midline_x, xp, ndi,
                                  gas_hu=gas_hu, max_gas_fraction=max_gas_fraction,
                                  max_mottled_fraction=max_mottled_fraction, min_lung_ml=min_lung_ml,
                                  top_tolerance_mm=top_tolerance_mm)
    steps("components")

    lungs = xp.zeros(coarse.shape, dtype=xp.uint8)
    closed = [_finish_lung(coarse_labels == v, grid, closing_mm, ndi, xp) for v in (LEFT, RIGHT)]
    lungs[closed[0]] = LEFT
    lungs[closed[1] & ~(closed[0] & (coarse_labels == LEFT))] = RIGHT
    forced = _pleural_fill(lungs, coarse, grid, midline_x, air_hu, pleural_mm, gas | walled, ndi, xp)
    steps("fill_close")

    # Surface band: coarse voxels next to a lung take its label; airway voxels outside the lungs never.
    band = ndi.grey_dilation(lungs, size=(3, 3, 3))
    band = xp.where(lungs > 0, lungs, band)
    if airway is not None:
        band[(lungs == 0) & airway] = 0
    band[(lungs == 0) & gas] = 0
    core = (ndi.grey_erosion(lungs, size=(3, 3, 3), mode="nearest") == lungs) & \
           (ndi.grey_dilation(lungs, size=(3, 3, 3), mode="nearest") == lungs)
    # Juxtapleural nodules: solid pleural additions and the lung voxels around them take the label whole.
    core |= ndi.binary_dilation(forced, structure=xp.ones((3, 3, 3), dtype=bool)) & (lungs > 0)
    out = dispatch(lung_refine, hu, backend)(hu, band.astype(xp.uint8), core.astype(xp.uint8),
                                             grid.factors, air_hu)
    steps("refine")
    return volume.with_array(out)
