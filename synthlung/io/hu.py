"""Stored values -> HU, and checks that an image really holds finite HU values."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError

_INT16 = np.iinfo(np.int16)
NORMALISED_SPAN = 20.0   # a CT in HU spans over 1000 HU; a span this small is a normalised image
HU_RESCALE_HINT = ("if the values are in other units, say how to rescale them: "
                   "load(..., hu_rescale=(slope, intercept)) or --hu-rescale SLOPE,INTERCEPT (HU = value * slope + intercept); "
                   "load(..., check_units=False) takes them as they are")


class RawUnitsWarning(UserWarning):
    """A CT's values look like raw stored/detector units or a normalised range rather than HU."""


def rescale(raw: np.ndarray, slope: np.ndarray | float, intercept: np.ndarray | float) -> np.ndarray:
    """``raw * slope + intercept`` (slope/intercept broadcast along the last axis).

    The result is int16 when slope and intercept are integral and every value
    fits int16 (exact), otherwise float32.
    """
    slope = np.asarray(slope, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    integral = (np.issubdtype(raw.dtype, np.integer)
                and np.all(slope == np.round(slope)) and np.all(intercept == np.round(intercept)))
    if integral:
        out = raw.astype(np.int64) * slope.astype(np.int64) + intercept.astype(np.int64)
        if out.size == 0 or (out.min() >= _INT16.min and out.max() <= _INT16.max):
            return out.astype(np.int16)
    return (raw * slope + intercept).astype(np.float32)


def check_finite(array, source: object) -> None:
    """InputError naming ``source`` and the count when ``array`` holds NaN or Inf voxels."""
    if array.dtype.kind not in "fc":
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InputError(f"{source}: {bad} non-finite voxel(s) (NaN or Inf) of {array.size}; "
                         "every voxel must hold a finite value")


def hu_problem(array) -> str | None:
    """Why ``array`` does not look like a CT in HU, or None when it does (or is a mask).

    A CT in HU holds air (about -1000 HU) around or inside the body. No value
    below 0 with a maximum of 1000 or more looks like stored units without
    RescaleIntercept (air near 0, soft tissue near 1024). Floating values that
    are not all whole numbers and span under ``NORMALISED_SPAN`` look like a
    normalised image (0..1, z-scores). Integer masks and label maps (maximum
    below 1000) are never flagged.
    """
    if array.size == 0:
        return None
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0 and hi >= 1000:
        return (f"values range {lo:g}..{hi:g} with nothing below 0: this looks like raw stored units, not HU "
                "(was RescaleSlope/RescaleIntercept applied? air should be near -1000 HU)")
    if array.dtype.kind == "f" and hi - lo < NORMALISED_SPAN and not bool((array == np.round(array)).all()):
        return (f"values range {lo:g}..{hi:g}: this looks like a normalised image, not HU "
                "(a CT in HU spans about -1000 (air) to 1000 or more)")
    return None


def check_hu(array, source: object) -> None:
    """Warn (:class:`RawUnitsWarning`) when ``array`` does not look like HU (see :func:`hu_problem`)."""
    problem = hu_problem(array)
    if problem:
        warnings.warn(f"{source}: {problem}", RawUnitsWarning, stacklevel=3)


def require_hu(array, source: object) -> None:
    """InputError naming ``source`` when ``array`` does not look like HU (see :func:`hu_problem`)."""
    problem = hu_problem(array)
    if problem:
        raise InputError(f"{source}: {problem}; {HU_RESCALE_HINT}")
