"""Elastic warp of an image plus its label: synthlung's fused warp vs the usual libraries.

Sizes: a 96^3 seed and a 512x512x300 volume. Every method warps the image
(linear) and the label (nearest for the libraries; synthlung samples the float32
soft mask linearly, label = soft >= 0.5) with a random smooth deformation:

* ``elasticdeform.deform_random_grid`` (3^3 control grid, sigma 2 voxels, order [1, 0]);
* MONAI ``Rand3DElasticd`` on CPU tensors (sigma 5-7, magnitude 50-150, prob 1);
* TorchIO ``RandomElasticDeformation`` (7^3 control points, 7.5 mm);
* ``scipy.ndimage.map_coordinates`` with a precomputed coordinate field (not timed);
* synthlung ``kernels.warp.cpu``: a rotation plus a cubic B-spline field on a
  32-voxel control grid evaluated in the kernel.

The 512x512x300 alternatives take tens of seconds: they run once
(``pedantic(rounds=1)``). Run: ``pytest benchmarks/bench_warp.py --benchmark-enable``.
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.kernels import warp

SIZES = {"96^3": (96, 96, 96), "512x512x300": (512, 512, 300)}
CONTROL_SPACING = (32.0, 32.0, 32.0)


def _volume(shape):
    rng = np.random.default_rng(0)
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((g - (n - 1) / 2) / (n / 4)) ** 2 for g, n in zip(grid, shape))
    label = (r2 <= 1.0).astype(np.uint8)
    image = (np.where(label, 40.0, -800.0) + rng.normal(0.0, 30.0, shape)).astype(np.float32)
    return image, label


@pytest.fixture(scope="module", params=list(SIZES), ids=list(SIZES))
def case(request):
    shape = SIZES[request.param]
    image, label = _volume(shape)
    return request.param, image, label


def _run(benchmark, size, fn, big_rounds=1):
    benchmark.group = f"warp image+label {size}"
    if size == "96^3":
        return benchmark(fn)
    return benchmark.pedantic(fn, rounds=big_rounds, iterations=1, warmup_rounds=0)


def _synthlung_args(shape):
    rng = np.random.default_rng(1)
    n = warp.control_shape_for(shape, (0.0, 0.0, 0.0), CONTROL_SPACING)
    c, s = np.cos(0.2), np.sin(0.2)
    centre = (np.asarray(shape) - 1) / 2
    m = np.zeros((3, 4))
    m[:, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    m[:, 3] = centre - m[:, :3] @ centre
    return m, dict(control=rng.normal(0.0, 2.0, (3, *n)), control_spacing=CONTROL_SPACING,
                   fill_image=-1000.0, fill_soft=0.0)


def test_synthlung_warp_cpu(benchmark, case):
    size, image, label = case
    soft = label.astype(np.float32)  # the seed bank stores the soft mask as float32
    m, kwargs = _synthlung_args(image.shape)
    warp.cpu(image[:8, :8, :8], soft[:8, :8, :8], m, (8, 8, 8), **kwargs)  # JIT warm-up
    out_image, out_soft = _run(benchmark, size, lambda: warp.cpu(image, soft, m, image.shape, **kwargs),
                               big_rounds=3)
    assert out_image.shape == image.shape and 0.5 < (out_soft >= 0.5).sum() / label.sum() < 2.0


def test_elasticdeform(benchmark, case):
    elasticdeform = pytest.importorskip("elasticdeform")
    size, image, label = case
    out = _run(benchmark, size, lambda: elasticdeform.deform_random_grid(
        [image, label], sigma=2.0, points=3, order=[1, 0], mode="constant", prefilter=False))
    assert out[0].shape == image.shape


def test_monai_rand3delasticd_cpu(benchmark, case):
    pytest.importorskip("monai")
    import torch
    from monai.transforms import Rand3DElasticd
    size, image, label = case
    t = Rand3DElasticd(keys=["image", "label"], sigma_range=(5, 7), magnitude_range=(50, 150), prob=1.0,
                       mode=("bilinear", "nearest"), padding_mode="zeros")
    t.set_random_state(0)
    data = {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label)[None]}
    out = _run(benchmark, size, lambda: t(data))
    assert tuple(out["image"].shape[1:]) == image.shape


def test_torchio_random_elastic(benchmark, case):
    tio = pytest.importorskip("torchio")
    import torch
    size, image, label = case
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(image)[None]),
                          label=tio.LabelMap(tensor=torch.from_numpy(label)[None]))
    t = tio.RandomElasticDeformation(num_control_points=7, max_displacement=7.5)
    torch.manual_seed(0)
    out = _run(benchmark, size, lambda: t(subject))
    assert tuple(out["image"].shape[1:]) == image.shape


def test_scipy_map_coordinates_given_field(benchmark, case):
    from scipy.ndimage import map_coordinates
    size, image, label = case
    m, kwargs = _synthlung_args(image.shape)
    # the same mapping as synthlung's, with the field built explicitly (not timed)
    coords = np.indices(image.shape, dtype=np.float32)
    coords = np.einsum("dn,n...->d...", m[:, :3].astype(np.float32), coords) + m[:, 3].reshape(3, 1, 1, 1)

    def run():
        return (map_coordinates(image, coords, order=1, mode="constant", cval=-1000.0),
                map_coordinates(label, coords, order=0, mode="constant", cval=0))

    out = _run(benchmark, size, run)
    assert out[0].shape == image.shape


def _run_gpu(benchmark, size, voxels, bytes_per_voxel, run):
    """Benchmark a GPU warp; ``voxels`` and the minimum ``bytes`` moved go to benchmarks.gpu's table."""
    benchmark.group = f"warp image+label {size} (GPU)"
    benchmark.extra_info.update(size=size, voxels=int(voxels), bytes=int(bytes_per_voxel * voxels))
    return benchmark(run)


@pytest.mark.gpu
def test_synthlung_warp_cuda(benchmark, case):
    cupy = pytest.importorskip("cupy")
    size, image, label = case
    m, kwargs = _synthlung_args(image.shape)
    d_image, d_soft = cupy.asarray(image), cupy.asarray(label.astype(np.float32))
    kwargs["control"] = cupy.asarray(kwargs["control"])
    warp.cuda(d_image, d_soft, m, image.shape, **kwargs)

    def run():
        out = warp.cuda(d_image, d_soft, m, image.shape, **kwargs)
        cupy.cuda.Device().synchronize()
        return out

    _run_gpu(benchmark, size, image.size, 16, run)  # float32 image + soft: read once, written once


@pytest.mark.gpu
def test_cupyx_map_coordinates(benchmark, case):
    cupy = pytest.importorskip("cupy")
    from cupyx.scipy.ndimage import map_coordinates
    size, image, label = case
    m, _ = _synthlung_args(image.shape)
    d_image, d_label = cupy.asarray(image), cupy.asarray(label)
    coords = cupy.indices(image.shape, dtype=cupy.float32)
    coords = cupy.einsum("dn,n...->d...", cupy.asarray(m[:, :3], dtype=cupy.float32), coords) \
        + cupy.asarray(m[:, 3], dtype=cupy.float32).reshape(3, 1, 1, 1)

    def run():
        out = (map_coordinates(d_image, coords, order=1, mode="constant", cval=-1000.0),
               map_coordinates(d_label, coords, order=0, mode="constant", cval=0))
        cupy.cuda.Device().synchronize()
        return out

    _run_gpu(benchmark, size, image.size, 10, run)  # float32 image + uint8 label (the field not counted)


@pytest.mark.gpu
def test_monai_rand3delasticd_cuda(benchmark, case):
    pytest.importorskip("monai")
    import torch
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from monai.transforms import Rand3DElasticd
    size, image, label = case
    t = Rand3DElasticd(keys=["image", "label"], sigma_range=(5, 7), magnitude_range=(50, 150), prob=1.0,
                       mode=("bilinear", "nearest"), padding_mode="zeros", device=torch.device("cuda"))
    data = {"image": torch.from_numpy(image)[None].cuda(), "label": torch.from_numpy(label)[None].cuda()}
    t(data)

    def run():
        out = t(data)
        torch.cuda.synchronize()
        return out

    _run_gpu(benchmark, size, image.size, 10, run)  # float32 image + uint8 label
