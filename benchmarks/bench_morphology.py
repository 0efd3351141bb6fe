"""A tumour's shell distance and bounding box: synthlung's small-box kernels beside the usual calls.

Mask: lung1's real tumour (../shared/data) resampled to the chest host's 1.5 mm
grid, scaled to about 20 mm and set in a box with 10 mm of context each side, as
``synthesize`` blends it (about 27^3 voxels). The vessel step needs the distance
below the surface only to 2.25 mm (shell 1.5 mm plus half a voxel):
``synthlung.morphology.shell_distance_mm`` computes exactly that; ``edt.edt`` (what
``distance_mm`` runs on the CPU) and ``scipy.ndimage.distance_transform_edt``
compute the whole transform. The GPU group puts ``shell_distance.cuda`` beside
``cupyx.scipy.ndimage.distance_transform_edt`` on the same mask. The bounding box
(found several times per insertion): ``synthlung.morphology.bounding_box``
(:mod:`synthlung.kernels.bounds`) beside NumPy's per-axis ``any`` and ``flatnonzero``.
The tumour's core (its erosion by the 6-connected cross, twice per insertion):
``synthlung.morphology.eroded`` (:mod:`synthlung.kernels.erosion`) beside
``scipy.ndimage.binary_erosion``.

Run: ``pytest benchmarks/bench_morphology.py --benchmark-enable`` (the GPU group needs CuPy).
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.morphology import shell_distance_mm

SPACING = (1.5, 1.5, 1.5)
REACH_MM = 2.25
ROUNDS = 50


@pytest.fixture(scope="module")
def tumour_box(data_dir) -> np.ndarray:
    from scipy import ndimage

    from synthlung.io import load
    label = load(data_dir / "pyradiomics-lung1" / "lung1_label.nrrd")
    zoom = np.asarray(label.spacing) / np.asarray(SPACING) * 1.5
    mask = ndimage.zoom(label.array.astype(np.float32), zoom, order=1) > 0.5
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    pad = int(round(10.0 / SPACING[0]))
    return np.pad(mask[box], pad)


def _run(benchmark, fn, *args):
    fn(*args)
    return benchmark.pedantic(fn, args=args, rounds=ROUNDS, warmup_rounds=2)


def test_shell_distance_synthlung(benchmark, tumour_box):
    benchmark.group = "tumour shell distance (CPU)"
    benchmark.extra_info["box"] = list(tumour_box.shape)
    out = _run(benchmark, shell_distance_mm, tumour_box, SPACING, REACH_MM)
    assert np.isinf(out).any() and (np.isfinite(out) & tumour_box).any()


def test_edt_full_transform(benchmark, tumour_box):
    import edt
    benchmark.group = "tumour shell distance (CPU)"
    _run(benchmark, lambda m: edt.edt(m, anisotropy=SPACING, black_border=False, parallel=1), tumour_box)


def test_scipy_full_transform(benchmark, tumour_box):
    from scipy import ndimage
    benchmark.group = "tumour shell distance (CPU)"
    _run(benchmark, lambda m: ndimage.distance_transform_edt(m, sampling=SPACING), tumour_box)


def test_bounding_box_synthlung(benchmark, tumour_box):
    """The tumour's bounding box as ``blend`` asks for it: ``kernels.bounds`` (one compiled pass)."""
    from synthlung.morphology import bounding_box
    benchmark.group = "tumour bounding box (CPU)"
    box = _run(benchmark, bounding_box, tumour_box)
    assert tumour_box[box].sum() == tumour_box.sum()


def test_bounding_box_numpy(benchmark, tumour_box):
    """The same from NumPy: ``any`` over two axes and ``flatnonzero``, per axis (what it replaced)."""
    from synthlung.kernels import bounds
    benchmark.group = "tumour bounding box (CPU)"
    _run(benchmark, bounds.reference, tumour_box)


def test_erosion_synthlung(benchmark, tumour_box):
    """The tumour's core as the denoising and the noise step ask for it: ``kernels.erosion``."""
    from scipy import ndimage

    from synthlung.morphology import eroded
    benchmark.group = "tumour erosion (CPU)"
    core = _run(benchmark, eroded, tumour_box)
    assert np.array_equal(core, ndimage.binary_erosion(tumour_box)) and 0 < core.sum() < tumour_box.sum()


def test_erosion_scipy(benchmark, tumour_box):
    """The same from ``scipy.ndimage.binary_erosion`` with the cross made once (what it replaced)."""
    from scipy import ndimage

    from synthlung.morphology import _CROSS
    benchmark.group = "tumour erosion (CPU)"
    _run(benchmark, lambda m: ndimage.binary_erosion(m, _CROSS), tumour_box)


def _run_gpu(benchmark, fn, box):
    from synthlung.backend import cupy_gpu_available
    if not cupy_gpu_available():
        pytest.skip("needs a CUDA GPU with CuPy")
    import cupy
    mask = cupy.asarray(box)

    def timed():
        out = fn(mask)
        cupy.cuda.get_current_stream().synchronize()
        return out
    benchmark.group = "gpu tumour shell distance"
    # minimum traffic: the uint8 mask read once, the float32 distances written once (benchmarks.gpu's table)
    benchmark.extra_info.update(size="x".join(map(str, box.shape)), voxels=int(box.size), bytes=5 * int(box.size))
    return _run(benchmark, timed)


@pytest.mark.gpu
def test_shell_distance_gpu(benchmark, tumour_box):
    from synthlung.kernels import shell_distance
    _run_gpu(benchmark, lambda m: shell_distance.cuda(m, SPACING, REACH_MM), tumour_box)


@pytest.mark.gpu
def test_cupyx_full_transform_gpu(benchmark, tumour_box):
    def full(m):
        from cupyx.scipy import ndimage
        return ndimage.distance_transform_edt(m, sampling=SPACING)
    _run_gpu(benchmark, full, tumour_box)
