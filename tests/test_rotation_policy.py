"""Rotation policy for thick-slice seeds: spins about the slice axis, tilts it by at most 15 degrees."""
from __future__ import annotations

import types

import numpy as np

from synthlung.synthesis.morphing import MorphParams, thick_slice_axis
from synthlung.volume import Volume


def _seed(spacing):
    image = Volume(np.zeros((4, 4, 4), np.int16), np.diag([*spacing, 1.0]))
    return types.SimpleNamespace(image=image, record={"spacing_mm": list(spacing)})


def test_thick_seeds_keep_their_slices_near_axial():
    axis = thick_slice_axis(_seed((0.57, 0.57, 5.0)), (1.5, 1.5, 1.5))
    np.testing.assert_allclose(axis, [0.0, 0.0, 1.0])
    assert thick_slice_axis(_seed((1.0, 1.0, 2.5)), (1.5, 1.5, 1.5)) is None  # not > 2x the host's spacing
    rng = np.random.default_rng(0)
    tilts, spins = [], []
    for _ in range(200):
        p = MorphParams.sample(rng, slice_axis=axis)
        rot = np.asarray(p.rotation)
        tilts.append(np.degrees(np.arccos(np.clip(rot[:, 2] @ axis, -1, 1))))
        spins.append(np.degrees(np.arctan2(rot[1, 0], rot[0, 0])))
        assert p.rotation_policy == "about the slice axis, tilt <= 15 deg"
    assert max(tilts) <= 15.0 + 1e-9 and np.mean(tilts) > 5.0  # limited, but not zero
    assert np.ptp(spins) > 300.0  # any spin about the axis
    uniform = [np.degrees(np.arccos(np.asarray(MorphParams.sample(rng).rotation)[2, 2])) for _ in range(200)]
    assert max(uniform) > 60.0  # without a slice axis: any rotation
    p = MorphParams.sample(np.random.default_rng(3), slice_axis=axis, max_tilt_deg=5.0)
    assert MorphParams.from_record(p.to_record()).to_record() == p.to_record()
