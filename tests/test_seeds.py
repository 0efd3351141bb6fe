"""Tumor seeds and the seed bank, on lung1 and on synthetic labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

import synthlung
from synthlung.cli import main
from synthlung.errors import InputError
from synthlung.seeds import SeedBank, build_seed_bank
from synthlung.seeds.extraction import soft_mask
from synthlung.volume import Volume


@pytest.fixture(scope="module")
def lung1(lung1_paths):
    return synthlung.load(lung1_paths[0]), synthlung.load(lung1_paths[1])


@pytest.mark.realdata
def test_lung1_gives_one_seed(lung1):
    image, label = lung1
    seeds = synthlung.extract_seeds(image, label, case_id="lung1", source={"sha256": {"image": "x"}},
                                    reslice_mm=None)
    assert len(seeds) == 1
    seed = seeds[0]
    rec = seed.record
    assert rec["n_voxels"] == 837 == int(seed.mask.array.sum())
    assert rec["volume_mm3"] == pytest.approx(1361.2, abs=0.1)
    assert rec["equivalent_diameter_mm"] == pytest.approx((6 * rec["volume_mm3"] / np.pi) ** (1 / 3))
    assert rec["case_id"] == "lung1" and rec["source"] == {"sha256": {"image": "x"}}
    assert not rec["clipped"]
    # the crop holds the whole tumor, at the same world place as in the source
    lo = np.array(rec["crop_lo"])
    np.testing.assert_allclose(seed.affine[:3, 3], image.voxel_to_world(lo))
    box = tuple(slice(a, b) for a, b in zip(rec["crop_lo"], rec["crop_hi"]))
    np.testing.assert_array_equal(seed.image.array, image.array[box])
    np.testing.assert_array_equal(seed.mask.array, label.array[box] > 0)
    inside = image.array[box][seed.mask.array > 0]
    assert rec["hu_mean"] == pytest.approx(inside.mean()) and rec["hu_std"] == pytest.approx(inside.std())
    assert -200 < rec["hu_mean"] < 100  # soft tissue
    # margin of 10 mm on each side: 18 voxels in-plane (0.57 mm), 2 slices (5 mm)
    grow = np.array(rec["bbox_lo"]) - lo
    np.testing.assert_array_equal(grow, [18, 18, 2])
    np.testing.assert_array_equal(np.array(rec["crop_hi"]) - rec["bbox_hi"], [18, 18, 2])
    ijk = np.argwhere(label.array > 0).mean(0)
    np.testing.assert_allclose(rec["centroid_mm"], image.voxel_to_world(ijk))
    assert ((seed.soft_mask.array >= 0.5) == seed.mask.array.astype(bool)).all()


def _blob_volume(spacing=(1.0, 1.5, 2.5)):
    """Two balls (big and small) and a 2-voxel speck on a 40x30x20 grid; image = 40 HU inside."""
    shape = (40, 30, 20)
    zz, yy, xx = np.indices(shape)
    big = (zz - 12) ** 2 + (yy - 15) ** 2 + (xx - 10) ** 2 <= 36
    small = (zz - 33) ** 2 + (yy - 25) ** 2 + (xx - 16) ** 2 <= 4
    label = (big | small).astype(np.uint8)
    label[1, 0:2, 0] = 1  # touches the volume edge
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-20, 5, 100]
    image = np.where(label > 0, 40, -800).astype(np.int16)
    return Volume(image, affine), Volume(label, affine)


def test_margin_in_mm_and_min_volume():
    image, label = _blob_volume()
    seeds = synthlung.extract_seeds(image, label, margin_mm=5.0, min_volume_mm3=0.0, case_id="blob")
    assert [s.record["n_voxels"] for s in seeds] == [2, int(label.array[..., :].sum()) - 2 - 33, 33]
    speck, big, small = seeds
    assert speck.record["clipped"] and not big.record["clipped"]
    np.testing.assert_array_equal(np.array(big.record["bbox_lo"]) - big.record["crop_lo"], [5, 4, 2])
    assert big.record["volume_mm3"] == pytest.approx(big.record["n_voxels"] * 1.0 * 1.5 * 2.5)
    assert big.record["hu_mean"] == 40 and big.record["hu_std"] == 0
    kept = synthlung.extract_seeds(image, label, margin_mm=5.0, min_volume_mm3=33 * 3.75 + 1)
    assert [s.record["component"] for s in kept] == [big.record["component"]]
    assert len({s.id for s in seeds}) == 3


def test_other_components_zeroed():
    image, label = _blob_volume()
    near = label.array.copy()
    near[20:22, 15, 10] = 1  # a second blob inside the big one's crop, not touching it
    near[19, 15, 10] = 0
    seeds = synthlung.extract_seeds(image, Volume(near, label.affine), margin_mm=8.0, min_volume_mm3=0,
                                    reslice_mm=None)
    for s in seeds:
        assert s.mask.array.sum() == s.record["n_voxels"]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.57, 0.57, 5.0)])
def test_soft_mask_threshold_is_mask(spacing):
    zz, yy, xx = np.indices((20, 21, 9))
    mask = (((zz - 9) * spacing[0]) ** 2 + ((yy - 11) * spacing[1]) ** 2 + ((xx - 4) * spacing[2]) ** 2
            <= 49).astype(np.uint8)
    mask[2, 2:5, 1] = 1
    assert 0 < mask.sum() < mask.size
    soft = soft_mask(mask, spacing, 2 * min(spacing))
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    np.testing.assert_array_equal(soft >= 0.5, mask.astype(bool))
    assert ((soft > 0) & (soft < 1)).any()  # a real ramp, not a copy of the mask


def test_bad_pair():
    image, label = _blob_volume()
    with pytest.raises(InputError, match="shape"):
        synthlung.extract_seeds(image, Volume(label.array[:-1], label.affine))
    with pytest.raises(InputError, match="affine"):
        synthlung.extract_seeds(image, Volume(label.array, np.eye(4)))


def test_bank_round_trip_and_replace(tmp_path):
    image, label = _blob_volume()
    seeds = synthlung.extract_seeds(image, label, margin_mm=3.0, min_volume_mm3=0, case_id="a",
                                    source={"sha256": {"image": "1"}})
    bank = SeedBank.write(seeds, tmp_path / "bank")
    again = SeedBank.open(tmp_path / "bank" / "index.json")
    assert len(again) == 3 and again.ids == [s.id for s in seeds]
    for s in seeds:
        got = again.get(s.id)
        assert got.image.array.dtype == np.int16 and got.mask.array.dtype == np.uint8
        np.testing.assert_array_equal(got.image.array, s.image.array)
        np.testing.assert_array_equal(got.mask.array, s.mask.array)
        np.testing.assert_array_equal(got.soft_mask.array, s.soft_mask.array)
        np.testing.assert_array_equal(got.affine, s.affine)
        assert got.record == json.loads(json.dumps(s.record))
    assert again[1].id == seeds[1].id
    # another case is appended; re-adding case "a" with one seed replaces its three
    b = synthlung.extract_seeds(image, label, margin_mm=3.0, min_volume_mm3=130, case_id="b")
    bank.add(b)
    bank.add(synthlung.extract_seeds(image, label, 3.0, 130, case_id="a"))
    final = SeedBank.open(tmp_path / "bank")
    assert sorted(final.ids) == ["a-c002", "b-c002"]
    assert sorted(p.name for p in (tmp_path / "bank" / "seeds").iterdir()) == ["a-c002.npz", "b-c002.npz"]
    assert not list((tmp_path / "bank" / "seeds").glob(".*"))  # no temporary files left
    with pytest.raises(InputError, match="no seed"):
        final.get("nope")


def test_bank_open_errors(tmp_path):
    with pytest.raises(InputError, match="no seed bank"):
        SeedBank.open(tmp_path)
    (tmp_path / "index.json").write_text('{"schema_version": 99}')
    with pytest.raises(InputError, match="schema_version"):
        SeedBank.open(tmp_path)


def _catalog(tmp_path, lung1_paths):
    assert main(["ingest", str(lung1_paths[0]), str(tmp_path / "cat"), "--label", str(lung1_paths[1])]) == 0
    return tmp_path / "cat" / "catalog.json"


@pytest.mark.realdata
def test_cli_seeds_rerun_skips(tmp_path, lung1_paths, monkeypatch):
    catalog = _catalog(tmp_path, lung1_paths)
    out = tmp_path / "bank"
    assert main(["seeds", str(catalog), str(out)]) == 0
    bank = SeedBank.open(out)
    assert len(bank) == 1 and bank.records[0]["n_voxels"] == 837
    assert bank.records[0]["source"]["sha256"]["image"].startswith("379fa48b")
    mtime = (out / bank.records[0]["file"]).stat().st_mtime_ns
    report = build_seed_bank(catalog, out)
    assert report.reused == [bank.records[0]["case_id"]] and report.done == []
    assert (out / bank.records[0]["file"]).stat().st_mtime_ns == mtime
    report = build_seed_bank(catalog, out, margin_mm=4.0)  # other parameters: redone
    assert report.done and SeedBank.open(out).records[0]["margin_mm"] == 4.0


@pytest.mark.realdata
def test_cli_seeds_skips_unlabeled_and_bad(tmp_path, lung1_paths, chest_ct_path):
    catalog = _catalog(tmp_path, lung1_paths)
    data = json.loads(catalog.read_text())
    case = data["cases"][0]
    data["cases"].append(dict(case, id="host", image=str(chest_ct_path), label=None))
    data["cases"].append(dict(case, id="broken", label=str(tmp_path / "missing.nrrd")))
    catalog.write_text(json.dumps(data))
    out = tmp_path / "bank"
    assert main(["seeds", str(catalog), str(out)]) == 1  # the missing label stops the run
    report = build_seed_bank(catalog, out, skip_bad=True)
    assert report.skipped == ["host"] and report.failed == ["broken"]
    assert any("no label" in n for n in report.notes)
    assert main(["seeds", str(catalog), str(out), "--skip-bad"]) == 1
    assert len(SeedBank.open(out)) == 1
