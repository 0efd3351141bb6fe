"""NRRD (``.nrrd``, detached ``.nhdr``) through pynrrd, with its world space mapped to RAS.

An NRRD ``space`` names the world axes (``left-posterior-superior`` is the
usual one, as in DICOM); the Volume affine maps to RAS, so world axes that run
toward L or P are negated. ``scanner-xyz`` and a missing ``space`` are taken as
LPS, as ITK does.
"""
from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

from ..backend import asnumpy
from ..errors import InputError
from ..volume import Volume
from .atomic import atomic_path
from .room import check_room

_SPACES = {
    "right-anterior-superior": "RAS", "ras": "RAS",
    "left-anterior-superior": "LAS", "las": "LAS",
    "left-posterior-superior": "LPS", "lps": "LPS",
    "scanner-xyz": "LPS", "3d-right-handed": "LPS",
}


def _ras_flip(space: str) -> np.ndarray:
    """Diagonal 4x4 taking world coordinates of ``space`` (e.g. 'LPS') to RAS."""
    return np.diag([1.0 if c in "RAS" else -1.0 for c in space] + [1.0])


def _check_data_room(path: Path, header: dict, header_end: int) -> None:
    """Whether the data (attached after ``header_end``, or the detached file) can hold ``sizes``."""
    detached = header.get("data file", header.get("datafile"))
    data_path = path.parent / detached if detached else path
    stored = data_path.stat().st_size - (0 if detached else header_end)
    itemsize = np.dtype(nrrd.reader._TYPEMAP_NRRD2NUMPY.get(header.get("type"), "u1")).itemsize
    encoding = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}.get(str(header.get("encoding")), "other")
    check_room(path, header.get("sizes", ()), itemsize, stored, encoding)


def read_nrrd(path: Path) -> Volume:
    """Read a 3-D NRRD; the array keeps its stored dtype, the affine maps to RAS mm.

    A header whose sizes its (raw or gzip) data cannot hold raises InputError
    before the voxels are read.
    """
    with open(path, "rb") as fh:
        header = nrrd.read_header(fh)
        _check_data_room(path, header, fh.tell())
        data = nrrd.read_data(header, fh, str(path))
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D image, got {data.ndim} axes (sizes {list(data.shape)})")
    space_name = str(header.get("space", "left-posterior-superior")).lower()
    space = _SPACES.get(space_name)
    if space is None:
        raise InputError(f"{path}: unsupported NRRD space {header['space']!r} "
                         f"(expected one of {sorted(set(_SPACES))})")
    if "space directions" in header:
        directions = np.asarray(header["space directions"], dtype=np.float64)
        if directions.shape != (3, 3) or not np.all(np.isfinite(directions)):
            raise InputError(f"{path}: 'space directions' must give three 3-D vectors, got {directions.tolist()}")
    elif "spacings" in header:
        directions = np.diag(np.asarray(header["spacings"], dtype=np.float64))
    else:
        directions = np.eye(3)
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = directions.T            # column a = step of array axis a
    affine[:3, 3] = origin
    return Volume(data, _ras_flip(space) @ affine)


def write_nrrd(volume: Volume, path: Path) -> None:
    """Write ``volume`` as gzip NRRD in LPS space (exact float64 directions/origin), atomically."""
    array = asnumpy(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    lps = _ras_flip("LPS") @ volume.affine
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,
        "space origin": lps[:3, 3],
        "kinds": ["domain"] * 3,
        "encoding": "gzip",
    }
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), array, header, index_order="F")
