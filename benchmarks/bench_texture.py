"""The texture step on a tumour's box: synthlung's small-box paths beside the array expressions they replace.

Box: 10 x 10 x 12 voxels at the chest host's 1.5 mm, the size of the noise box a
13-14 mm tumour gets there (``add_host_noise`` fills the bounding box of the blend
weight). Spectrum: the chest CT's measured soft-tissue noise (../shared/data).

* the noise filter's gain: ``kernels.noise_gain.cpu`` vs ``noise_gain.reference``
  (the NumPy expressions ``correlated_noise`` ran before), and the whole
  ``correlated_noise`` call (gain, ``scipy.fft`` there and back);
* the denoising's Gaussian mean within the tumour core: ``synthlung.smoothing.local_mean``
  (scipy's ``correlate1d`` with weights made once) vs two ``scipy.ndimage.gaussian_filter``
  calls, on the tumour's 12^3 box.

Run: ``pytest benchmarks/bench_texture.py --benchmark-enable``.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthlung.hosts.noise import correlated_noise, measure_noise
from synthlung.kernels import noise_gain
from synthlung.smoothing import local_mean

SPACING = (1.5, 1.5, 1.5)
NOISE_BOX = (10, 10, 12)
CORE_BOX = (12, 12, 12)
ROUNDS = 200


@pytest.fixture(scope="module")
def spectrum(data_dir):
    from synthlung.io import load
    return measure_noise(load(data_dir / "totalseg-chest" / "chest_ct.nii.gz"), "chest")


def _gain_args(spectrum):
    fr, fz = spectrum.f_inplane, spectrum.f_axial
    return (NOISE_BOX, SPACING, np.asarray(spectrum.nps, np.float32), spectrum.scan_axis, fr[1] - fr[0], fz[1] - fz[0])


def _run(benchmark, group, fn, *args):
    benchmark.group = group
    fn(*args)  # JIT
    return benchmark.pedantic(fn, args, rounds=ROUNDS, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("impl", ["cpu", "reference"])
def test_noise_gain(benchmark, spectrum, impl):
    args = _gain_args(spectrum)
    gain = _run(benchmark, "noise filter gain, 10 x 10 x 12 box", getattr(noise_gain, impl), *args)
    np.testing.assert_allclose(gain, noise_gain.reference(*args), rtol=2e-6)


def test_correlated_noise(benchmark, spectrum):
    normal = np.random.default_rng(0).standard_normal(NOISE_BOX, dtype=np.float32)
    noise = _run(benchmark, "noise filter gain, 10 x 10 x 12 box", correlated_noise, NOISE_BOX, SPACING, spectrum,
                 normal)
    assert noise.shape == NOISE_BOX and 0.5 < noise.std() < 1.5


@pytest.fixture(scope="module")
def core_box():
    rng = np.random.default_rng(1)
    seed = rng.normal(40.0, 25.0, CORE_BOX).astype(np.float32)
    grid = np.indices(CORE_BOX) - (np.asarray(CORE_BOX)[:, None, None, None] - 1) / 2
    core = ((grid ** 2).sum(axis=0) <= 16.0).astype(np.float32)
    return seed, core


def test_local_mean_synthlung(benchmark, core_box):
    seed, core = core_box
    _run(benchmark, "Gaussian mean within the tumour core, 12^3 box", local_mean, seed, core, 1.0)


def test_local_mean_gaussian_filter(benchmark, core_box):
    seed, core = core_box

    def scipy_pair():
        return ndimage.gaussian_filter(seed * core, 1.0) / np.maximum(ndimage.gaussian_filter(core, 1.0), 1e-6)
    out = _run(benchmark, "Gaussian mean within the tumour core, 12^3 box", scipy_pair)
    assert np.array_equal(out, local_mean(seed, core, 1.0))
