"""Ingest a dataset into ``OUT/catalog.json``: check every case, measure it, optionally reorient.

Each case's image and label are read, checked against each other (same shape,
same grid within 1e-3 mm, label values 0/1 only) and measured. With
``canonical=True`` RAS NIfTI copies are written under ``OUT/images`` and
``OUT/labels`` (atomically) and the catalog points to them; ``hu_rescale``
writes copies in HU the same way. A rerun reuses a
case whose source files have the same sha256 (and whose copies are intact)
without reading it again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import io as sio
from .._version import __version__
from ..errors import InputError
from ..io import rescale_pair
from ..io.atomic import remove_stale_temporaries, write_json
from ..io.folder_lock import folder_lock
from ..volume import Volume
from .catalog import (
    CATALOG_NAME,
    CaseRecord,
    Catalog,
    catalog_relpath,
    load_catalog,
    sha256_of,
)
from .layouts import CaseSpec, discover

GRID_TOL_MM = 1e-3
Progress = Callable[[int, int, str], None]


def _corners(volume: Volume) -> np.ndarray:
    ijk = np.array(np.meshgrid(*[(0, s - 1) for s in volume.shape], indexing="ij")).reshape(3, -1).T
    return volume.voxel_to_world(ijk)


def check_pair(image: Volume, label: Volume, image_path: Path, label_path: Path) -> None:
    """Raise InputError unless ``label`` lies on ``image``'s grid (1e-3 mm) and holds only 0/1."""
    if image.shape != label.shape:
        raise InputError(f"label {label_path}: shape {label.shape} differs from image {image_path} "
                         f"shape {image.shape}")
    gap = float(np.linalg.norm(_corners(image) - _corners(label), axis=1).max())
    if gap > GRID_TOL_MM:
        raise InputError(f"label {label_path}: affine differs from image {image_path}: grid corners up "
                         f"to {gap:.4g} mm apart (tolerance {GRID_TOL_MM} mm)")
    bad = (label.array != 0) & (label.array != 1)
    if bad.any():
        values = np.unique(label.array[bad])
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise InputError(f"label {label_path}: values other than 0/1 found ({shown}); "
                         "expected a binary tumor mask")


def _number(x) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def _measure(image: Volume, label: Volume | None) -> dict:
    voxel_mm3 = float(np.prod(image.spacing))
    tumor = None if label is None else int(np.count_nonzero(label.array == 1))
    return {"shape": list(image.shape), "spacing_mm": list(image.spacing),
            "orientation": list(image.orientation),
            "hu_range": [_number(image.array.min()), _number(image.array.max())],
            "tumor_voxels": tumor,
            "tumor_volume_mm3": None if tumor is None else round(tumor * voxel_mm3, 3)}


def _source(spec: CaseSpec) -> dict:
    """Absolute source paths and their sha256; InputError when a file cannot be read."""
    sha = {}
    for key, path in (("image", spec.image), ("label", spec.label)):
        try:
            sha[key] = None if path is None else sha256_of(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read file: {exc}") from exc
    return {"image": str(spec.image), "label": None if spec.label is None else str(spec.label),
            "sha256": sha}


@dataclass(frozen=True)
class Copies:
    """How ingest reads images and whether it writes NIfTI copies under OUT.

    ``canonical``: reorder to RAS; ``hu_rescale``: ``(slope, intercept)`` taking
    the stored values to HU. Either one makes ingest write copies (the catalog
    then points to them, so that seeds and hosts read HU in the right order).
    """

    canonical: bool = False
    hu_rescale: tuple[float, float] | None = None

    @property
    def written(self) -> bool:
        """True when copies are written under OUT."""
        return self.canonical or self.hu_rescale is not None


def _reusable(prev: CaseRecord | None, source: dict, copies: Copies, was: Copies) -> bool:
    if prev is None or not prev.ok or prev.source != source or copies != was:
        return False
    if not copies.written:
        return True
    files = [(prev.image_path(), prev.sha256["image"]), (prev.label_path(), prev.sha256.get("label"))]
    return all(p is None or (p.is_file() and sha256_of(p) == h) for p, h in files)


def _ingest_case(spec: CaseSpec, source: dict, out: Path, copies: Copies) -> CaseRecord:
    image = sio.load(spec.image, canonical=copies.canonical, hu_rescale=copies.hu_rescale)
    label = None
    if spec.label is not None:
        label = sio.load(spec.label, canonical=copies.canonical, check_units=False)
        check_pair(image, label, spec.image, spec.label)
    image_file, label_file = spec.image, spec.label
    if copies.written:
        image_file = out / "images" / f"{spec.id}.nii.gz"
        sio.save(image, image_file)
        if label is not None:
            label_file = out / "labels" / f"{spec.id}.nii.gz"
            sio.save(label.with_array(label.array.astype(np.uint8)), label_file)
    sha = source["sha256"] if not copies.written else {
        "image": sha256_of(image_file), "label": None if label_file is None else sha256_of(label_file)}
    return CaseRecord(id=spec.id, image=catalog_relpath(image_file, out),
                      label=None if label_file is None else catalog_relpath(label_file, out),
                      sha256=sha, source=source, **_measure(image, label), root=out)


def _failed(spec: CaseSpec, errors: list[str], out: Path) -> CaseRecord:
    label = None if spec.label is None else str(spec.label)
    no_sha = {"image": None, "label": None}
    return CaseRecord(id=spec.id, image=str(spec.image), label=label, sha256=dict(no_sha),
                      source={"image": str(spec.image), "label": label, "sha256": dict(no_sha)},
                      errors=errors, root=out)


def _previous(out: Path) -> Catalog | None:
    try:
        return load_catalog(out / CATALOG_NAME) if (out / CATALOG_NAME).is_file() else None
    except InputError:
        return None


def ingest(src: str | os.PathLike, out: str | os.PathLike, format: str = "auto", canonical: bool = False,
           skip_bad: bool = False, label: str | os.PathLike | None = None,
           progress: Progress | None = None, hu_rescale: tuple[float, float] | None = None) -> Catalog:
    """Ingest dataset ``src`` into ``out/catalog.json`` and return the catalog.

    ``format``: 'auto', 'msd', 'folder' or 'pair' (see :mod:`synthlung.datasets.layouts`);
    ``label``: the label file of a single image ('pair'). A bad case raises
    :class:`InputError` naming the file and the problem, and no catalog is
    written; with ``skip_bad`` it is recorded in the case's ``errors`` and the
    rest go on (check ``catalog.failed``). ``hu_rescale=(slope, intercept)``:
    the images are not in HU; HU = value * slope + intercept, and NIfTI copies
    in HU are written under ``out/images`` (as with ``canonical``). ``progress(done, total, case_id)``
    is called before each case and once at the end. ``out`` is locked for the
    run (one writer per folder: a second one gets
    :class:`~synthlung.errors.BusyError`); temporaries a killed run left there
    are removed.
    """
    src, out = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    copies = Copies(canonical, None if hu_rescale is None else rescale_pair(hu_rescale))
    fmt, specs = discover(src, format, None if label is None else Path(os.path.abspath(label)))
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"{src}: several cases share the id(s) {', '.join(dup)}")
    with folder_lock(out, "ingest"):
        remove_stale_temporaries(out, out / "images", out / "labels")
        return _ingest_all(specs, src, out, fmt, copies, skip_bad, progress)


def _ingest_all(specs: list[CaseSpec], src: Path, out: Path, fmt: str, copies: Copies, skip_bad: bool,
                progress: Progress | None) -> Catalog:
    """The body of :func:`ingest`, run while holding ``out``'s writer lock."""
    previous = _previous(out)
    prev_cases = {c.id: c for c in previous.cases} if previous else {}
    was = Copies(previous.canonical, previous.hu_rescale) if previous else Copies()
    records = []
    for done, spec in enumerate(specs):
        if progress:
            progress(done, len(specs), spec.id)
        try:
            if spec.errors:
                raise InputError("; ".join(spec.errors))
            source = _source(spec)
            prev = prev_cases.get(spec.id)
            if _reusable(prev, source, copies, was):
                records.append(prev)
                continue
            records.append(_ingest_case(spec, source, out, copies))
        except InputError as exc:
            if not skip_bad:
                raise
            records.append(_failed(spec, spec.errors or [str(exc)], out))
    if progress:
        progress(len(specs), len(specs), "")
    catalog = Catalog(path=out / CATALOG_NAME, format=fmt, source=str(src), canonical=copies.canonical,
                      hu_rescale=copies.hu_rescale,
                      cases=records, synthlung_version=__version__)
    write_json(catalog.path, catalog.to_json())
    return catalog
