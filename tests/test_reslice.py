"""Thick-slice seeds resliced by shape-based interpolation: phantoms with a known shape, and lung1."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import synthlung
from synthlung.qa.realism import edge_rise_along_across
from synthlung.seeds.reslice import needs_reslice, reslice_stack

FINE = (1.0, 1.0, 1.0)


def _ellipsoid(spacing, shape, radii=(9.0, 6.0, 11.0)):
    """Inside test of an ellipsoid (mm semi-axes) centred in a grid of ``spacing``."""
    idx = np.indices(shape).astype(np.float64)
    centre = (np.asarray(shape) - 1) / 2.0
    r = sum(((idx[a] - centre[a]) * spacing[a] / radii[a]) ** 2 for a in range(3))
    return r <= 1.0


def _thick_phantom():
    """An ellipsoid imaged on 5 mm slices: each slice the mean of five 1 mm slices (partial volume)."""
    fine = _ellipsoid(FINE, (36, 30, 45))
    image = np.where(fine, 40.0, -800.0).reshape(36, 30, 9, 5).mean(axis=3)
    mask = fine.reshape(36, 30, 9, 5).mean(axis=3) >= 0.5
    return image, mask


def test_only_thick_slices_are_resliced():
    assert needs_reslice((0.57, 0.57, 5.0), 1.0) and not needs_reslice((1.0, 1.0, 1.5), 1.0)
    assert not needs_reslice((0.57, 0.57, 5.0), None) and not needs_reslice((2.0, 2.0, 2.0), 1.0)


def test_anisotropic_ellipsoid_comes_out_smooth():
    image, mask = _thick_phantom()
    spacing = (1.0, 1.0, 5.0)
    fine_img, fine_mask, axis, k = reslice_stack(image, mask, spacing, target_mm=1.0)
    assert (axis, k) == (2, 5) and fine_mask.shape == (36, 30, 41)
    # Truth on the fine grid: slice j lies at coarse slice j / 5, i.e. 2 mm past the first fine slice.
    truth = _ellipsoid(FINE, (36, 30, 45))[:, :, 2:43]
    stair = np.repeat(mask, 5, axis=2)[:, :, 2:43]  # the slab (nearest-slice) stack
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice(fine_mask > 0, truth) > 0.95
    assert dice(fine_mask > 0, truth) > dice(stair, truth) + 0.03
    # Volume kept to 1 %: the stack's voxel count times its voxel volume.
    assert abs(fine_mask.sum() - mask.sum() * 5) <= 0.01 * mask.sum() * 5
    # The edge rises about as fast along the old slice axis as across it; a trilinear ramp does not.
    frame = (np.diag([1.0, 1.0, 1.0, 1.0]), np.eye(3)[2])
    along, across = edge_rise_along_across(fine_img, fine_mask, *frame)
    assert along <= 1.2 * across, (along, across)
    ramp = ndi.zoom(image, (1, 1, 41 / 9), order=1, grid_mode=False)
    ramp_along, ramp_across = edge_rise_along_across(ramp, ramp >= -380.0, *frame)
    assert ramp_along >= 1.5 * ramp_across, (ramp_along, ramp_across)
    # Deterministic.
    again = reslice_stack(image, mask, spacing, target_mm=1.0)
    assert np.array_equal(again[0], fine_img) and np.array_equal(again[1], fine_mask)


def test_lung1_seed_is_resliced_in_place(lung1_paths):
    image, label = (synthlung.load(p) for p in lung1_paths)
    seed, = synthlung.extract_seeds(image, label, case_id="lung1")
    rec = seed.record
    assert rec["resliced"] == {"axis": 2, "factor": 5} and rec["reslice_mm"] == 1.0
    np.testing.assert_allclose(seed.image.spacing, (0.5703125, 0.5703125, 1.0), rtol=1e-6)
    assert seed.image.array.dtype == image.array.dtype
    np.testing.assert_allclose(seed.affine[:3, 3], image.voxel_to_world(np.array(rec["crop_lo"])))
    volume = float(seed.mask.array.sum()) * float(np.prod(seed.image.spacing))
    assert volume == pytest.approx(rec["volume_mm3"], rel=0.01)
    assert ((seed.soft_mask.array >= 0.5) == seed.mask.array.astype(bool)).all()
    # Away from the tumour the resliced image is the source's, at the source's slices.
    src = image.array[tuple(slice(a, b) for a, b in zip(rec["crop_lo"], rec["crop_hi"]))]
    far = ndi.distance_transform_edt(seed.mask.array == 0, sampling=seed.image.spacing)[..., ::5] > 3.0
    assert far.mean() > 0.5
    np.testing.assert_array_equal(seed.image.array[..., ::5][far], src[far])
