"""Hosts: a CT, its lungs (1 left, 2 right), and where a tumor centre may be placed.

A host bank on disk (``synthlung hosts CATALOG OUT``) is a folder holding
``index.json`` and one lung mask per host, ``lungs/<id>.nii.gz`` (uint8, in the
host image's own voxel grid). ``index.json``::

    {"schema_version": 1,
     "catalog": "<absolute path of the catalog.json it was made from>",
     "hosts": [{"id": str,
                "image": "<absolute path of the CT (file or DICOM folder)>",
                "label": "<absolute path of its tumor label>" | null,
                "lungs": "lungs/<id>.nii.gz",          # relative to the bank folder
                "record": {"id", "sha256": {"image", "label"},  # of the source files
                           "left_ml", "right_ml", "total_ml",
                           "partial_coverage": bool, "shape", "spacing_mm", "method"}}],
     "errors": [{"id": str, "error": str}]}

Images are referenced, never copied. ``HostBank.open(path)[i]`` reloads the
image (and the tumor label), reads the lung mask and recomputes the placement
zone (a few distance transforms, fast).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import read_json_index
from .backend import array_module, asnumpy, to_array
from .components import label
from .errors import InputError
from .lungseg import lung_summary, segment_lungs
from .morphology import bounding_box, dilate_mm, distance_mm
from .volume import Volume

__all__ = ["Host", "HostBank", "PlacementZone", "make_host", "placement_zone", "segment_lungs"]

INDEX_NAME = "index.json"
SCHEMA_VERSION = 1


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
    sizes = xp.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing))
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


def _catalog_cases(catalog: str | os.PathLike) -> tuple[Path, list[dict[str, Any]]]:
    """(catalog file, good cases as dicts with id, image, label (absolute paths or None), sha256)."""
    from .datasets import load_catalog
    cat = load_catalog(catalog)
    cases = [{"id": c.id, "image": str(c.image_path()),
              "label": None if c.label_path() is None else str(c.label_path()), "sha256": c.sha256}
             for c in cat.cases if c.ok]
    return Path(cat.path).resolve(), cases


def _host_entry(case: dict[str, Any], out: Path, method: str) -> dict[str, Any]:
    from .io import load, save
    image = load(case["image"])
    lungs = segment_lungs(image, method=method, name=case["image"])
    rel = f"lungs/{case['id']}.nii.gz"
    save(lungs, out / rel)
    record = {"id": case["id"], "sha256": case["sha256"], **lung_summary(lungs),
              "shape": list(image.shape), "spacing_mm": [round(s, 6) for s in image.spacing], "method": method}
    return {"id": case["id"], "image": case["image"], "label": case["label"], "lungs": rel, "record": record}


def _reusable(previous: dict[str, Any] | None, case: dict[str, Any], out: Path, method: str) -> bool:
    """True when an earlier run already made this host from the same files with the same method."""
    return (previous is not None and previous["record"].get("sha256") == case["sha256"]
            and previous["record"].get("method") == method and (out / previous["lungs"]).is_file())


def build_host_bank(catalog: str | os.PathLike, out: str | os.PathLike, *, method: str = "threshold",
                    skip_bad: bool = False, progress=None) -> dict[str, Any]:
    """Segment every good case of a catalog and write the bank (see module docstring); returns the index.

    Rerunnable: a host whose source files (sha256) and method are unchanged is
    kept from the existing index instead of being segmented again; the index is
    rewritten (atomically) after every case.
    ``skip_bad``: a case that fails (no lungs, bad volume, unreadable) is recorded
    in ``errors`` and the rest go on; otherwise the first failure raises.
    ``progress(done, total, case_id)`` is called after each case.
    """
    from .atomic import write_json
    from .errors import SynthlungError
    cat_path, cases = _catalog_cases(catalog)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    if (out / INDEX_NAME).is_file():
        previous = {h["id"]: h for h in read_json_index(out / INDEX_NAME, "host bank index", SCHEMA_VERSION)["hosts"]}
    index: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "catalog": str(cat_path), "hosts": [], "errors": []}
    for i, case in enumerate(cases):
        try:
            old = previous.get(case["id"])
            index["hosts"].append(old if _reusable(old, case, out, method) else _host_entry(case, out, method))
        except (SynthlungError, OSError) as exc:
            if not skip_bad:
                raise
            index["errors"].append({"id": case["id"], "error": str(exc)})
        write_json(out / INDEX_NAME, index)
        if progress is not None:
            progress(i + 1, len(cases), case["id"])
    return index


class HostBank:
    """A host bank folder: ``len(bank)``, ``bank[i] -> Host``, ``bank.entries`` (index rows)."""

    def __init__(self, root: Path, index: dict[str, Any], **zone_kw):
        self.root = root
        self.index = index
        self.zone_kw = zone_kw

    @classmethod
    def open(cls, path: str | os.PathLike, **zone_kw) -> "HostBank":
        """Open a bank folder (or its ``index.json``); ``zone_kw`` go to :func:`placement_zone`."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        return cls(path.parent, read_json_index(path, "host bank index", SCHEMA_VERSION), **zone_kw)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.index["hosts"]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Host:
        from .io import load
        entry = self.entries[i]
        image = load(entry["image"])
        lungs = load(self.root / entry["lungs"], check_units=False)
        lungs = image.with_array(asnumpy(lungs.array).astype(np.uint8))
        tumors = None if entry["label"] is None else load(entry["label"], check_units=False)
        return make_host(image, tumors, host_id=entry["id"], lungs=lungs, record=entry["record"], **self.zone_kw)
