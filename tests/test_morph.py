"""Seed morphing: parameters, records, exactness on the lattice, volume and centroid checks."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from synthlung.errors import InputError
from synthlung.synthesis.morphing import MorphParams, morph, rotation_from_euler
from synthlung.seeds.extraction import Seed, soft_mask
from synthlung.volume import Volume


def _blob_seed(shape, affine, radii_mm, noise_seed=0):
    """An ellipsoid tumour (40 HU) in lung (-800 HU) with noise, centred in the crop."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    grid = np.indices(shape).astype(np.float64)
    centre = (np.asarray(shape) - 1) / 2
    r2 = sum(((grid[a] - centre[a]) * spacing[a] / radii_mm[a]) ** 2 for a in range(3))
    mask = (r2 <= 1.0).astype(np.uint8)
    rng = np.random.default_rng(noise_seed)
    image = (np.where(mask, 40.0, -800.0) + rng.normal(0.0, 25.0, shape)).astype(np.int16)
    soft = soft_mask(mask, tuple(spacing), 2 * spacing.min())
    return Seed(image=Volume(image, affine), mask=Volume(mask, affine), soft_mask=Volume(soft, affine),
                record={"seed_id": "blob"})


def _volume_mm3(v: Volume) -> float:
    return float(np.asarray(v.array).astype(bool).sum() * np.prod(v.spacing))


def _centroid_mm(v: Volume) -> np.ndarray:
    return v.voxel_to_world(np.argwhere(np.asarray(v.array)).mean(axis=0))


ANISO = np.array([[0.0, 0.0, 1.3, 12.0], [-0.7, 0.0, 0.0, -4.0], [0.0, 0.8, 0.0, 30.5], [0, 0, 0, 1]])


def test_identity_at_own_spacing_reproduces_seed_exactly():
    seed = _blob_seed((15, 17, 11), ANISO, (4.0, 5.0, 5.5))
    out = morph(seed, MorphParams.identity())
    assert out.image.shape == seed.image.shape and np.array_equal(out.affine, seed.affine)
    assert np.array_equal(out.image.array, seed.image.array.astype(np.float32))
    assert np.array_equal(out.soft_mask.array, seed.soft_mask.array)
    assert np.array_equal(out.mask.array, seed.mask.array)
    assert out.lattice_offset == (0, 0, 0)


def test_integer_voxel_translation_is_exact():
    seed = _blob_seed((15, 17, 11), ANISO, (4.0, 5.0, 5.5))
    shift_vox = np.array([2, -3, 1])
    params = MorphParams(translation_mm=tuple(ANISO[:3, :3] @ shift_vox))
    out = morph(seed, params)
    assert out.lattice_offset == tuple(shift_vox)
    assert np.array_equal(out.image.array, seed.image.array.astype(np.float32))
    assert np.allclose(out.affine[:3, 3], seed.image.voxel_to_world(shift_vox))
    assert np.allclose(out.centre_world, _centroid_mm(seed.mask) + ANISO[:3, :3] @ shift_vox)


def test_quarter_turn_of_odd_cube_equals_rot90():
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    seed = _blob_seed((13, 13, 13), affine, (6.0, 4.0, 3.0))
    params = MorphParams(rotation=rotation_from_euler((0.0, 0.0, 90.0)))  # float cos/sin
    out = morph(seed, params)
    assert out.image.shape == (13, 13, 13) and np.array_equal(out.affine, affine)
    assert np.array_equal(out.image.array, np.rot90(seed.image.array, axes=(0, 1)).astype(np.float32))
    assert np.array_equal(out.mask.array, np.rot90(seed.mask.array, axes=(0, 1)))


@pytest.mark.parametrize("state", [0, 1, 2])
def test_rotation_and_elastic_keep_volume(state):
    seed = _blob_seed((31, 29, 27), np.diag([0.8, 0.8, 1.0, 1.0]), (8.0, 6.5, 7.0), noise_seed=state)
    params = MorphParams.sample(np.random.default_rng(state), scale=1.0, flip_probability=0.5,
                                elastic_spacing_mm=12.0, elastic_magnitude_mm=1.0, hu_scale=1.0, hu_shift=0.0)
    assert params.control_mm is not None
    out = morph(seed, params)
    before, after = _volume_mm3(seed.mask), _volume_mm3(out.mask)
    assert abs(after / before - 1.0) < 0.03
    # the elastic field actually moved things: not just the rigid result
    rigid = morph(seed, MorphParams(rotation=params.rotation, flip=params.flip))
    assert out.image.shape != rigid.image.shape or not np.array_equal(out.image.array, rigid.image.array)


def test_scaling_changes_volume_by_product_of_factors():
    seed = _blob_seed((31, 29, 27), np.diag([0.8, 0.8, 1.0, 1.0]), (8.0, 6.5, 7.0))
    scale = (1.25, 0.8, 1.15)
    out = morph(seed, MorphParams(scale=scale, rotation=rotation_from_euler((20.0, -35.0, 50.0))))
    ratio = _volume_mm3(out.mask) / _volume_mm3(seed.mask)
    assert abs(ratio / np.prod(scale) - 1.0) < 0.03


def test_output_box_contains_transformed_seed():
    """The box is not clipped: a rotated, scaled, elastic seed never touches the box border."""
    seed = _blob_seed((21, 21, 21), np.diag([1.0, 1.0, 1.0, 1.0]), (9.0, 9.0, 9.0))
    params = MorphParams(scale=(1.4, 1.4, 1.4), rotation=rotation_from_euler((30.0, 40.0, 0.0)),
                         control_mm=np.full((3, 4, 4, 4), 2.0), elastic_spacing_mm=8.0)
    out = morph(seed, params, target=(1.0, 1.0, 1.0))
    m = out.mask.array
    assert m.any()
    assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any()
                or m[:, :, -1].any())


def test_host_affine_target_puts_box_on_host_lattice():
    seed = _blob_seed((15, 17, 11), ANISO, (4.0, 5.0, 5.5))
    host = np.array([[-0.9, 0.0, 0.0, 101.3], [0.0, -0.9, 0.0, 57.1], [0.0, 0.0, 2.0, -12.4], [0, 0, 0, 1]])
    out = morph(seed, MorphParams.sample(np.random.default_rng(4)), target=host)
    assert np.array_equal(out.affine[:3, :3], host[:3, :3])
    offset = np.linalg.solve(host[:3, :3], out.affine[:3, 3] - host[:3, 3])
    assert np.allclose(offset, np.round(offset), atol=1e-9)
    assert tuple(np.round(offset).astype(int)) == out.lattice_offset
    assert out.record["lattice_offset"] == list(out.lattice_offset)


def test_hu_scale_and_shift_apply_inside_tumour_only():
    seed = _blob_seed((15, 15, 15), np.diag([1.0, 1.0, 1.0, 1.0]), (5.0, 5.0, 5.0))
    out = morph(seed, MorphParams(hu_scale=1.5, hu_shift=100.0))
    img = seed.image.array.astype(np.float64)
    w = seed.soft_mask.array.astype(np.float64)
    assert np.allclose(out.image.array, img + w * (img * 0.5 + 100.0), atol=1e-3)
    outside = w == 0
    assert np.array_equal(out.image.array[outside], img[outside].astype(np.float32))


def test_fill_is_border_median():
    seed = _blob_seed((15, 15, 15), np.diag([1.0, 1.0, 1.0, 1.0]), (5.0, 5.0, 5.0))
    out = morph(seed, MorphParams(rotation=rotation_from_euler((0.0, 0.0, 45.0))))
    a = seed.image.array
    faces = np.concatenate([f.ravel() for f in (a[0], a[-1], a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1])])
    assert out.record["fill_hu"] == float(np.median(faces))
    corner = out.image.array[0, 0, :]  # the rotated box's corners lie outside the seed crop
    assert (corner == np.float32(np.median(faces))).any()


def test_same_params_and_generator_state_are_bit_identical_and_record_reproduces():
    seed = _blob_seed((17, 15, 13), ANISO, (4.0, 4.5, 5.0))
    a = MorphParams.sample(np.random.default_rng(123), output_spacing=(1.0, 1.0, 1.0))
    b = MorphParams.sample(np.random.default_rng(123), output_spacing=(1.0, 1.0, 1.0))
    c = MorphParams.sample(np.random.default_rng(124), output_spacing=(1.0, 1.0, 1.0))
    assert a.to_record() == b.to_record() != c.to_record()
    out_a, out_b = morph(seed, a), morph(seed, b)
    assert np.array_equal(out_a.image.array, out_b.image.array)
    assert np.array_equal(out_a.soft_mask.array, out_b.soft_mask.array)
    record = json.loads(json.dumps(out_a.record))
    again = morph(seed, MorphParams.from_record(record["params"]))
    assert np.array_equal(again.image.array, out_a.image.array)
    assert np.array_equal(again.affine, out_a.affine)
    assert record["seed_id"] == "blob" and record["params"]["control_mm"] is not None


def test_sample_ranges_and_validation():
    p = MorphParams.sample(np.random.default_rng(0), rotation=((-10, 10), (0, 0), (90, 90)), scale=(0.9, 0.9),
                           flip_probability=(1.0, 0.0, 1.0), elastic_magnitude_mm=0.0, hu_shift=5.0)
    assert p.scale == (0.9, 0.9, 0.9) and p.flip == (True, False, True)
    assert p.control_mm is None and p.hu_shift == 5.0
    r = np.asarray(p.rotation)
    assert np.allclose(r @ r.T, np.eye(3))
    assert np.allclose(r[:, 0], [0.0, 1.0, 0.0])  # Rz(90) @ Rx(a): the x axis goes to y
    assert not np.allclose(r[:, 1], [-1.0, 0.0, 0.0])  # a random x angle was drawn
    iso = MorphParams.sample(np.random.default_rng(1), isotropic=True)
    assert iso.scale[0] == iso.scale[1] == iso.scale[2]
    with pytest.raises(InputError, match="rotation"):
        MorphParams(rotation=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(InputError, match="rotation"):
        MorphParams.sample(np.random.default_rng(0), rotation="sideways")
    with pytest.raises(InputError, match="unknown"):
        MorphParams.from_record({"spin": 1})
    seed = _blob_seed((9, 9, 9), np.eye(4), (3.0, 3.0, 3.0))
    with pytest.raises(InputError, match="target"):
        morph(seed, MorphParams.identity(), target=(1.0, 2.0))
    with pytest.raises(InputError, match="singular"):
        morph(seed, MorphParams.identity(), target=np.diag([1.0, 1.0, 0.0, 1.0]))
    drawn = MorphParams.sample(np.random.default_rng(2), elastic_magnitude_mm=1.0)
    bigger = drawn.scaled(1.25)
    assert bigger.to_record() == dataclasses.replace(drawn, scale=tuple(v * 1.25 for v in drawn.scale)).to_record()
    assert drawn.scale != bigger.scale  # the original is left as it was
    with pytest.raises(InputError, match="positive"):
        drawn.scaled(0.0)
    empty = SimpleNamespace(image=seed.image, soft_mask=seed.soft_mask,
                            mask=Volume(np.zeros((9, 9, 9), np.uint8), np.eye(4)))
    with pytest.raises(InputError, match="empty"):
        morph(empty, MorphParams.identity())


def test_cuda_backend_matches_cpu():
    from synthlung.backend import asnumpy, numba_cuda_available
    if not numba_cuda_available():
        pytest.skip("numba.cuda unavailable (neither GPU nor simulator)")
    seed = _blob_seed((7, 7, 6), np.diag([1.2, 1.2, 1.5, 1.0]), (3.0, 3.0, 3.0))
    params = MorphParams(rotation=rotation_from_euler((10.0, 0.0, 25.0)), scale=(1.1, 1.0, 0.9),
                         control_mm=np.random.default_rng(0).normal(0.0, 0.5, (3, 2, 2, 2)),
                         elastic_spacing_mm=5.0, hu_scale=1.05)
    want = morph(seed, params)
    got = morph(seed, params, backend="cuda")
    assert np.abs(asnumpy(got.image.array) - want.image.array).max() < 1e-5 * 1000
    assert np.array_equal(got.affine, want.affine)
    # the soft mask's part only (a small tumour in a wider crop): the same on both backends
    small = _blob_seed((12, 12, 8), np.diag([1.2, 1.2, 1.5, 1.0]), (2.0, 2.0, 2.5))
    want = morph(small, params, support_pad=1)
    got = morph(small, params, backend="cuda", support_pad=1)
    assert np.abs(asnumpy(got.image.array) - want.image.array).max() < 1e-5 * 1000
    np.testing.assert_allclose(asnumpy(got.soft_mask.array), want.soft_mask.array, atol=1e-5)
    assert (want.image.array == np.float32(want.record["fill_hu"])).mean() > 0.2  # a part was warped


@pytest.mark.realdata
def test_lung1_to_isotropic_and_back_keeps_centroid(lung1_paths):
    image_path, label_path = lung1_paths
    if not image_path.exists():
        pytest.skip(f"lung1 not found at {image_path}")
    from synthlung import load
    from synthlung.seeds import extract_seeds
    seed = extract_seeds(load(image_path), load(label_path), reslice_mm=None)[0]  # the 5 mm stack itself
    assert seed.image.spacing[2] == pytest.approx(5.0)
    iso = morph(seed, MorphParams.identity(), target=(1.5, 1.5, 1.5))
    assert iso.image.spacing == pytest.approx((1.5, 1.5, 1.5))
    back = morph(iso, MorphParams.identity(), target=seed.affine)
    assert np.array_equal(back.affine[:3, :3], seed.affine[:3, :3])
    c0 = _centroid_mm(seed.mask)
    assert np.linalg.norm(_centroid_mm(iso.mask) - c0) < 0.5
    assert np.linalg.norm(_centroid_mm(back.mask) - c0) < 0.5


def _volume_factor_per_voxel(seed, params, lattice):
    """Oracle: mean of 1 / det(I + grad d) over every tumour voxel, to the power -1/3."""
    from synthlung.kernels.warp import bspline_basis
    ctrl, lin = params.control_mm, params.linear()
    lat, lat_inv = lattice[:3, :3], np.linalg.inv(lattice[:3, :3])
    step = params.elastic_spacing_mm / np.linalg.norm(lat, axis=0)
    ijk = np.argwhere(seed.mask.array).astype(np.float64)
    n = np.asarray(ctrl.shape[1:])
    u = ((seed.mask.voxel_to_world(ijk) - _centroid_mm(seed.mask)) @ lin.T @ lat_inv.T) / step + (n - 1) / 2
    vals = [bspline_basis(u[:, a], n[a]) for a in range(3)]
    ders = [bspline_basis(u[:, a], n[a], derivative=True) / step[a] for a in range(3)]
    grad = np.stack([np.einsum("na,nb,nc,dabc->nd", *(ders[a] if b == a else vals[b] for b in range(3)), ctrl)
                     for a in range(3)], axis=-1)
    return float(np.mean(1.0 / np.linalg.det(np.eye(3) + grad @ lat_inv)) ** (-1.0 / 3.0))


@pytest.mark.parametrize("strong", [False, True], ids=["default ranges", "2-3 mm on an 8-14 mm grid"])
def test_volume_factor_matches_per_voxel_mean(strong):
    """The control-grid quadrature of the volume correction against the mean over every voxel."""
    kw = dict(elastic_spacing_mm=(8.0, 14.0), elastic_magnitude_mm=(2.0, 3.0)) if strong else {}
    target = np.diag([0.9, 1.1, 1.3, 1.0])
    errors, changes = [], []
    for state in range(6):
        seed = _blob_seed((25, 23, 9), ANISO, (9.0, 7.0, 6.0), noise_seed=state)
        params = MorphParams.sample(np.random.default_rng(state), **kw)
        if params.control_mm is None:
            continue
        want = _volume_factor_per_voxel(seed, params, target)
        errors.append(morph(seed, params, target=target).record["elastic_volume_factor"] / want - 1.0)
        changes.append(abs(want - 1.0))
    assert len(errors) >= 4 and max(changes) > 2e-3  # the fields really change the volume
    assert np.abs(errors).max() < (5e-3 if strong else 5e-4)


def test_seed_facts_kept_per_seed_not_shared():
    """morph keeps a seed's centroid and fill between calls: same output again, and another
    seed (or the same arrays under another affine) gets its own."""
    import dataclasses
    params = MorphParams.sample(np.random.default_rng(4))
    seed = _blob_seed((20, 18, 16), np.diag([1.0, 1.0, 1.5, 1.0]), (5.0, 4.0, 6.0))
    first = morph(seed, params, target=(1.0, 1.0, 1.0))
    again = morph(seed, params, target=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(first.image.array, again.image.array)
    other = _blob_seed((20, 18, 16), np.diag([1.0, 1.0, 1.5, 1.0]), (3.0, 3.0, 3.0), noise_seed=1)
    other.mask.array[:, :, :8] = 0  # its centroid moves
    moved = morph(other, params, target=(1.0, 1.0, 1.0))
    assert moved.centre_world != first.centre_world
    assert moved.record["fill_hu"] != first.record["fill_hu"]
    shifted = np.diag([1.0, 1.0, 1.5, 1.0])
    shifted[:3, 3] = (10.0, -5.0, 2.0)
    turned = dataclasses.replace(seed, image=Volume(seed.image.array, shifted), mask=Volume(seed.mask.array, shifted),
                                 soft_mask=Volume(seed.soft_mask.array, shifted))
    np.testing.assert_allclose(morph(turned, params, target=(1.0, 1.0, 1.0)).centre_world,
                               np.asarray(first.centre_world) + (10.0, -5.0, 2.0), atol=1e-9)


def test_support_pad_warps_only_what_can_hold_the_soft_mask():
    """morph(support_pad=k): the same box, soft mask and mask as the whole warp; the image the
    same (to float rounding) within k voxels of the soft mask's support and fill outside the
    part warped, which is a fraction of a seed crop's box."""
    from synthlung.morphology import bounding_box, grown
    seed = _blob_seed((44, 40, 18), np.diag([0.6, 0.6, 2.5, 1.0]), (5.0, 4.5, 6.0), noise_seed=3)
    for state in range(5):
        params = MorphParams.sample(np.random.default_rng(state))
        target = np.diag([1.5, 1.4, 1.6, 1.0])
        whole = morph(seed, params, target=target)
        part = morph(seed, params, target=target, support_pad=3)
        assert part.image.shape == whole.image.shape and part.record["shape"] == whole.record["shape"]
        np.testing.assert_array_equal(part.soft_mask.array, whole.soft_mask.array)
        np.testing.assert_array_equal(part.mask.array, whole.mask.array)
        near = grown(bounding_box(whole.soft_mask.array > 0), 3, whole.image.shape)
        np.testing.assert_allclose(part.image.array[near], whole.image.array[near], atol=1e-3)
        fill = part.image.array == np.float32(part.record["fill_hu"])
        assert fill.mean() > 0.3 and not fill[near].all()
