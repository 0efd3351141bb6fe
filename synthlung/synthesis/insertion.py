"""Put one morphed tumor into a host image: blend its box, add it to the label maps.

Only the blending region changes: every host voxel outside it keeps its exact
value, and the image keeps the host's dtype and geometry (values are rounded
for integer images and clipped to the HU range). All work is on the part of the
box that blending reads (:func:`blending_box`: for alpha, the soft mask's box and
a few voxels around it): that part of the host is read once into a C-ordered
float32 copy (whatever the host's memory order) and written back where the blend
changed it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import array_module
from ..hosts.noise import NoiseSpectrum
from ..morphology import bounding_box, grown
from .blending import SOFT_GAIN, VESSEL_REACH_VOXELS, blend
from .placement import box_slices

TUMOR_CLASS = 1
"""Label value of a tumor (the host's own and inserted ones) in synthetic cases."""


@dataclass
class InsertResult:
    """What one insertion changed: the blended region's size (voxels) and solver facts."""

    region_voxels: int
    info: dict = field(default_factory=dict)


def _to_dtype(values: Any, dtype: Any, hu_range: tuple[float, float]) -> Any:
    """Round (integer dtypes) and clip float HU values into ``dtype`` and ``hu_range``."""
    xp = array_module(values)
    lo, hi = hu_range
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(lo, info.min), min(hi, info.max)
        values = xp.rint(values)
    else:
        values = values.copy()
    return xp.clip(values, lo, hi, out=values).astype(dtype, copy=False)


def blending_pad(method: str, spacing_mm: tuple[float, float, float], blend_options: dict | None = None) -> int | None:
    """Voxels beyond the soft mask's support that blending with ``method`` (and ``blend_options``
    of :func:`~synthlung.synthesis.blending.blend`) reads: the vessel step's reach beyond
    :func:`seed_pad`'s. None (the whole box) where :func:`seed_pad` is None."""
    pad = seed_pad(method, spacing_mm, blend_options)
    return None if pad is None else VESSEL_REACH_VOXELS + pad


def seed_pad(method: str, spacing_mm: tuple[float, float, float], blend_options: dict | None = None) -> int | None:
    """Voxels beyond the soft mask's support where blending with ``method`` reads the morphed
    seed's image: its weight is above 0 only where the soft mask is, and up to a ``feather_mm``
    ramp beyond (the vessel step reads the host, not the seed), for alpha and replace. None (the
    whole box) for the Poisson methods, whose solver's boundary is the box's faces, and for alpha
    with ``soft_gain`` below 1, whose weight is above 0 where the soft mask is 0.
    :func:`~synthlung.synthesis.morphing.morph` need warp no more of a box."""
    options = blend_options or {}
    if method not in ("alpha", "replace") or (method == "alpha" and options.get("soft_gain", SOFT_GAIN) < 1):
        return None
    return int(np.ceil(float(options.get("feather_mm", 0.0)) / min(spacing_mm)))


def blending_box(soft: Any, method: str, spacing_mm: tuple[float, float, float],
                 blend_options: dict | None = None) -> tuple[slice, slice, slice]:
    """The part of a morphed box that blending reads and may change (slices of the box).

    Alpha and replace change only voxels with a soft mask above 0 (alpha at the default
    ``soft_gain``), and the texture and vessel steps read :func:`blending_pad` voxels
    beyond the tumour: the soft mask's bounding box grown by that much, which for a seed
    crop with its context margin is a fraction of the box. Blending that part gives the
    same bytes as blending the whole box. Otherwise (:func:`blending_pad` None): all of it.
    """
    pad = blending_pad(method, spacing_mm, blend_options)
    support = None if pad is None else bounding_box(soft > 0)
    if support is None:  # the whole box (nothing to blend, or the whole box is read)
        return (slice(None),) * 3
    return grown(support, pad, soft.shape)


def insert(image: Any, label: Any, instances: Any, morphed: Any, offset: tuple[int, int, int],
           instance_id: int, spacing_mm: tuple[float, float, float], *, method: str = "alpha",
           hu_range: tuple[float, float] = (-1024.0, 3071.0), rng: np.random.Generator | None = None,
           texture: NoiseSpectrum | None = None, **blend_options: Any) -> InsertResult:
    """Blend ``morphed`` into ``image`` at box ``offset`` (voxels), in place.

    ``image``, ``label`` (uint8 class map) and ``instances`` (uint16 instance ids, or
    None: none kept) are host arrays (NumPy or CuPy, all on one device) updated in place; ``morphed``
    is a :class:`synthlung.synthesis.morphing.MorphedSeed` on the same device and host lattice.
    ``method`` and ``blend_options`` go to :func:`synthlung.synthesis.blending.blend`;
    ``texture`` is the host's soft-tissue noise to give the tumour (its std taken near
    the box's centre, :meth:`synthlung.hosts.noise.NoiseSpectrum.std_near`), or ``None``.
    """
    xp = array_module(image)
    region = box_slices(offset, morphed.image.shape)
    if texture is not None:  # the host's noise near this tumour
        centre = [o + (n - 1) / 2 for o, n in zip(offset, morphed.image.shape)]
        texture = dataclasses.replace(texture, std_hu=texture.std_near(centre, spacing_mm))
    inner = blending_box(morphed.soft_mask.array, method, spacing_mm, blend_options)
    host_box = image[region][inner]
    result = blend(xp.ascontiguousarray(host_box, dtype=xp.float32), morphed.image.array[inner],
                   morphed.soft_mask.array[inner], method=method, spacing_mm=spacing_mm, hu_range=hu_range,
                   texture=texture, rng=rng, **blend_options)
    changed = result.region
    xp.copyto(host_box, _to_dtype(result.image, image.dtype, hu_range), where=changed)
    tumor = morphed.mask.array[inner].astype(bool)
    xp.copyto(label[region][inner], TUMOR_CLASS, where=tumor)
    if instances is not None:
        xp.copyto(instances[region][inner], instance_id, where=tumor)
    info = {"solver_iterations": result.iterations, "relative_residual": result.residual,
            "noise_added_hu": result.noise_added_hu, "vessel_voxels": result.vessel_voxels,
            "host_noise_near_hu": None if texture is None else round(texture.std_hu, 3)}
    return InsertResult(int(xp.count_nonzero(changed)), info)
