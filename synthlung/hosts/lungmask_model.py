"""Optional lung segmentation with the ``lungmask`` package (deep model, weights downloaded on first use)."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from ..backend import asnumpy, optional_import
from ..errors import InputError
from ..volume import Volume

# lungmask labels: 1 right lung, 2 left lung; synthlung: 1 left, 2 right.
_TO_SYNTHLUNG = np.array([0, 2, 1], dtype=np.uint8)


def segment_lungs_lungmask(volume: Volume, name: str) -> Volume:
    """Lung labels (1 left, 2 right) from lungmask's default model, in the volume's grid.

    The array is reoriented to the (z, y, x) LPS order lungmask expects and back.
    Raises :class:`MissingExtraError` without the package and a one-line
    :class:`InputError` when its weights cannot be fetched or it fails.
    """
    lungmask = optional_import("lungmask", "lungmask", "method='lungmask'")
    ornt = nib.orientations.io_orientation(volume.affine)
    lps = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt(("L", "P", "S")))
    arr = nib.orientations.apply_orientation(asnumpy(volume.array), lps)
    try:
        seg = lungmask.LMInferer().apply(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    except Exception as exc:  # network errors while fetching weights, model errors
        raise InputError(f"lungmask failed on {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         " (its model weights are downloaded on first use; without internet use "
                         "method='threshold')") from exc
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("L", "P", "S")), ornt)
    labels = nib.orientations.apply_orientation(np.asarray(seg).transpose(2, 1, 0), back)
    return volume.with_array(_TO_SYNTHLUNG[np.clip(labels, 0, 2).astype(np.intp)])
