"""Morphology in mm: the shallow-depth erosion agrees with the distance transform."""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.morphology import EDT_PARALLEL_VOXELS, deeper_than_mm, distance_mm


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (0.7, 0.8, 2.5), (5.0, 0.6, 0.6)])
@pytest.mark.parametrize("depth", [0.0, 1.0, 1.5, 2.2])
def test_deeper_than_matches_distance(spacing, depth):
    rng = np.random.default_rng(3)
    mask = np.zeros((14, 12, 10), bool)
    mask[1:13, 2:12, 0:8] = True  # touches the array edge: beyond it is not outside
    mask &= rng.random(mask.shape) > 0.08
    got = deeper_than_mm(mask, depth, spacing)
    np.testing.assert_array_equal(got, distance_mm(mask, spacing) > depth)
    assert got.any() and not got.all()


def test_distance_threads_only_for_large_masks():
    small = np.ones((20, 20, 20), bool)
    small[10, 10, 10] = False
    d = distance_mm(small, (1.0, 1.0, 2.0))
    assert d.dtype == np.float32 and d[10, 10, 10] == 0 and d[10, 10, 12] == pytest.approx(4.0)
    assert small.size < EDT_PARALLEL_VOXELS
