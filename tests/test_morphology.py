"""Morphology in mm: the shallow-depth erosion agrees with the distance transform."""
from __future__ import annotations

import numpy as np
import pytest

from scipy import ndimage

from synthlung.morphology import (EDT_PARALLEL_VOXELS, bounding_box, core_below_mm, deeper_than_mm, distance_mm,
                                  eroded)


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
    # the tumour core: one erosion where the ball lies within the cross (1.5 mm grid, <= 1.5 mm)
    np.testing.assert_array_equal(core_below_mm(mask, depth, spacing), got & eroded(mask))


@pytest.mark.parametrize("shape", [(9, 13, 14), (1, 6, 5), (2, 7, 3), (12, 1, 2)])
def test_eroded_is_scipys_binary_erosion(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) > 0.15
    for m in (mask, np.asfortranarray(mask), np.ones(shape, bool), mask.astype(np.uint8)):
        got = eroded(m)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, ndimage.binary_erosion(m))


@pytest.mark.parametrize("order", ["C", "F"])
def test_erosion_cpu_and_cuda_match_scipy(order):
    """``kernels.erosion`` against scipy's binary_erosion: the cross, beyond the array unset, any
    nonzero dtype, degenerate and sliced boxes; the CPU result in the mask's memory order."""
    from synthlung.kernels import erosion
    from synthlung.kernels.layout import memory_order

    from _launches import on_device, on_host
    rng = np.random.default_rng(7)
    for shape in [(9, 13, 14), (1, 6, 5), (2, 7, 3), (3, 3, 3), (12, 1, 2), (16, 15, 17)]:
        mask = rng.random(shape) > 0.12
        mask = np.asfortranarray(mask) if order == "F" else mask
        for m in (mask, mask.astype(np.uint8) * 3, mask.astype(np.float32), mask[:, ::2], np.ones(shape, bool)):
            want = ndimage.binary_erosion(m)
            got = erosion.cpu(m)
            assert got.dtype == bool and np.array_equal(got, want), (shape, m.dtype)
            assert memory_order(got) == memory_order(m), (shape, m.strides)  # the mask's memory order
            assert np.array_equal(on_host(erosion.cuda(on_device(m))), want), (shape, m.dtype)
    assert erosion.cpu(np.ones((5, 5, 5), bool)).sum() == 27  # the faces go


def test_distance_threads_only_for_large_masks():
    small = np.ones((20, 20, 20), bool)
    small[10, 10, 10] = False
    d = distance_mm(small, (1.0, 1.0, 2.0))
    assert d.dtype == np.float32 and d[10, 10, 10] == 0 and d[10, 10, 12] == pytest.approx(4.0)
    assert small.size < EDT_PARALLEL_VOXELS


def _shell_mask(order: str) -> np.ndarray:
    """A rough blob that touches the array edge (beyond it is not outside), with holes."""
    rng = np.random.default_rng(5)
    mask = np.zeros((15, 12, 11), bool)
    mask[2:15, 1:11, 0:9] = True
    mask &= rng.random(mask.shape) > 0.06
    return np.asfortranarray(mask) if order == "F" else mask


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (0.7, 0.8, 2.5)])
@pytest.mark.parametrize("reach", [1.6, 2.25, 3.1])
def test_shell_distance_cpu_and_cuda_match_the_transform(order, spacing, reach):
    from synthlung.kernels import shell_distance

    from _launches import on_device, on_host
    mask = _shell_mask(order)
    want = shell_distance.reference(mask, spacing, reach)
    full = distance_mm(mask, spacing)
    assert np.isinf(want).any() and (np.isfinite(want) & mask).any()  # both sides of the reach occur
    np.testing.assert_array_equal(np.isinf(want), full > reach)
    got_cpu = shell_distance.cpu(mask, spacing, reach)
    got_cuda = on_host(shell_distance.cuda(on_device(mask), spacing, reach))
    for got in (got_cpu, got_cuda):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6)
    assert got_cpu.flags.f_contiguous == (order == "F")


def test_shell_distance_is_edts_transform_within_its_reach():
    from synthlung.morphology import shell_distance_mm
    mask = _shell_mask("C")
    got = shell_distance_mm(mask, (0.7, 0.8, 2.5), 2.0)
    full = distance_mm(mask, (0.7, 0.8, 2.5))
    near = full <= 2.0
    np.testing.assert_allclose(got[near], full[near], rtol=1e-6)  # float32 rounding apart
    assert np.isinf(got[~near]).all() and (~near).any()


def test_shell_distance_refuses_bad_spacing():
    from synthlung.errors import InputError
    from synthlung.kernels import shell_distance
    with pytest.raises(InputError, match="spacings > 0"):
        shell_distance.cpu(np.ones((3, 3, 3), bool), (1.0, 0.0, 1.0), 2.0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_bounds_cpu_and_cuda_match_numpy(order):
    """Empty, one voxel, sparse and dense masks, sliced views and non-bool dtypes; a whole-CT-sized
    mask takes NumPy's path on the CPU and must agree too."""
    from synthlung.kernels import bounds

    from _launches import on_device, on_host
    rng = np.random.default_rng(8)
    masks = [np.zeros((6, 5, 7), bool), np.zeros((1, 1, 1), bool)]
    one = np.zeros((9, 8, 7), bool)
    one[3, 0, 6] = True
    masks.append(one)
    masks += [rng.random((8, 7, 6)) < p for p in (0.005, 0.05, 0.6)]
    masks = [np.asfortranarray(m) if order == "F" else m for m in masks]
    masks += [masks[-2][2:, ::2, 1:], masks[-1].astype(np.uint8), (masks[-2] * 2.5).astype(np.float32)]
    for i, m in enumerate(masks):
        want = bounds.reference(m)
        assert np.array_equal(bounds.cpu(m), want), m.shape
        if i % 2 == 0:  # every other one under the simulator (a thread per voxel is slow there)
            assert np.array_equal(np.asarray(on_host(bounds.cuda(on_device(m)))), want), m.shape
    big = np.zeros((128, 128, 64), bool)
    big[5:9, 100, 3:60] = True
    assert big.size >= bounds.NUMPY_FROM_VOXELS
    assert bounds.cpu(big).tolist() == [[5, 8], [100, 100], [3, 59]]
    assert bounding_box(np.zeros((4, 4, 4), bool)) is None
    assert bounding_box(one, 2) == (slice(1, 6), slice(0, 3), slice(4, 7))
