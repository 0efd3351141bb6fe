"""A host: a CT, its lungs (1 left, 2 right), and where a tumor centre may be placed.

The bank of hosts on disk is :mod:`synthlung.hosts.bank`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import array_module, to_array
from ..components import label
from ..errors import InputError
from ..morphology import bounding_box, dilate_mm, distance_mm
from ..volume import Volume
from .lungseg import lung_summary, segment_lungs


@dataclass(frozen=True)
class PlacementZone:
    """``zone``: bool Volume, where a tumor centre may go; ``distance_mm``: float32 Volume,
    Euclidean distance (mm) of each lung voxel to the lung boundary (0 outside the lungs)."""

    zone: Volume
    distance_mm: Volume


def placement_zone(image: Volume, lungs: Volume, tumors: Volume | None = None, *,
                   vessel_hu: float = -300.0, vessel_min_mm3: float = 50.0, vessel_margin_mm: float = 2.0,
                   tumor_margin_mm: float = 10.0, min_depth_mm: float = 0.0) -> PlacementZone:
    """Where a tumor centre may go inside the lungs.

    Excluded: airway walls and large vessels (connected voxels above
    ``vessel_hu`` HU inside the lung whose component is at least
    ``vessel_min_mm3``, dilated by ``vessel_margin_mm``), existing tumors
    (``tumors`` > 0) dilated by ``tumor_margin_mm``, and lung voxels closer
    than ``min_depth_mm`` to the lung boundary. ``distance_mm`` lets a caller
    check that a tumor of radius r fits (``distance_mm >= r``). Runs on the
    lungs' device (NumPy or CuPy).
    """
    lung = to_array(lungs.array) > 0
    xp = array_module(lung)
    hu = xp.asarray(to_array(image.array))
    spacing = lungs.spacing
    if hu.shape != lung.shape:
        raise InputError(f"image shape {hu.shape} differs from lung mask shape {lung.shape}")
    tumor = None
    if tumors is not None:
        tumor = xp.asarray(to_array(tumors.array)) > 0
        if tumor.shape != lung.shape:
            raise InputError(f"tumor label shape {tumor.shape} differs from lung mask shape {lung.shape}")
    distance = xp.zeros(lung.shape, dtype=xp.float32)
    zone = xp.zeros(lung.shape, dtype=bool)
    # All of it happens inside the lungs, grown by the vessel margin: work on that box only.
    box = bounding_box(lung, pad=tuple(int(np.ceil(vessel_margin_mm / s)) + 1 for s in spacing))
    if box is None:
        return PlacementZone(lungs.with_array(zone), lungs.with_array(distance))
    lung_b = lung[box]
    distance[box] = distance_b = distance_mm(lung_b, spacing)
    dense = lung_b & (hu[box] > vessel_hu)
    labels, n = label(dense, connectivity=26)
    sizes = xp.bincount(labels.ravel(order="K"), minlength=n + 1) * float(np.prod(spacing))  # order K: no copy
    large = (sizes >= vessel_min_mm3)
    large[0] = False
    excluded = dilate_mm(large[labels], vessel_margin_mm, spacing)
    if tumor is not None:
        excluded |= dilate_mm(tumor, tumor_margin_mm, spacing)[box]
    zone[box] = lung_b & ~excluded & (distance_b > min_depth_mm)
    return PlacementZone(lungs.with_array(zone), lungs.with_array(distance))


@dataclass
class Host:
    """A host CT with its lungs, placement zone, distance to the lung boundary and record."""

    image: Volume
    lungs: Volume
    zone: Volume
    distance_mm: Volume
    tumors: Volume | None = None
    record: dict[str, Any] = field(default_factory=dict)


def make_host(image: Volume, tumors: Volume | None = None, *, host_id: str = "host",
              lungs: Volume | None = None, record: dict[str, Any] | None = None, **zone_kw) -> Host:
    """A :class:`Host` from a CT (and its tumor label): segments the lungs unless ``lungs`` is given."""
    if lungs is None:
        lungs = segment_lungs(image, name=host_id)
    pz = placement_zone(image, lungs, tumors, **zone_kw)
    rec = {"id": host_id, **lung_summary(lungs), **(record or {})}
    return Host(image, lungs, pz.zone, pz.distance_mm, tumors, rec)
