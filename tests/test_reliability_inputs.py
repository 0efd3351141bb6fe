"""Bad input refused in one line naming the file and the value, through the Python API and the CLI,
on real data from ../shared/data where it applies."""
from __future__ import annotations

import gzip
import json
import shutil
import time

import nibabel as nib
import nrrd
import numpy as np
import pytest

from _casegen import make_msd, small_case
from _dicomgen import set_tag, write_series
from synthlung import Volume, label, load, save
from synthlung.cli import main
from synthlung.datasets import ingest, load_catalog
from synthlung.errors import InputError
from synthlung.io import to_canonical
from synthlung.seeds import SeedBank, build_seed_bank, extract_seeds


@pytest.fixture(scope="module")
def lung1(lung1_paths):
    return load(lung1_paths[0]), load(lung1_paths[1])


def _one_error_line(capsys) -> str:
    """The run's one ``error:`` line (a --skip-bad run also prints its one summary line)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and len(lines) <= 2, lines
    return errors[0]


# ---------------------------------------------------------------- intensities

def test_transform_refuses_a_ct_not_in_hu(lung1, tmp_path):
    """The on-the-fly transform given lung1 windowed to 0..1 or in raw stored units: refused the
    first time it is seen, naming the CT, before anything is prepared or kept."""
    from synthlung.run.transforms import RandInsertTumors
    image, tumour = lung1
    insert = RandInsertTumors(SeedBank.write(extract_seeds(image, tumour, case_id="lung1"), tmp_path / "seeds"))
    hu = image.array.astype(np.float32)
    lungs = (hu < -500).astype(np.uint8)
    for values, what in (((hu + 1000.0) / 1400.0, "normalised image"), (hu + 1024.0, "raw stored units")):
        with pytest.raises(InputError, match=f"lung1_image.nrrd: values range .*{what}.*before any intensity scaling"):
            insert.insert_with_key((0, 1), values, lungs, affine=image.affine, source="lung1_image.nrrd")
    assert len(insert.hosts) == 0


def test_transform_refuses_masks_in_another_grid(lung1, tmp_path):
    """lung1 as MONAI loads it, its lungs and label of the same shape but another affine (flipped
    along x): refused the first time the CT is seen, naming the mask; in the CT's grid, inserted."""
    torch = pytest.importorskip("torch")
    monai_data = pytest.importorskip("monai.data")
    from synthlung.run.transforms import RandInsertTumors
    image, tumour = lung1

    def meta(array, affine, name):
        return monai_data.MetaTensor(torch.from_numpy(np.ascontiguousarray(array))[None],
                                     affine=torch.as_tensor(affine), meta={"filename_or_obj": name})
    insert = RandInsertTumors(SeedBank.write(extract_seeds(image, tumour, case_id="lung1"), tmp_path / "seeds"))
    ct = meta(image.array, image.affine, "lung1_image.nrrd")
    lungs = (image.array < -500).astype(np.uint8)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ image.affine
    with pytest.raises(InputError, match="lungs.nii.gz: lungs in another grid than the image lung1_image.nrrd"):
        insert(ct, lungs=meta(lungs, flipped, "lungs.nii.gz"))
    with pytest.raises(InputError, match="lung1_label.nrrd: label in another grid .* resample"):
        insert(ct, lungs=meta(lungs, image.affine, "lungs.nii.gz"), label=meta(tumour.array, flipped, "lung1_label.nrrd"))
    assert len(insert.hosts) == 0
    insert(ct, lungs=meta(lungs, image.affine, "lungs.nii.gz"), label=meta(tumour.array, image.affine, "lung1_label.nrrd"))
    assert len(insert.hosts) == 1


def test_transform_warns_when_a_named_ct_is_prepared_again(tmp_path):
    """A named CT that comes back with other voxels is prepared again on every call, and the
    transform says so, once: a random transform before the insertion (noise added to the CT),
    or copy=False with a loader that hands every call the same arrays (the last call's tumours
    then stay in the image). A CT prepared again unchanged because the cache dropped it (more
    CTs than host_cache) gets its own warning, once; arrays without a name get none."""
    import warnings

    from synthlung.datasets.phantom import chest_phantom
    from synthlung.run.transforms import RandInsertTumors
    from synthlung.synthesis.case import SynthesisConfig
    shape, spacing = (96, 80, 64), (3.0, 3.0, 3.5)
    ct, other = (chest_phantom(shape=shape, spacing_mm=spacing, n_tumors=n, seed=s) for n, s in ((2, 3), (0, 8)))
    donor = chest_phantom(shape=shape, spacing_mm=spacing, n_tumors=3, seed=11)
    bank = SeedBank.write(extract_seeds(donor.image, donor.label, case_id="donor"), tmp_path / "seeds")
    config = SynthesisConfig(n_tumors=(2,))
    args = dict(lungs=ct.lungs.array, affine=ct.image.affine)
    rng = np.random.default_rng(0)

    def noisy():
        return (ct.image.array + rng.normal(0.0, 5.0, shape)).astype(ct.image.array.dtype)

    insert = RandInsertTumors(bank, config, host_cache=1)
    dropped = r"ct\.nii\.gz: prepared again, unchanged, after the host cache \(host_cache=1\) dropped it"
    with pytest.warns(UserWarning, match=dropped) as said:
        for k in range(2):  # one cache place for two CTs: each is dropped and prepared again, unchanged
            insert.insert_with_key((0, k), ct.image.array.copy(), source="ct.nii.gz", **args)
            insert.insert_with_key((1, k), other.image.array.copy(), lungs=other.lungs.array,
                                   affine=other.image.affine, source="other.nii.gz")
    assert insert.hosts.misses == 4 and len(said) == 1  # once, and not taken for a change
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unnamed = RandInsertTumors(bank, config)
        for k in range(2):  # no source, or an empty one (a MetaTensor's filename_or_obj may be "")
            unnamed.insert_with_key((2, k), noisy(), source="" if k else None, **args)
        assert unnamed.hosts.misses == 2
    with pytest.warns(UserWarning, match=r"ct\.nii\.gz: prepared again, its voxels.*before random intensity"):
        insert.insert_with_key((3, 0), noisy(), source="ct.nii.gz", **args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        insert.insert_with_key((3, 1), noisy(), source="ct.nii.gz", **args)
    assert insert.hosts.misses == 6

    in_place = RandInsertTumors(bank, config, copy=False)
    image = ct.image.array.copy()
    inserted = in_place.insert_with_key((4, 0), image, source="ct.nii.gz", **args)
    assert inserted.record["tumors_inserted"] == 2 and not np.array_equal(image, ct.image.array)
    with pytest.warns(UserWarning, match="with copy=False give each call its own copy"):
        in_place.insert_with_key((4, 1), image, source="ct.nii.gz", **args)  # last call's tumours in it


def test_non_finite_voxels_are_counted_and_refused(lung1, tmp_path, capsys):
    image, tumour = lung1
    values = image.array.astype(np.float32)
    values[100, 200, 10] = np.nan
    values[101, 200, 10] = np.inf
    values[300, 300, 30] = -np.inf
    save(image.with_array(values), tmp_path / "src" / "lung1_image.nii.gz")
    save(tumour, tmp_path / "src" / "lung1_label.nii.gz")
    with pytest.raises(InputError, match=r"lung1_image\.nii\.gz: 3 non-finite voxel\(s\) \(NaN or Inf\)"):
        load(tmp_path / "src" / "lung1_image.nii.gz")
    assert main(["ingest", str(tmp_path / "src"), str(tmp_path / "cat")]) == 1
    assert "3 non-finite voxel(s)" in _one_error_line(capsys)
    assert not (tmp_path / "cat" / "catalog.json").exists()


def test_normalised_and_raw_intensities_need_an_explicit_rescale(lung1, tmp_path, capsys):
    image, tumour = lung1
    hu = image.array.astype(np.float64)
    save(image.with_array(((hu + 1024) / 4096).astype(np.float32)), tmp_path / "norm" / "lung1_image.nii.gz")
    with pytest.raises(InputError, match=r"lung1_image\.nii\.gz: values range 0\.\.0\.9997\d+: this looks like a normalised.*hu_rescale"):
        load(tmp_path / "norm" / "lung1_image.nii.gz")
    back = load(tmp_path / "norm" / "lung1_image.nii.gz", hu_rescale=(4096, -1024))
    assert np.abs(back.array - hu).max() < 0.01
    # raw stored units through the CLI: refused, then ingested with --hu-rescale into HU copies
    save(image.with_array((image.array.astype(np.int32) + 1024).astype(np.uint16)),
         tmp_path / "raw" / "lung1_image.nii.gz")
    save(tumour, tmp_path / "raw" / "lung1_label.nii.gz")
    assert main(["ingest", str(tmp_path / "raw"), str(tmp_path / "cat")]) == 1
    assert "raw stored units" in _one_error_line(capsys)
    assert main(["ingest", str(tmp_path / "raw"), str(tmp_path / "cat"), "--hu-rescale", "1,-1024"]) == 0
    catalog = load_catalog(tmp_path / "cat")
    assert catalog.hu_rescale == (1.0, -1024.0)
    case = catalog.cases[0]
    assert case.image == "images/lung1.nii.gz" and case.hu_range == [int(image.array.min()), int(image.array.max())]
    assert np.array_equal(load(case.image_path()).array, image.array)
    build_seed_bank(catalog.path, tmp_path / "seeds")
    seed = SeedBank.open(tmp_path / "seeds")[0]
    assert -200 < float(seed.image.array[seed.mask.array > 0].mean()) < 200, "the tumour is in HU"


# ---------------------------------------------------------------- geometry

def _nifti_with(path, header_edit):
    img = nib.Nifti1Image(np.full((6, 5, 4), -1000, np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))
    img.header["vox_offset"] = 352
    header_edit(img.header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img.header.binaryblock + bytes(4) + np.full((6, 5, 4), -1000, "<i2").tobytes(order="F"))
    return path


def _zero_pixdim(h):
    h["sform_code"] = 0
    h["pixdim"][1] = 0.0


def _singular_sform(h):
    h["srow_x"] = [0.0, 0.0, 0.0, 0.0]


def _nan_sform(h):
    h["srow_y"] = [0.0, np.nan, 0.0, 0.0]


@pytest.mark.parametrize("edit,message", [
    (_zero_pixdim, r"voxel size \(pixdim\) \[0\.0, 0\.8, 2\.0\] mm"),
    (_singular_sform, r"voxel size \[0\.0, 0\.8, 2\.0\] mm"),
    (_nan_sform, "the affine must be a finite 4x4 matrix"),
])
def test_degenerate_nifti_geometry_is_refused(tmp_path, capsys, edit, message):
    path = _nifti_with(tmp_path / "src" / "bad.nii", edit)
    with pytest.raises(InputError, match=rf"bad\.nii: degenerate geometry: {message}"):
        load(path)
    assert main(["ingest", str(tmp_path / "src"), str(tmp_path / "cat"), "--skip-bad"]) == 1
    assert "degenerate geometry" in _one_error_line(capsys)
    assert load_catalog(tmp_path / "cat").failed[0].id == "bad"


def test_degenerate_nrrd_and_dicom_geometry_and_save(tmp_path):
    nrrd.write(str(tmp_path / "flat.nrrd"), np.zeros((4, 4, 4), np.int16),
               {"space": "left-posterior-superior", "space directions": np.diag([0.8, 0.8, 0.0])})
    with pytest.raises(InputError, match=r"flat\.nrrd: degenerate geometry: voxel size \[0\.8, 0\.8, 0\.0\]"):
        load(tmp_path / "flat.nrrd")
    skew = np.array([[1.0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])
    nrrd.write(str(tmp_path / "skew.nrrd"), np.zeros((4, 4, 4), np.int16),
               {"space": "left-posterior-superior", "space directions": skew})
    with pytest.raises(InputError, match=r"skew\.nrrd: degenerate geometry: singular affine"):
        load(tmp_path / "skew.nrrd")
    paths = write_series(tmp_path / "series", np.full((6, 5, 4), 24, np.uint16))
    for p in paths:
        set_tag(p, PixelSpacing=[0.0, 0.7])
    with pytest.raises(InputError, match=r"series: degenerate geometry: voxel size \[0\.7, 0\.0, 2\.5\] mm"):
        load(tmp_path / "series")
    with pytest.raises(InputError, match=r"out\.nii\.gz: degenerate geometry"):
        save(Volume(np.zeros((3, 3, 3), np.int16), np.diag([1.0, 0.0, 1.0, 1.0])), tmp_path / "out.nii.gz")


# ---------------------------------------------------------------- files that cannot hold their header's claim

def test_header_claiming_more_voxels_than_the_file_holds(tmp_path):
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    img.header.set_data_shape((1500, 1500, 1500))
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(img.header.binaryblock + bytes(4)))
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"huge\.nii\.gz: header claims 1500 x 1500 x 1500 voxels "
                                         r"\(6,750,000,000 bytes\) but the file can expand to at most"):
        load(tmp_path / "huge.nii.gz")
    assert time.perf_counter() - start < 2.0, "refused before allocating"
    img.header["vox_offset"] = 352
    (tmp_path / "huge.nii").write_bytes(img.header.binaryblock + bytes(4) + bytes(100))
    with pytest.raises(InputError, match=r"huge\.nii: header claims .* the file holds 100 bytes"):
        load(tmp_path / "huge.nii")
    (tmp_path / "huge.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4000 4000 4000\n"
                                         b"endian: little\nencoding: raw\n\n" + bytes(64))
    with pytest.raises(InputError, match=r"huge\.nrrd: header claims 4000 x 4000 x 4000 voxels"):
        load(tmp_path / "huge.nrrd")


# ---------------------------------------------------------------- DICOM: the real JPEG 2000 series, damaged

def _series_copy(dicom_series_dir, tmp_path):
    series = shutil.copytree(dicom_series_dir / "series", tmp_path / "series")
    victim = sorted(series.iterdir())[5]
    return series, victim, bytearray(victim.read_bytes())


def test_truncated_dicom_slice_is_named_as_truncated(dicom_series_dir, tmp_path, capsys):
    series, victim, blob = _series_copy(dicom_series_dir, tmp_path)
    victim.write_bytes(bytes(blob[: len(blob) * 3 // 4]))
    with pytest.raises(InputError, match=rf"{victim.name}: truncated or incomplete DICOM file "
                                         rf"\({len(blob) * 3 // 4} bytes"):
        load(series)
    assert main(["ingest", str(series), str(tmp_path / "cat")]) == 1
    assert "truncated or incomplete DICOM file" in _one_error_line(capsys)


def test_garbled_jpeg2000_codestream_header_is_refused(dicom_series_dir, tmp_path):
    series, victim, blob = _series_copy(dicom_series_dir, tmp_path)
    siz = blob.index(b"\xff\x4f\xff\x51") + 2          # SOC, then the SIZ marker segment
    ssiz = siz + 4 + 2 + 32 + 2                         # first component's precision byte
    assert blob[ssiz] == 11                             # 12 bits, as BitsStored says
    blob[ssiz] = 15                                     # garbled: the decoder now returns 16-bit values
    victim.write_bytes(bytes(blob))
    with pytest.raises(InputError, match=rf"{victim.name}: corrupt pixel data: stored values \d+\.\.\d+ "
                                         r"outside the 12 bits stored \(0\.\.4095\)"):
        load(series)


# ---------------------------------------------------------------- datasets and catalogs

def test_msd_training_entry_without_label_is_a_bad_case(tmp_path, capsys):
    root = make_msd(tmp_path / "Task06_Lung")
    meta = json.loads((root / "dataset.json").read_text())
    del meta["training"][1]["label"]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"training\[1\]: entry has no label; every MSD training scan"):
        ingest(root, tmp_path / "cat")
    assert main(["ingest", str(root), str(tmp_path / "cat"), "--skip-bad"]) == 1
    assert "entry has no label" in _one_error_line(capsys)
    catalog = load_catalog(tmp_path / "cat")
    assert [c.id for c in catalog.failed] == ["lung_002"] and not catalog.unlabeled


def test_folder_of_lone_healthy_scans_gives_hosts(tmp_path, chest_ct_path, lung1_paths):
    (tmp_path / "src").mkdir()
    shutil.copy(chest_ct_path, tmp_path / "src" / "chest_ct.nii.gz")
    for p in lung1_paths:
        shutil.copy(p, tmp_path / "src" / p.name)
    catalog = ingest(tmp_path / "src", tmp_path / "cat")
    assert [c.id for c in catalog.unlabeled] == ["chest_ct"] and [c.id for c in catalog.labeled] == ["lung1"]
    shutil.copy(chest_ct_path, tmp_path / "src" / "lung1.nii.gz")
    with pytest.raises(InputError, match="lung1.nii.gz and lung1_image.nrrd both give the case id 'lung1'"):
        ingest(tmp_path / "src", tmp_path / "cat")


@pytest.mark.parametrize("drop,message", [
    (("format",), "malformed catalog: catalog lacks key\\(s\\) format"),
    (("cases", 0, "image"), "malformed catalog: case 0 \\('a'\\) lacks key\\(s\\) image"),
])
def test_catalog_missing_a_key(tmp_path, capsys, drop, message):
    small_case(tmp_path / "src", "a_image.nii.gz", "a_label.nii.gz")
    ingest(tmp_path / "src", tmp_path / "cat")
    path = tmp_path / "cat" / "catalog.json"
    data = json.loads(path.read_text())
    holder = data
    for key in drop[:-1]:
        holder = holder[key]
    del holder[drop[-1]]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        load_catalog(path)
    assert main(["seeds", str(path), str(tmp_path / "seeds")]) == 1
    assert "malformed catalog" in _one_error_line(capsys)


# ---------------------------------------------------------------- seed banks

def test_unreadable_or_inconsistent_seed_files(tmp_path, lung1):
    image, tumour = lung1
    bank = SeedBank.write(extract_seeds(image, tumour, case_id="lung1"), tmp_path / "bank")
    path = bank.root / bank.records[0]["file"]
    good = path.read_bytes()
    for name, blob in [("zero-byte", b""), ("truncated", good[: len(good) // 2])]:
        path.write_bytes(blob)
        with pytest.raises(InputError, match=rf"{path.name}: cannot read seed file"):
            bank[0]
        with pytest.raises(InputError, match=rf"{path.name}: seed file changed since it was recorded"):
            bank.verify()
    with np.load(_bytes_file(tmp_path / "good.npz", good)) as data:
        arrays = dict(data)
    arrays["mask"] = arrays["mask"][:-1]
    np.savez_compressed(path, **arrays)
    with pytest.raises(InputError, match=rf"{path.name}: corrupt seed file: arrays of shapes image \(.*\), mask"):
        bank[0]


def _bytes_file(path, blob):
    path.write_bytes(blob)
    return path


def test_case_ids_that_sanitise_alike_keep_their_own_seed_files(tmp_path, lung1):
    image, tumour = lung1
    bank = SeedBank.open(tmp_path / "bank", create=True)
    for case_id in ("a b", "a_b"):
        bank.add(extract_seeds(image, tumour, case_id=case_id), case_id, {}, {})
    files = [r["file"] for r in bank.records]
    assert len(set(files)) == 2 and all((bank.root / f).is_file() for f in files)
    assert {bank[i].record["case_id"] for i in range(2)} == {"a b", "a_b"}
    bank.verify()


# ---------------------------------------------------------------- smaller API traps

def test_to_canonical_always_returns_a_copy(lung1):
    image = lung1[0]
    canon = to_canonical(image)
    again = to_canonical(canon)                         # already canonical: still a new array
    for out, src in ((canon, image), (again, canon)):
        assert out is not src and not np.shares_memory(out.array, src.array)
    assert np.array_equal(again.array, canon.array) and np.allclose(again.affine, canon.affine)


def test_label_on_a_2d_mask_with_its_default_connectivity(lung1):
    _, tumour = lung1
    plane = tumour.array[:, :, int(np.argmax(tumour.array.sum(axis=(0, 1))))] > 0
    labels, n = label(plane)
    from scipy import ndimage
    want, want_n = ndimage.label(plane, structure=np.ones((3, 3)))
    assert n == want_n >= 1 and np.array_equal(labels, want)
