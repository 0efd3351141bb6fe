"""Connected components: cpu and cuda (simulator / GPU) against scipy.ndimage.label."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

import synthlung
from synthlung.errors import InputError
from synthlung.kernels import ccl, ccl_stats

CONN = (6, 18, 26)


def assert_same_as_scipy(mask, connectivity, labels, n):
    want, want_n = ccl.reference(mask, connectivity)
    assert labels.dtype == np.uint32
    assert labels.shape == mask.shape
    assert n == want_n
    np.testing.assert_array_equal(labels, want)


@pytest.mark.parametrize("connectivity", CONN)
@pytest.mark.parametrize("density", [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
def test_random_masks_match_scipy(connectivity, density):
    rng = np.random.default_rng(int(density * 100) + connectivity)
    for shape in [(23, 29, 31), (17, 13, 64), (1, 37, 41), (5, 1, 11), (3, 19, 1), (2, 2, 8)]:
        mask = rng.random(shape) < density
        labels, n = synthlung.label(mask, connectivity)
        assert_same_as_scipy(mask, connectivity, labels, n)


@pytest.mark.parametrize("connectivity", CONN)
def test_layouts_and_views(connectivity):
    """Fortran order, transposes, reversed and strided views give scipy's canonical order."""
    rng = np.random.default_rng(connectivity)
    base = ndimage.binary_opening(rng.random((24, 31, 40)) < 0.55)
    views = [np.asfortranarray(base), base.transpose(2, 0, 1), base[::-1, :, ::2],
             base[3:20, ::-3, 5:], np.asfortranarray(base)[:, ::2, ::-1], base.transpose(1, 2, 0)[::2]]
    for mask in views:
        labels, n = synthlung.label(mask, connectivity)
        assert_same_as_scipy(mask, connectivity, labels, n)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.uint32])
def test_nonzero_is_foreground(dtype):
    rng = np.random.default_rng(3)
    mask = (rng.random((9, 16, 17)) < 0.4) * rng.integers(1, 5, (9, 16, 17))
    labels, n = synthlung.label(mask.astype(dtype), 26)
    assert_same_as_scipy(mask != 0, 26, labels, n)


@pytest.mark.parametrize("connectivity", CONN)
def test_empty_and_full(connectivity):
    empty = np.zeros((4, 9, 16), bool)
    labels, n = synthlung.label(empty, connectivity)
    assert n == 0 and labels.dtype == np.uint32 and not labels.any()
    labels, n = synthlung.label(~empty, connectivity)
    assert n == 1 and (labels == 1).all()
    labels, n = synthlung.label(np.zeros((0, 4, 4), bool), connectivity)
    assert n == 0 and labels.shape == (0, 4, 4)


def test_connectivity_matters():
    """Two voxels touching at an edge / a corner: 6 vs 18 vs 26."""
    edge = np.zeros((2, 2, 2), bool)
    edge[0, 0, 0] = edge[0, 1, 1] = True
    corner = np.zeros((2, 2, 2), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True
    assert [synthlung.label(edge, c)[1] for c in CONN] == [2, 1, 1]
    assert [synthlung.label(corner, c)[1] for c in CONN] == [2, 2, 1]


@pytest.mark.parametrize("connectivity,rank", [(4, 1), (8, 2)])
def test_2d(connectivity, rank):
    rng = np.random.default_rng(rank)
    mask = rng.random((53, 47)) < 0.45
    labels, n = synthlung.label(mask, connectivity)
    want, want_n = ndimage.label(mask, ndimage.generate_binary_structure(2, rank))
    assert n == want_n
    np.testing.assert_array_equal(labels, want)


def test_bad_input():
    with pytest.raises(InputError, match="connectivity"):
        synthlung.label(np.ones((3, 3, 3), bool), 10)
    with pytest.raises(InputError, match="connectivity"):
        synthlung.label(np.ones((3, 3), bool), 26)
    with pytest.raises(InputError, match="2-D or 3-D"):
        synthlung.label(np.ones((2, 3, 3, 3), bool))
    with pytest.raises(InputError, match="backend"):
        synthlung.label(np.ones((3, 3, 3), bool), backend="tpu")


@settings(max_examples=60, deadline=None)
@given(mask=arrays(bool, st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 17))),
       connectivity=st.sampled_from(CONN), fortran=st.booleans())
def test_hypothesis_masks(mask, connectivity, fortran):
    if fortran:
        mask = np.asfortranarray(mask)
    labels, n = synthlung.label(mask, connectivity)
    assert_same_as_scipy(mask, connectivity, labels, n)


@pytest.fixture(scope="module")
def lung_mask(lung1_paths):
    """lung1 thresholded at HU < -400 (air and lungs), as stored: Fortran order, x-y-z axes."""
    import nrrd
    image, _ = nrrd.read(str(lung1_paths[0]))
    return image < -400


@pytest.mark.realdata
@pytest.mark.parametrize("connectivity", CONN)
def test_real_lung_mask(lung_mask, connectivity):
    labels, n = synthlung.label(lung_mask, connectivity)
    assert n > 1
    assert_same_as_scipy(lung_mask, connectivity, labels, n)
    c_order = np.ascontiguousarray(lung_mask[:, :, ::3])
    labels, n = synthlung.label(c_order, connectivity)
    assert_same_as_scipy(c_order, connectivity, labels, n)


def test_torch_round_trip():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    mask = rng.random((6, 10, 12)) < 0.4
    labels, n = synthlung.label(torch.from_numpy(mask), 26)
    assert isinstance(labels, torch.Tensor)
    assert_same_as_scipy(mask, 26, labels.numpy(), n)
    stats = synthlung.component_stats(labels, n)
    assert isinstance(stats.counts, torch.Tensor)
    np.testing.assert_array_equal(stats.counts.numpy(), np.bincount(labels.numpy().ravel())[1:])


# ---------------------------------------------------------------- cuda (simulator or GPU)

def _device(x):
    from synthlung.backend import cupy_gpu_available
    if cupy_gpu_available():
        import cupy
        return cupy.asarray(x)
    return x


def _host(x):
    from synthlung.backend import asnumpy
    return asnumpy(x)


@pytest.mark.parametrize("connectivity", CONN)
@pytest.mark.parametrize("shape,density", [((6, 7, 9), 0.3), ((5, 8, 8), 0.6), ((1, 9, 11), 0.5),
                                           ((16, 16, 16), 0.9)])
def test_cuda_matches_cpu(shape, density, connectivity):
    rng = np.random.default_rng(sum(shape) + connectivity)
    mask = rng.random(shape) < density
    labels, n = synthlung.label(_device(mask), connectivity, backend="cuda")
    cpu_labels, cpu_n = synthlung.label(mask, connectivity)
    assert n == cpu_n
    np.testing.assert_array_equal(_host(labels), cpu_labels)


def test_cuda_fortran_and_empty():
    rng = np.random.default_rng(11)
    mask = np.asfortranarray(rng.random((5, 6, 7)) < 0.5)
    labels, n = ccl.cuda(_device(mask), 18)
    assert_same_as_scipy(mask, 18, _host(labels), n)
    labels, n = ccl.cuda(_device(np.zeros((3, 4, 5), bool)), 26)
    assert n == 0 and not _host(labels).any()


CUDA_LABELLERS = {"blocks": ccl.cuda, "per-voxel": ccl.cuda_voxel}


def _cuda_same_as_scipy_and_cpu(fn, mask, connectivity):
    labels, n = fn(_device(mask), connectivity)
    labels = _host(labels)
    assert_same_as_scipy(mask, connectivity, labels, n)
    cpu_labels, cpu_n = ccl.cpu(mask, connectivity)
    assert n == cpu_n
    np.testing.assert_array_equal(labels, cpu_labels)


@pytest.mark.parametrize("density", [0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("shape", [(5, 7, 9), (1, 9, 11), (16, 3, 5), (3, 1, 13)])
def test_cuda_blocks_26_random(shape, density):
    """2x2x2 blocks, odd sizes (partial blocks on every far face) and flat volumes."""
    rng = np.random.default_rng(int(density * 10) + sum(shape))
    _cuda_same_as_scipy_and_cpu(ccl.cuda, rng.random(shape) < density, 26)


def _checkerboards(shape):
    z, y, x = np.indices(shape)
    return {"parity": (z + y + x) % 2 == 0,  # touches only along edges and corners
            "corners": (z % 2 == y % 2) & (y % 2 == x % 2),  # touches only at corners
            "planes": ((z + y) % 2 == 0) & (x % 3 != 2)}


@pytest.mark.parametrize("connectivity", CONN)
@pytest.mark.parametrize("variant", sorted(CUDA_LABELLERS))
def test_cuda_checkerboards_empty_full(variant, connectivity):
    """Patterns where 6, 18 and 26 give different answers inside one 2x2x2 block."""
    fn = CUDA_LABELLERS[variant]
    for mask in _checkerboards((6, 7, 9)).values():
        _cuda_same_as_scipy_and_cpu(fn, mask, connectivity)
    for mask in (np.zeros((5, 4, 3), bool), np.ones((5, 4, 3), bool), np.ones((1, 1, 1), bool)):
        _cuda_same_as_scipy_and_cpu(fn, mask, connectivity)


@pytest.mark.parametrize("variant", sorted(CUDA_LABELLERS))
def test_cuda_connectivity_within_a_block(variant):
    """Two voxels of one 2x2x2 block touching at an edge / a corner are one component only if connected."""
    fn = CUDA_LABELLERS[variant]
    edge = np.zeros((2, 2, 2), bool)
    edge[0, 0, 0] = edge[0, 1, 1] = True
    corner = np.zeros((2, 2, 2), bool)
    corner[0, 1, 1] = corner[1, 0, 0] = True
    assert [fn(_device(edge), c)[1] for c in CONN] == [2, 1, 1]
    assert [fn(_device(corner), c)[1] for c in CONN] == [2, 2, 1]


def test_cuda_block_order_is_canonical():
    """A component rooted in a later block but starting earlier in C order still gets label 1."""
    mask = np.zeros((4, 4, 6), bool)
    mask[1, 0, 0] = True  # block (0, 0, 0), second slice
    mask[0, 1, 4:] = True  # block (0, 0, 2), first slice: first voxel in C order
    labels, n = ccl.cuda(_device(mask), 26)
    assert n == 2
    assert _host(labels)[0, 1, 4] == 1 and _host(labels)[1, 0, 0] == 2


@settings(max_examples=8, deadline=None)
@given(mask=arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 7))),
       connectivity=st.sampled_from(CONN))
def test_cuda_hypothesis_masks(mask, connectivity):
    _cuda_same_as_scipy_and_cpu(ccl.cuda, mask, connectivity)


# ---------------------------------------------------------------- component_stats

def assert_stats_equal(got, want):
    counts, lo, hi, centroid = (_host(a) for a in got)
    np.testing.assert_array_equal(counts, want[0])
    np.testing.assert_array_equal(lo, want[1])
    np.testing.assert_array_equal(hi, want[2])
    np.testing.assert_allclose(centroid, want[3], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(11, 23, 37), (1, 30, 17), (40, 3, 5)])
def test_stats_cpu_matches_reference(shape):
    rng = np.random.default_rng(len(shape) + shape[0])
    labels, n = synthlung.label(rng.random(shape) < 0.3, 6)
    stats = synthlung.component_stats(labels, n)
    assert len(stats) == n and stats.counts.sum() == (labels > 0).sum()
    assert_stats_equal((stats.counts, stats.bbox_lo, stats.bbox_hi, stats.centroid),
                       ccl_stats.reference(labels, n))


def test_stats_gaps_and_2d():
    labels = np.zeros((4, 5, 6), np.uint32)
    labels[1, 2, 3:5] = 3
    labels[3, 0, 0] = 1
    stats = synthlung.component_stats(labels, 4)
    np.testing.assert_array_equal(stats.counts, [1, 0, 2, 0])
    np.testing.assert_array_equal(stats.bbox_lo[2], [1, 2, 3])
    np.testing.assert_array_equal(stats.bbox_hi[2], [2, 3, 5])
    np.testing.assert_allclose(stats.centroid[2], [1, 2, 3.5])
    assert np.isnan(stats.centroid[1]).all()
    flat = synthlung.component_stats(labels[1], 3)
    np.testing.assert_array_equal(flat.bbox_lo[2], [2, 3])
    np.testing.assert_allclose(flat.centroid[2], [2, 3.5])


@pytest.mark.parametrize("shape", [(6, 7, 9), (1, 12, 13)])
def test_stats_cuda_matches_reference(shape):
    rng = np.random.default_rng(shape[0])
    labels, n = synthlung.label(rng.random(shape) < 0.4, 26)
    got = ccl_stats.cuda(_device(labels), n)
    assert_stats_equal(got, ccl_stats.reference(labels, n))


@settings(max_examples=60, deadline=None)
@given(labels=arrays(st.sampled_from([np.int32, np.int16, np.uint8, np.uint32]),
                     st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 7)),
                     elements=st.integers(0, 9)),
       shift=st.integers(-3, 0), n=st.integers(0, 9), impl=st.sampled_from(["cpu", "cuda", "reference"]))
def test_stats_label_range_is_checked(labels, shift, n, impl):
    """Random label volumes, in or out of 0..n: out-of-range labels are refused (no segfault, no wrap)."""
    if labels.dtype.kind == "i":
        labels = labels + labels.dtype.type(shift)  # some negative labels
    fn = {"cpu": ccl_stats.cpu, "reference": ccl_stats.reference,
          "cuda": lambda a, k: ccl_stats.cuda(_device(a), k)}[impl]
    top, bottom = int(labels.max()), int(labels.min())
    if top > n or bottom < 0:
        bad = top if top > n else bottom
        with pytest.raises(InputError, match=rf"label {bad} is (above n={n}|negative)"):
            fn(labels, n)
        with pytest.raises(InputError, match="label"):
            synthlung.component_stats(labels, n)
    else:
        assert_stats_equal(fn(labels, n), ccl_stats.reference(labels, n))


def test_stats_refuse_float_labels():
    with pytest.raises(InputError, match="integers"):
        synthlung.component_stats(np.ones((2, 2, 2), np.float32), 1)


# ---------------------------------------------------------------- real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("connectivity", CONN)
def test_gpu_matches_cupyx(lung_mask, connectivity):
    import cupy
    from cupyx.scipy import ndimage as cndi
    mask = cupy.asarray(np.ascontiguousarray(lung_mask))
    labels, n = synthlung.label(mask, connectivity)
    assert isinstance(labels, cupy.ndarray)
    structure = cupy.asarray(ndimage.generate_binary_structure(3, CONN.index(connectivity) + 1))
    want, want_n = cndi.label(mask, structure=structure)
    assert n == int(want_n)
    assert bool((labels == want).all())
    voxel_labels, voxel_n = ccl.cuda_voxel(mask, connectivity)
    assert voxel_n == n and bool((voxel_labels == want).all())
    stats = synthlung.component_stats(labels, n)
    assert_stats_equal((stats.counts, stats.bbox_lo, stats.bbox_hi, stats.centroid),
                       ccl_stats.cpu(cupy.asnumpy(labels), n))
