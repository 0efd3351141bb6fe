"""Host noise: a known noise spectrum is recovered, shaped noise has it, the real host's is measured."""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.errors import InputError
from synthlung.hosts.noise import NoiseSpectrum, correlated_noise, measure_spectrum, scan_axis, soft_tissue_mask
from synthlung.qa.realism import spectrum_agreement

SHAPE, SPACING = (64, 64, 40), (0.8, 0.8, 2.0)
SIGMA_MM = np.array([1.2, 1.2, 0.7]) * np.array(SPACING)  # a Gaussian noise kernel, finer across slices


def _known():
    """30 HU noise of power spectrum P(f) = c exp(-4 pi^2 sum (sigma f)^2), and that spectrum's table."""
    f = np.meshgrid(*[np.fft.fftfreq(n, s) for n, s in zip(SHAPE, SPACING)], indexing="ij")
    gain = np.exp(-2 * np.pi ** 2 * sum((s * fi) ** 2 for s, fi in zip(SIGMA_MM, f)))
    scale = 30.0 / np.sqrt(np.mean(gain ** 2))
    noise = scale * np.real(np.fft.ifftn(np.fft.fftn(np.random.default_rng(1).standard_normal(SHAPE)) * gain))
    return noise, lambda fr, fz: scale ** 2 * np.prod(SPACING) * np.exp(
        -4 * np.pi ** 2 * ((SIGMA_MM[0] * fr) ** 2 + (SIGMA_MM[2] * fz) ** 2))


def test_a_known_noise_spectrum_is_recovered():
    noise, power = _known()
    spec = measure_spectrum(noise + 50.0, np.ones(SHAPE, bool), SPACING, 2)
    assert spec.std_hu == pytest.approx(30.0, rel=0.05)
    fr, fz = np.meshgrid(spec.f_inplane, spec.f_axial, indexing="ij")
    truth = NoiseSpectrum(30.0, 2, spec.f_inplane, spec.f_axial, tuple(map(tuple, power(fr, fz))), 0)
    agree = spectrum_agreement(spec, truth)
    assert agree["inplane_overlap"] > 0.9 and agree["axial_overlap"] > 0.9, agree
    assert 0.85 < agree["inplane_frequency_ratio"] < 1.2 and 0.85 < agree["axial_frequency_ratio"] < 1.2, agree
    # A white spectrum is far from it: the measure can fail.
    white = NoiseSpectrum(30.0, 2, spec.f_inplane, spec.f_axial, tuple(map(tuple, np.ones(fr.shape))), 0)
    assert spectrum_agreement(spec, white)["inplane_overlap"] < 0.7


def test_shaped_noise_has_the_spectrum_and_is_reproducible():
    noise, _ = _known()
    spec = measure_spectrum(noise, np.ones(SHAPE, bool), SPACING, 2)
    normal = np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32)
    shaped = correlated_noise(SHAPE, SPACING, spec, normal)
    assert shaped.dtype == np.float32 and shaped.std() == pytest.approx(1.0, rel=0.05)
    again = measure_spectrum(30.0 * shaped, np.ones(SHAPE, bool), SPACING, 2)
    agree = spectrum_agreement(again, spec)
    assert agree["inplane_overlap"] > 0.93 and agree["axial_overlap"] > 0.93, agree
    assert np.array_equal(shaped, correlated_noise(SHAPE, SPACING, spec, normal.copy()))
    with pytest.raises(InputError, match="voxels"):
        measure_spectrum(noise, np.zeros(SHAPE, bool), SPACING, 2)
    assert NoiseSpectrum.from_record(spec.to_record()) == spec


def test_the_real_hosts_soft_tissue_noise(chest_ct_path):
    from synthlung.io import load
    from synthlung.qa.realism import highpass_noise_hu
    image = load(chest_ct_path)
    axis = scan_axis(image.affine)
    assert axis == 2
    tissue = soft_tissue_mask(image.array, image.spacing)
    hu = image.array[tissue].astype(float)
    assert tissue.sum() > 100_000 and 20 < np.median(hu) < 90  # muscle, not lung or fat
    spec = measure_spectrum(image.array, tissue, image.spacing, axis)
    assert 25.0 < spec.std_hu < 45.0
    # CT noise is correlated: its spectrum falls from low to high frequency, in-plane and across slices.
    inplane, axial = spec.profiles()
    assert inplane[:3].sum() > 2 * inplane[-3:].sum() and axial[:2].sum() > 2 * axial[-2:].sum()
    assert 25.0 < highpass_noise_hu(image.array, tissue) < 40.0


def test_noise_that_changes_with_place_is_followed():
    rng = np.random.default_rng(2)
    shape, spacing = (96, 40, 30), (2.0, 2.0, 2.0)  # 192 mm along the first axis: three blocks
    noise = rng.standard_normal(shape)
    noise[:48] *= 20.0
    noise[48:] *= 40.0
    spec = measure_spectrum(noise, np.ones(shape, bool), spacing, 2)
    quiet, loud = spec.std_near((10, 20, 15), spacing), spec.std_near((85, 20, 15), spacing)
    assert 1.4 < loud / quiet < 2.1, (quiet, loud)
    assert quiet < spec.std_hu < loud
    assert NoiseSpectrum.from_record(spec.to_record()) == spec
    flat = NoiseSpectrum(spec.std_hu, 2, spec.f_inplane, spec.f_axial, spec.nps, spec.n_voxels)
    assert flat.std_near((10, 20, 15), spacing) == spec.std_hu


@pytest.mark.parametrize("shape", [(6, 5, 8), (5, 7, 9), (1, 5, 2)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_noise_gain_cpu_and_cuda_match_the_array_expressions(shape, axis):
    """The filter on a tumour-sized box (odd and even sizes, every scan axis), against the oracle;
    a table with a negative entry (clamped to 0) and frequencies beyond it (held at its edge)."""
    from synthlung.kernels import noise_gain

    from _launches import on_device, on_host
    rng = np.random.default_rng(2)
    table = rng.uniform(0.5, 40.0, (6, 4)).astype(np.float32)
    table[3, 1] = -2.0
    args = (shape, (0.7, 0.9, 2.5), table, axis, 0.12, 0.08)
    want = noise_gain.reference(*args)
    assert want.shape == (shape[0], shape[1], shape[2] // 2 + 1)
    for got in (noise_gain.cpu(*args), on_host(noise_gain.cuda(shape, args[1], on_device(table), *args[3:]))):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # unit std: mean power over the full spectrum is 1 (rfft half counted twice where it stands for two)
    twice = np.full(want.shape[2], 2.0)
    twice[0] = 1.0
    if shape[2] % 2 == 0:
        twice[-1] = 1.0
    assert (want.astype(np.float64) ** 2 * twice).sum() / np.prod(shape) == pytest.approx(1.0, rel=1e-5)


def test_noise_gain_refuses_bad_input():
    from synthlung.kernels import noise_gain
    table = np.ones((3, 3), np.float32)
    with pytest.raises(InputError, match="scan_axis"):
        noise_gain.cpu((4, 4, 4), (1.0, 1.0, 1.0), table, 3, 0.1, 0.1)
    with pytest.raises(InputError, match="spacings"):
        noise_gain.cpu((4, 4, 4), (1.0, 0.0, 1.0), table, 2, 0.1, 0.1)
    with pytest.raises(InputError, match="steps"):
        noise_gain.cpu((4, 4, 4), (1.0, 1.0, 1.0), table, 2, 0.0, 0.1)
