"""The host's texture on an inserted tumour: its noise re-synthesised, its vessels run into the rim.

Both work on a blended box (float32 HU, NumPy or CuPy) and change only voxels
inside the tumour's blend weight; the label is never touched.

* :func:`denoise_seed` then :func:`add_host_noise`: a morphed seed carries its own
  scan's noise, resampled (thick slices average it away along the slices, the
  warp smooths it) and unlike the host's. It is smoothed off in the tumour's core
  (Gaussian of ``DENOISE_VOX`` voxels; coarser texture stays), and white noise from
  the case's generator, shaped by the host's soft-tissue noise power spectrum
  (:mod:`synthlung.hosts.noise`), brings the tumour to the host's std, counting the
  noise the smoothed seed keeps (``sqrt(host^2 - kept^2)``), weighted by the blend weight.
* :func:`continue_vessels`: host vessels (above ``vessel_hu``, contrast) that
  run into the tumour from outside keep their HU (a max-composite) in its outer
  ``shell_mm`` instead of stopping at its surface.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from ..backend import array_module
from ..components import label
from ..hosts.noise import NoiseSpectrum, correlated_noise
from ..morphology import core_below_mm, eroded, shell_distance_mm
from ..smoothing import local_mean

DENOISE_VOX = 1.0
"""Sigma (voxels) of the Gaussian that takes the seed's own noise off inside the tumour."""
CORE_DEPTH_MM = 1.5
"""Voxel-centre depth (mm) below the tumour surface beyond which the seed is denoised."""


def standard_normal(xp: Any, rng: Any, shape: tuple[int, ...]) -> Any:
    """Standard normal float32 numbers on ``xp`` from ``rng`` (a NumPy Generator; on CuPy a
    CuPy Generator, or a NumPy one that seeds one with a single draw)."""
    if xp is np:
        return rng.standard_normal(shape, dtype=np.float32)
    if isinstance(rng, np.random.Generator):
        rng = xp.random.default_rng(int(rng.integers(2**63)))
    return rng.standard_normal(shape, dtype=xp.float32)


@cache
def _white_noise_kept(sigma_vox: float) -> float:
    """For white noise, std kept by a Gaussian of ``sigma_vox`` over std it removes."""
    from scipy import ndimage
    n = 2 * int(np.ceil(4 * sigma_vox)) + 1
    delta = np.zeros((n, n, n))
    delta[n // 2, n // 2, n // 2] = 1.0
    g = ndimage.gaussian_filter(delta, sigma_vox)
    return float(np.sqrt((g * g).sum() / ((delta - g) ** 2).sum()))


def denoise_seed(seed: Any, tumour: Any, spacing_mm: tuple[float, float, float]) -> tuple[Any, float]:
    """The seed with its own noise smoothed off in the tumour's core, and the noise std (HU) it keeps.

    The core (deeper than ``CORE_DEPTH_MM``, never the outer voxel layer: on coarse
    grids that is the partial-volume rim) becomes its Gaussian mean of
    ``DENOISE_VOX`` voxels normalised within the core, so neither the lung around
    nor the partial-volume rim darkens it; texture coarser than that stays, the rim
    keeps its values. The noise kept is estimated from what was removed, as if it
    were white: ``std(removed) * kept/removed`` of such a Gaussian.
    """
    xp = array_module(seed)
    core = core_below_mm(tumour, CORE_DEPTH_MM, spacing_mm)
    if not bool(core.any()):
        return seed, 0.0
    smooth = local_mean(seed, core.astype(xp.float32), DENOISE_VOX)
    kept = float(xp.std((seed - smooth)[core])) * _white_noise_kept(DENOISE_VOX)
    return xp.where(core, smooth, seed).astype(xp.float32), kept


def add_host_noise(image: Any, weight: Any, tumour: Any, spacing_mm: tuple[float, float, float],
                   spectrum: NoiseSpectrum, kept_hu: float, rng: Any) -> tuple[Any, float]:
    """``image`` plus noise of the host's spectrum and std ``sqrt(host^2 - kept^2)``, times
    ``weight``; returns it and that std (HU). ``kept_hu``: the noise the seed still carries.

    The noise's mean over the tumour's core (its voxels less the outer layer) is taken
    off: the seed's own mean HU, real and already with its scan's noise in it, is kept.
    """
    xp = array_module(image)
    extra = float(np.sqrt(max(spectrum.std_hu ** 2 - kept_hu ** 2, 0.0)))
    if extra == 0.0:
        return image, 0.0
    noise = correlated_noise(image.shape, spacing_mm, spectrum, standard_normal(xp, rng, image.shape))
    core = eroded(tumour)
    core = core if bool(core.any()) else tumour
    if bool(core.any()):
        noise -= noise[core].mean()
    return image + (extra * weight) * noise, extra


def continue_vessels(image: Any, host: Any, tumour: Any, spacing_mm: tuple[float, float, float],
                     vessel_hu: float = 100.0, shell_mm: float = 1.5) -> tuple[Any, int]:
    """Host vessels entering the tumour kept in its outer ``shell_mm``; returns image, voxels kept.

    A vessel is a 26-connected component of ``host > vessel_hu`` with voxels outside
    the tumour. Inside the tumour, at depth ``t`` below its surface (the voxel-centre
    distance to the outside minus half the finest spacing), the image becomes
    ``image + f(t) * max(host - image, 0)``, ``f`` 1 up to ``shell_mm / 2`` and
    falling linearly to 0 at ``shell_mm``: the vessel fades into the tumour.
    """
    xp = array_module(image)
    vessel = host > float(vessel_hu)
    if not bool((vessel & tumour).any()):
        return image, 0
    labels, n = label(vessel, 26)
    running = xp.zeros(n + 1, dtype=bool)
    running[labels[vessel & ~tumour]] = True
    running[0] = False
    half = 0.5 * min(spacing_mm)  # depth is 0 half a voxel inside the surface; fade is 0 from shell_mm on
    depth = shell_distance_mm(tumour, spacing_mm, float(shell_mm) + half) - half
    fade = xp.clip(2.0 - 2.0 * depth / float(shell_mm), 0.0, 1.0).astype(xp.float32)
    keep = running[labels] & tumour & (fade > 0)
    gain = xp.where(keep, fade, xp.float32(0.0))
    return image + gain * xp.maximum(host - image, 0.0), int(keep.sum())
