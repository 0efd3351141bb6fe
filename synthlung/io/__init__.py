"""Read and write CT volumes: NIfTI, NRRD and DICOM series, all as RAS-mm Volumes.

``load`` picks the reader by the path: a folder is a DICOM series, ``.nii`` /
``.nii.gz`` is NIfTI, ``.nrrd`` / ``.nhdr`` is NRRD. Every reader returns the
stored dtype where it is exact (int16 HU stays int16) and an affine that maps
voxel indices to RAS world millimetres, so the same voxel has the same world
position whichever format it came from. What ``load`` refuses (one-line
:class:`~synthlung.errors.InputError` naming the file) is listed in its
docstring; writes are atomic (:mod:`.atomic`), and commands hold their output
folder's writer lock (:mod:`.folder_lock`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError, SynthlungError
from ..volume import Volume
from .dicom import read_dicom_series
from .geometry import check_affine
from .hu import RawUnitsWarning, check_finite, require_hu, rescale
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


def load(path: str | os.PathLike, canonical: bool = False, check_units: bool = True,
         hu_rescale: tuple[float, float] | None = None) -> Volume:
    """Read an image file or DICOM series folder into a Volume (NumPy array, RAS mm affine).

    ``canonical=True`` reorders the axes to R, A, S without resampling.
    Unreadable, corrupt or truncated files, headers that claim more voxels
    than the file holds, degenerate geometry (zero, non-finite or singular
    voxel sizes and affines) and NaN/Inf voxels raise
    :class:`~synthlung.errors.InputError` naming the file. ``hu_rescale=(slope,
    intercept)`` maps stored values to HU (``value * slope + intercept``, float32
    unless exact in int16); then, with ``check_units`` (for CT images; pass False
    for masks and label maps), an image that does not look like HU (raw stored
    units, a normalised range) is refused too.
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
    except MemoryError as exc:
        raise InputError(f"{path}: not enough memory to read {fmt} image") from exc
    except Exception as exc:  # corrupt gzip, truncated data, malformed headers: all unreadable input
        raise InputError(f"{path}: cannot read {fmt} file: {type(exc).__name__}: {exc}") from exc
    check_affine(volume.affine, path)
    check_finite(volume.array, path)
    if hu_rescale is not None:
        slope, intercept = rescale_pair(hu_rescale)
        volume = volume.with_array(rescale(volume.array, slope, intercept))
    if check_units:
        require_hu(volume.array, path)
    return to_canonical(volume) if canonical else volume


def rescale_pair(hu_rescale: object) -> tuple[float, float]:
    """(slope, intercept) as finite floats, slope not zero; InputError otherwise."""
    try:
        slope, intercept = (float(v) for v in hu_rescale)
    except (TypeError, ValueError):
        raise InputError(f"hu_rescale={hu_rescale!r}: expected (slope, intercept)") from None
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope != 0):
        raise InputError(f"hu_rescale={hu_rescale!r}: slope and intercept must be finite, slope not 0")
    return slope, intercept


def save(volume: Volume, path: str | os.PathLike) -> None:
    """Write ``volume`` to ``path`` (``.nii``, ``.nii.gz`` or ``.nrrd``) atomically, affine exact.

    A degenerate affine (see :func:`~synthlung.io.geometry.check_affine`) raises InputError."""
    path = Path(path)
    fmt = image_format(path) if not path.is_dir() else None
    if fmt not in _WRITERS or path.name.lower().endswith(".nhdr"):
        raise InputError(f"{path}: cannot write this format (use .nii, .nii.gz or .nrrd)")
    check_affine(volume.affine, path)
    _WRITERS[fmt](volume, path)
