"""Dataset ingestion: MSD, generic folders, single pairs; catalog rows; bad input; idempotent reruns."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from _casegen import AFFINE, make_msd, small_case
from _dicomgen import write_series
import synthlung.io as sio
from synthlung import Volume, ingest, load, load_catalog, save
from synthlung.cli import main
from synthlung.errors import InputError


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    """Temporary or half-written files under ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def lung1_nifti(lung1_paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lung1nii")
    for src, name in zip(lung1_paths, ("image", "label")):
        save(load(src), folder / f"{name}.nii.gz")
    return folder / "image.nii.gz", folder / "label.nii.gz"


def test_msd_folder_from_real_data(tmp_path, lung1_nifti, chest_ct_path):
    root = tmp_path / "Task06_Lung"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    os.symlink(lung1_nifti[0], root / "imagesTr" / "lung_001.nii.gz")
    os.symlink(lung1_nifti[1], root / "labelsTr" / "lung_001.nii.gz")
    os.symlink(chest_ct_path, root / "imagesTr" / "lung_002.nii.gz")
    chest = load(chest_ct_path)
    save(chest.with_array(np.zeros(chest.shape, np.uint8)), root / "labelsTr" / "lung_002.nii.gz")
    for f in list(root.rglob("*.nii.gz")):
        (f.parent / f"._{f.name}").write_bytes(b"junk")
    (root / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"},
        {"image": "./imagesTr/lung_002.nii.gz", "label": "./labelsTr/lung_002.nii.gz"}]}))

    catalog = ingest(root, tmp_path / "out")
    assert catalog.format == "msd" and [c.id for c in catalog.cases] == ["lung_001", "lung_002"]
    rows = json.loads((tmp_path / "out" / "catalog.json").read_text())
    assert rows["schema_version"] == 1 and rows["n_cases"] == 2 and rows["n_failed"] == 0
    lung, host = rows["cases"]
    assert lung["shape"] == [512, 512, 48] and host["shape"] == [233, 167, 191]
    np.testing.assert_allclose(lung["spacing_mm"], [0.5703125, 0.5703125, 5.0])
    np.testing.assert_allclose(host["spacing_mm"], [1.5, 1.5, 1.5])
    assert lung["orientation"] == ["L", "P", "S"]
    assert lung["tumor_voxels"] == 837 and host["tumor_voxels"] == 0
    assert lung["tumor_volume_mm3"] == pytest.approx(837 * 0.5703125 ** 2 * 5.0, rel=1e-6)
    assert host["hu_range"] == [int(chest.array.min()), int(chest.array.max())]
    assert lung["sha256"]["image"] == sha256(lung1_nifti[0])
    assert lung["sha256"]["label"] == sha256(lung1_nifti[1])
    assert lung["image"] == str(root / "imagesTr" / "lung_001.nii.gz") and lung["errors"] == []


def test_generic_folder_with_unlabeled_host(tmp_path, lung1_paths, chest_ct_path):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(lung1_paths[0], src / "lung1_image.nrrd")
    os.symlink(lung1_paths[1], src / "lung1_label.nrrd")
    os.symlink(chest_ct_path, src / "chest_image.nii.gz")
    (src / "._chest_image.nii.gz").write_bytes(b"junk")
    (src / "README.txt").write_text("not an image")
    catalog = ingest(src, tmp_path / "out")
    assert catalog.format == "folder"
    by_id = {c.id: c for c in catalog.cases}
    assert sorted(by_id) == ["chest", "lung1"]
    assert by_id["chest"].label is None and by_id["chest"].tumor_voxels is None
    assert by_id["chest"].sha256["label"] is None and by_id["chest"].shape == [233, 167, 191]
    assert by_id["lung1"].tumor_voxels == 837
    assert [c.id for c in catalog.unlabeled] == ["chest"] and [c.id for c in catalog.labeled] == ["lung1"]


# ---------------------------------------------------------------- layouts (synthetic)

def test_msd_ignores_junk_and_test_list(tmp_path):
    src = make_msd(tmp_path / "msd")
    catalog = ingest(src, tmp_path / "out")
    assert [c.id for c in catalog.cases] == ["lung_001", "lung_002"]
    assert all(c.ok and c.tumor_voxels == 12 for c in catalog.cases)
    assert catalog.cases[0].tumor_volume_mm3 == pytest.approx(12 * 0.8 * 0.7 * 2.5)
    assert catalog.cases[0].hu_range[0] == -1000 and catalog.cases[0].orientation == ["L", "P", "S"]
    again = load_catalog(tmp_path / "out")
    assert [c.to_json() for c in again.cases] == [c.to_json() for c in catalog.cases]


def test_images_labels_folders_and_dicom_image(tmp_path):
    src = tmp_path / "src"
    small_case(src, "images/a.nii.gz", "labels/a.nrrd")
    small_case(src, "images/b.nrrd", None, seed=1)
    stored = np.full((6, 5, 4), 24, np.uint16)            # -1000 HU after intercept -1024
    write_series(src / "images" / "c", stored)
    catalog = ingest(src, tmp_path / "out")
    by_id = {c.id: c for c in catalog.cases}
    assert sorted(by_id) == ["a", "b", "c"]
    assert by_id["a"].tumor_voxels == 12 and by_id["b"].label is None
    assert by_id["c"].shape == [6, 5, 4] and by_id["c"].hu_range == [-1000, -1000]
    assert by_id["c"].sha256["image"] and by_id["c"].label is None


def test_pair_with_label_option_and_sibling(tmp_path):
    small_case(tmp_path, "x_image.nii.gz", "x_label.nii.gz")
    small_case(tmp_path, "scan.nrrd", "mask.nrrd", seed=2)
    sib = ingest(tmp_path / "x_image.nii.gz", tmp_path / "o1")
    assert sib.format == "pair" and sib.cases[0].id == "x" and sib.cases[0].tumor_voxels == 12
    opt = ingest(tmp_path / "scan.nrrd", tmp_path / "o2", label=tmp_path / "mask.nrrd")
    assert opt.cases[0].id == "scan" and opt.cases[0].label_path() == tmp_path / "mask.nrrd"
    alone = ingest(tmp_path / "scan.nrrd", tmp_path / "o3")
    assert alone.cases[0].label is None


def test_canonical_copies(tmp_path):
    src = make_msd(tmp_path / "msd", names=("lung_001",))
    catalog = ingest(src, tmp_path / "out", canonical=True)
    case = catalog.cases[0]
    assert case.image == "images/lung_001.nii.gz" and case.label == "labels/lung_001.nii.gz"
    assert case.orientation == ["R", "A", "S"]
    copy = load(case.image_path())
    want = load(src / "imagesTr" / "lung_001.nii.gz", canonical=True)
    np.testing.assert_array_equal(copy.array, want.array)
    np.testing.assert_allclose(copy.affine, want.affine)
    assert copy.orientation == ("R", "A", "S") and load(case.label_path()).array.dtype == np.uint8
    assert case.sha256["image"] == sha256(case.image_path())
    assert case.source["sha256"]["image"] == sha256(src / "imagesTr" / "lung_001.nii.gz")
    assert not leftovers(tmp_path / "out")


def test_rerun_is_idempotent_and_redoes_only_changed_cases(tmp_path, monkeypatch):
    src = make_msd(tmp_path / "msd")
    first = (ingest(src, tmp_path / "out", canonical=True), (tmp_path / "out" / "catalog.json").read_text())
    calls = []
    real_load = sio.load
    monkeypatch.setattr(sio, "load", lambda path, **kw: calls.append(Path(path).name) or real_load(path, **kw))
    ingest(src, tmp_path / "out", canonical=True)
    assert calls == [] and (tmp_path / "out" / "catalog.json").read_text() == first[1]
    vol, _ = small_case(tmp_path / "other", "img.nii.gz", None, seed=9)
    save(vol, src / "imagesTr" / "lung_002.nii.gz")
    again = ingest(src, tmp_path / "out", canonical=True)
    assert calls == ["lung_002.nii.gz", "lung_002.nii.gz"]            # its image and label, nothing else
    assert again.cases[0].to_json() == first[0].cases[0].to_json()
    assert again.cases[1].source["sha256"]["image"] != first[0].cases[1].source["sha256"]["image"]
    (tmp_path / "out" / "images" / "lung_001.nii.gz").unlink()        # a lost copy is rebuilt
    calls.clear()
    ingest(src, tmp_path / "out", canonical=True)
    assert calls == ["lung_001.nii.gz", "lung_001.nii.gz"]


# ---------------------------------------------------------------- bad input

def _shape(src):
    save(Volume(np.zeros((10, 9, 5), np.uint8), AFFINE), src / "labelsTr" / "lung_002.nii.gz")
    return "lung_002.nii.gz", r"shape \(10, 9, 5\) differs"


def _affine(src):
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01
    save(Volume(np.zeros((10, 9, 6), np.uint8), shifted), src / "labelsTr" / "lung_002.nii.gz")
    return "lung_002.nii.gz", "affine differs"


def _truncated(src):
    f = src / "imagesTr" / "lung_002.nii.gz"
    f.write_bytes(f.read_bytes()[:200])
    return "lung_002.nii.gz", "cannot read nifti"


def _corrupt(src):
    f = src / "labelsTr" / "lung_002.nii.gz"
    blob = bytearray(f.read_bytes())
    blob[20:60] = b"\xff" * 40
    f.write_bytes(bytes(blob))
    return "lung_002.nii.gz", "cannot read nifti"


def _unreadable(src):
    (src / "imagesTr" / "lung_002.nii.gz").write_text("this is not an image")
    return "lung_002.nii.gz", "cannot read nifti"


def _labels(src):
    lab = np.zeros((10, 9, 6), np.uint8)
    lab[1, 1, 1], lab[2, 2, 2] = 2, 7
    save(Volume(lab, AFFINE), src / "labelsTr" / "lung_002.nii.gz")
    return "lung_002.nii.gz", r"values other than 0/1 found \(2, 7\)"


def _entry(value, key="image"):
    def breaker(src):
        meta = json.loads((src / "dataset.json").read_text())
        meta["training"][1][key] = value
        (src / "dataset.json").write_text(json.dumps(meta))
        return "dataset.json", {"../outside.nii.gz": "points outside the dataset folder",
                                "/abs/lung.nii.gz": "outside the dataset folder \\(absolute path\\)",
                                "./imagesTr/gone.nii.gz": "is missing"}[value]
    breaker.__name__ = f"_entry_{key}_{value}"
    return breaker


@pytest.mark.parametrize("breaker", [_shape, _affine, _truncated, _corrupt, _unreadable, _labels,
                                     _entry("../outside.nii.gz"), _entry("/abs/lung.nii.gz"),
                                     _entry("./imagesTr/gone.nii.gz"), _entry("../outside.nii.gz", "label")],
                         ids=lambda b: b.__name__.strip("_"))
def test_bad_case(tmp_path, capsys, breaker):
    src = make_msd(tmp_path / "msd")
    small_case(tmp_path, "outside.nii.gz", "outside_label.nii.gz")
    fname, message = breaker(src)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message) as info:
        ingest(src, out)
    assert fname in str(info.value)
    assert not (out / "catalog.json").exists() and not leftovers(tmp_path)

    capsys.readouterr()
    assert main(["ingest", str(src), str(out)]) == 1
    err = "".join(capsys.readouterr().err.split())
    assert fname in err and "error" in err
    assert not (out / "catalog.json").exists() and not leftovers(tmp_path)

    assert main(["ingest", str(src), str(out), "--skip-bad"]) == 1
    catalog = load_catalog(out)
    good, bad = catalog.cases
    assert good.ok and good.tumor_voxels == 12
    assert len(bad.errors) == 1 and fname in bad.errors[0] and bad.shape is None
    assert catalog.failed == [bad] and json.loads((out / "catalog.json").read_text())["n_failed"] == 1
    assert not leftovers(tmp_path)


def test_grid_within_tolerance_is_accepted(tmp_path):
    src = make_msd(tmp_path / "msd")
    shifted = AFFINE.copy()
    shifted[:3, 3] += 2e-4
    save(Volume(load(src / "labelsTr" / "lung_002.nii.gz").array, shifted), src / "labelsTr" / "lung_002.nii.gz")
    assert not ingest(src, tmp_path / "out").failed


def test_bad_dataset_json_and_empty_folder(tmp_path):
    src = make_msd(tmp_path / "msd")
    (src / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="dataset.json: not a valid MSD dataset.json"):
        ingest(src, tmp_path / "out")
    assert main(["ingest", str(src), str(tmp_path / "out"), "--skip-bad"]) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no cases found"):
        ingest(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(InputError, match="unknown dataset format"):
        ingest(src, tmp_path / "out", format="zip")
    assert not (tmp_path / "out").exists()


def test_orphan_label_is_a_bad_case(tmp_path):
    small_case(tmp_path / "src", "a_image.nii.gz", "a_label.nii.gz")
    small_case(tmp_path / "src", "b_label.nii.gz", None)
    catalog = ingest(tmp_path / "src", tmp_path / "out", skip_bad=True)
    assert [c.ok for c in catalog.cases] == [True, False]
    assert "label without a matching image" in catalog.cases[1].errors[0]
