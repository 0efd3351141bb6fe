"""Read and write CT volumes: NIfTI, NRRD and DICOM series, all as RAS-mm Volumes.

``load`` picks the reader by the path: a folder is a DICOM series, ``.nii`` /
``.nii.gz`` is NIfTI, ``.nrrd`` / ``.nhdr`` is NRRD. Every reader returns the
stored dtype where it is exact (int16 HU stays int16) and an affine that maps
voxel indices to RAS world millimetres, so the same voxel has the same world
position whichever format it came from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import InputError, SynthlungError
from ..volume import Volume
from .dicom import read_dicom_series
from .hu import RawUnitsWarning, check_hu
from .nifti import read_nifti, write_nifti
from .nrrd import read_nrrd, write_nrrd
from .orient import to_canonical

__all__ = ["load", "save", "to_canonical", "image_format", "RawUnitsWarning", "SUFFIXES"]

_READERS: dict[str, Callable[[Path], Volume]] = {
    "nifti": read_nifti, "nrrd": read_nrrd, "dicom": read_dicom_series}
_WRITERS: dict[str, Callable[[Volume, Path], None]] = {"nifti": write_nifti, "nrrd": write_nrrd}
SUFFIXES = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd"}


def image_format(path: str | os.PathLike) -> str | None:
    """'nifti', 'nrrd' or 'dicom' (a folder) for ``path``, or None when it is none of them."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def load(path: str | os.PathLike, canonical: bool = False, check_units: bool = True) -> Volume:
    """Read an image file or DICOM series folder into a Volume (NumPy array, RAS mm affine).

    ``canonical=True`` reorders the axes to R, A, S without resampling.
    ``check_units`` warns (:class:`RawUnitsWarning`) when a CT looks like raw
    stored units rather than HU. Unreadable, corrupt or truncated files raise
    :class:`~synthlung.errors.InputError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    fmt = image_format(path)
    if fmt is None:
        raise InputError(f"{path}: unknown image format (expected .nii, .nii.gz, .nrrd, .nhdr "
                         "or a DICOM series folder)")
    try:
        volume = _READERS[fmt](path)
    except SynthlungError:
        raise
    except Exception as exc:  # corrupt gzip, truncated data, malformed headers: all unreadable input
        raise InputError(f"{path}: cannot read {fmt} file: {type(exc).__name__}: {exc}") from exc
    if check_units:
        check_hu(volume.array, path)
    return to_canonical(volume) if canonical else volume


def save(volume: Volume, path: str | os.PathLike) -> None:
    """Write ``volume`` to ``path`` (``.nii``, ``.nii.gz`` or ``.nrrd``) atomically, affine exact."""
    path = Path(path)
    fmt = image_format(path) if not path.is_dir() else None
    if fmt not in _WRITERS or path.name.lower().endswith(".nhdr"):
        raise InputError(f"{path}: cannot write this format (use .nii, .nii.gz or .nrrd)")
    _WRITERS[fmt](volume, path)
