"""The fused warp kernel: exactness on the lattice, cpu vs reference vs cuda (simulator)."""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.kernels import warp


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(-300.0, 400.0, shape).astype(np.float32)
    soft = rng.random(shape).astype(np.float32)
    return image, soft


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    a, b = [d for d in range(3) if d != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def _about(r: np.ndarray, centre, out_centre=None) -> np.ndarray:
    """3x4 matrix q = r @ (p - out_centre) + centre (output voxel -> seed voxel)."""
    out_centre = centre if out_centre is None else out_centre
    m = np.zeros((3, 4))
    m[:, :3] = r
    m[:, 3] = np.asarray(centre, float) - r @ np.asarray(out_centre, float)
    return m


def _hu_relative(a, b, image):
    return float(np.abs(a.astype(np.float64) - b).max() / (image.max() - image.min()))


def test_identity_reproduces_seed_bit_exactly():
    image, soft = _arrays((13, 17, 11))
    out_image, out_soft = warp.cpu(image, soft, np.eye(4), image.shape, fill_image=-1000.0)
    assert out_image.dtype == np.float32 and out_soft.dtype == np.float32
    assert np.array_equal(out_image, image) and np.array_equal(out_soft, soft)


def test_identity_with_zero_control_grid_is_exact():
    image, soft = _arrays((10, 9, 12))
    control = np.zeros((3, 5, 5, 6))
    out_image, out_soft = warp.cpu(image, soft, np.eye(4), image.shape, control=control,
                                   control_origin=(-1.0, -2.0, 0.5), control_spacing=(3.0, 2.5, 2.0))
    assert np.array_equal(out_image, image) and np.array_equal(out_soft, soft)


def test_integer_translation_is_exact_and_fills_outside():
    image, soft = _arrays((12, 14, 10))
    m = np.eye(4)
    m[:3, 3] = [3, -2, 1]
    out_image, out_soft = warp.cpu(image, soft, m, (12, 14, 10), fill_image=-777.0, fill_soft=0.25)
    assert np.array_equal(out_image[:9, 2:, :9], image[3:, :12, 1:])
    assert np.array_equal(out_soft[:9, 2:, :9], soft[3:, :12, 1:])
    assert (out_image[9:] == -777.0).all() and (out_image[:, :2] == -777.0).all()
    assert (out_soft[:, :, 9:] == np.float32(0.25)).all()


@pytest.mark.parametrize("axes", [(0, 1), (1, 2), (0, 2)])
def test_quarter_turn_about_centre_of_odd_cube_equals_rot90(axes):
    image, soft = _arrays((9, 9, 9), seed=1)
    axis = 3 - sum(axes)
    # np.rot90(a, axes=(p, q))[..., i_p, i_q, ...] = a[..., i_q, n-1-i_p, ...]
    r = np.zeros((3, 3))
    r[axis, axis] = 1.0
    r[axes[0], axes[1]] = 1.0
    r[axes[1], axes[0]] = -1.0
    assert np.isclose(abs(np.linalg.det(r)), 1.0)  # a quarter turn, written exactly
    m = _about(r, (4, 4, 4))
    out_image, out_soft = warp.cpu(image, soft, m, image.shape)
    assert np.array_equal(out_image, np.rot90(image, axes=axes))
    assert np.array_equal(out_soft, np.rot90(soft, axes=axes))


def _general_case():
    image, soft = _arrays((16, 18, 14), seed=2)
    r = _rotation(2, 0.4) @ _rotation(0, -0.3) @ np.diag([1.15, 0.9, -1.0])
    m = _about(r, (7.5, 8.5, 6.2), out_centre=(9.0, 9.0, 8.0))
    rng = np.random.default_rng(5)
    kwargs = dict(control=rng.normal(0.0, 1.2, (3, 6, 6, 5)), control_origin=(-2.0, -1.0, 0.3),
                  control_spacing=(4.0, 4.5, 5.0), fill_image=-850.0, fill_soft=0.0, hu_scale=1.1, hu_shift=25.0)
    return image, soft, m, (19, 18, 17), kwargs


def test_cpu_matches_scipy_reference_with_elastic_field():
    image, soft, m, shape, kwargs = _general_case()
    got = warp.cpu(image, soft, m, shape, **kwargs)
    want = warp.reference(image, soft, m, shape, **kwargs)
    assert _hu_relative(got[0], want[0], image) < 1e-4
    assert np.abs(got[1] - want[1]).max() < 1e-4
    # the box reaches outside the seed: fill values were used, so the comparison covers them
    assert (got[0] == np.float32(-850.0)).any()


def test_cpu_matches_reference_without_elastic_field():
    image, soft, m, shape, kwargs = _general_case()
    kwargs["control"] = None
    got = warp.cpu(image, soft, m, shape, **kwargs)
    want = warp.reference(image, soft, m, shape, **kwargs)
    assert _hu_relative(got[0], want[0], image) < 1e-4


def test_constant_control_grid_is_a_translation():
    """Cubic B-splines sum to one: a constant control grid covering the box shifts by that vector."""
    image, soft = _arrays((12, 12, 12), seed=3)
    shape = (12, 12, 12)
    origin, spacing = (-3.0, -3.0, -3.0), (3.0, 3.0, 3.0)
    n = warp.control_shape_for(shape, origin, spacing)
    control = np.broadcast_to(np.array([0.3, -0.7, 1.25]).reshape(3, 1, 1, 1), (3, *n))
    m = np.eye(4)
    m[:3, 3] = [0.3, -0.7, 1.25]
    got = warp.cpu(image, soft, np.eye(4), shape, control=control, control_origin=origin,
                   control_spacing=spacing, fill_image=-1000.0)
    want = warp.cpu(image, soft, m, shape, fill_image=-1000.0)
    assert _hu_relative(got[0], want[0], image) < 1e-5


def test_bad_arguments_raise():
    image, soft = _arrays((4, 4, 4))
    with pytest.raises(ValueError, match="matrix"):
        warp.cpu(image, soft, np.eye(3), (4, 4, 4))
    with pytest.raises(ValueError, match="control"):
        warp.cpu(image, soft, np.eye(4), (4, 4, 4), control=np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="shape"):
        warp.cpu(image, soft[:3], np.eye(4), (4, 4, 4))


def test_cuda_matches_cpu():
    """Simulator without a GPU (tiny box), the real kernel on CuPy arrays with one."""
    from synthlung.backend import asnumpy, numba_cuda_available
    if not numba_cuda_available():
        pytest.skip("numba.cuda unavailable (neither GPU nor simulator)")
    image, soft = _arrays((10, 11, 9), seed=4)
    r = _rotation(1, 0.5) @ np.diag([1.1, 0.95, 1.0])
    m = _about(r, (4.5, 5.0, 4.0), out_centre=(5.5, 5.5, 5.5))
    rng = np.random.default_rng(6)
    kwargs = dict(control=rng.normal(0.0, 1.0, (3, 4, 4, 4)), control_origin=(-1.0, -1.0, -1.0),
                  control_spacing=(4.0, 4.0, 4.0), fill_image=-900.0, hu_scale=0.9, hu_shift=-10.0)
    want = warp.cpu(image, soft, m, (12, 12, 12), **kwargs)
    xp = _device_module()
    got = warp.cuda(xp.asarray(image), xp.asarray(soft), m, (12, 12, 12), **kwargs)
    assert type(got[0]) is type(xp.asarray(image))
    assert _hu_relative(asnumpy(got[0]), want[0], image) < 1e-5
    assert np.abs(asnumpy(got[1]) - want[1]).max() < 1e-5
    ident = warp.cuda(xp.asarray(image), xp.asarray(soft), np.eye(4), image.shape)
    assert np.array_equal(asnumpy(ident[0]), image)


def _device_module():
    from synthlung.backend import cupy_gpu_available
    if cupy_gpu_available():
        import cupy
        return cupy
    return np
