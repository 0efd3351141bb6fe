"""Blending kernels (alpha, MGPCG Poisson) against NumPy/SciPy, and the blend() front end."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from synthlung.synthesis.blending import blend
from synthlung.errors import InputError
from synthlung.kernels import blend as K

SPACINGS = [(1.0, 1.0, 1.0), (5.0, 0.57, 0.57), (2.5, 1.0, 0.7)]


def _ball(shape, r, centre=None):
    c = [(n - 1) / 2 for n in shape] if centre is None else centre
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r


def _case(seed=0, shape=(14, 16, 15), core=True):
    """Random host/seed boxes, a ball ring to solve, optionally a held core at seed HU."""
    rng = np.random.default_rng(seed)
    host = rng.normal(-800, 60, shape).astype(np.float32)
    seed_img = (rng.normal(0, 80, shape) + 300 * _ball(shape, 3)).astype(np.float32)
    solve = _ball(shape, 5.5)
    fixed = host.copy()
    if core:
        c = _ball(shape, 2.5)
        fixed[c] = seed_img[c]
        solve &= ~c
    return fixed, solve, seed_img, host


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("core,mixed", [(False, False), (True, False), (True, True)])
def test_poisson_cpu_matches_scipy(spacing, core, mixed):
    fixed, solve, seed_img, host = _case(core=core)
    out, it, rel = K.cpu.poisson(fixed, solve, seed_img, host, spacing, mixed, tol=1e-9)
    ref, _, ref_rel = K.reference.poisson(fixed, solve, seed_img, host, spacing, mixed)
    assert ref_rel < 1e-10
    assert 0 < it < 40 and rel <= 1e-9
    np.testing.assert_allclose(out, ref, atol=2e-3)
    # voxels outside the solve mask are the held values, bit for bit
    assert np.array_equal(out[~solve], fixed[~solve])


def test_poisson_reports_residual_of_the_assembled_system():
    fixed, solve, seed_img, host = _case(seed=3)
    out, it, rel = K.cpu.poisson(fixed, solve, seed_img, host, (1.5, 1.5, 1.5), True, tol=1e-5)
    A, b, _ = K.assemble(fixed, solve, seed_img, host, (1.5, 1.5, 1.5), True)
    true_rel = np.linalg.norm(b - A @ out[solve].astype(np.float64)) / np.linalg.norm(b)
    assert rel <= 1e-5 and it >= 1
    assert true_rel < 2e-5  # float32 output rounding on top of the solver's residual
    _, it_max, rel_max = K.cpu.poisson(fixed, solve, seed_img, host, (1.5, 1.5, 1.5), True,
                                       tol=1e-12, max_iter=2)
    assert it_max == 2 and rel_max > 1e-12


def test_textbook_poisson_removes_a_constant_offset():
    """A seed = host + c solved on a region gives back the host: the shift disappears."""
    rng = np.random.default_rng(1)
    shape = (12, 13, 14)
    host = rng.normal(-700, 50, shape).astype(np.float32)
    solve = _ball(shape, 4.5)
    out, _, _ = K.cpu.poisson(host, solve, host + 400.0, None, (2.0, 1.0, 0.8), tol=1e-10)
    np.testing.assert_allclose(out, host, atol=2e-3)


def test_core_held_exactly():
    fixed, solve, seed_img, host = _case(seed=2)
    core = ~solve & _ball(fixed.shape, 2.5)
    out, _, _ = K.cpu.poisson(fixed, solve, seed_img, host, (1.0, 1.0, 1.0))
    assert np.array_equal(out[core], seed_img[core])


def test_poisson_rejects_solve_mask_on_the_box_faces():
    fixed, solve, seed_img, host = _case()
    solve[0, 5, 5] = True
    with pytest.raises(InputError, match="faces"):
        K.cpu.poisson(fixed, solve, seed_img, host)


def test_alpha_cpu_exact_against_numpy():
    rng = np.random.default_rng(4)
    h, s = (rng.normal(0, 2000, (9, 10, 11)).astype(np.float32) for _ in range(2))
    w = rng.random((9, 10, 11)).astype(np.float32)
    out = K.cpu.alpha(h, s, w, -1024, 3071)
    assert out.dtype == np.float32
    assert np.array_equal(out, K.reference.alpha(h, s, w, -1024, 3071))
    assert out.min() >= -1024 and out.max() <= 3071


def test_cuda_matches_cpu_in_simulator_or_gpu():
    """Same algorithm, same iteration count: the iterates agree to float rounding."""
    fixed, solve, seed_img, host = _case(shape=(8, 9, 8), seed=5)
    solve &= _ball(fixed.shape, 2.6)
    args = (fixed, solve, seed_img, host, (2.0, 1.0, 1.0), True, 1e-12, 1)
    ref = K.cpu.poisson(*args)
    try:
        import cupy as xp
        args = tuple(xp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    except ImportError:
        xp = np
    out = K.cuda.poisson(*args)
    assert out[1] == ref[1] == 1
    np.testing.assert_allclose(xp.asnumpy(out[0]) if xp is not np else out[0], ref[0], atol=1e-2)
    assert abs(out[2] - ref[2]) <= 1e-3 * ref[2] + 1e-9  # float32 rounding near convergence
    w = np.random.default_rng(6).random(fixed.shape).astype(np.float32)
    a = K.cuda.alpha(*(xp.asarray(v) for v in (host, seed_img, w)), -1024, 3071)
    a = xp.asnumpy(a) if xp is not np else a
    np.testing.assert_allclose(a, K.cpu.alpha(host, seed_img, w, -1024, 3071), atol=1e-3)


# ------------------------------------------------------------------ front end


def _scene(shape=(20, 22, 24), offset=-230.0):
    """A host lung (-850 HU + noise) and a seed: 40 HU tumour in its own, brighter lung."""
    rng = np.random.default_rng(7)
    host = rng.normal(-850, 15, shape).astype(np.float32)
    ball = _ball(shape, 5.0)
    soft = ball.astype(np.float32)
    seed = np.where(ball, 40.0, -850.0 - offset).astype(np.float32)
    seed += rng.normal(0, 5, shape).astype(np.float32)
    return host, seed, soft


@pytest.mark.parametrize("method", ["alpha", "poisson", "poisson-textbook", "replace"])
def test_blend_touches_only_its_region(method):
    host, seed, soft = _scene()
    res = blend(host, seed, soft, method=method, spacing_mm=(1.5, 1.5, 1.5), feather_mm=2.0)
    assert res.image.dtype == np.float32 and res.image.shape == host.shape
    assert np.array_equal(res.image[~res.region], host[~res.region])
    if method.startswith("poisson"):
        assert res.iterations > 0 and res.residual <= 1e-5


def test_core_held_poisson_keeps_tumour_hu_textbook_shifts_it():
    host, seed, soft = _scene()
    core = _ball(host.shape, 3.5)
    held = blend(host, seed, soft, method="poisson", spacing_mm=(1.5,) * 3)
    text = blend(host, seed, soft, method="poisson-textbook", spacing_mm=(1.5,) * 3)
    seed_core = seed[core].mean()
    assert abs(held.image[core].mean() - seed_core) < 5
    # the textbook solve carries the 230 HU background difference into the tumour
    assert seed_core - text.image[core].mean() > 100


def test_poisson_changes_nothing_outside_the_label_by_default():
    method = "poisson"
    host, seed, soft = _scene()
    res = blend(host, seed, soft, method=method, spacing_mm=(1.5,) * 3)
    outside = soft < 0.5
    assert not res.region[outside].any()
    assert np.array_equal(res.image[outside], host[outside])
    wide = blend(host, seed, soft, method=method, spacing_mm=(1.5,) * 3, margin_mm=3.0)
    assert np.abs(wide.image - host)[outside].max() > 5.0  # the 3 mm margin does change the lung


def test_poisson_margin_is_anisotropic_in_mm():
    host, seed, soft = _scene()
    res = blend(host, seed, soft, method="poisson", spacing_mm=(3.0, 1.0, 1.0), margin_mm=3.0)
    c = [(n - 1) / 2 for n in host.shape]
    # 3 mm is one voxel along z and three along x
    zc, yc, xc = int(c[0]), int(round(c[1])), int(round(c[2]))
    zs = np.flatnonzero(res.region[:, yc, xc])
    xs = np.flatnonzero(res.region[zc, yc, :])
    ball_z = np.flatnonzero(soft[:, yc, xc] >= 0.5)
    ball_x = np.flatnonzero(soft[zc, yc, :] >= 0.5)
    assert zs.max() - ball_z.max() == 1 and xs.max() - ball_x.max() == 3


def test_alpha_feather_widens_weight_in_mm():
    host, seed, soft = _scene()
    plain = blend(host, seed, soft, method="alpha")
    wide = blend(host, seed, soft, method="alpha", feather_mm=3.0, spacing_mm=(1.0, 1.0, 1.0))
    assert plain.region.sum() == (soft > 0).sum()
    assert wide.region.sum() > plain.region.sum()
    np.testing.assert_array_equal(plain.image[soft >= 0.5], seed[soft >= 0.5])


def test_texture_gives_a_quiet_tumour_the_host_noise_and_spectrum():
    from synthlung.hosts.noise import measure_spectrum
    from synthlung.qa.realism import highpass_noise_hu, spectrum_agreement, tumor_spectrum
    rng = np.random.default_rng(8)
    shape, spacing = (40, 40, 40), (1.0, 1.0, 1.0)
    host = 40 + 30 * ndi.gaussian_filter(rng.standard_normal(shape), 0.8) / 0.16
    spec = measure_spectrum(host, np.ones(shape, bool), spacing, 2)
    seed = np.full(shape, 40.0, np.float32) + rng.normal(0, 2, shape).astype(np.float32)
    soft = _ball(shape, 15).astype(np.float32)
    res = blend(host, seed, soft, method="alpha", texture=spec, spacing_mm=spacing,
                rng=np.random.default_rng(0))
    inner = _ball(shape, 11)
    ratio = highpass_noise_hu(res.image, inner) / highpass_noise_hu(host, np.ones(shape, bool))
    assert 0.85 <= ratio <= 1.15, ratio
    agree = spectrum_agreement(tumor_spectrum(res.image, soft >= 0.5, spacing, 2), spec)
    assert agree["inplane_overlap"] > 0.85 and agree["axial_overlap"] > 0.85, agree
    quiet = blend(host, seed, soft, method="alpha", spacing_mm=spacing)
    assert highpass_noise_hu(quiet.image, inner) < 0.3 * highpass_noise_hu(host, np.ones(shape, bool))
    again = blend(host, seed, soft, method="alpha", texture=spec, spacing_mm=spacing,
                  rng=np.random.default_rng(0))
    assert np.array_equal(res.image, again.image)
    with pytest.raises(InputError, match="rng"):
        blend(host, seed, soft, texture=spec)


def test_vessels_entering_the_tumour_run_into_its_rim_only():
    shape, spacing = (32, 32, 32), (1.0, 1.0, 1.0)
    host = np.full(shape, -850.0, np.float32)
    host[14:18, 14:18, :] = 250.0  # a 4 mm vessel along the last axis, through the tumour
    host[2:4, 2:4, 2:4] = 300.0  # an isolated bright speck, inside the tumour's box only
    soft = _ball(shape, 9).astype(np.float32)
    seed = np.full(shape, 30.0, np.float32)
    tumour = soft >= 0.5
    res = blend(host, seed, soft, method="alpha", spacing_mm=spacing)
    depth = ndi.distance_transform_edt(tumour) - 0.5
    in_vessel = (host > 100) & tumour
    assert res.vessel_voxels > 0
    assert (res.image[in_vessel & (depth <= 0.75)] > 200).all()  # continues into the outer rim
    assert np.allclose(res.image[in_vessel & (depth > 1.5)], 30.0)  # but not into the core
    off = blend(host, seed, soft, method="alpha", spacing_mm=spacing, vessel_hu=None)
    assert off.vessel_voxels == 0 and np.allclose(off.image[tumour & (depth > 0.4)], 30.0)


def test_blend_clips_and_validates():
    host, seed, soft = _scene()
    res = blend(host, seed * 100, soft, method="replace", hu_range=(-1000, 1000))
    assert res.image.max() <= 1000 and res.image.min() >= -1000
    with pytest.raises(InputError, match="method"):
        blend(host, seed, soft, method="magic")
    with pytest.raises(InputError, match="shape"):
        blend(host, seed[1:], soft)


def test_alpha_soft_gain_steepens_the_weight_about_one_half():
    host = np.full((6, 6, 6), -850.0, np.float32)
    seed = np.full((6, 6, 6), 40.0, np.float32)
    soft = np.linspace(0.0, 1.0, 216, dtype=np.float32).reshape(6, 6, 6)
    raw = blend(host, seed, soft, "alpha", soft_gain=1.0).image
    np.testing.assert_allclose(raw, host * (1 - soft) + seed * soft, atol=1e-3)
    steep = blend(host, seed, soft, "alpha").image  # default gain 2
    w = np.clip(0.5 + 2.0 * (soft - 0.5), 0, 1)
    np.testing.assert_allclose(steep, host * (1 - w) + seed * w, atol=1e-3)
    assert (steep[soft >= 0.75] == 40.0).all() and (steep[soft <= 0.25] == -850.0).all()
    with pytest.raises(InputError, match="soft_gain"):
        blend(host, seed, soft, "alpha", soft_gain=0.0)


@pytest.mark.parametrize("method,feather,gain", [("alpha", 0.0, 2.0), ("alpha", 6.0, 2.0), ("alpha", 0.0, 0.5),
                                                  ("replace", 0.0, 2.0)])
def test_insert_blends_the_soft_masks_box_with_the_bytes_of_the_whole_box(method, feather, gain):
    """insert() blends only :func:`blending_box` of a morphed box (a seed crop's context is most
    of it); with texture noise, vessels and a feather ramp the result is byte-identical to
    blending the whole box."""
    from synthlung.hosts.noise import measure_spectrum
    from synthlung.synthesis.insertion import blending_box, insert
    from synthlung.synthesis.morphing import MorphedSeed
    from synthlung.volume import Volume
    rng = np.random.default_rng(11)
    shape, spacing = (34, 30, 28), (1.2, 1.0, 1.5)
    host = (-850 + 25 * ndi.gaussian_filter(rng.standard_normal(shape), 0.8) / 0.16).astype(np.int16)
    host[15:18, 13:16, :] = 250  # a vessel through the tumour
    spec = measure_spectrum(host.astype(np.float32), np.ones(shape, bool), spacing, 2)
    soft = ndi.gaussian_filter(_ball(shape, 6.0).astype(np.float32), 1.0)
    soft[soft < 0.02] = 0.0
    seed = np.where(soft >= 0.5, 35.0, -700.0).astype(np.float32) + rng.normal(0, 4, shape).astype(np.float32)
    eye = np.diag([*spacing, 1.0])
    morphed = MorphedSeed(image=Volume(seed, eye), soft_mask=Volume(soft, eye),
                          mask=Volume((soft >= 0.5).astype(np.uint8), eye), centre_world=(0.0, 0.0, 0.0),
                          lattice_offset=(0, 0, 0), record={})
    options = dict(feather_mm=feather, soft_gain=gain)
    inner = blending_box(soft, method, spacing, options)
    part = np.prod([len(range(*s.indices(n))) for s, n in zip(inner, shape)])
    # a wide ramp, or a gain below 1 (weight above 0 where soft is 0), takes the whole box
    assert part < 0.7 * soft.size if feather == 0 and gain >= 1 else part == soft.size
    big = np.full((50, 44, 40), -900, np.int16)
    offset = (7, 5, 6)
    box = tuple(slice(o, o + n) for o, n in zip(offset, shape))
    big[box] = host
    image, label, inst = big.copy(), np.zeros(big.shape, np.uint8), np.zeros(big.shape, np.uint16)
    insert(image, label, inst, morphed, offset, 1, spacing, method=method, rng=np.random.default_rng(3),
           texture=spec, **options)
    whole = blend(host.astype(np.float32), seed, soft, method=method, spacing_mm=spacing, texture=spec,
                  rng=np.random.default_rng(3), **options)
    want = big.copy()
    want[box] = np.where(whole.region, np.clip(np.rint(whole.image), -1024, 3071).astype(np.int16), host)
    assert whole.vessel_voxels > 0
    assert np.array_equal(image, want)
    assert np.array_equal(label[box], (soft >= 0.5).astype(np.uint8)) and label.sum() == (soft >= 0.5).sum()
    assert np.array_equal(inst > 0, label > 0)
