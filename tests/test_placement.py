"""Placement rules: fraction inside the lung, no overlap, box inside the volume, bounded tries."""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.synthesis.placement import CentreSampler, PlacementRules, sample_placement, try_place


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius ** 2


@pytest.fixture()
def world():
    lungs = np.zeros((40, 40, 40), dtype=bool)
    lungs[5:35, 5:35, 5:35] = True
    from scipy import ndimage as ndi
    distance = ndi.distance_transform_edt(lungs).astype(np.float32)
    return lungs, distance


def test_accepted_tumor_lies_inside_lung_and_volume(world):
    lungs, distance = world
    mask = _ball(4)
    occupied = np.zeros_like(lungs)
    rng = np.random.default_rng(0)
    rules = PlacementRules(min_inside_fraction=1.0)
    p = sample_placement(mask, (4, 4, 4), 4.0, CentreSampler(lungs, distance), lungs, occupied,
                         (1.0, 1.0, 1.0), rules, rng)
    assert p is not None
    region = tuple(slice(o, o + s) for o, s in zip(p.offset, mask.shape))
    assert lungs[region][mask].all()
    assert p.inside_fraction == 1.0
    assert tuple(o + 4 for o in p.offset) == p.centre_voxel


def test_overlap_with_existing_tumor_is_rejected(world):
    lungs, _ = world
    mask = _ball(3)
    occupied = np.zeros_like(lungs)
    occupied[18:23, 18:23, 18:23] = True
    grow = np.array([2, 2, 2])
    offset, _ = try_place(mask, (3, 3, 3), (20, 20, 20), lungs, occupied, grow)
    assert offset is None
    # Far enough away (gap > 2 voxels) it is accepted.
    offset, inside = try_place(mask, (3, 3, 3), (20, 20, 30), lungs, occupied, grow)
    assert offset == (17, 17, 27) and inside == 1.0


def test_box_leaving_the_volume_is_rejected(world):
    lungs, _ = world
    offset, _ = try_place(_ball(3), (3, 3, 3), (1, 20, 20), lungs, np.zeros_like(lungs), np.zeros(3, int))
    assert offset is None


def test_nothing_fits_returns_none_after_bounded_tries(world):
    lungs, distance = world
    huge = _ball(19)  # larger than the lung box with the fraction rule at 1.0
    rules = PlacementRules(min_inside_fraction=1.0, max_tries=25)
    p = sample_placement(huge, (19, 19, 19), 19.0, CentreSampler(lungs, distance), lungs,
                         np.zeros_like(lungs), (1.0, 1.0, 1.0), rules, np.random.default_rng(1))
    assert p is None


def test_juxtapleural_centres_touch_the_pleura_others_do_not(world):
    lungs, distance = world
    for juxta in (1.0, 0.0):
        rules = PlacementRules(min_inside_fraction=0.9, juxtapleural_probability=juxta)
        for s in range(5):
            p = sample_placement(_ball(4), (4, 4, 4), 4.0, CentreSampler(lungs, distance), lungs,
                                 np.zeros_like(lungs), (1.0, 1.0, 1.0), rules, np.random.default_rng(s))
            assert p is not None and p.juxtapleural == bool(juxta)
            depth = distance[p.centre_voxel]
            assert (0.6 * 4.0 <= depth < 4.0) if juxta else depth >= 4.0
