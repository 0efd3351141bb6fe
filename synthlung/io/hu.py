"""Stored values -> HU, and a sanity check that an image really is in HU."""
from __future__ import annotations

import warnings

import numpy as np

_INT16 = np.iinfo(np.int16)


class RawUnitsWarning(UserWarning):
    """A CT's values look like raw stored/detector units rather than HU."""


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


def check_hu(array: np.ndarray, source: object) -> None:
    """Warn (:class:`RawUnitsWarning`) when ``array`` looks like raw units, not HU.

    A CT in HU always holds air (about -1000 HU) around or inside the body. An
    image with no negative value whose maximum is at least 1000 looks like
    stored values without RescaleIntercept applied (air near 0, soft tissue
    near 1024). Masks and label maps (maximum below 1000) are never flagged.
    """
    if array.size == 0:
        return
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0 and hi >= 1000:
        warnings.warn(
            f"{source}: values range {lo:g}..{hi:g} with nothing below 0; this looks like raw "
            "stored units, not HU (was RescaleSlope/RescaleIntercept applied? air should be near -1000 HU)",
            RawUnitsWarning, stacklevel=3)
