"""Realism checks of an inserted tumor: density, halo, edge, texture, thick-slice marks, vessels.

* core: mean HU of the tumor voxels more than one voxel inside its surface;
* halo: mean HU in the ring 2-5 mm outside the tumor, after insertion minus before;
  and the unlabelled change (:func:`outside_change_hu`): mean absolute change 0-5 mm
  outside the label, where a halo would be unlabelled;
* edge: the 10-90 % rise distance (mm) of the mean HU profile across the surface,
  binned by signed distance to the surface (:func:`rise_distance_mm`), and the same
  split by the surface's direction against the seed's slice axis
  (:func:`edge_rise_along_across`);
* noise (:func:`highpass_noise_hu`): std of the image minus a 3-D Gaussian of sigma
  1.5 voxels (normalised within the region) deeper than 2 mm inside the tumor
  (:func:`tumor_noise_hu`) or in the host's homogeneous soft tissue
  (:func:`host_tissue_noise_hu`); their quotient is the noise ratio (1 = matched);
* spectra (:func:`spectrum_agreement`): overlap (1 = equal) and mean-frequency ratio
  of the unit-sum in-plane and scan-axis noise power spectra of tumor and host;
* thick slices (:func:`hu_change_ratio`): RMS HU change per mm along the seed's slice
  axis over that across it, inside the tumor (1 = isotropic texture);
* vessels (:func:`vessel_continuity`): of the host's vessel voxels (> +100 HU, running
  in from outside) in the tumor's outer 1 mm, the fraction still above +100 HU.

They run on NumPy boxes; tests and benchmarks use them to compare blending methods,
and ``synthlung qa`` reports them per tumor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..components import label
from ..hosts.noise import NoiseSpectrum, detrended, measure_spectrum, soft_tissue_mask
from ..morphology import distance_mm, signed_distance_mm

NOISE_SIGMA_VOX = 1.5
"""Sigma (voxels) of the Gaussian taken off the image before its noise is measured."""
DEEP_MM = 2.0
"""Depth (mm) below the tumor surface of the voxels whose noise and texture are measured."""


def core_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels more than one voxel inside the surface (6-connected erosion)."""
    return ndi.binary_erosion(np.asarray(mask, dtype=bool), iterations=1)


def ring_mask(mask: np.ndarray, spacing_mm: tuple[float, float, float],
              inner_mm: float = 2.0, outer_mm: float = 5.0) -> np.ndarray:
    """Voxels between ``inner_mm`` and ``outer_mm`` outside the tumor surface."""
    d = signed_distance_mm(mask, spacing_mm)
    return (d > inner_mm) & (d <= outer_mm)


def rise_distance_mm(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float],
                     bin_mm: float = 0.5, reach_mm: float = 6.0, select: np.ndarray | None = None) -> float:
    """10-90 % rise distance (mm) of the radial mean-HU profile across the tumor surface.

    Voxels are binned by signed distance to the surface (only ``select`` ones, if
    given); the profile's plateau levels are the core mean and the 2-5 mm ring mean.
    Returns NaN when the tumor is too small to have a core or the contrast is below 50 HU.
    """
    image = np.asarray(image, dtype=np.float64)
    d = signed_distance_mm(mask, spacing_mm)
    core = core_mask(mask)
    ring = (d > 2.0) & (d <= 5.0)
    if not core.any() or not ring.any():
        return float("nan")
    high, low = image[core].mean(), image[ring].mean()
    if abs(high - low) < 50.0:
        return float("nan")
    edges = np.arange(-reach_mm, reach_mm + bin_mm, bin_mm)
    chosen = np.ones(d.shape, bool) if select is None else np.asarray(select, dtype=bool)
    which = np.digitize(d[chosen], edges)
    sums = np.bincount(which, weights=image[chosen], minlength=len(edges) + 1)
    counts = np.bincount(which, minlength=len(edges) + 1)
    keep = counts[1:len(edges)] > 0
    centres = 0.5 * (edges[:-1] + edges[1:])[keep]
    profile = (sums[1:len(edges)] / np.maximum(counts[1:len(edges)], 1))[keep]
    frac = (profile - low) / (high - low)  # 1 inside, 0 outside
    frac = np.minimum.accumulate(frac)  # monotone envelope from inside to outside
    d90 = np.interp(0.9, frac[::-1], centres[::-1])
    d10 = np.interp(0.1, frac[::-1], centres[::-1])
    return float(d10 - d90)


def outside_change_hu(before: np.ndarray, after: np.ndarray, mask: np.ndarray,
                      spacing_mm: tuple[float, float, float], outer_mm: float = 5.0) -> float:
    """Mean |after - before| (HU) over the voxels within ``outer_mm`` outside the label."""
    d = signed_distance_mm(np.asarray(mask, dtype=bool), spacing_mm)
    band = (d > 0) & (d <= outer_mm)
    diff = np.abs(np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64))
    return float(diff[band].mean())


def deep_core(mask: np.ndarray, spacing_mm: tuple[float, float, float], depth_mm: float = DEEP_MM) -> np.ndarray:
    """Tumor voxels deeper than ``depth_mm`` below the surface and inside :func:`core_mask`
    (so never the outer voxel layer, on any grid); the core mask if none is."""
    core = core_mask(mask)
    deep = (distance_mm(np.asarray(mask, dtype=bool), spacing_mm) > depth_mm) & core
    return deep if deep.any() else core


def highpass_noise_hu(image: np.ndarray, mask: np.ndarray, sigma_vox: float = NOISE_SIGMA_VOX) -> float:
    """Std (HU) over ``mask`` of the image minus its Gaussian mean within ``mask``
    (:func:`synthlung.hosts.noise.detrended`)."""
    mask = np.asarray(mask, dtype=bool)
    return float(np.std(detrended(np.asarray(image), mask, sigma_vox)[mask]))


def tumor_noise_hu(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """High-pass noise (HU) deep inside a tumor, the Gaussian normalised within that core
    (so neither the surface nor vessels continued into the rim count as noise)."""
    return highpass_noise_hu(image, deep_core(mask, spacing_mm))


def host_tissue_noise_hu(image: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """High-pass noise (HU) of a host's homogeneous soft tissue (:func:`synthlung.hosts.noise.soft_tissue_mask`)."""
    return highpass_noise_hu(image, soft_tissue_mask(np.asarray(image), spacing_mm))


def tumor_spectrum(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float],
                   scan_axis: int) -> NoiseSpectrum:
    """Noise power spectrum deep inside a tumor (as the host's is measured on its soft tissue)."""
    return measure_spectrum(np.asarray(image), deep_core(mask, spacing_mm), spacing_mm, scan_axis,
                            min_voxels=50)


def spectrum_agreement(tumor: NoiseSpectrum, host: NoiseSpectrum) -> dict[str, float]:
    """How alike two noise spectra are, in-plane and along the scan axis.

    ``*_overlap``: sum of the minimum of the two unit-sum 1-D spectra (1 = identical,
    0 = disjoint); ``*_frequency_ratio``: tumor's mean frequency over the host's.
    """
    out = {}
    for name, a, b, f in zip(("inplane", "axial"), tumor.profiles(), host.profiles(),
                             (host.f_inplane, host.f_axial)):
        if len(a) != len(b):
            raise ValueError("spectrum_agreement: the spectra lie on different frequency grids")
        f = np.asarray(f)
        out[f"{name}_overlap"] = float(np.minimum(a, b).sum())
        out[f"{name}_frequency_ratio"] = float((a * f).sum() / max((b * f).sum(), 1e-30))
    return out


def slice_axis_after(seed_affine: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """World unit vector of a seed's slice axis (its coarsest voxel axis) after the linear map ``linear``."""
    cols = np.asarray(seed_affine, dtype=np.float64)[:3, :3]
    axis = cols[:, int(np.argmax(np.linalg.norm(cols, axis=0)))]
    moved = np.asarray(linear, dtype=np.float64) @ axis
    return moved / np.linalg.norm(moved)


def _frame(direction: np.ndarray) -> np.ndarray:
    """Rows: ``direction`` (unit) and two unit vectors across it."""
    n = np.asarray(direction, dtype=np.float64)
    n = n / np.linalg.norm(n)
    helper = np.eye(3)[int(np.argmin(np.abs(n)))]
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return np.stack([n, u, np.cross(n, u)])


def _directional(image: np.ndarray, affine: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """HU change per mm along each row of ``frame`` (world), at every voxel: shape (3, *image.shape)."""
    grads = np.stack(np.gradient(np.asarray(image, dtype=np.float64)))  # per voxel step
    steps = frame @ np.linalg.inv(np.asarray(affine, dtype=np.float64)[:3, :3]).T  # world dir -> voxel steps
    return np.einsum("da,a...->d...", steps, grads)


def hu_change_ratio(image: np.ndarray, region: np.ndarray, affine: np.ndarray, direction: np.ndarray) -> float:
    """RMS HU change per mm along world ``direction`` over its RMS across it, inside ``region``."""
    d = _directional(image, affine, _frame(direction))[:, np.asarray(region, dtype=bool)]
    along = np.sqrt(np.mean(d[0] ** 2))
    across = np.sqrt(np.mean(d[1:] ** 2))
    return float(along / max(across, 1e-12))


def edge_rise_along_across(image: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                           direction: np.ndarray, cone_deg: float = 30.0) -> tuple[float, float]:
    """10-90 % edge rise (mm) where the surface faces along ``direction`` and where it faces across it.

    A voxel's surface normal is the gradient of the signed distance; "along" keeps
    normals within ``cone_deg`` of the direction, "across" those within ``cone_deg``
    of the plane perpendicular to it.
    """
    affine = np.asarray(affine, dtype=np.float64)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    sd = signed_distance_mm(np.asarray(mask, dtype=bool), spacing)
    d = _directional(sd, affine, _frame(direction))
    cos = np.abs(d[0]) / np.maximum(np.sqrt((d ** 2).sum(axis=0)), 1e-12)
    limit = np.cos(np.radians(cone_deg))
    along = rise_distance_mm(image, mask, spacing, select=cos >= limit)
    across = rise_distance_mm(image, mask, spacing, select=cos <= np.sin(np.radians(cone_deg)))
    return along, across


def vessel_continuity(before: np.ndarray, after: np.ndarray, mask: np.ndarray,
                      spacing_mm: tuple[float, float, float], vessel_hu: float = 100.0,
                      shell_mm: float = 1.0) -> float:
    """Fraction of host vessel voxels in the tumor's outer ``shell_mm`` still above ``vessel_hu``.

    Host vessel voxels: 26-connected components of ``before > vessel_hu`` with voxels
    outside the tumor. NaN when no vessel meets the tumor.
    """
    mask = np.asarray(mask, dtype=bool)
    vessel = np.asarray(before) > vessel_hu
    labels, n = label(vessel, 26)
    running = np.zeros(n + 1, bool)
    running[labels[vessel & ~mask]] = True
    running[0] = False
    depth = distance_mm(mask, spacing_mm) - 0.5 * min(spacing_mm)
    meet = running[labels] & mask & (depth <= shell_mm)
    if not meet.any():
        return float("nan")
    return float((np.asarray(after)[meet] > vessel_hu).mean())


@dataclass(frozen=True)
class RealismReport:
    """Realism numbers for one inserted tumor (HU and mm); NaN where not measured."""

    core_hu: float
    seed_core_hu: float
    ring_hu_after: float
    ring_hu_before: float
    rise_mm: float
    noise_hu: float = float("nan")
    hu_change_ratio: float = float("nan")
    rise_along_mm: float = float("nan")
    rise_across_mm: float = float("nan")
    vessel_continuity: float = float("nan")
    outside_change_hu: float = float("nan")
    inplane_overlap: float = float("nan")
    axial_overlap: float = float("nan")

    @property
    def core_error_hu(self) -> float:
        return self.core_hu - self.seed_core_hu

    @property
    def halo_hu(self) -> float:
        return self.ring_hu_after - self.ring_hu_before

    @property
    def rise_ratio(self) -> float:
        """Edge rise along the seed's slice axis over across it (1 = no thick-slice mark)."""
        return self.rise_along_mm / self.rise_across_mm


def realism(before: np.ndarray, after: np.ndarray, seed_image: np.ndarray, mask: np.ndarray,
            spacing_mm: tuple[float, float, float], affine: np.ndarray | None = None,
            slice_axis: np.ndarray | None = None, host_spectrum: NoiseSpectrum | None = None) -> RealismReport:
    """Compare a host box before and after insertion of a tumor (``mask``, box voxels).

    ``seed_image`` is the morphed seed on the same box, whose core HU the inserted
    tumor should keep. With the box's ``affine`` and the seed's ``slice_axis``
    (world unit vector, :func:`slice_axis_after`) the thick-slice measures are taken too;
    with the host's soft-tissue ``host_spectrum``, the spectra's overlaps.
    """
    mask = np.asarray(mask, dtype=bool)
    core = core_mask(mask)
    ring = ring_mask(mask, spacing_mm)
    after = np.asarray(after, dtype=np.float64)
    extra = {}
    if affine is not None and slice_axis is not None:
        along, across = edge_rise_along_across(after, mask, affine, slice_axis)
        extra = {"hu_change_ratio": hu_change_ratio(after, deep_core(mask, spacing_mm), affine, slice_axis),
                 "rise_along_mm": along, "rise_across_mm": across}
    if host_spectrum is not None:
        agree = spectrum_agreement(tumor_spectrum(after, mask, spacing_mm, host_spectrum.scan_axis), host_spectrum)
        extra.update(inplane_overlap=agree["inplane_overlap"], axial_overlap=agree["axial_overlap"])
    return RealismReport(
        core_hu=float(after[core].mean()),
        seed_core_hu=float(np.asarray(seed_image, dtype=np.float64)[core].mean()),
        ring_hu_after=float(after[ring].mean()),
        ring_hu_before=float(np.asarray(before, dtype=np.float64)[ring].mean()),
        rise_mm=rise_distance_mm(after, mask, spacing_mm),
        noise_hu=tumor_noise_hu(after, mask, spacing_mm),
        vessel_continuity=vessel_continuity(before, after, mask, spacing_mm),
        outside_change_hu=outside_change_hu(before, after, mask, spacing_mm),
        **extra,
    )


def evaluate_methods(host: Any, seed_bank: Any, rng: np.random.Generator,
                     methods: tuple[str, ...] | None = None,
                     config: Any = None) -> dict[str, list[RealismReport]]:
    """Insert the same drawn tumors (same seeds, morphs, centres) with each blending method.

    Returns the realism report of every tumor per method, on NumPy hosts; the
    texture noise is drawn from one generator per method, seeded from ``rng``.
    This is how the default method was chosen (see ``benchmarks/RESULTS.md``).
    """
    from ..hosts.noise import host_noise
    from ..synthesis.case import BLEND_METHODS, SynthesisConfig, sample_placements
    from ..synthesis.insertion import insert
    from ..synthesis.placement import box_slices

    config = config or SynthesisConfig()
    planned, _ = sample_placements(host, seed_bank, rng, config)
    spectrum = host_noise(host)
    texture = spectrum if config.texture else None
    noise_key = int(rng.integers(2**63))
    spacing = host.image.spacing
    reports: dict[str, list[RealismReport]] = {}
    for method in methods or BLEND_METHODS:
        noise_rng = np.random.default_rng(noise_key)
        image = host.image.array.copy()
        label_map = np.zeros(image.shape, dtype=np.uint8)
        instances = np.zeros(image.shape, dtype=np.uint16)
        for k, tumor in enumerate(planned, start=1):
            insert(image, label_map, instances, tumor.morphed, tumor.placement.offset, k, spacing,
                   method=method, hu_range=config.hu_range, rng=noise_rng, texture=texture, **config.blend)
        reports[method] = []
        for tumor in planned:
            region = box_slices(tumor.placement.offset, tumor.morphed.image.shape)
            seed = seed_bank[seed_bank.ids.index(tumor.seed_id)]
            axis = slice_axis_after(seed.image.affine, tumor.params.linear())
            reports[method].append(realism(host.image.array[region], image[region], tumor.morphed.image.array,
                                           tumor.morphed.mask.array, spacing, host.image.affine, axis,
                                           spectrum))
    return reports
