"""threadIdx.x runs along the contiguous axis of every CUDA kernel's arrays, for C- and Fortran-ordered input.

The CUDA launches are recorded (in the simulator, or on a GPU): every 3-D
array a kernel gets must have its last axis contiguous, and 3-D launches must
put at least a warp (32 threads) on ``blockDim.x``, the axis the kernels map to
the last array axis (``x, y, z = cuda.grid(3)`` indexing ``a[z, y, x]``). 1-D
launches walk C-contiguous arrays by flat index. The results must not depend
on the input's memory order, and the CPU paths return the input's order.
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.kernels import (_blend_cuda, _block_mean_cuda, _bounds_cuda, _ccl_stats_cuda, _erosion_cuda,
                               _lung_refine_cuda, _noise_gain_cuda, _shell_distance_cuda, blend, block_mean, bounds,
                               ccl_stats, erosion, lung_refine, noise_gain, shell_distance, warp)

from _launches import on_device, on_host, record_launches

ORDERS = ["C", "F"]


def _arrays(args):
    return [a for a in args if isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__")]


def _assert_coalesced(log, ndim_launch):
    assert log, "no launch recorded"
    for launch in log:
        for a in _arrays(launch.args):
            if a.ndim >= 2 and a.shape[-1] > 1:
                assert a.strides[-1] == a.itemsize, (launch.name, a.shape, a.strides)
        if ndim_launch == 3:
            assert launch.block[0] >= 32, (launch.name, launch.block)


def _volume(order, dtype=np.int16, shape=(13, 10, 9)):
    x = np.random.default_rng(0).integers(-1000, 400, shape).astype(dtype)
    return np.asfortranarray(x) if order == "F" else x


@pytest.mark.parametrize("order", ORDERS)
def test_block_mean(monkeypatch, order):
    x = _volume(order)
    log = record_launches(monkeypatch, _block_mean_cuda)
    want = block_mean.reference(x, (3, 2, 4))
    np.testing.assert_allclose(on_host(block_mean.cuda(on_device(x), (3, 2, 4))), want, atol=1e-3)
    _assert_coalesced(log, 3)
    out = block_mean.cpu(x, (3, 2, 4))
    np.testing.assert_allclose(out, want, atol=1e-3)
    assert out.flags.f_contiguous == (order == "F") and out.flags.c_contiguous == (order == "C")


@pytest.mark.parametrize("order", ORDERS)
def test_lung_refine(monkeypatch, order):
    x = _volume(order)
    f = (3, 2, 4)
    rng = np.random.default_rng(1)
    coarse = block_mean.reference(x, f).shape
    labels = rng.integers(0, 3, coarse).astype(np.uint8)
    core = (rng.random(coarse) < 0.5).astype(np.uint8)
    log = record_launches(monkeypatch, _lung_refine_cuda)
    want = lung_refine.reference(x, labels, core, f, -400.5)
    assert np.array_equal(on_host(lung_refine.cuda(*on_device(x, labels, core), f, -400.5)), want)
    _assert_coalesced(log, 3)
    out = lung_refine.cpu(x, labels, core, f, -400.5)
    assert np.array_equal(out, want) and out.flags.f_contiguous == (order == "F")


@pytest.mark.parametrize("order", ORDERS)
def test_shell_distance(monkeypatch, order):
    mask = _volume(order) > -300
    log = record_launches(monkeypatch, _shell_distance_cuda)
    want = shell_distance.reference(mask, (0.8, 0.9, 2.0), 2.1)
    assert np.array_equal(on_host(shell_distance.cuda(on_device(mask), (0.8, 0.9, 2.0), 2.1)), want)
    _assert_coalesced(log, 3)
    out = shell_distance.cpu(mask, (0.8, 0.9, 2.0), 2.1)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert out.flags.f_contiguous == (order == "F")


@pytest.mark.parametrize("order", ORDERS)
def test_bounds(monkeypatch, order):
    mask = _volume(order) > 300
    log = record_launches(monkeypatch, _bounds_cuda)
    assert np.array_equal(bounds.cuda(on_device(mask)), bounds.reference(mask))
    _assert_coalesced(log, 3)


@pytest.mark.parametrize("order", ORDERS)
def test_erosion(monkeypatch, order):
    mask = _volume(order) > -600
    log = record_launches(monkeypatch, _erosion_cuda)
    assert np.array_equal(on_host(erosion.cuda(on_device(mask))), erosion.reference(mask))
    _assert_coalesced(log, 3)
    assert erosion.cpu(mask).flags.f_contiguous == (order == "F")


def test_noise_gain(monkeypatch):
    """The gain is a C-ordered half spectrum of its own (no input volume): its last axis under threadIdx.x."""
    table = np.random.default_rng(0).uniform(1.0, 9.0, (5, 4)).astype(np.float32)
    log = record_launches(monkeypatch, _noise_gain_cuda)
    args = ((13, 10, 9), (0.8, 0.9, 2.0))
    got = on_host(noise_gain.cuda(*args, on_device(table), 2, 0.1, 0.15))
    np.testing.assert_allclose(got, noise_gain.reference(*args, table, 2, 0.1, 0.15), rtol=2e-6)
    _assert_coalesced(log, 3)


@pytest.mark.parametrize("order", ORDERS)
def test_component_stats(monkeypatch, order):
    labels = _volume(order, np.int32) % 4
    labels[labels < 0] += 4
    log = record_launches(monkeypatch, _ccl_stats_cuda)
    want = ccl_stats.reference(labels, 3)
    for got in (on_host(ccl_stats.cuda(on_device(labels), 3)), ccl_stats.cpu(labels, 3)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    _assert_coalesced(log, 3)


def test_warp(monkeypatch):
    rng = np.random.default_rng(2)
    image = np.asfortranarray(rng.normal(0, 100, (9, 8, 7)).astype(np.float32))
    soft = np.asfortranarray(rng.random((9, 8, 7)).astype(np.float32))
    kernel = warp._cuda_kernel()
    log = []

    class Recorded:
        def __getitem__(self, config):
            def launch(*args):
                log.append(type("L", (), {"name": "warp", "block": config[1], "args": args}))
                return kernel[config](*args)
            return launch

    monkeypatch.setattr(warp, "_cuda_kernel", lambda: Recorded())
    m = np.array([[0.9, 0.1, 0, 0.3], [0, 1.1, 0, -0.2], [0.05, 0, 1, 0.1]])
    got = on_host(warp.cuda(*on_device(image, soft), m, (6, 7, 5)))
    want = warp.cpu(image, soft, m, (6, 7, 5))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)
    _assert_coalesced(log, 3)


def test_blend_launches_walk_c_order(monkeypatch):
    log = record_launches(monkeypatch, _blend_cuda)
    rng = np.random.default_rng(3)
    host = np.asfortranarray(rng.normal(-800, 30, (7, 6, 6)).astype(np.float32))
    solve = np.zeros(host.shape, bool)
    solve[2:-2, 2:-2, 2:-2] = True
    d_host, d_solve, d_seed, d_w = on_device(host, solve, host + 100, np.full(host.shape, 0.5, np.float32))
    blend.cuda.poisson(d_host, d_solve, d_seed, d_host, (1.0, 1.0, 1.0), max_iter=1)
    blend.cuda.alpha(d_host, d_seed, d_w, -1024, 3071)
    for launch in log:
        for a in _arrays(launch.args):
            assert a.ndim == 1 or a.flags.c_contiguous or a.shape[0] == 1, (launch.name, a.shape)
