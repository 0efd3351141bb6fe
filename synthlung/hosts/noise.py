"""A host's soft-tissue noise: standard deviation (HU) and noise power spectrum (HU^2 mm^3).

Measured once per host on homogeneous soft tissue (muscle, not lung, whose noise
differs): voxels whose local mean (Gaussian, sigma 1 voxel) lies in
``SOFT_TISSUE_HU``, more than ``EDGE_MM`` from anything else. The noise there is
the image minus its local mean (a Gaussian of ``DETREND_VOX`` voxels normalised
within the mask, so edges do not leak in). Its masked autocorrelation (by FFT,
lags up to ``LAG_VOX`` voxels), Hann-windowed and Fourier-transformed, gives the
3-D noise power spectrum; dividing by the power the detrending kept
(``|1 - G(f)|^2``, where it kept at least ``MIN_KEPT``; the lowest frequencies take
their neighbours' value) undoes it, and the spectrum's integral is the variance.
The spectrum is kept as a table over in-plane radial frequency and frequency
along the scan axis (cycles/mm): CT noise is rotationally symmetric in the slice
plane, not across it. How the noise changes with place is kept per block of
``BLOCK_MM`` (:meth:`NoiseSpectrum.std_near`).

:func:`correlated_noise` draws white noise from a generator and shapes it by the
table (``xp.fft``: NumPy or CuPy). Everything runs on the image's device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.fft
from scipy.fft import next_fast_len

from ..backend import array_module, asnumpy, dispatch
from ..kernels import noise_gain
from ..errors import InputError
from ..lru import LRUCache
from ..morphology import bounding_box, distance_mm, ndimage_for
from ..smoothing import gaussian, local_mean
from ..volume import Volume

SOFT_TISSUE_HU = (-20.0, 120.0)
"""Local-mean HU range of the soft tissue the noise is measured on (muscle, solid organs)."""
EDGE_MM = 3.0
"""How far (mm) measured voxels stay from fat, bone, air, lung and contrast blood."""
DETREND_VOX = 3.0
"""Sigma (voxels) of the local mean taken off before the noise is measured."""
LAG_VOX = 6
"""Largest autocorrelation lag (voxels) per axis: CT noise decorrelates within 2-3 voxels."""
BLOCK_MM = 60.0
"""Size (mm) of the blocks over which the noise's change with place is measured."""
MIN_BLOCK_VOXELS = 500
"""Fewest measured voxels a block needs to count."""
MIN_KEPT = 0.3
"""Frequencies where the detrending kept less power than this are filled from their neighbours."""


@dataclass(frozen=True)
class NoiseSpectrum:
    """Noise std (HU) and its power spectrum table ``nps[i][j]`` (HU^2 mm^3) at in-plane
    frequency ``f_inplane[i]`` and scan-axis frequency ``f_axial[j]`` (cycles/mm).

    ``scan_axis``: the array axis across the slices; ``n_voxels``: voxels measured.
    ``blocks``: ``(i, j, k, ratio, count)`` per block of about ``BLOCK_MM``: the
    block's centre (voxels of the measured image), its noise over the whole
    measurement's (RMS of the detrended noise) and its voxel count; CT noise
    varies with the path through the body, so :meth:`std_near` scales ``std_hu``
    to a place.
    """

    std_hu: float
    scan_axis: int
    f_inplane: tuple
    f_axial: tuple
    nps: tuple
    n_voxels: int
    blocks: tuple = ()

    def to_record(self) -> dict:
        """JSON-ready form (what ``host.record["soft_tissue_noise"]`` holds)."""
        return {"std_hu": self.std_hu, "scan_axis": self.scan_axis, "f_inplane": list(self.f_inplane),
                "f_axial": list(self.f_axial), "nps": [list(r) for r in self.nps], "n_voxels": self.n_voxels,
                "blocks": [list(b) for b in self.blocks]}

    @classmethod
    def from_record(cls, record: dict) -> "NoiseSpectrum":
        return cls(float(record["std_hu"]), int(record["scan_axis"]), tuple(record["f_inplane"]),
                   tuple(record["f_axial"]), tuple(tuple(r) for r in record["nps"]), int(record["n_voxels"]),
                   tuple(tuple(b) for b in record.get("blocks", ())))

    @cached_property
    def _block_table(self) -> np.ndarray:
        """``blocks`` as a read-only (n, 5) float64 array, made once per spectrum (a host's
        ~100 blocks: 60 us as a fresh array, read on every insertion)."""
        table = np.asarray(self.blocks, dtype=np.float64)
        table.flags.writeable = False
        return table

    def std_near(self, voxel: Any, spacing_mm: tuple[float, float, float]) -> float:
        """The noise std (HU) near ``voxel``: ``std_hu`` times the blocks' ratios, in quadrature,
        weighted by voxel count and a Gaussian of ``BLOCK_MM`` of the distance (mm)."""
        if not self.blocks:
            return self.std_hu
        b = self._block_table
        d = (b[:, :3] - np.asarray(voxel, dtype=np.float64)) * np.asarray(spacing_mm, dtype=np.float64)
        w = b[:, 4] * np.exp(-0.5 * (d ** 2).sum(axis=1) / BLOCK_MM ** 2)
        if w.sum() <= 0:
            return self.std_hu
        return float(self.std_hu * np.sqrt((w * b[:, 3] ** 2).sum() / w.sum()))

    def profiles(self) -> tuple[np.ndarray, np.ndarray]:
        """1-D spectra: in-plane (mean over scan-axis frequency) and along the scan axis
        (mean over in-plane frequency), each normalised to unit sum."""
        p = np.maximum(np.asarray(self.nps, dtype=np.float64), 0.0)
        inplane, axial = p.mean(axis=1), p.mean(axis=0)
        return inplane / max(inplane.sum(), 1e-30), axial / max(axial.sum(), 1e-30)


def scan_axis(affine: np.ndarray) -> int:
    """The array axis whose direction is closest to world z (across axial slices)."""
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    return int(np.argmax(np.abs(cols[2]) / np.linalg.norm(cols, axis=0)))


def soft_tissue_mask(image: Any, spacing_mm: tuple[float, float, float]) -> Any:
    """Homogeneous soft tissue: local mean in ``SOFT_TISSUE_HU``, ``EDGE_MM`` away from other tissue."""
    xp = array_module(image)
    smooth = gaussian(image.astype(xp.float32), 1.0)
    tissue = (smooth >= SOFT_TISSUE_HU[0]) & (smooth <= SOFT_TISSUE_HU[1])
    return distance_mm(tissue, spacing_mm) > EDGE_MM


def detrended(image: Any, mask: Any, sigma_vox: float = DETREND_VOX) -> Any:
    """``image`` minus its local mean (Gaussian of ``sigma_vox``, normalised within ``mask``), 0 outside."""
    xp = array_module(image)
    m = mask.astype(xp.float32)
    img = image.astype(xp.float32) * m
    return (img - local_mean(img, m, sigma_vox)) * m


def _lags(a: Any, lag: int) -> Any:
    """The lags -lag..lag of a circular correlation array, per axis (centre at index ``lag``)."""
    xp = array_module(a)
    for axis, n in enumerate(a.shape):
        a = xp.take(a, xp.asarray(np.arange(-lag, lag + 1) % n), axis=axis)
    return a


def _blocks(noise: Any, mask: Any, spacing_mm: tuple[float, float, float], origin: tuple[int, ...]) -> tuple:
    """``(i, j, k, ratio, count)`` per block of about ``BLOCK_MM`` with ``MIN_BLOCK_VOXELS`` measured voxels."""
    xp = array_module(noise)
    total = float((noise * noise).sum()) / max(int(mask.sum()), 1)
    steps = [max(1, round(BLOCK_MM / s)) for s in spacing_mm]
    out = []
    for lo in np.ndindex(*[-(-n // st) for n, st in zip(noise.shape, steps)]):
        box = tuple(slice(i * st, (i + 1) * st) for i, st in zip(lo, steps))
        count = int(mask[box].sum())
        if count >= MIN_BLOCK_VOXELS:
            ratio = float(xp.sqrt((noise[box] ** 2).sum() / count / max(total, 1e-12)))
            centre = [o + (b.start + min(b.stop, n) - 1) / 2 for o, b, n in zip(origin, box, noise.shape)]
            out.append((*(round(c, 1) for c in centre), round(ratio, 4), count))
    return tuple(out)


def _fill_empty(table: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Entries of ``table`` not ``filled`` take the value of the nearest filled entry (index space)."""
    near = ndimage_for(np).distance_transform_edt(~filled, return_distances=False, return_indices=True)
    return table[tuple(near)]


def measure_spectrum(image: Any, mask: Any, spacing_mm: tuple[float, float, float], axis: int,
                     lag: int = LAG_VOX, min_voxels: int = 1000) -> NoiseSpectrum:
    """Noise std and power spectrum inside ``mask`` (see module doc); ``axis`` is the scan axis."""
    xp = array_module(image)
    box = bounding_box(mask, pad=(lag,) * 3)
    if box is None or int(mask.sum()) < min_voxels:
        raise InputError(f"noise spectrum: {int(mask.sum())} voxels of homogeneous tissue, "
                         f"need >= {min_voxels}")
    m = mask[box].astype(xp.float32)
    x = detrended(image[box], mask[box])
    blocks = _blocks(x, mask[box], spacing_mm, tuple(s.start for s in box))
    # zero padding, so that correlations do not wrap, to sizes with small prime factors (fast FFTs)
    shape = tuple(next_fast_len(n + lag, real=True) for n in m.shape)
    fft, kw = (scipy.fft, {"workers": os.cpu_count() or 1}) if xp is np else (xp.fft, {})  # all cores on the CPU
    fx, fm = (fft.rfftn(a, s=shape, axes=(0, 1, 2), **kw) for a in (x, m))
    num = _lags(fft.irfftn(fx * xp.conj(fx), s=shape, axes=(0, 1, 2), **kw), lag)
    den = _lags(fft.irfftn(fm * xp.conj(fm), s=shape, axes=(0, 1, 2), **kw), lag)
    acf = asnumpy(num / xp.maximum(den, 1.0)).astype(np.float64)
    k = np.arange(-lag, lag + 1)
    hann = 0.5 * (1.0 + np.cos(np.pi * k / (lag + 1)))
    window = hann[:, None, None] * hann[None, :, None] * hann[None, None, :]
    voxel_mm3 = float(np.prod(spacing_mm))
    nps3 = np.real(np.fft.fftn(np.fft.ifftshift(acf * window))) * voxel_mm3
    n = 2 * lag + 1
    freqs = [np.fft.fftfreq(n, s) for s in spacing_mm]
    grid = np.meshgrid(*freqs, indexing="ij")
    # Undo the detrending: it kept |1 - G(f)|^2 of the power, G the Gaussian's transfer.
    kept = (1.0 - np.exp(-2.0 * np.pi ** 2 * sum((DETREND_VOX * s * g) ** 2
                                                 for s, g in zip(spacing_mm, grid)))) ** 2
    valid = kept >= MIN_KEPT
    nps3 = np.where(valid, nps3 / np.maximum(kept, MIN_KEPT), 0.0)
    plane = [a for a in range(3) if a != axis]
    step_r = 1.0 / (n * float(np.mean([spacing_mm[a] for a in plane])))
    ring = np.rint(np.hypot(grid[plane[0]], grid[plane[1]]) / step_r).astype(int)
    step_z = 1.0 / (n * spacing_mm[axis])
    zbin = np.rint(np.abs(grid[axis]) / step_z).astype(int)
    sums = np.zeros((ring.max() + 1, zbin.max() + 1))
    counts = np.zeros_like(sums)
    np.add.at(sums, (ring[valid], zbin[valid]), nps3[valid])
    np.add.at(counts, (ring[valid], zbin[valid]), 1.0)
    table = _fill_empty(np.maximum(sums / np.maximum(counts, 1.0), 0.0), counts > 0)
    variance = float(np.where(valid, np.maximum(nps3, 0.0), table[ring, zbin]).mean()) / voxel_mm3
    return NoiseSpectrum(std_hu=round(float(np.sqrt(variance)), 4), scan_axis=int(axis),
                         f_inplane=tuple(round(i * step_r, 6) for i in range(table.shape[0])),
                         f_axial=tuple(round(j * step_z, 6) for j in range(table.shape[1])),
                         nps=tuple(tuple(round(float(v), 4) for v in row) for row in table),
                         n_voxels=int(mask.sum()), blocks=blocks)


def measure_noise(image: Volume, name: Any = None) -> NoiseSpectrum:
    """The soft-tissue noise of a CT (HU): :func:`measure_spectrum` in :func:`soft_tissue_mask`
    along :func:`scan_axis`; InputError naming ``name`` when too little soft tissue is found."""
    mask = soft_tissue_mask(image.array, image.spacing)
    try:
        return measure_spectrum(image.array, mask, image.spacing, scan_axis(image.affine))
    except InputError as exc:
        raise InputError(f"host {name}: {exc}") from None


_SPECTRA = LRUCache(16)


def host_noise(host: Any) -> NoiseSpectrum:
    """The host's soft-tissue noise, kept in ``host.record["soft_tissue_noise"]``: measured once
    (:func:`measure_noise`), or as the host bank recorded it when the bank was built.

    The spectrum read from a record entry is kept (by the entry's identity, the entry
    held with it), so a prepared host's later cases reuse it and its arrays: the entry
    is read, never changed in place, once it is there."""
    if "soft_tissue_noise" not in host.record:
        host.record["soft_tissue_noise"] = measure_noise(host.image, host.record.get("id")).to_record()
    entry = host.record["soft_tissue_noise"]
    # the cache holds the entry itself, so its id names no other object while it is kept
    _, spectrum = _SPECTRA.get(id(entry), lambda: (entry, NoiseSpectrum.from_record(entry)))
    return spectrum


def correlated_noise(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                     spectrum: NoiseSpectrum, normal: Any) -> Any:
    """Noise of unit std with the spectrum's shape on a box of ``shape`` voxels.

    ``normal``: standard normal numbers of that shape (the case generator's, on the
    wanted device); they are filtered by the square root of the spectrum, bilinearly
    interpolated at each FFT frequency of the box (periodic, so stationary everywhere;
    the filter: :mod:`synthlung.kernels.noise_gain`).
    """
    xp = array_module(normal)
    table = xp.asarray(np.asarray(spectrum.nps, dtype=np.float32))
    fr, fz = spectrum.f_inplane, spectrum.f_axial
    step_r = fr[1] - fr[0] if len(fr) > 1 else 1.0
    step_z = fz[1] - fz[0] if len(fz) > 1 else 1.0
    gain = dispatch(noise_gain, table)(shape, spacing_mm, table, spectrum.scan_axis, step_r, step_z)
    fft = scipy.fft if xp is np else xp.fft  # scipy's: 1.5-2x NumPy's on a tumour's box
    spectrum_of = fft.rfftn(normal, axes=(0, 1, 2))
    return fft.irfftn(spectrum_of * gain, s=tuple(int(n) for n in shape), axes=(0, 1, 2)).astype(xp.float32)
