"""synthlung.smoothing: scipy's Gaussian bit for bit, and the Gaussian mean within a mask."""
import numpy as np
import pytest
from scipy import ndimage

from synthlung.smoothing import gaussian, local_mean


@pytest.mark.parametrize("sigma", [1.0, 0.7, (0.0, 1.3, 2.0), (1.5, 0.0, 0.0)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_gaussian_is_scipys_bit_for_bit(sigma, order):
    a = np.asarray(np.random.default_rng(3).normal(0, 50, (13, 17, 11)), dtype=np.float32, order=order)
    out = gaussian(a, sigma)
    assert out.dtype == np.float32
    assert np.array_equal(out, ndimage.gaussian_filter(a, sigma))


def test_gaussian_of_zero_sigma_is_a_copy():
    a = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = gaussian(a, 0.0)
    assert np.array_equal(out, a) and out is not a


def test_local_mean_ignores_what_lies_outside_the_mask():
    """A constant region keeps its value up to its edge, however bright the outside."""
    values = np.full((12, 12, 12), 1000.0, dtype=np.float32)
    mask = np.zeros(values.shape, dtype=np.float32)
    mask[3:9, 3:9, 3:9] = 1.0
    values[mask > 0] = 40.0
    mean = local_mean(values, mask, 1.0)
    assert np.allclose(mean[mask > 0], 40.0, atol=1e-3)
    g = ndimage.gaussian_filter
    assert np.array_equal(mean, g(values * mask, 1.0) / np.maximum(g(mask, 1.0), 1e-6))
