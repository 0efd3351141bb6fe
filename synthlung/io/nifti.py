"""NIfTI-1/2 (``.nii``, ``.nii.gz``): read through nibabel; written as nibabel lays the file out,
gzip-compressed by ISA-L (``isal``).

ISA-L's deflate (level 2) writes a case's files several times faster than
nibabel's zlib (level 1) at about the same size (``benchmarks/RESULTS.md``); the
stream is standard gzip with mtime 0 and no file name, so nibabel, ITK and
nnU-Net read it and the same volume always gives the same bytes. A name ending
in ``.nii`` is written uncompressed. One thread: on this project's 2-core
machine ``isal.igzip_threaded`` with two threads was no faster.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from nibabel.fileholders import FileHolder
from nibabel.openers import ImageOpener

from ..backend import asnumpy
from ..errors import InputError
from ..volume import Volume
from .atomic import atomic_path
from .hu import rescale
from .room import check_room

GZIP_LEVEL = 2
"""ISA-L compression level (0-3) of written ``.nii.gz`` files."""


def read_nifti(path: Path) -> Volume:
    """Read a 3-D NIfTI image; the affine is nibabel's best (sform, else qform), RAS mm.

    Without scaling (``scl_slope`` 0/NaN or 1 with intercept 0) the stored dtype
    is kept; otherwise the scaled values (int16 where exact, else float32).
    A header whose dimensions the file cannot hold, or whose voxel size is
    zero or not finite, raises InputError before the voxels are read.
    """
    img = nib.load(str(path))
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3-D image, got shape {img.shape}")
    with ImageOpener(str(path)) as fh:   # the header as stored: nibabel's load quietly sets a 0 pixdim to 1
        header = type(img.header).from_fileobj(fh, check=False)
    compressed = str(path).lower().endswith(".gz")
    check_room(path, shape, header.get_data_dtype().itemsize,
               path.stat().st_size - (0 if compressed else int(header["vox_offset"])),
               "gzip" if compressed else "raw")
    if int(header["sform_code"]) == 0:   # the grid comes from pixdim
        pixdim = [round(float(v), 6) for v in header["pixdim"][1:4]]
        if not all(np.isfinite(v) and v > 0 for v in pixdim):
            raise InputError(f"{path}: degenerate geometry: voxel size (pixdim) {pixdim} mm; every voxel size "
                             "must be finite and above zero")
    raw = np.asarray(img.dataobj.get_unscaled()).reshape(shape)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    array = raw if (slope, inter) == (1.0, 0.0) else rescale(raw, slope, inter)
    return Volume(array, img.affine)


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` as NIfTI-1 with its affine in both sform and qform (code 1, mm), atomically;
    gzip-compressed (ISA-L, deterministic) when ``path`` ends in ``.gz``."""
    array = asnumpy(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, volume.affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    compressed = Path(path).name.lower().endswith(".gz")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        # nibabel writes header and voxels straight through the compressor into the file: no
        # whole-file buffer. No file name and mtime 0 in the gzip header: same volume, same bytes.
        out = igzip.IGzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) \
            if compressed else raw
        with out:
            img.to_file_map({"image": FileHolder(fileobj=out), "header": FileHolder(fileobj=out)})
