"""Blend a morphed seed into a host box: alpha, Poisson (core held or textbook), or paste.

All arrays are boxes of one shape (z, y, x) in HU (the seed's soft mask in
[0, 1]); ``spacing_mm`` is the voxel size per axis. NumPy in, NumPy out; CuPy
in, CuPy out (distance transforms and morphology by ``cupyx.scipy.ndimage``),
with no host round trips but scalars.

Methods (the issue's realism numbers decide the default, see ``docs``):

* ``alpha``: weight = the soft (partial-volume) mask steepened about 0.5 by
  ``soft_gain`` (``clip(0.5 + gain * (soft - 0.5), 0, 1)``), optionally widened
  by a linear ramp ``feather_mm`` wide outside the tumour; the core keeps the
  seed's HU and the edge keeps the blur of the scan the seed came from. The seed
  image already carries its scan's partial volume at the edge (5 mm slices blur
  it over millimetres once resampled); weighting it by the raw soft mask dilutes
  that edge a second time and darkens the core. Measured on lung1 into the chest
  CT (8 draws): gain 1 gave a core 15 HU too dark, gain 2 0.1 HU, with no halo
  and an edge rise 1.05x the tumour's own (``benchmarks/realism_report.py``).
* ``poisson``: gradient-domain blend on the tumour (soft >= 0.5) dilated by
  ``margin_mm``; host values held outside it, the tumour core (the mask eroded
  by one voxel, or by ``core_erosion_mm``) held at the seed's HU, so only the
  ring is solved with the seed's gradients (``mixed``: the stronger of host and
  seed per face, so host vessels crossing the ring survive). The margin is 0 by
  default (``margin_mm=None``): the solve stays inside the label. With 3 mm it
  left a +25.8 HU halo 2-5 mm outside lung1's tumour in the chest CT (+42.5 HU
  scaled 3x; 5 draws), which the label did not include; with 0 nothing outside
  the label changes (``benchmarks/RESULTS.md``).
* ``poisson-textbook``: the same without the core held (the seed shifts by the
  difference of the two backgrounds; for comparison), with a 3 mm margin by
  default: held at the label it would also shift by the seed's own edge.
* ``replace``: the seed pasted on the thresholded mask (for comparison).

After any method the host's texture goes onto the tumour (:mod:`.texture`): its
soft-tissue noise re-synthesised inside the blend weight, and its vessels (above
+100 HU) continued into the tumour's outer 1.5 mm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import array_module, resolve_backend
from ..errors import InputError
from ..hosts.noise import NoiseSpectrum
from ..kernels import blend as _kernel
from ..morphology import bounding_box, distance_mm, eroded, grown
from .texture import add_host_noise, continue_vessels, denoise_seed

METHODS = ("alpha", "poisson", "poisson-textbook", "replace")

SOFT_GAIN = 2.0
"""Default steepening of the soft mask into the alpha weight (see the module doc)."""

VESSEL_REACH_VOXELS = 3
"""Voxels beyond the tumour's bounding box where host vessels are looked for (the vessel step)."""


@dataclass
class BlendResult:
    """``image``: blended box (float32 HU); ``region``: bool box of the voxels that may
    differ from the host; ``iterations``/``residual``: Poisson solver info (0 otherwise);
    ``noise_added_hu``: std of the host-shaped noise added; ``vessel_voxels``: tumour voxels
    where a host vessel was continued."""

    image: Any
    region: Any
    iterations: int = 0
    residual: float = 0.0
    noise_added_hu: float = 0.0
    vessel_voxels: int = 0


def _steepened(soft: Any, gain: float) -> Any:
    """The alpha weight: the soft mask steepened about 0.5 by ``gain``, in [0, 1]."""
    xp = array_module(soft)
    return xp.clip(0.5 + float(gain) * (soft - 0.5), 0.0, 1.0).astype(xp.float32)


def blend(host_box: Any, seed_box: Any, soft_mask_box: Any, method: str = "alpha",
          spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0), feather_mm: float = 0.0,
          soft_gain: float = SOFT_GAIN,
          margin_mm: float | None = None, core_erosion_mm: float | None = None, mixed: bool = False,
          hu_range: tuple[float, float] = (-1024.0, 3071.0), texture: NoiseSpectrum | None = None,
          vessel_hu: float | None = 100.0, vessel_shell_mm: float = 1.5, rng: Any = None, backend: str | None = None, tol: float = 1e-5,
          max_iter: int = 100) -> BlendResult:
    """Blend ``seed_box`` into ``host_box`` where ``soft_mask_box`` says (see module doc).

    ``soft_gain`` (alpha): steepening of the soft mask about 0.5; 1 uses it as is.
    ``texture``: the host's soft-tissue noise (:func:`synthlung.hosts.noise.host_noise`);
    noise of its spectrum, drawn from ``rng``, tops the tumour's noise up to the
    host's std (weighted by the blend weight; see :mod:`synthlung.synthesis.texture`).
    ``vessel_hu``: host vessels above it that run into the tumour continue into its
    outer ``vessel_shell_mm`` (None: off). Output clipped to ``hu_range``.
    ``tol``/``max_iter``: Poisson solver's relative residual and bound.
    """
    if method not in METHODS:
        raise InputError(f"blend: method={method!r}, expected one of {', '.join(METHODS)}")
    if not (host_box.shape == seed_box.shape == soft_mask_box.shape) or host_box.ndim != 3:
        raise InputError(f"blend: host, seed and mask must be 3-D boxes of one shape, got "
                         f"{host_box.shape}, {seed_box.shape}, {soft_mask_box.shape}")
    spacing_mm = tuple(float(s) for s in spacing_mm)
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise InputError(f"blend: spacing_mm={spacing_mm} must be 3 positive numbers (mm)")
    if not soft_gain > 0:
        raise InputError(f"blend: soft_gain={soft_gain} must be > 0 (1 uses the soft mask as it is)")
    if texture is not None and rng is None:
        raise InputError("blend: texture needs rng (a random generator)")
    xp = array_module(host_box)
    impl = getattr(_kernel, resolve_backend(host_box, backend))
    lo, hi = (float(v) for v in hu_range)
    host = host_box.astype(xp.float32)
    seed = seed_box.astype(xp.float32)
    soft = xp.clip(soft_mask_box.astype(xp.float32), 0.0, 1.0)
    tumour = soft >= 0.5
    inside = bounding_box(tumour)  # None: no tumour voxel
    iterations, residual, kept = 0, 0.0, 0.0
    if texture is not None and inside is not None:  # on the tumour's box: a few % of a seed's box
        near = grown(inside, 1, tumour.shape)
        seed[near], kept = denoise_seed(seed[near], tumour[near], spacing_mm)
    if inside is None and method != "alpha":
        return BlendResult(image=xp.clip(host, lo, hi), region=xp.zeros(host.shape, bool))

    if method in ("alpha", "replace"):
        if method == "replace":
            weight = tumour.astype(xp.float32)
        else:
            weight = _steepened(soft, soft_gain)
            if feather_mm > 0 and inside is not None:
                ramp = 1.0 - distance_mm(~tumour, spacing_mm) / float(feather_mm)
                weight = xp.maximum(weight, xp.clip(ramp, 0.0, 1.0).astype(xp.float32))
        image = impl.alpha(host, seed, weight, lo, hi)
        region = weight > 0
    else:
        if margin_mm is None:
            margin_mm = 0.0 if method == "poisson" else 3.0
        region = distance_mm(~tumour, spacing_mm) <= float(margin_mm)
        fixed = host.copy()
        solve = region.copy()
        if method == "poisson":
            if core_erosion_mm is None:
                core = eroded(tumour)
            else:
                core = distance_mm(tumour, spacing_mm) > float(core_erosion_mm)
            fixed[core] = seed[core]
            solve &= ~core
        # one voxel of edge padding keeps the box's faces held (the solver needs it)
        fixed_p, seed_p, host_p = (xp.pad(a, 1, mode="edge") for a in (fixed, seed, host))
        out, iterations, residual = impl.poisson(fixed_p, xp.pad(solve, 1), seed_p, host_p,
                                                 spacing_mm, mixed, tol, max_iter)
        image = xp.clip(out[1:-1, 1:-1, 1:-1], lo, hi)
        weight = xp.where(region, _steepened(soft, soft_gain), xp.float32(0.0))

    added, vessels = 0.0, 0
    blended = bounding_box(weight > 0)
    if texture is not None and blended is not None:
        image[blended], added = add_host_noise(image[blended], weight[blended], tumour[blended], spacing_mm,
                                               texture, kept, rng)
    if vessel_hu is not None and inside is not None:
        near = grown(inside, VESSEL_REACH_VOXELS, tumour.shape)  # vessels are seen just outside the tumour
        image[near], vessels = continue_vessels(image[near], host[near], tumour[near], spacing_mm,
                                                vessel_hu, vessel_shell_mm)
    if texture is not None or vessels:
        image = xp.clip(image, lo, hi)
    return BlendResult(image=image.astype(xp.float32, copy=False), region=region,
                       iterations=int(iterations), residual=float(residual),
                       noise_added_hu=round(added, 4), vessel_voxels=vessels)
