"""Write small synthetic CT DICOM series for tests (uncompressed, one slice per file)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_series(folder: Path, stored: np.ndarray, *, spacing=(0.8, 0.7, 2.5),
                 iop=(1, 0, 0, 0, 1, 0), origin=(-10.0, -20.0, 30.0), slope=1.0, intercept=-1024.0,
                 modality="CT", names=None, instance_numbers=None) -> list[Path]:
    """Write ``stored`` (uint16, axes column, row, slice) as one file per slice; returns the paths.

    Slice k sits at ``origin + k * spacing[2] * normal`` (LPS mm); ``names`` and
    ``instance_numbers`` default to the slice order but can be shuffled.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = stored.shape[2]
    iop = np.asarray(iop, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    series_uid = generate_uid()
    names = names or [f"slice{k:03d}.dcm" for k in range(n)]
    instance_numbers = instance_numbers or list(range(1, n + 1))
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = instance_numbers[k]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[2] * normal]
        ds.PixelSpacing = [spacing[1], spacing[0]]        # between rows, between columns
        ds.SliceThickness = spacing[2]
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype(np.uint16)).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def set_tag(path: Path, **tags) -> None:
    """Rewrite DICOM attributes of one file in place."""
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)
