"""Where a tumour touches the pleura in its scan: contact fraction, outward normal and site.

The tumour's **shell** is the ring of voxels within ``shell_mm`` outside its
surface. The contact fraction is the share of the shell that lies outside the
lungs (chest wall, mediastinum, diaphragm: the tumour touches the pleura there).
The **normal** is the unit world RAS vector from the tumour's centroid toward
the mean of those contact voxels: the direction its attachment face looks.
The **site** names the pleura by that normal: ``diaphragmatic`` when it points
down (``-z`` component >= 0.6), ``mediastinal`` when it points to the midline
(>= 0.6 toward it: ``+x`` in the left lung, ``-x`` in the right), otherwise
``costal`` (the chest wall); ``none`` below ``min_fraction``.

The same measure serves a seed in its own scan (at extraction) and an inserted
tumour in its host (in ``synthlung qa``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import asnumpy
from ..morphology import bounding_box, dilate_mm

LEFT_LUNG = 1
SITE_COMPONENT = 0.6
"""Normal component (toward the feet, or toward the midline) that names a diaphragmatic or mediastinal site."""


@dataclass(frozen=True)
class Contact:
    """``fraction`` of the tumour's shell outside the lungs; ``normal`` (world RAS unit vector or None);
    ``site`` (none, costal, mediastinal, diaphragmatic); ``inside_lung_fraction`` of the tumour's voxels."""

    fraction: float
    normal: tuple[float, float, float] | None
    site: str
    inside_lung_fraction: float

    def to_record(self) -> dict[str, Any]:
        """JSON form (the seed record's ``contact`` field)."""
        return {"fraction": round(self.fraction, 4), "site": self.site,
                "normal": None if self.normal is None else [round(v, 4) for v in self.normal],
                "inside_lung_fraction": round(self.inside_lung_fraction, 4)}


def measure_contact(tumour: Any, lungs: Any, affine: np.ndarray, shell_mm: float = 2.0,
                    min_fraction: float = 0.05) -> Contact:
    """Pleural contact of ``tumour`` (bool, voxels) given ``lungs`` (0 outside, 1 left, 2 right) on one grid.

    ``affine`` is the grid's voxel -> world RAS mm matrix. Only the tumour's box
    grown by the shell is read. An empty tumour has no contact.
    """
    tumour = asnumpy(tumour).astype(bool)
    lungs = asnumpy(lungs)
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = tuple(float(s) for s in np.linalg.norm(lin, axis=0))
    box = bounding_box(tumour, pad=tuple(math.ceil(shell_mm / s) + 1 for s in spacing))
    if box is None:
        return Contact(0.0, None, "none", 0.0)
    t, lung_labels = tumour[box], lungs[box]
    lung = lung_labels > 0
    shell = dilate_mm(t, shell_mm, spacing) & ~t
    touching = shell & ~lung
    fraction = float(touching.sum()) / max(float(shell.sum()), 1.0)
    inside = float((t & lung).sum()) / float(t.sum())
    if fraction < min_fraction or not touching.any():
        return Contact(fraction, None, "none", inside)
    centroid = np.argwhere(t).mean(axis=0)
    vec = lin @ (np.argwhere(touching).mean(axis=0) - centroid)
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:  # contact all round (a tumour filling its box): no one direction
        return Contact(fraction, None, "costal", inside)
    normal = vec / norm
    near = lung_labels[shell & lung]
    left = near.size > 0 and np.count_nonzero(near == LEFT_LUNG) * 2 >= near.size
    medial = normal[0] if left else -normal[0]
    if -normal[2] >= SITE_COMPONENT:
        site = "diaphragmatic"
    elif medial >= SITE_COMPONENT:
        site = "mediastinal"
    else:
        site = "costal"
    return Contact(fraction, tuple(float(v) for v in normal), site, inside)
