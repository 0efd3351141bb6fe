"""The dataset catalog: ``OUT/catalog.json``, one entry per case.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "synthlung_version": "0.1.0",
      "format": "msd" | "folder" | "pair",   # the input layout that was ingested
      "source": "/abs/path/of/SRC",
      "canonical": false,                    # true: images/labels are RAS NIfTI copies under OUT
      "hu_rescale": null,                    # [slope, intercept]: copies under OUT hold value*slope+intercept (HU)
      "n_cases": 3, "n_failed": 0,
      "cases": [
        {
          "id": "lung_001",
          "image": "images/lung_001.nii.gz",  # the file to use (see "Paths" below)
          "label": "labels/lung_001.nii.gz",  # null for an unlabeled scan (e.g. a healthy host)
          "sha256": {"image": "...", "label": "..." | null},   # of the files named above
          "source": {"image": "/abs/src/image", "label": "/abs/src/label" | null,
                     "sha256": {"image": "...", "label": "..." | null}},
          "shape": [512, 512, 48],            # voxels, axes of the file named by "image"
          "spacing_mm": [0.5703, 0.5703, 5.0],
          "orientation": ["L", "P", "S"],     # direction each array axis runs toward
          "hu_range": [-1024, 3071],          # image min and max (HU)
          "tumor_voxels": 837 | null,         # label voxels equal to 1; null without a label
          "tumor_volume_mm3": 1360.9 | null,  # tumor_voxels * voxel volume
          "errors": []                        # non-empty: the case failed; measurements are null
        }
      ]
    }

A failed case (``errors`` non-empty, only with ``skip_bad``) keeps its id and
source paths; its sha256 values and measurements are null.

Paths: ``image`` and ``label`` are POSIX paths relative to the catalog's folder
when the file lies inside it (``--canonical`` copies), otherwise absolute.
``source`` paths are always absolute. A DICOM series folder's sha256 is that
of the sorted list of ``name sha256`` lines of its files. Use
:func:`load_catalog` and :meth:`CaseRecord.image_path` rather than joining paths
by hand.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.atomic import read_json_index

SCHEMA_VERSION = 1
CATALOG_NAME = "catalog.json"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, or of a DICOM folder's sorted ``name sha256`` lines."""
    if path.is_dir():
        lines = "".join(f"{p.name} {sha256_of(p)}\n" for p in sorted(path.iterdir())
                        if p.is_file() and not p.name.startswith("."))
        return hashlib.sha256(lines.encode()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: Path, expected: str | None, what: str, remedy: str) -> None:
    """InputError naming ``path`` (a ``what``) when it is missing, has no recorded hash
    (``expected`` None: made by an older synthlung) or its sha256 is no longer ``expected``;
    ``remedy`` says which command makes it again."""
    if expected is None:
        raise InputError(f"{path}: no content hash recorded for this {what} (made by an older synthlung); {remedy}")
    if not path.exists():
        raise InputError(f"{path}: {what} missing; {remedy}")
    actual = sha256_of(path)
    if actual != expected:
        raise InputError(f"{path}: {what} changed since it was recorded (sha256 {actual[:12]}..., "
                         f"recorded {expected[:12]}...); {remedy}")


def catalog_relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (POSIX form)."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return (path.relative_to(root) if path.is_relative_to(root) else path).as_posix()


@dataclass
class CaseRecord:
    """One catalog entry; field meanings and units as in the module docstring."""

    id: str
    image: str
    label: str | None
    sha256: dict[str, str | None]
    source: dict[str, Any]
    shape: list[int] | None = None
    spacing_mm: list[float] | None = None
    orientation: list[str] | None = None
    hu_range: list[float] | None = None
    tumor_voxels: int | None = None
    tumor_volume_mm3: float | None = None
    errors: list[str] = field(default_factory=list)
    root: Path = field(default=Path("."), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the case was ingested without errors."""
        return not self.errors

    def image_path(self) -> Path:
        """Absolute path of the image (file or DICOM folder)."""
        return self.root / self.image

    def label_path(self) -> Path | None:
        """Absolute path of the label, or None for an unlabeled scan."""
        return None if self.label is None else self.root / self.label

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["root"]
        return data


@dataclass
class Catalog:
    """A loaded ``catalog.json``: its header fields and its cases."""

    path: Path
    format: str
    source: str
    canonical: bool
    cases: list[CaseRecord]
    synthlung_version: str = ""
    hu_rescale: tuple[float, float] | None = None

    @property
    def failed(self) -> list[CaseRecord]:
        """Cases with errors."""
        return [c for c in self.cases if not c.ok]

    @property
    def labeled(self) -> list[CaseRecord]:
        """Good cases with a label (tumor donors)."""
        return [c for c in self.cases if c.ok and c.label is not None]

    @property
    def unlabeled(self) -> list[CaseRecord]:
        """Good cases without a label (e.g. healthy hosts)."""
        return [c for c in self.cases if c.ok and c.label is None]

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "synthlung_version": self.synthlung_version,
                "format": self.format, "source": self.source, "canonical": self.canonical,
                "hu_rescale": None if self.hu_rescale is None else list(self.hu_rescale),
                "n_cases": len(self.cases), "n_failed": len(self.failed),
                "cases": [c.to_json() for c in self.cases]}


def load_catalog(path: str | os.PathLike) -> Catalog:
    """Read ``catalog.json`` (or the folder holding it) into a :class:`Catalog`."""
    path = Path(path)
    if path.is_dir():
        path = path / CATALOG_NAME
    data = read_json_index(path, "catalog", SCHEMA_VERSION)
    _require_keys(path, "catalog", data, ("format", "source", "canonical", "cases"))
    if not isinstance(data["cases"], list):
        raise InputError(f"{path}: malformed catalog: 'cases' must be a list, got {type(data['cases']).__name__}")
    root = path.parent.resolve()
    known = {f.name for f in fields(CaseRecord)} - {"root"}
    cases = []
    for i, entry in enumerate(data["cases"]):
        where = f"case {i}" + (f" ({entry.get('id')!r})" if isinstance(entry, dict) and "id" in entry else "")
        _require_keys(path, where, entry, REQUIRED_CASE_KEYS)
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InputError(f"{path}: malformed catalog: {where} has unknown key(s) {', '.join(unknown)}")
        cases.append(CaseRecord(**entry, root=root))
    rescale = data.get("hu_rescale")
    return Catalog(path=path, format=data["format"], source=data["source"], canonical=data["canonical"],
                   cases=cases, synthlung_version=data.get("synthlung_version", ""),
                   hu_rescale=None if rescale is None else tuple(rescale))


REQUIRED_CASE_KEYS = ("id", "image", "label", "sha256", "source")


def _require_keys(path: Path, where: str, entry: object, keys: tuple[str, ...]) -> None:
    """InputError naming the file, the entry and the keys it lacks."""
    if not isinstance(entry, dict):
        raise InputError(f"{path}: malformed catalog: {where} must be an object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise InputError(f"{path}: malformed catalog: {where} lacks key(s) {', '.join(missing)}")
