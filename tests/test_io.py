"""synthlung.io: NIfTI, NRRD and DICOM series in, NIfTI and NRRD out, all in RAS mm."""
from __future__ import annotations

import itertools
import warnings

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest

from _dicomgen import set_tag, write_series
from synthlung import Volume, load, save
from synthlung.errors import InputError
from synthlung.io import to_canonical


def world_grid(volume: Volume) -> np.ndarray:
    """World RAS mm of every voxel, shape (N, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in volume.shape], indexing="ij"), -1).reshape(-1, 3)
    return volume.voxel_to_world(ijk)


def corners(volume: Volume) -> np.ndarray:
    """World RAS mm of the 8 corner voxels. A difference of two affine maps is affine, so its
    largest size over every voxel of the grid is reached at a corner."""
    ijk = np.array(list(itertools.product(*[(0, s - 1) for s in volume.shape])))
    return volume.voxel_to_world(ijk)


def oblique_affine(spacing=(0.7, 0.9, 2.5), origin=(-123.456789, 87.654321, -777.123457)) -> np.ndarray:
    a, b = 0.3, -0.2
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag(spacing) @ np.diag([-1, 1, -1])
    aff[:3, 3] = origin
    return aff


# ---------------------------------------------------------------- real data

def test_lung1_loads_with_its_grid_and_tumor(lung1_paths):
    image, label = (load(p) for p in lung1_paths)
    assert image.shape == label.shape == (512, 512, 48)
    np.testing.assert_allclose(image.spacing, (0.5703125, 0.5703125, 5.0), atol=1e-6)
    assert image.array.dtype == np.int16 and image.orientation == ("L", "P", "S")
    # NRRD LPS origin (-146, -325, -777.5) is RAS (146, 325, -777.5)
    np.testing.assert_allclose(image.affine[:3, 3], (146.0, 325.0, -777.5))
    assert int((label.array == 1).sum()) == 837 and set(np.unique(label.array)) == {0, 1}
    assert image.array.min() < -900          # air in HU


def test_lung1_nrrd_to_nifti_keeps_world_positions(lung1_paths, tmp_path):
    vol = load(lung1_paths[0])
    save(vol, tmp_path / "lung1.nii.gz")
    back = load(tmp_path / "lung1.nii.gz")
    assert np.abs(corners(back) - corners(vol)).max() < 1e-4      # hence for every voxel
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == np.int16


def test_chest_ct_round_trip_identical_world(chest_ct_path, tmp_path):
    vol = load(chest_ct_path)
    for name in ("chest.nii.gz", "chest.nii", "chest.nrrd"):
        save(vol, tmp_path / name)
        back = load(tmp_path / name)
        np.testing.assert_array_equal(back.array, vol.array)
        assert back.array.dtype == vol.array.dtype == np.int16
        np.testing.assert_array_equal(back.affine, vol.affine)      # so every voxel's world position
    assert not list(tmp_path.glob(".*"))     # no temporary files left


def test_real_dicom_series_matches_its_segmentation(dicom_series_dir):
    ct = load(dicom_series_dir / "series", canonical=True)
    seg = load(dicom_series_dir / "segmentation.nii.gz", canonical=True)
    assert ct.shape == (512, 512, 20) and ct.orientation == ("R", "A", "S")
    assert ct.array.dtype == np.int16 and ct.array.min() == -1024     # HU: stored + intercept -1024
    np.testing.assert_allclose(ct.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert np.abs(ct.affine - seg.affine).max() < 1e-3
    liver = seg.array == 5                    # TotalSegmentator class 5: liver
    assert liver.sum() > 10000
    assert 0 < np.median(ct.array[liver]) < 200
    assert np.median(ct.array[seg.array == 0]) < -900


# ---------------------------------------------------------------- NRRD and NIfTI

@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior", "scanner-xyz"])
def test_nrrd_to_nifti_world_positions(tmp_path, space):
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 2000, size=(7, 6, 5)).astype(np.int16)
    ras = oblique_affine()
    flip = np.diag([1, 1, 1, 1.0]) if space.startswith("right") else np.diag([-1, -1, 1, 1.0])
    world = flip @ ras
    nrrd.write(str(tmp_path / "x.nrrd"), data, {"space": space, "space directions": world[:3, :3].T,
                                                "space origin": world[:3, 3]})
    vol = load(tmp_path / "x.nrrd")
    np.testing.assert_allclose(vol.affine, ras, atol=1e-9)
    save(vol, tmp_path / "x.nii.gz")
    back = load(tmp_path / "x.nii.gz")
    assert np.abs(world_grid(back) - world_grid(vol)).max() < 1e-4
    np.testing.assert_array_equal(back.array, data)
    # and back to NRRD (written as LPS), read by pynrrd itself
    save(back, tmp_path / "y.nrrd")
    _, header = nrrd.read(str(tmp_path / "y.nrrd"))
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space origin"], (np.diag([-1, -1, 1, 1.0]) @ back.affine)[:3, 3])


def test_detached_nhdr_reads_like_nrrd(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    lps = np.diag([-1, -1, 1, 1.0]) @ oblique_affine()
    header = {"space": "LPS", "space directions": lps[:3, :3].T, "space origin": lps[:3, 3]}
    nrrd.write(str(tmp_path / "x.nhdr"), data, header, detached_header=True)
    vol = load(tmp_path / "x.nhdr")
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, oblique_affine(), atol=1e-9)


def test_nifti_scaling_is_applied_and_dtype_chosen(tmp_path):
    stored = np.arange(24, dtype=np.uint16).reshape(2, 3, 4) * 100
    img = nib.Nifti1Image(stored, np.eye(4))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "hu.nii.gz")
    vol = load(tmp_path / "hu.nii.gz")
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    img.header.set_slope_inter(0.5, -1024.0)
    nib.save(img, tmp_path / "half.nii.gz")
    vol = load(tmp_path / "half.nii.gz")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, stored * 0.5 - 1024)


@pytest.mark.parametrize("perm,signs", list(itertools.product(itertools.permutations(range(3)),
                                                            [(1, 1, 1), (-1, 1, -1), (-1, -1, -1)])))
def test_canonical_matches_nibabel(perm, signs):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    aff = np.eye(4)
    aff[:3, :3] = np.eye(3)[:, list(perm)] * np.array(signs) * np.array([0.5, 0.7, 2.0])
    aff[:3, 3] = (10, -20, 30)
    vol = to_canonical(Volume(data, aff))
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, aff))
    assert vol.orientation == ("R", "A", "S")
    np.testing.assert_array_equal(vol.array, np.asarray(ref.dataobj))
    np.testing.assert_allclose(vol.affine, ref.affine)


@pytest.mark.parametrize("name,content", [
    ("corrupt.nii.gz", b"\x1f\x8b\x08\x00garbage-not-deflate" * 10),
    ("notgzip.nii.gz", b"plain text, not gzip"),
    ("garbage.nrrd", b"NRRD0004\ntype: short\ndimension: banana\n\n"),
    ("empty.nii", b""),
])
def test_unreadable_files_raise_input_error(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=name):
        load(tmp_path / name)


def test_truncated_gzip_raises_input_error(tmp_path):
    save(Volume(np.zeros((20, 20, 20), np.int16), np.eye(4)), tmp_path / "ok.nii.gz")
    blob = (tmp_path / "ok.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        load(tmp_path / "cut.nii.gz")


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "absent.nii.gz")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(InputError, match="unknown image format"):
        load(tmp_path / "x.png")
    with pytest.raises(InputError, match="cannot write"):
        save(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.nhdr")


def test_raw_units_refused_unless_rescaled(tmp_path, lung1_paths):
    vol = load(lung1_paths[0])
    raw = vol.with_array((vol.array.astype(np.int32) + 1024).astype(np.uint16))
    save(raw, tmp_path / "raw.nii.gz")
    lo, hi = int(raw.array.min()), int(raw.array.max())
    with pytest.raises(InputError, match=rf"raw\.nii\.gz: values range {lo}\.\.{hi} .*raw stored units.*hu_rescale"):
        load(tmp_path / "raw.nii.gz")
    again = load(tmp_path / "raw.nii.gz", hu_rescale=(1, -1024))
    assert again.array.dtype == np.int16 and np.array_equal(again.array, vol.array)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(lung1_paths[0])
        load(lung1_paths[1])                 # a 0/1 label is not flagged


# ---------------------------------------------------------------- DICOM (synthetic series)

def _stored(shape=(6, 5, 4)):
    return (np.arange(np.prod(shape)).reshape(shape) * 7 % 3000).astype(np.uint16)


def test_dicom_sorted_by_position_not_name_or_instance(tmp_path):
    stored = _stored()
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)          # sagittal: normal is -x (toward R)
    write_series(tmp_path / "s", stored, iop=iop, names=["d.dcm", "b.dcm", "a.dcm", "c.dcm"],
                 instance_numbers=[3, 1, 4, 2])
    vol = load(tmp_path / "s")
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, stored.astype(np.int16) - 1024)
    # voxel (c, r, k) sits at IPP_k + c * dx * row + r * dy * col in LPS
    lps = np.array([-10.0, -20.0, 30.0]) + 3 * 2.5 * np.array([-1.0, 0, 0]) + 2 * 0.8 * np.array([0, 1.0, 0]) \
        + 1 * 0.7 * np.array([0, 0, -1.0])
    np.testing.assert_allclose(vol.voxel_to_world([2, 1, 3]), lps * [-1, -1, 1], atol=1e-9)


def test_dicom_reversed_positions_and_float_rescale(tmp_path):
    stored = _stored()
    paths = write_series(tmp_path / "s", stored, slope=0.5, intercept=-1000.0)
    for k, p in enumerate(paths):                 # flip the slice order in space
        set_tag(p, ImagePositionPatient=[-10.0, -20.0, 30.0 - 2.5 * k])
    vol = load(tmp_path / "s")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, stored[:, :, ::-1] * 0.5 - 1000.0)
    np.testing.assert_allclose(vol.affine[:3, 2], [0, 0, 2.5])


def _missing(folder, paths):
    paths[2].unlink()


def _uneven(folder, paths):
    set_tag(paths[2], ImagePositionPatient=[-10.0, -20.0, 30.0 + 2.5 * 2 + 0.9])


def _mixed_uid(folder, paths):
    set_tag(paths[1], SeriesInstanceUID="1.2.3.4")


def _mixed_iop(folder, paths):
    set_tag(paths[1], ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0])


def _mixed_shape(folder, paths):
    other = write_series(folder, _stored((6, 4, 1)), names=["other.dcm"], origin=(-10.0, -20.0, 40.0))
    set_tag(other[0], SeriesInstanceUID=pydicom.dcmread(paths[0]).SeriesInstanceUID)


def _mr(folder, paths):
    for p in paths:
        set_tag(p, Modality="MR")


def _empty(folder, paths):
    for p in paths:
        p.unlink()
    (folder / "._junk").write_bytes(b"macos")


def _not_dicom(folder, paths):
    (folder / "notes.txt").write_text("hello")


@pytest.mark.parametrize("breaker,message", [
    (_missing, "missing slice"), (_uneven, "uneven slice spacing"),
    (_mixed_uid, "mixed series, 2 different SeriesInstanceUIDs"),
    (_mixed_iop, "mixed series.*ImageOrientationPatient"), (_mixed_shape, "mixed series.*other.dcm"),
    (_mr, "modality 'MR' is not CT"), (_empty, "empty folder"), (_not_dicom, "notes.txt"),
])
def test_dicom_bad_series(tmp_path, breaker, message):
    folder = tmp_path / "s"
    paths = write_series(folder, _stored((6, 5, 5)))
    breaker(folder, paths)
    with pytest.raises(InputError, match=message):
        load(folder)


@pytest.mark.parametrize("order", ["C", "F"])
def test_nifti_writing_is_nibabels_file_gzipped_deterministically(tmp_path, order):
    """ISA-L gzip: nibabel reads it back exactly, the bytes repeat, and unzipped it is nib.save's file."""
    import gzip
    rng = np.random.default_rng(0)
    affine = oblique_affine()
    for dtype in (np.int16, np.uint8, np.uint16, np.float32):
        array = np.asarray(rng.integers(0, 200, (23, 19, 11)), dtype=dtype, order=order)
        save(Volume(array, affine), tmp_path / "a.nii.gz")
        first = (tmp_path / "a.nii.gz").read_bytes()
        save(Volume(array, affine), tmp_path / "a.nii.gz")
        assert (tmp_path / "a.nii.gz").read_bytes() == first and first[:2] == b"\x1f\x8b"
        assert first[3] == 0 and first[4:8] == bytes(4)  # no file name (the temporary one), mtime 0
        img = nib.load(tmp_path / "a.nii.gz")
        assert img.get_data_dtype() == dtype
        np.testing.assert_array_equal(np.asarray(img.dataobj), array)
        np.testing.assert_allclose(img.affine, affine, atol=1e-6)
        save(Volume(array, affine), tmp_path / "a.nii")  # uncompressed on request
        raw = (tmp_path / "a.nii").read_bytes()
        assert gzip.decompress(first) == raw
        ref = nib.Nifti1Image(array, affine)
        ref.header.set_xyzt_units("mm")
        ref.set_sform(affine, code=1)
        ref.set_qform(affine, code=1)
        nib.save(ref, tmp_path / "ref.nii")
        assert (tmp_path / "ref.nii").read_bytes() == raw


def test_written_nifti_reads_in_itk(tmp_path):
    """ITK (SimpleITK, which TorchIO brings) reads the ISA-L gzip stream: same voxels and spacing."""
    sitk = pytest.importorskip("SimpleITK")
    array = np.asarray(np.random.default_rng(1).integers(-1000, 400, (17, 13, 9)), dtype=np.int16, order="F")
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    save(Volume(array, affine), tmp_path / "a.nii.gz")
    img = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), array)
    assert img.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
