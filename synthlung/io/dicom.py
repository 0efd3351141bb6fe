"""A CT DICOM series folder -> Volume in HU with a RAS affine.

Slices are ordered by their position along the slice normal (the cross product
of the two ImageOrientationPatient direction cosines), never by file name or
InstanceNumber. The affine is built in DICOM's LPS patient space from
ImageOrientationPatient, ImagePositionPatient and PixelSpacing, then the first
two world axes are negated to give RAS. Array axes are (column, row, slice):
axis 0 runs along the row direction cosine, axis 1 along the column one.
Compressed pixel data (e.g. JPEG 2000) is decoded by pydicom's plugins
(pylibjpeg + pylibjpeg-openjpeg). A truncated file, a decoder error or
warning, and stored values outside BitsStored (e.g. a garbled codestream
header) raise InputError. Garbled entropy-coded bytes cannot be caught: JPEG
2000 in DICOM carries no checksum, and OpenJPEG decodes them without a word
(``benchmarks/garbled_dicom.py`` measures it).
"""
from __future__ import annotations

from pathlib import Path

import warnings

import numpy as np
import pydicom

from ..errors import InputError
from ..volume import Volume
from .hu import rescale

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_POSITION_TOL_MM = 1e-3
_SPACING_RTOL = 0.01


def series_files(folder: Path) -> list[Path]:
    """The files of a series folder, without hidden files (macOS ``._*``) and DICOMDIR."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble + ``DICM`` marker."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _headers(folder: Path) -> list[tuple[Path, pydicom.Dataset]]:
    files = series_files(folder)
    if not files:
        raise InputError(f"{folder}: empty folder, no DICOM files found")
    out = []
    for f in files:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(f)
        except Exception as exc:
            raise InputError(f"{f}: not a readable DICOM file ({exc})") from exc
        ended = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
        if ended or "PixelData" not in ds:
            raise InputError(f"{f}: truncated or incomplete DICOM file ({f.stat().st_size} bytes, "
                             f"{ended[0] if ended else 'no pixel data'})")
        out.append((f, ds))
    return out


def _decode(f: Path, ds: pydicom.Dataset) -> np.ndarray:
    """The slice's stored values; the decoder's errors and warnings, and decoded
    (compressed) values outside BitsStored, raise InputError naming the file."""
    syntax = ds.file_meta.get("TransferSyntaxUID", "?")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pixels = ds.pixel_array
    except Exception as exc:
        raise InputError(f"{f}: cannot decode pixel data (transfer syntax {syntax}): {exc}") from exc
    if caught:
        raise InputError(f"{f}: pixel data decoded with a warning (transfer syntax {syntax}): {caught[0].message}")
    if not getattr(syntax, "is_compressed", False):   # native data: what is stored is what is read
        return pixels
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if pixels.size and (int(pixels.min()) < lo or int(pixels.max()) > hi):
        raise InputError(f"{f}: corrupt pixel data: stored values {int(pixels.min())}..{int(pixels.max())} "
                         f"outside the {bits} bits stored ({lo}..{hi})")
    return pixels


def _require(ds: pydicom.Dataset, f: Path, *keys: str) -> None:
    missing = [k for k in keys if k not in ds]
    if missing:
        raise InputError(f"{f}: DICOM slice lacks {', '.join(missing)}")


def _check_one_series(slices: list[tuple[Path, pydicom.Dataset]], folder: Path) -> None:
    uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}
    if len(uids) > 1:
        raise InputError(f"{folder}: mixed series, {len(uids)} different SeriesInstanceUIDs "
                         f"({', '.join(sorted(u or '<empty>' for u in uids))})")
    f0, ds0 = slices[0]
    iop0 = np.asarray(ds0.ImageOrientationPatient, dtype=np.float64)
    for f, ds in slices:
        modality = str(ds.get("Modality", "CT"))
        if modality != "CT":
            raise InputError(f"{f}: modality {modality!r} is not CT; only CT series are supported")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(f"{f}: multi-frame DICOM is not supported; expected one slice per file")
        if (ds.Rows, ds.Columns) != (ds0.Rows, ds0.Columns):
            raise InputError(f"{folder}: mixed series, slice {f.name} is {ds.Rows}x{ds.Columns} "
                             f"but {f0.name} is {ds0.Rows}x{ds0.Columns}")
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        if not np.allclose(iop, iop0, atol=1e-4):
            raise InputError(f"{folder}: mixed series, slice {f.name} has ImageOrientationPatient "
                             f"{iop.tolist()} but {f0.name} has {iop0.tolist()}")
        if not np.allclose(np.asarray(ds.PixelSpacing, float), np.asarray(ds0.PixelSpacing, float), atol=1e-4):
            raise InputError(f"{folder}: mixed series, slice {f.name} has PixelSpacing "
                             f"{list(ds.PixelSpacing)} but {f0.name} has {list(ds0.PixelSpacing)}")


def _check_slice_spacing(positions: np.ndarray, names: list[str], folder: Path) -> None:
    """Error on duplicate positions, missing slices or uneven spacing along the normal (mm)."""
    if len(positions) < 2:
        return
    gaps = np.diff(positions)
    if np.any(gaps < _POSITION_TOL_MM):
        i = int(np.argmin(gaps))
        raise InputError(f"{folder}: slices {names[i]} and {names[i + 1]} lie at the same position "
                         f"({positions[i]:.3f} mm along the slice normal)")
    step = float(np.median(gaps))
    bad = np.abs(gaps - step) > max(_SPACING_RTOL * step, _POSITION_TOL_MM)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        n_missing = gaps[i] / step - 1
        what = (f"about {round(n_missing)} missing slice(s)" if abs(n_missing - round(n_missing)) < 0.05
                and round(n_missing) >= 1 else "uneven slice spacing")
        raise InputError(f"{folder}: {what}: gap of {gaps[i]:.3f} mm between {names[i]} and "
                         f"{names[i + 1]} where the series spacing is {step:.3f} mm")


def read_dicom_series(folder: Path) -> Volume:
    """Read one CT series folder as HU (int16 when the rescale is integral, else float32)."""
    slices = _headers(folder)
    for f, ds in slices:
        _require(ds, f, "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns")
    _check_one_series(slices, folder)
    iop = np.asarray(slices[0][1].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    ipp = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for _, ds in slices])
    order = np.argsort(ipp @ normal, kind="stable")
    slices = [slices[i] for i in order]
    ipp = ipp[order]
    _check_slice_spacing(ipp @ normal, [f.name for f, _ in slices], folder)

    raw = np.stack([_decode(f, ds).T for f, ds in slices], axis=-1)     # (rows, cols) -> (cols, rows)
    slopes = np.array([float(ds.get("RescaleSlope", 1) or 1) for _, ds in slices])
    intercepts = np.array([float(ds.get("RescaleIntercept", 0) or 0) for _, ds in slices])
    if np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]):
        slopes, intercepts = slopes[0], intercepts[0]
    array = rescale(raw, slopes, intercepts)

    ds0 = slices[0][1]
    row_spacing, col_spacing = (float(v) for v in ds0.PixelSpacing)   # between rows, between columns
    if len(slices) > 1:
        slice_vec = (ipp[-1] - ipp[0]) / (len(slices) - 1)
    else:
        thickness = float(ds0.get("SpacingBetweenSlices", ds0.get("SliceThickness", 1.0)) or 1.0)
        slice_vec = normal * thickness
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = slice_vec
    lps[:3, 3] = ipp[0]
    return Volume(array, _LPS_TO_RAS @ lps)
