"""Seed augmentation: draw morph parameters, then one fused warp into the output grid.

The forward transform acts in world RAS mm about the seed's mask centroid ``c``::

    T(x) = A (x - c) + c + translation_mm,   A = rotation @ diag(scale) @ diag(flip signs)

and an elastic displacement ``d`` (world mm, cubic B-spline over a control grid
of ``elastic_spacing_mm`` centred on ``T(c)``, axes along the output lattice)
pulls output points back: the output at world ``x`` is the seed at
``T^-1(x + d(x))``. The elastic field changes shape, not size: :func:`morph`
multiplies ``A`` by an isotropic factor that cancels the field's mean volume
change over the tumour (``elastic_volume_factor`` in the record; size is
``scale``'s job). :func:`morph` composes output lattice, ``T^-1`` and the
seed's inverse affine into one 3x4 voxel matrix for :mod:`synthlung.kernels.warp`;
the displacement is evaluated inside the kernel.

Outside the seed crop the image takes the seed's **border median HU** (median
of the crop's six faces: the tumour's own surrounding tissue) and the soft mask
0. Inside the tumour HU become ``v + w (v (hu_scale - 1) + hu_shift)``, ``w``
the soft mask.
"""
from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..backend import array_module, asnumpy, dispatch
from ..errors import InputError
from ..lru import LRUCache
from ..morphology import bounding_box
from ..volume import Volume

__all__ = ["MorphParams", "MorphedSeed", "morph", "thick_slice_axis"]

_IDENTITY3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_SNAP = 1e-9  # composed matrix entries this close to an integer are made exact (voxels)
# (3, 8): which of a box's eight corners takes each axis's last index (True) or first (False)
_CORNER_PICK = np.array([[(c >> (2 - a)) & 1 for c in range(8)] for a in range(3)], dtype=bool)


# ---------------------------------------------------------------- parameters

def _rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotation_from_euler(degrees: Sequence[float]) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` for angles (degrees) about the world x, y, z axes."""
    ax, ay, az = np.radians(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_angle(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation by ``angle`` (radians) about the unit vector ``axis``: ``cos I + (1 - cos) a a^T + sin [a]x``."""
    x, y, z = (float(v) for v in axis)
    s, c = math.sin(angle), math.cos(angle)
    t = 1.0 - c
    return np.array([[c + t * x * x, t * x * y - s * z, t * x * z + s * y],
                     [t * x * y + s * z, c + t * y * y, t * y * z - s * x],
                     [t * x * z - s * y, t * y * z + s * x, c + t * z * z]])


def _unit(v: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in v)
    n = math.sqrt(x * x + y * y + z * z)
    return x / n, y / n, z / n


def _about_slice_axis(rng: np.random.Generator, axis: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """A rotation spinning uniformly about ``axis`` (world unit vector), then tilting it by at
    most ``max_tilt_deg`` (uniform over that cap of directions, about a uniform in-plane axis)."""
    a = _unit(axis)
    spin = _axis_angle(a, rng.uniform(0.0, 2.0 * math.pi))
    helper = [0.0, 0.0, 0.0]
    helper[min(range(3), key=lambda i: abs(a[i]))] = 1.0  # the world axis least along ``axis``
    u = _unit((a[1] * helper[2] - a[2] * helper[1], a[2] * helper[0] - a[0] * helper[2],
               a[0] * helper[1] - a[1] * helper[0]))  # a x helper: in the plane normal to ``axis``
    tilt_axis = _axis_angle(a, rng.uniform(0.0, 2.0 * math.pi)) @ np.array(u)
    tilt = math.acos(rng.uniform(math.cos(math.radians(max_tilt_deg)), 1.0))
    return _axis_angle(tilt_axis, tilt) @ spin


def thick_slice_axis(seed: Any, host_spacing_mm: Sequence[float], ratio: float = 2.0) -> np.ndarray | None:
    """World unit vector of a seed's slice axis when its source slices are thicker than
    ``ratio`` times the host's coarsest spacing (the rotation policy's trigger), else None."""
    record = getattr(seed, "record", None) or {}
    source = record.get("spacing_mm", seed.image.spacing)
    if max(source) <= ratio * max(host_spacing_mm):
        return None
    cols = np.asarray(seed.image.affine, dtype=np.float64)[:3, :3]
    axis = cols[:, int(np.argmax(source))]
    return axis / np.linalg.norm(axis)


def _draw(rng: np.random.Generator, name: str, value: Any) -> float:
    """A number: ``value`` itself, or uniform in ``value = (lo, hi)``."""
    if isinstance(value, (int, float)) or np.ndim(value) == 0:
        return float(value)
    lo, hi = (float(v) for v in value)
    if hi < lo:
        raise InputError(f"MorphParams.sample: {name}={value!r} has hi < lo")
    return float(rng.uniform(lo, hi))


def _triple(value: Any, kind=float) -> tuple:
    """``value`` (one number or three) as a 3-tuple of ``kind``."""
    if type(value) in (tuple, list) and len(value) == 3 and all(isinstance(v, (int, float, np.number, np.bool_))
                                                               for v in value):
        return tuple(kind(v) for v in value)
    return tuple(kind(v) for v in np.broadcast_to(np.asarray(value), (3,)))


def _rotation_rows(rotation: Any) -> tuple | None:
    """``rotation`` as three rows of floats when it is a 3x3 rotation matrix (``R R^T = I`` to
    1e-6, as ``np.allclose(..., atol=1e-6)``; determinant > 0), else None."""
    rot = np.asarray(rotation, dtype=np.float64)
    if rot.shape != (3, 3):
        return None
    r = rot.tolist()
    for i in range(3):
        for j in range(3):
            dot = r[i][0] * r[j][0] + r[i][1] * r[j][1] + r[i][2] * r[j][2]
            if not abs(dot - (i == j)) <= 1e-6 + 1e-5 * (i == j):
                return None
    det = (r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
           + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]))
    return tuple(tuple(row) for row in r) if det > 0 else None


@dataclass(frozen=True, eq=False)
class MorphParams:
    """One drawn set of morph parameters (world RAS, mm, HU); the record reproduces it exactly.

    ``rotation``: 3x3 rotation matrix (rows). ``scale``: factors along the world
    axes, applied before the rotation. ``flip``: mirror along world x, y, z.
    ``translation_mm``: added to the transformed centroid (placement usually
    does this instead). ``control_mm``: elastic control-point displacements,
    shape (3, n, n, n), world mm, or None; ``elastic_spacing_mm`` is their
    spacing and ``elastic_magnitude_mm`` the standard deviation they were drawn
    with. ``hu_scale`` / ``hu_shift``: tumour HU change. ``output_spacing``:
    mm grid used when :func:`morph` gets no ``target`` (None: the seed's grid).
    ``rotation_policy``: how :meth:`sample` drew the rotation (provenance only).
    """

    rotation: tuple = _IDENTITY3
    scale: tuple = (1.0, 1.0, 1.0)
    flip: tuple = (False, False, False)
    translation_mm: tuple = (0.0, 0.0, 0.0)
    elastic_spacing_mm: float = 15.0
    elastic_magnitude_mm: float = 0.0
    control_mm: Any = field(default=None, repr=False)
    hu_scale: float = 1.0
    hu_shift: float = 0.0
    output_spacing: tuple | None = None
    rotation_policy: str = "given"

    def __post_init__(self) -> None:
        rows = _rotation_rows(self.rotation)
        if rows is None:
            raise InputError(f"MorphParams.rotation must be a 3x3 rotation matrix, got {self.rotation!r}")
        object.__setattr__(self, "rotation", rows)
        object.__setattr__(self, "scale", _triple(self.scale))
        object.__setattr__(self, "flip", _triple(self.flip, bool))
        object.__setattr__(self, "translation_mm", _triple(self.translation_mm))
        if min(self.scale) <= 0:
            raise InputError(f"MorphParams.scale must be positive, got {self.scale}")
        if self.elastic_spacing_mm <= 0:
            raise InputError(f"MorphParams.elastic_spacing_mm must be positive, got {self.elastic_spacing_mm}")
        if self.control_mm is not None:
            ctrl = np.array(self.control_mm, dtype=np.float64)
            if ctrl.ndim != 4 or ctrl.shape[0] != 3 or min(ctrl.shape) < 1:
                raise InputError(f"MorphParams.control_mm must have shape (3, nx, ny, nz), got {ctrl.shape}")
            ctrl.flags.writeable = False
            object.__setattr__(self, "control_mm", ctrl)
        if self.output_spacing is not None:
            out = _triple(self.output_spacing)
            if min(out) <= 0:
                raise InputError(f"MorphParams.output_spacing must be positive, got {out}")
            object.__setattr__(self, "output_spacing", out)

    @classmethod
    def identity(cls) -> "MorphParams":
        """The do-nothing set: the seed comes out unchanged on its own grid."""
        return cls()

    @classmethod
    def sample(cls, rng: np.random.Generator, *, rotation: Any = "uniform", scale: Any = (0.85, 1.15),
               isotropic: bool = False, flip_probability: Any = 0.5, elastic_spacing_mm: Any = (12.0, 20.0),
               elastic_magnitude_mm: Any = (0.0, 1.5), elastic_points: int = 6,
               hu_scale: Any = (0.9, 1.1), hu_shift: Any = (-20.0, 20.0),
               output_spacing: Any = None, slice_axis: Any = None,
               max_tilt_deg: float = 15.0) -> "MorphParams":
        """Draw one set from ``rng``; every range is ``(lo, hi)`` (uniform) or a fixed number.

        ``rotation``: ``"uniform"`` (uniform over all 3-D rotations), ``"none"``,
        or three ``(lo, hi)`` degree ranges about world x, y, z. ``scale`` per
        axis (one draw for all three when ``isotropic``). ``flip_probability``
        per axis (one number or three). ``elastic_points`` control points per
        axis, drawn N(0, magnitude) mm each. ``output_spacing`` is stored as given.
        ``slice_axis``: world unit vector of a thick-slice seed's slice axis
        (:func:`thick_slice_axis`); with ``rotation="uniform"`` the rotation then spins
        uniformly about it and tilts it by at most ``max_tilt_deg``, so the seed's
        slices stay near the host's axial plane and the interpolated direction is
        not turned in-plane, where the host resolves finest.
        """
        policy = rotation if isinstance(rotation, str) else "euler"
        if isinstance(rotation, str):
            if rotation == "uniform" and slice_axis is not None:
                rot = _about_slice_axis(rng, slice_axis, float(max_tilt_deg))
                policy = f"about the slice axis, tilt <= {float(max_tilt_deg):g} deg"
            elif rotation == "uniform":
                rot = _rotation_from_quaternion(rng.standard_normal(4))
            elif rotation == "none":
                rot = np.eye(3)
            else:
                raise InputError(f"MorphParams.sample: rotation={rotation!r}: use 'uniform', 'none' "
                                 "or three (lo, hi) degree ranges")
        else:
            ranges = list(rotation)
            if len(ranges) != 3:
                raise InputError(f"MorphParams.sample: rotation needs three (lo, hi) degree ranges, got {rotation!r}")
            rot = rotation_from_euler([_draw(rng, "rotation", r) for r in ranges])
        if isotropic:
            scales = (_draw(rng, "scale", scale),) * 3
        else:
            per_axis = scale if np.ndim(scale) == 2 else [scale] * 3
            scales = tuple(_draw(rng, "scale", s) for s in per_axis)
        p_flip = (float(flip_probability) if isinstance(flip_probability, (int, float))
                  else np.broadcast_to(np.asarray(flip_probability, dtype=np.float64), (3,)))
        flips = tuple(bool(f) for f in rng.random(3) < p_flip)
        spacing = _draw(rng, "elastic_spacing_mm", elastic_spacing_mm)
        magnitude = _draw(rng, "elastic_magnitude_mm", elastic_magnitude_mm)
        n = int(elastic_points)
        if n < 1:
            raise InputError(f"MorphParams.sample: elastic_points must be >= 1, got {elastic_points}")
        control = rng.normal(0.0, magnitude, (3, n, n, n)) if magnitude > 0 else None
        return cls(rotation=rot, scale=scales, flip=flips, elastic_spacing_mm=spacing,
                   elastic_magnitude_mm=magnitude, control_mm=control,
                   hu_scale=_draw(rng, "hu_scale", hu_scale), hu_shift=_draw(rng, "hu_shift", hu_shift),
                   output_spacing=output_spacing, rotation_policy=policy)

    def to_record(self) -> dict:
        """JSON-serialisable dict of every parameter, drawn control displacements included."""
        return {"rotation": [list(r) for r in self.rotation], "scale": list(self.scale),
                "flip": list(self.flip), "translation_mm": list(self.translation_mm),
                "elastic_spacing_mm": float(self.elastic_spacing_mm),
                "elastic_magnitude_mm": float(self.elastic_magnitude_mm),
                "control_mm": None if self.control_mm is None else self.control_mm.tolist(),
                "hu_scale": float(self.hu_scale), "hu_shift": float(self.hu_shift),
                "output_spacing": None if self.output_spacing is None else list(self.output_spacing),
                "rotation_policy": self.rotation_policy}

    @classmethod
    def from_record(cls, record: dict) -> "MorphParams":
        """The parameters :meth:`to_record` wrote (float64 values round-trip exactly through JSON)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(record) - known
        if unknown:
            raise InputError(f"MorphParams record has unknown keys {sorted(unknown)}")
        return cls(**record)

    def scaled(self, factor: float) -> "MorphParams":
        """These parameters with every ``scale`` factor times ``factor`` (> 0); the rest, checked
        already, is shared (``dataclasses.replace`` would check and copy it all again)."""
        factor = float(factor)
        if not factor > 0:
            raise InputError(f"MorphParams.scaled: factor must be positive, got {factor}")
        out = copy.copy(self)
        object.__setattr__(out, "scale", tuple(v * factor for v in self.scale))
        return out

    def linear(self) -> np.ndarray:
        """The 3x3 world matrix ``A = rotation @ diag(scale) @ diag(flip signs)``."""
        signs = np.where(self.flip, -1.0, 1.0)
        return np.asarray(self.rotation) @ np.diag(np.asarray(self.scale) * signs)


# ---------------------------------------------------------------- morphing

@dataclass
class MorphedSeed:
    """A morphed seed on its output box: image (float32 HU), soft mask (float32), mask (uint8).

    ``centre_world``: where the seed's mask centroid went (world mm, before any
    placement). ``lattice_offset``: voxel index of the box's first voxel in the
    target lattice (the host's voxel grid when ``target`` was a host affine).
    ``record``: the seed, the parameters and the box (None when :func:`morph` was asked for none).
    """

    image: Volume
    soft_mask: Volume
    mask: Volume
    centre_world: tuple[float, float, float]
    lattice_offset: tuple[int, int, int]
    record: dict | None

    @property
    def affine(self) -> np.ndarray:
        """The box's voxel -> world RAS mm matrix (shared by image, soft_mask and mask)."""
        return self.image.affine


def _mask_profiles(mask: Volume) -> list[np.ndarray]:
    """Voxel counts of the mask per index along each axis (int64, NumPy): box-sized reductions."""
    arr = mask.array != 0
    profiles = [asnumpy(arr.sum(axis=tuple(b for b in range(3) if b != a), dtype=np.int64)) for a in range(3)]
    if profiles[0].sum() == 0:
        raise InputError("morph: the seed mask is empty, so it has no centroid")
    return profiles


def _centroid_world(mask: Volume, profiles: list[np.ndarray]) -> np.ndarray:
    ijk = np.array([float((p * np.arange(p.size)).sum()) / float(p.sum()) for p in profiles])
    return mask.voxel_to_world(ijk)


def border_median(image: Any) -> float:
    """Median HU of the six faces of a crop: the fill value outside the seed."""
    xp = array_module(image)
    faces = [image[0], image[-1], image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]]
    return float(xp.median(xp.concatenate([xp.ravel(f).astype(xp.float32) for f in faces])))


SEED_FACTS_KEPT = 256
"""Seeds whose parameter-free facts (:func:`_seed_facts`) stay kept between :func:`morph` calls."""

_FACTS = LRUCache(SEED_FACTS_KEPT)


class _SeedFacts(NamedTuple):
    """What :func:`morph` reads from a seed whatever the parameters (all read-only)."""

    centre: np.ndarray  # mask centroid, world mm
    fill: float  # border median HU
    support: tuple[slice, ...] | None  # the soft mask's bounding box (None when empty)
    mask_lo: np.ndarray  # the first voxel of the mask's bounding box per axis (float64)
    mask_crop: np.ndarray  # the mask in that box, float32 (NumPy)
    crop_corners: np.ndarray  # (8, 3): the box's outer corners, world mm relative to ``centre``
    mask_inv: np.ndarray  # the mask's world -> voxel matrix (4x4)


def _seed_facts(seed: Any) -> _SeedFacts:
    """The seed's :class:`_SeedFacts`, made once per seed and kept, keyed by the identity of
    its mask, image and soft-mask arrays (alive, checked by weak reference) and the mask's
    affine: a seed's arrays are read, never changed in place."""
    arrays = (seed.mask.array, seed.image.array, seed.soft_mask.array)
    key = (*map(id, arrays), np.asarray(seed.mask.affine, dtype=np.float64).tobytes())

    def make() -> tuple[Any, _SeedFacts]:
        profiles = _mask_profiles(seed.mask)
        try:
            refs = tuple(weakref.ref(a) for a in arrays)
        except TypeError:  # an array type without weak references: not kept
            refs = None
        centre = _centroid_world(seed.mask, profiles)
        lo = np.array([np.flatnonzero(p)[0] for p in profiles], dtype=np.float64)
        hi = np.array([np.flatnonzero(p)[-1] for p in profiles], dtype=np.float64)
        crop = asnumpy(seed.mask.array[tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))]).astype(np.float32)
        corners = np.stack(np.meshgrid(*[[a - 0.5, b + 0.5] for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
        facts = _SeedFacts(centre, border_median(seed.image.array), bounding_box(seed.soft_mask.array > 0),
                           lo, crop, seed.mask.voxel_to_world(corners) - centre,
                           np.linalg.inv(np.asarray(seed.mask.affine, dtype=np.float64)))
        for kept in (centre, lo, crop, facts.crop_corners, facts.mask_inv):
            kept.flags.writeable = False
        return refs, facts

    refs, facts = _FACTS.get(key, make)
    if refs is None or any(r() is not a for r, a in zip(refs, arrays)):
        _FACTS.discard(key)  # another array now has this id: make its own
        refs, facts = make()
        if refs is not None:
            _FACTS.get(key, lambda: (refs, facts))
    return facts


class _Lattice(NamedTuple):
    """An output lattice and what :func:`morph` derives from it (all read-only)."""

    affine: np.ndarray  # voxel -> world mm (4x4)
    inverse: np.ndarray  # world mm -> voxel (4x4)
    linear_inverse: np.ndarray  # the inverse of its 3x3 part
    spacing: np.ndarray  # mm per voxel along each lattice axis


_LATTICES = LRUCache(32)


def _lattice(target: Any, params: MorphParams, seed_affine: np.ndarray) -> _Lattice:
    """The output lattice (4x4): the seed's grid, an RAS grid of a spacing, or a host affine;
    checked and inverted once per lattice and kept (a host's affine serves all its tumours)."""
    if target is None:
        target = params.output_spacing
    t = seed_affine if target is None else np.asarray(target, dtype=np.float64)
    given = target is not None and t.shape == (4, 4)  # a host affine: checked for singularity
    if t.shape == (3,):
        if np.any(t <= 0):
            raise InputError(f"morph: target spacing must be positive mm, got {tuple(t)}")
        t = np.diag([*t, 1.0])
    if t.shape != (4, 4):
        raise InputError(f"morph: target must be None, three spacings (mm) or a 4x4 affine, got shape {t.shape}")

    def make() -> _Lattice:
        if given and abs(np.linalg.det(t[:3, :3])) < 1e-12:
            raise InputError("morph: target affine is singular")
        lattice = _Lattice(t.copy(), np.linalg.inv(t), np.linalg.inv(t[:3, :3]), np.linalg.norm(t[:3, :3], axis=0))
        for kept in lattice:
            kept.flags.writeable = False
        return lattice

    return _LATTICES.get((given, t.tobytes()), make)


VOLUME_SAMPLES = 16
"""Quadrature points per axis of the elastic volume correction (see :func:`_elastic_volume_factor`)."""


def _elastic_volume_factor(facts: _SeedFacts, lin: np.ndarray, ctrl: np.ndarray, lattice_inv: np.ndarray,
                           step: np.ndarray) -> float:
    """Isotropic factor on ``lin`` that makes the elastic field volume-neutral over the tumour.

    The pulled-back field maps the tumour's volume by the mean of
    ``1 / det(I + grad d)`` over the moved tumour; the factor is that mean to the
    power -1/3, so shape comes from the elastic field and size from ``scale``.
    The mean is a quadrature on :data:`VOLUME_SAMPLES`^3 points spaced evenly over
    the moved tumour's box along the control grid's axes, where the B-spline field
    separates (one small basis matrix per axis, no per-voxel work); each point
    weighs by the seed mask (trilinear) where it comes from. One compiled pass
    (:func:`synthlung.kernels.warp.inverse_jacobian_mean`) whose cost does not grow
    with the seed: about 0.3 ms with its set-up. Against the mean over every tumour voxel it
    differs by at most 2.5e-4 for :meth:`MorphParams.sample`'s default ranges and
    3e-3 for 2-3 mm displacements on an 8-14 mm grid (40 draws each; the tests
    hold it to 5e-4 and 5e-3). ``lattice_inv``: the output lattice's 3x3 world mm -> voxel matrix.
    """
    from synthlung.kernels.warp import inverse_jacobian_mean
    n = np.asarray(ctrl.shape[1:])
    to_u = lattice_inv @ lin / step[:, None]  # seed-relative world mm -> control grid units
    u_corners = facts.crop_corners @ to_u.T + (n - 1) / 2
    u0, u1 = u_corners.min(axis=0), u_corners.max(axis=0)
    du = (u1 - u0) / VOLUME_SAMPLES
    axes = u0[:, None] + (np.arange(VOLUME_SAMPLES) + 0.5) * du[:, None]
    # point index (i, j, k) -> control-grid units -> world mm -> voxel of the crop
    from_u = np.linalg.inv(to_u)
    to_world = np.eye(4)
    to_world[:3, :3] = from_u * du
    to_world[:3, 3] = from_u @ (u0 + 0.5 * du - (n - 1) / 2) + facts.centre
    to_mask = (facts.mask_inv @ to_world)[:3]
    to_mask[:, 3] -= facts.mask_lo
    mean = inverse_jacobian_mean(np.ascontiguousarray(ctrl, dtype=np.float64), axes, np.asarray(step, np.float64),
                                 lattice_inv, to_mask, facts.mask_crop)
    return float(mean ** (-1.0 / 3.0))


def _snap(m: np.ndarray) -> np.ndarray:
    r = np.round(m)
    return np.where(np.abs(m - r) < _SNAP, r, m)


def _support_part(support: tuple[slice, ...] | None, mapped: Any, lo: np.ndarray, hi: np.ndarray,
                  pad: int | None) -> tuple[slice, slice, slice] | None:
    """The slices of the box ``lo..hi`` that can hold the seed's soft mask above 0 (its bounding
    box ``support``, one seed voxel wider for the trilinear reach, mapped by ``mapped``), grown by
    ``pad`` voxels; None for the whole box."""
    if pad is None or support is None:
        return None
    first = np.array([s.start - 1 for s in support], dtype=np.float64)
    last = np.array([s.stop for s in support], dtype=np.float64)  # stop - 1, plus one voxel
    a, b = mapped(first, last)
    a, b = np.maximum(a - int(pad), lo) - lo, np.minimum(b + int(pad), hi) - lo
    if np.all(a == 0) and np.all(b == hi - lo):
        return None
    return tuple(slice(int(x), int(y) + 1) for x, y in zip(a, b))


def morph(seed: Any, params: MorphParams, target: Any = None, backend: str | None = None,
          support_pad: int | None = None, record: bool = True) -> MorphedSeed:
    """Morph ``seed`` (``.image``, ``.soft_mask``, ``.mask`` Volumes) with ``params`` into a target grid.

    ``target``: None (``params.output_spacing``, else the seed's own grid), three
    spacings in mm (an axis-aligned RAS grid with voxel centres on multiples of
    the spacing), or a 4x4 host affine (the box lies on the host's voxel lattice,
    so it pastes by integer voxel offsets). The box holds the whole transformed
    seed crop (plus the elastic displacement bound), never clipped.
    ``support_pad``: None warps the whole box; a number of voxels warps only the
    part that can hold soft mask above 0 (the soft mask's support mapped forward,
    grown by that many voxels): the soft mask and mask are the same, the image is
    ``fill_hu`` outside that part. For alpha blending, which reads the seed nowhere
    else (:func:`synthlung.synthesis.insertion.seed_pad`); a seed crop's context is
    most of its box. ``record=False``: no record (``MorphedSeed.record`` None; the arrays are
    the same), for a caller that throws it away (its parameters as lists: about 0.04 ms a call).
    """
    from synthlung.kernels import warp

    seed_affine = np.asarray(seed.image.affine, dtype=np.float64)
    facts = _seed_facts(seed)
    centre, fill, support = facts.centre, facts.fill, facts.support
    moved_centre = centre + np.asarray(params.translation_mm)
    lattice, lattice_inv, lattice_lin_inv, spacing = _lattice(target, params, seed_affine)
    step = params.elastic_spacing_mm / spacing  # control spacing in output voxels
    ctrl = params.control_mm
    lin = params.linear()
    volume_factor = 1.0
    if ctrl is not None:
        volume_factor = _elastic_volume_factor(facts, lin, ctrl, lattice_lin_inv, step)
        lin = lin * volume_factor
    forward = np.eye(4)
    forward[:3, :3] = lin
    forward[:3, 3] = moved_centre - lin @ centre

    # Box: the seed's voxel-centre corners, mapped forward, in lattice voxels; plus the elastic bound.
    to_lattice = lattice_inv @ forward @ seed_affine
    reach = (0.0 if ctrl is None else float(np.linalg.norm(ctrl, axis=0).max())) / spacing

    def mapped(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lattice voxels (lo, hi) holding seed voxels first..last (per axis) after the morph."""
        corners = np.where(_CORNER_PICK, np.asarray(last, dtype=np.float64)[:, None],
                           np.asarray(first, dtype=np.float64)[:, None])
        pts = to_lattice[:3, :3] @ corners + to_lattice[:3, 3:4]
        return (np.floor(pts.min(axis=1) - reach + 1e-6).astype(np.int64),
                np.ceil(pts.max(axis=1) + reach - 1e-6).astype(np.int64))

    lo, hi = mapped(np.zeros(3), np.asarray(seed.image.shape, dtype=np.float64) - 1)
    shape = tuple(int(v) for v in hi - lo + 1)
    out_affine = lattice.copy()
    out_affine[:3, 3] = lattice[:3, :3] @ lo + lattice[:3, 3]

    seed_inv = np.linalg.inv(seed_affine)
    matrix = _snap((seed_inv @ np.linalg.inv(forward) @ out_affine)[:3])
    kwargs: dict[str, Any] = {}
    if ctrl is not None:
        n = np.asarray(ctrl.shape[1:], dtype=np.float64)
        centre_vox = (np.linalg.inv(out_affine) @ np.append(moved_centre, 1.0))[:3]
        to_seed_vox = seed_inv[:3, :3] @ np.linalg.inv(lin)
        kwargs = {"control": np.einsum("ed,dabc->eabc", to_seed_vox, ctrl),
                  "control_origin": tuple(centre_vox - (n - 1) / 2 * step), "control_spacing": tuple(step)}
    image = seed.image.array
    part = _support_part(support, mapped, lo, hi, support_pad)
    if part is not None:  # the part of the box that can hold soft mask: its own matrix and grid origin
        start = np.array([p.start for p in part], dtype=np.float64)
        matrix = matrix.copy()
        matrix[:, 3] += matrix[:, :3] @ start
        if ctrl is not None:
            kwargs["control_origin"] = tuple(np.asarray(kwargs["control_origin"]) - start)
    warped_image, warped_soft = dispatch(warp, image, backend)(
        image, seed.soft_mask.array, matrix, shape if part is None else tuple(p.stop - p.start for p in part),
        fill_image=fill, fill_soft=0.0, hu_scale=params.hu_scale, hu_shift=params.hu_shift, **kwargs)
    xp = array_module(warped_soft)
    if part is None:
        out_image, out_soft = warped_image, warped_soft
    else:
        out_image = xp.full(shape, fill, dtype=xp.float32)
        out_soft = xp.zeros(shape, dtype=xp.float32)
        out_image[part], out_soft[part] = warped_image, warped_soft
    made = None
    if record:
        seed_record = getattr(seed, "record", None) or {}
        made = {"seed_id": seed_record.get("seed_id"),
                "params": params.to_record(), "fill_hu": fill,
                "elastic_volume_factor": volume_factor, "centre_world": moved_centre.tolist(),
                "lattice": lattice.tolist(), "lattice_offset": lo.tolist(), "shape": list(shape),
                "affine": out_affine.tolist()}
    return MorphedSeed(image=Volume(out_image, out_affine), soft_mask=Volume(out_soft, out_affine),
                       mask=Volume((out_soft >= 0.5).astype(xp.uint8), out_affine),
                       centre_world=tuple(float(v) for v in moved_centre),
                       lattice_offset=tuple(int(v) for v in lo), record=made)
