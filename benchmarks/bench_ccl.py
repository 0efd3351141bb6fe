"""Connected components side by side on a 512x512x300 CT-sized lung mask from real data.

The mask is lung1 (../shared/data, 512x512x48, 5 mm slices) thresholded at
HU < -400 and resampled to 300 slices (nearest slice, 0.8 mm), i.e. air and
lungs of a real chest. ``c`` is the C-ordered (z, y, x) array; ``f`` the same
voxels as a Fortran-ordered (x, y, z) array, the layout NIfTI/NRRD readers give.

Run: ``pytest benchmarks/bench_ccl.py --benchmark-enable`` (GPU groups need CuPy). On the GPU
``synthlung.label`` is the block-based union-find (``ccl.cuda``); ``ccl.cuda_voxel``, the
per-voxel union-find, runs beside it, with cupyx and cuCIM.
"""
from __future__ import annotations

import numpy as np
import pytest

import synthlung

CONN = (6, 26)
ROUNDS = 7


@pytest.fixture(scope="module")
def mask_f(data_dir) -> np.ndarray:
    import nrrd
    image, _ = nrrd.read(str(data_dir / "pyradiomics-lung1" / "lung1_image.nrrd"))
    slices = np.arange(300) * image.shape[2] // 300
    return np.asfortranarray(image[:, :, slices] < -400)


@pytest.fixture(scope="module")
def mask_c(mask_f) -> np.ndarray:
    return np.ascontiguousarray(mask_f.T)


def _run(benchmark, fn, *args):
    fn(*args)  # JIT warm-up and first-touch of the allocator
    return benchmark.pedantic(fn, args=args, rounds=ROUNDS, warmup_rounds=1)


def _structure(connectivity):
    from scipy import ndimage
    return ndimage.generate_binary_structure(3, {6: 1, 26: 3}[connectivity])


@pytest.mark.parametrize("connectivity", CONN)
class TestLabelCPU:
    def test_synthlung(self, benchmark, mask_c, connectivity):
        benchmark.group = f"label-{connectivity} C order"
        labels, n = _run(benchmark, synthlung.label, mask_c, connectivity)
        assert n > 1

    def test_cc3d(self, benchmark, mask_c, connectivity):
        import cc3d
        benchmark.group = f"label-{connectivity} C order"
        _run(benchmark, lambda m: cc3d.connected_components(m, connectivity=connectivity, return_N=True), mask_c)

    def test_scipy(self, benchmark, mask_c, connectivity):
        from scipy import ndimage
        benchmark.group = f"label-{connectivity} C order"
        _run(benchmark, lambda m: ndimage.label(m, _structure(connectivity)), mask_c)

    def test_skimage(self, benchmark, mask_c, connectivity):
        from skimage import measure
        benchmark.group = f"label-{connectivity} C order"
        _run(benchmark, lambda m: measure.label(m, connectivity={6: 1, 26: 3}[connectivity], return_num=True),
             mask_c)

    def test_synthlung_fortran(self, benchmark, mask_f, connectivity):
        benchmark.group = f"label-{connectivity} Fortran order"
        _run(benchmark, synthlung.label, mask_f, connectivity)

    def test_cc3d_fortran(self, benchmark, mask_f, connectivity):
        import cc3d
        benchmark.group = f"label-{connectivity} Fortran order"
        _run(benchmark, lambda m: cc3d.connected_components(m, connectivity=connectivity, return_N=True), mask_f)


@pytest.fixture(scope="module")
def labels_c(mask_c):
    return synthlung.label(mask_c, 26)


def test_stats_synthlung(benchmark, labels_c):
    benchmark.group = "component stats (26-labels, C order)"
    stats = _run(benchmark, synthlung.component_stats, *labels_c)
    assert len(stats) == labels_c[1]


def test_stats_cc3d(benchmark, labels_c):
    import cc3d
    benchmark.group = "component stats (26-labels, C order)"
    _run(benchmark, lambda lab: cc3d.statistics(lab, no_slice_conversion=True), labels_c[0])


# ---------------------------------------------------------------- GPU

def _gpu_mask(mask_c):
    from synthlung.backend import cupy_gpu_available
    if not cupy_gpu_available():
        pytest.skip("needs a CUDA GPU with CuPy")
    import cupy
    return cupy.asarray(mask_c)


def _run_gpu(benchmark, fn, mask, *args):
    import cupy

    def timed():
        out = fn(mask, *args)
        cupy.cuda.get_current_stream().synchronize()
        return out
    # minimum traffic: the uint8 mask read once, the uint32 labels written once (for benchmarks.gpu's table)
    benchmark.extra_info.update(size="x".join(map(str, mask.shape)), voxels=int(mask.size), bytes=5 * int(mask.size))
    return _run(benchmark, timed)


@pytest.mark.gpu
@pytest.mark.parametrize("connectivity", CONN)
class TestLabelGPU:
    def test_synthlung_cuda(self, benchmark, mask_c, connectivity):
        benchmark.group = f"gpu label-{connectivity}"
        _run_gpu(benchmark, synthlung.label, _gpu_mask(mask_c), connectivity)

    def test_synthlung_cuda_per_voxel(self, benchmark, mask_c, connectivity):
        from synthlung.kernels import ccl
        benchmark.group = f"gpu label-{connectivity}"
        _run_gpu(benchmark, ccl.cuda_voxel, _gpu_mask(mask_c), connectivity)

    def test_cupyx(self, benchmark, mask_c, connectivity):
        mask = _gpu_mask(mask_c)
        import cupy
        from cupyx.scipy import ndimage
        benchmark.group = f"gpu label-{connectivity}"
        structure = cupy.asarray(_structure(connectivity))
        _run_gpu(benchmark, lambda m: ndimage.label(m, structure), mask)

    def test_cucim(self, benchmark, mask_c, connectivity):
        mask = _gpu_mask(mask_c)
        measure = pytest.importorskip("cucim.skimage.measure")
        benchmark.group = f"gpu label-{connectivity}"
        _run_gpu(benchmark, lambda m: measure.label(m, connectivity={6: 1, 26: 3}[connectivity]), mask)
