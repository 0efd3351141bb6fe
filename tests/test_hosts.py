"""Lung segmentation, placement zones and the host bank: phantom, real CT, gates, kernels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from synthlung.errors import InputError, MissingExtraError
from synthlung.hosts import HostBank, build_host_bank, make_host, placement_zone
from synthlung.kernels import block_mean, lung_refine
from synthlung.hosts.lungseg import lung_summary, segment_lungs
from synthlung.datasets.phantom import chest_phantom
from synthlung.volume import Volume
from _launches import on_device, on_host


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom():
    return chest_phantom()


@pytest.fixture(scope="module")
def phantom_lungs(phantom):
    return segment_lungs(phantom.image)


@pytest.fixture(scope="module")
def chest(chest_ct_path):
    from synthlung.io import load
    image = load(chest_ct_path)
    return image, segment_lungs(image, name=str(chest_ct_path))


def _trachea(image: Volume, lungs_gt=None, top_mm=40.0, radius_mm=14.0):
    """Air voxels near the midline in the top ``top_mm`` of a scan (the trachea), as a mask."""
    ijk = np.indices(image.shape).reshape(3, -1).T
    xyz = image.voxel_to_world(ijk).reshape(*image.shape, 3)
    z = xyz[..., 2]
    body_x = xyz[..., 0][image.array > -300].mean()
    mask = (image.array < -900) & (z > z.max() - top_mm) & (np.abs(xyz[..., 0] - body_x) < radius_mm)
    if lungs_gt is not None:
        mask &= lungs_gt == 0
    return mask


def test_phantom_lungs_match_ground_truth(phantom, phantom_lungs):
    out, gt = phantom_lungs.array, phantom.lungs.array
    assert out.dtype == np.uint8 and out.shape == gt.shape
    for value in (1, 2):
        assert _dice(out == value, gt == value) >= 0.97
    trachea = _trachea(phantom.image, gt)
    assert trachea.sum() > 50
    assert not (out[trachea] > 0).any()
    from scipy import ndimage
    depth = ndimage.distance_transform_edt(gt > 0, sampling=phantom.image.spacing)
    # Vessels inside the lung (not where they cross its surface at the hilum).
    vessels = (depth > 8.0) & (phantom.image.array > -300) & (phantom.label.array == 0)
    assert vessels.sum() > 500
    assert (out[vessels] > 0).mean() > 0.97


def test_phantom_tumors_inside_lung_mask(phantom, phantom_lungs):
    # Large (up to 28 mm) juxtapleural tumours against the chest wall: the pleural closing takes them in.
    assert (phantom_lungs.array[phantom.label.array > 0] > 0).mean() > 0.9
    without = segment_lungs(phantom.image, pleural_mm=0.0).array
    assert (without[phantom.label.array > 0] > 0).mean() < 0.6  # the test sees what the pleural step does


def test_left_right_follow_world_coordinates_not_array_axes(phantom, phantom_lungs):
    # The same CT stored with axes flipped toward L, P (as NRRD/DICOM often are): labels follow anatomy.
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = phantom.image.affine.copy()
    affine[:3, :] = (flip @ affine)[:3, :]
    shape = np.array(phantom.image.shape)
    affine[:2, 3] = -(phantom.image.affine[:2, 3] + phantom.image.affine[:2, :2].diagonal() * (shape[:2] - 1))
    flipped = Volume(np.ascontiguousarray(phantom.image.array[::-1, ::-1]), flip @ phantom.image.affine)
    out = segment_lungs(flipped).array[::-1, ::-1]
    assert np.array_equal(out == 1, phantom_lungs.array == 1)


def test_thick_slices_hold_in_mm():
    ph = chest_phantom(shape=(160, 128, 56), spacing_mm=(2.0, 2.0, 5.0), n_tumors=2, seed=4)
    out = segment_lungs(ph.image).array
    for value in (1, 2):
        assert _dice(out == value, ph.lungs.array == value) >= 0.95


def test_no_lungs_and_one_lung_and_volume_gates(phantom):
    hu = phantom.image.array.copy()
    gt = phantom.lungs.array
    no_lungs = phantom.image.with_array(np.where(gt > 0, 40, hu).astype(np.int16))
    with pytest.raises(InputError, match="no lungs found in scan-x"):
        segment_lungs(no_lungs, name="scan-x")
    one = phantom.image.with_array(np.where(gt == 2, 40, hu).astype(np.int16))
    with pytest.raises(InputError, match="only one lung found.*left lung"):
        segment_lungs(one)
    with pytest.warns(UserWarning, match="only one lung"):
        out = segment_lungs(one, allow_one_lung=True).array
    assert (out == 1).sum() > 0 and (out == 2).sum() == 0
    tiny = chest_phantom(shape=(80, 64, 56), spacing_mm=(1.0, 1.0, 1.25), n_tumors=0)
    with pytest.raises(InputError, match="implausible lung volume"):
        segment_lungs(tiny.image)


def test_raw_units_warn(phantom):
    from synthlung.io.hu import RawUnitsWarning
    raw = phantom.image.with_array((phantom.image.array.astype(np.int32) + 1024).astype(np.uint16))
    with pytest.warns(RawUnitsWarning, match="raw"), pytest.raises(InputError, match="no lungs"):
        segment_lungs(raw, name="raw.nii.gz")


def test_lungmask_method_needs_its_extra(phantom):
    try:
        import lungmask  # noqa: F401
        pytest.skip("lungmask is installed here; the missing-extra path cannot be exercised")
    except ImportError:
        pass
    with pytest.raises(MissingExtraError, match="synthlung\\[lungmask\\]"):
        segment_lungs(phantom.image, method="lungmask")
    with pytest.raises(InputError, match="method="):
        segment_lungs(phantom.image, method="magic")


def test_placement_zone_excludes_tumors_vessels_and_rim(phantom, phantom_lungs):
    pz = placement_zone(phantom.image, phantom_lungs, phantom.label, tumor_margin_mm=5.0, min_depth_mm=3.0)
    zone, dist = pz.zone.array, pz.distance_mm.array
    assert zone.dtype == bool and dist.dtype == np.float32
    assert not zone[phantom.label.array > 0].any()
    assert zone.sum() > 0.5 * (phantom_lungs.array > 0).sum()
    assert (phantom.image.array[zone] > -300).mean() < 0.01  # tumors and large vessels are out
    assert dist[phantom_lungs.array == 0].max() == 0
    assert dist[zone].min() > 3.0
    # Distances are in mm: the deepest lung point of a ~100 mm wide lung lies tens of mm inside.
    assert 20.0 < dist.max() < 80.0


def test_real_chest_ct_two_plausible_lungs_without_trachea(chest):
    image, lungs = chest
    s = lung_summary(lungs)
    assert 1000 <= s["left_ml"] <= 4000 and 1000 <= s["right_ml"] <= 4000
    assert 0.5 <= s["left_ml"] / s["right_ml"] <= 2.0
    trachea = _trachea(image, top_mm=80.0, radius_mm=12.0)
    assert trachea.sum() > 200
    assert (lungs.array[trachea] > 0).mean() < 0.02
    # The heart sits on the patient's left (negative world x): the left lung is the smaller one here.
    xs = {v: image.voxel_to_world(np.argwhere(lungs.array == v).mean(0))[0] for v in (1, 2)}
    assert xs[1] < xs[2]


def test_partial_coverage_finds_lung_bases_not_bowel_gas(chest):
    image, lungs = chest
    k = int(np.nonzero((lungs.array > 0).any((0, 1)))[0].min())  # lowest lung slice (axis 2 runs S)
    part = image.crop((0, 0, 0), (image.shape[0], image.shape[1], k + 30))  # bases + 45 mm and below
    out = segment_lungs(part, name="bases")
    s = lung_summary(out)
    assert s["partial_coverage"] and s["left_ml"] > 20 and s["right_ml"] > 20
    full = lungs.array[:, :, :k + 30] > 0
    extra = (out.array > 0) & ~full
    assert extra.sum() / (out.array > 0).sum() < 0.02  # little beyond what the full scan calls lung ...
    assert (part.array[extra] < -950).sum() < 0.005 * (out.array > 0).sum()  # ... and none of it gas
    from scipy import ndimage
    near_lung = ndimage.distance_transform_edt(~full, sampling=part.spacing) < 10.0
    gas = (part.array < -950) & ~near_lung  # bowel/stomach gas below the diaphragm
    assert gas.sum() > 1000
    assert (out.array[gas] > 0).mean() < 0.02


def test_partial_coverage_takes_no_gas_at_all(chest):
    # The splenic flexure's stool with gas bubbles has a lung-like block mean; its mottled texture
    # (gas and solid voxels mixed at full resolution) keeps it out.
    image, lungs = chest
    k = int(np.nonzero((lungs.array > 0).any((0, 1)))[0].min())
    part = image.crop((0, 0, 0), (image.shape[0], image.shape[1], k + 30))
    out = segment_lungs(part, name="bases").array
    from scipy import ndimage
    full = lungs.array[:, :, :k + 30] > 0
    gas = (part.array < -950) & (ndimage.distance_transform_edt(~full, sampling=part.spacing) >= 10.0)
    assert (out[gas] > 0).mean() < 0.001
    without = segment_lungs(part, name="bases", max_mottled_fraction=1.0).array
    assert (without[gas] > 0).mean() > 0.005  # the test sees what the texture rule does


def test_lung1_tumor_is_excluded_from_placement_zone(lung1_paths):
    from synthlung.io import load
    image, label = (load(p) for p in lung1_paths)
    host = make_host(image, label, host_id="lung1")
    tumor = label.array > 0
    assert tumor.sum() == 837
    assert (host.lungs.array[tumor] > 0).mean() > 0.9
    assert not host.zone.array[tumor].any()
    assert host.zone.array.sum() > 100_000
    assert host.record["id"] == "lung1" and host.record["left_ml"] > 500 and host.record["right_ml"] > 500


def test_abdominal_dicom_series_has_no_lungs(dicom_series_dir):
    from synthlung.io import load
    image = load(dicom_series_dir / "series")
    with pytest.raises(InputError, match="no lungs found in .*series"):
        segment_lungs(image, name=str(dicom_series_dir / "series"))


def test_kernels_cpu_cuda_reference_agree():
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 400, (11, 9, 7)).astype(np.int16)
    f = (3, 2, 4)
    ref = block_mean.reference(x, f)
    assert ref.shape == (4, 5, 2)
    np.testing.assert_allclose(block_mean.cpu(x, f), ref, atol=1e-3)
    np.testing.assert_allclose(on_host(block_mean.cuda(on_device(x), f)), ref, atol=1e-3)  # CuPy on a GPU
    labels = rng.integers(0, 3, ref.shape).astype(np.uint8)
    core = (rng.random(ref.shape) < 0.5).astype(np.uint8)
    want = lung_refine.reference(x, labels, core, f, -400.0)
    assert np.array_equal(lung_refine.cpu(x, labels, core, f, -400.0), want)
    assert np.array_equal(on_host(lung_refine.cuda(*on_device(x, labels, core), f, -400.0)), want)
    with pytest.raises(InputError):
        lung_refine.cpu(x, labels[:-1], core, f, -400.0)


def test_cuda_kernels_give_the_same_mask_on_a_small_phantom():
    # CUDA path of the kernels (simulator without a GPU; on NumPy arrays the rest is the same code).
    ph = chest_phantom(shape=(24, 20, 18), spacing_mm=(13.0, 13.0, 15.0), n_tumors=0)
    kw = dict(coarse_mm=26.0, closing_mm=20.0, volume_range_l=(0.1, 20.0))
    cpu = segment_lungs(ph.image, backend="cpu", **kw).array
    assert (cpu == 1).any() and (cpu == 2).any()
    assert np.array_equal(segment_lungs(ph.image, backend="cuda", **kw).array, cpu)


@pytest.mark.gpu
def test_cupy_input_stays_on_gpu(phantom, phantom_lungs):
    import cupy
    image = phantom.image.with_array(cupy.asarray(phantom.image.array))
    out = segment_lungs(image)
    assert isinstance(out.array, cupy.ndarray)
    assert np.array_equal(out.array.get(), phantom_lungs.array)
    pz = placement_zone(image, out, phantom.label.with_array(cupy.asarray(phantom.label.array)))
    assert isinstance(pz.zone.array, cupy.ndarray)


def test_host_bank_build_open_and_cli(tmp_path, phantom):
    from synthlung.cli import main
    from synthlung.datasets import ingest
    from synthlung.io import save
    src = tmp_path / "src"
    save(phantom.image, src / "a_image.nii.gz")
    save(phantom.label, src / "a_label.nii.gz")
    no_lungs = phantom.image.with_array(np.where(phantom.lungs.array > 0, 40, phantom.image.array).astype(np.int16))
    save(no_lungs, src / "b_image.nii.gz")
    ingest(src, tmp_path / "cat", format="folder")
    with pytest.raises(InputError, match="no lungs found"):
        build_host_bank(tmp_path / "cat", tmp_path / "bank0")
    assert main(["hosts", str(tmp_path / "cat"), str(tmp_path / "bank"), "--skip-bad"]) == 1
    index = json.loads((tmp_path / "bank" / "index.json").read_text())
    assert [h["id"] for h in index["hosts"]] == ["a"] and [e["id"] for e in index["errors"]] == ["b"]
    rec = index["hosts"][0]["record"]
    assert rec["sha256"]["image"] and rec["left_ml"] > 1000 and rec["partial_coverage"] is False
    bank = HostBank.open(tmp_path / "bank")
    assert len(bank) == 1
    host = bank[0]
    # the soft-tissue noise is measured when the bank is built, as host_noise would measure it
    from synthlung.hosts.noise import host_noise, measure_noise
    assert rec["soft_tissue_noise"] == json.loads(json.dumps(measure_noise(phantom.image, "a").to_record()))
    assert host_noise(host) == host_noise(make_host(phantom.image, phantom.label, host_id="a"))
    assert host.lungs.array.dtype == np.uint8 and np.allclose(host.lungs.affine, phantom.image.affine)
    assert not host.zone.array[phantom.label.array > 0].any()
    assert not list((tmp_path / "bank" / "lungs").glob(".*tmp*"))
    with pytest.raises(InputError, match="host bank"):
        HostBank.open(tmp_path / "cat")


def test_host_bank_rerun_reuses_unchanged_hosts(tmp_path, phantom, monkeypatch):
    from synthlung.hosts import bank as hosts_module
    from synthlung.datasets import ingest
    from synthlung.io import save
    save(phantom.image, tmp_path / "src" / "a_image.nii.gz")
    ingest(tmp_path / "src", tmp_path / "cat", format="folder")
    first = build_host_bank(tmp_path / "cat", tmp_path / "bank")

    def no_segmenting(*args, **kwargs):
        raise AssertionError("an unchanged host was segmented again")
    monkeypatch.setattr(hosts_module, "_host_entry", no_segmenting)
    assert build_host_bank(tmp_path / "cat", tmp_path / "bank") == first
    # Another method is a change: that host is made again.
    with pytest.raises(AssertionError, match="segmented again"):
        build_host_bank(tmp_path / "cat", tmp_path / "bank", method="lungmask")


def test_host_noise_is_kept_per_record_entry_and_follows_a_new_one(phantom):
    from synthlung.hosts.noise import host_noise
    host = make_host(phantom.image, phantom.label, host_id="a")
    first = host_noise(host)
    assert host_noise(host) is first  # the prepared host's spectrum read once
    entry = dict(host.record["soft_tissue_noise"], std_hu=2.0 * first.std_hu)
    host.record["soft_tissue_noise"] = entry  # e.g. a host bank's record put in its place
    second = host_noise(host)
    assert second.std_hu == 2.0 * first.std_hu and second.nps == first.nps
    assert second.std_near((0, 0, 0), host.image.spacing) != first.std_near((0, 0, 0), host.image.spacing)
