"""The issue 10 measures on phantoms whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from synthlung.qa.realism import (deep_core, edge_rise_along_across, hu_change_ratio, outside_change_hu,
                                  slice_axis_after, vessel_continuity)

AFFINE = np.eye(4)


def _ball(shape=(40, 40, 40), r=12.0):
    idx = np.indices(shape) - (np.asarray(shape)[:, None, None, None] - 1) / 2
    return (idx ** 2).sum(0) <= r * r


def test_hu_change_ratio_sees_smoothing_along_one_axis():
    noise = np.random.default_rng(0).standard_normal((40, 40, 40))
    region = np.ones(noise.shape, bool)
    assert hu_change_ratio(noise, region, AFFINE, np.eye(3)[2]) == pytest.approx(1.0, abs=0.05)
    streaked = ndi.gaussian_filter1d(noise, 2.0, axis=2)  # smooth along z: stripes
    assert hu_change_ratio(streaked, region, AFFINE, np.eye(3)[2]) < 0.5
    assert hu_change_ratio(streaked, region, AFFINE, np.eye(3)[0]) > 1.2
    # The direction is in world mm: the same stack on 2 mm voxels along z reads the same.
    coarse = np.diag([1.0, 1.0, 2.0, 1.0])
    assert hu_change_ratio(streaked[..., ::2], region[..., ::2], coarse, np.eye(3)[2]) < 0.5


def test_edge_rise_along_and_across():
    ball = _ball()
    image = np.where(ball, 40.0, -800.0)
    blurred = ndi.gaussian_filter1d(image, 2.0, axis=0)  # the edge blurred along x only
    along, across = edge_rise_along_across(blurred, ball, AFFINE, np.eye(3)[0])
    assert along > 1.5 * across
    sharp_along, sharp_across = edge_rise_along_across(image, ball, AFFINE, np.eye(3)[0])
    assert sharp_along == pytest.approx(sharp_across, rel=0.2)


def test_vessels_and_unlabelled_change():
    ball = _ball()
    before = np.full(ball.shape, -850.0)
    before[18:22, 18:22, :] = 250.0  # a vessel through the tumour
    stopped = np.where(ball, 30.0, before)
    assert vessel_continuity(before, stopped, ball, (1.0, 1.0, 1.0)) == 0.0
    kept = np.where(ball & (before > 100) & ~deep_core(ball, (1.0, 1.0, 1.0), 1.0), before, stopped)
    assert vessel_continuity(before, kept, ball, (1.0, 1.0, 1.0)) == 1.0
    assert np.isnan(vessel_continuity(np.full(ball.shape, -850.0), stopped, ball, (1.0, 1.0, 1.0)))
    assert outside_change_hu(before, stopped, ball, (1.0, 1.0, 1.0)) == 0.0
    halo = stopped + 20.0 * ~ball
    assert outside_change_hu(before, halo, ball, (1.0, 1.0, 1.0)) == pytest.approx(20.0)


def test_slice_axis_after_a_rotation():
    seed_affine = np.diag([0.57, 0.57, 5.0, 1.0])
    quarter = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # z -> -y
    np.testing.assert_allclose(slice_axis_after(seed_affine, quarter), [0.0, -1.0, 0.0], atol=1e-12)
