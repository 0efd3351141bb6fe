"""The digital chest phantom: deterministic, anatomically laid out in RAS, labels consistent."""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.datasets.phantom import chest_phantom


@pytest.fixture(scope="module")
def phantom():
    return chest_phantom()


def test_same_seed_identical_other_seed_different(phantom):
    again = chest_phantom(seed=0)
    other = chest_phantom(seed=1)
    assert np.array_equal(phantom.image.array, again.image.array)
    assert np.array_equal(phantom.label.array, again.label.array)
    assert not np.array_equal(phantom.image.array, other.image.array)
    assert not np.array_equal(phantom.label.array, other.label.array)


def test_types_geometry_and_orientation(phantom):
    img, lab, lungs = phantom.image, phantom.label, phantom.lungs
    assert img.array.dtype == np.int16 and lab.array.dtype == np.uint8 and lungs.array.dtype == np.uint8
    assert img.shape == lab.shape == lungs.shape == (160, 128, 112)
    assert img.spacing == pytest.approx((2.0, 2.0, 2.5))
    assert img.orientation == ("R", "A", "S")
    centre = img.voxel_to_world((np.array(img.shape) - 1) / 2.0)
    assert np.allclose(centre, 0.0)
    assert set(np.unique(lab.array)) == {0, 1}
    assert set(np.unique(lungs.array)) == {0, 1, 2}


def test_left_lung_is_on_the_patients_left(phantom):
    # RAS+: world x grows toward the patient's right, so the left lung has negative x.
    lungs = phantom.lungs
    for value, sign in ((1, -1.0), (2, 1.0)):
        ijk = np.argwhere(lungs.array == value)
        x = lungs.voxel_to_world(ijk)[:, 0]
        assert np.sign(np.median(x)) == sign
        assert np.mean(np.sign(x) == sign) == 1.0


def test_hu_of_tissues(phantom):
    hu = phantom.image.array.astype(np.float64)
    lungs = phantom.lungs.array > 0
    tumor = phantom.label.array > 0
    parenchyma = lungs & ~tumor & (hu < -500)
    assert -900 < np.median(hu[parenchyma]) < -800
    assert 15 < hu[parenchyma].std() < 60
    assert np.all(tumor <= lungs)  # tumors lie inside the lungs
    assert -30 < np.median(hu[tumor]) < 90
    assert np.median(hu[0, 0, :]) < -950  # corner: air outside the body
    assert np.percentile(hu, 99.9) > 600  # bone
    # Vessels: bright voxels inside the lung, a visible fraction of it.
    vessels = lungs & ~tumor & (hu > -300)
    assert 0.005 < vessels.sum() / lungs.sum() < 0.15


def test_trachea_is_air_outside_the_lungs_from_the_top_slice(phantom):
    hu, lungs = phantom.image.array, phantom.lungs.array
    top = hu[:, :, -1]
    air = top < -900
    ci, cj = np.array(top.shape) // 2
    assert air[ci, cj + 2]  # trachea lies near the midline, slightly anterior
    body = np.zeros_like(air)
    body[40:120, 20:108] = True
    assert (air & body).sum() > 20
    assert lungs[ci - 3:ci + 4, cj - 3:cj + 8, -1].max() == 0  # the trachea is not lung
    assert lungs[:, :, -1].max() == 2 and (lungs[:, :, -1] == 1).any()  # apices run through the top slice


def test_lung_volumes_and_tumor_count():
    ph = chest_phantom(n_tumors=4, seed=3)
    vox_ml = np.prod(ph.image.spacing) / 1000.0
    for value in (1, 2):
        assert 1000 < (ph.lungs.array == value).sum() * vox_ml < 4000
    from scipy import ndimage
    _, n = ndimage.label(ph.label.array)
    assert 1 <= n <= 4
    assert chest_phantom(n_tumors=0).label.array.sum() == 0


def test_small_grid_keeps_anatomy():
    ph = chest_phantom(shape=(48, 40, 36), spacing_mm=(6.5, 6.5, 7.5), n_tumors=1, seed=2)
    assert ph.image.shape == (48, 40, 36)
    assert (ph.lungs.array == 1).sum() > 100 and (ph.lungs.array == 2).sum() > 100
