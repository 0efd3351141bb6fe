"""Connected components of masks and their per-component statistics.

``label`` and ``component_stats`` run on the input's device: NumPy arrays (and
CPU torch tensors) on the CPU kernels, CuPy arrays (and CUDA torch tensors) on
the CUDA kernels, torch tensors shared zero-copy through DLPack. ``backend=``
overrides the choice. See :mod:`synthlung.kernels.ccl` for the algorithms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backend import dispatch, like, to_array
from .errors import InputError
from .kernels import ccl, ccl_stats

_CONNECTIVITY_2D = {4: 6, 8: 26}


@dataclass(frozen=True)
class ComponentStats:
    """Per-component statistics; row ``i`` describes label ``i + 1``. Arrays of the input's module.

    ``counts`` (n,) voxels; ``bbox_lo`` / ``bbox_hi`` (n, 3) voxel indices, lo
    inclusive, hi exclusive; ``centroid`` (n, 3) mean voxel index (float64).
    """

    counts: Any
    bbox_lo: Any
    bbox_hi: Any
    centroid: Any

    def __len__(self) -> int:
        return int(self.counts.shape[0])


def label(mask: Any, connectivity: int | None = None, backend: str | None = None) -> tuple[Any, int]:
    """Connected components of a 3-D (or 2-D) mask; any non-zero value is foreground.

    ``connectivity``: 6, 18 or 26 (default) for 3-D masks; 4 or 8 (default) for 2-D masks. Returns
    ``(labels, n)``: ``uint32`` labels of the mask's shape and type, components
    numbered 1..n by their first voxel in C order (as ``scipy.ndimage.label``).
    """
    arr = to_array(mask)
    connectivity = (8 if arr.ndim == 2 else 26) if connectivity is None else connectivity
    if arr.ndim == 2:
        if connectivity not in _CONNECTIVITY_2D:
            raise InputError(f"connectivity={connectivity!r}: expected 4 or 8 for a 2-D mask")
        labels, n = dispatch(ccl, arr, backend)(arr[None], _CONNECTIVITY_2D[connectivity])
        labels = labels[0]
    elif arr.ndim == 3:
        labels, n = dispatch(ccl, arr, backend)(arr, connectivity)
    else:
        raise InputError(f"mask must be 2-D or 3-D, got shape {tuple(arr.shape)}")
    return like(labels, mask), n


def component_stats(labels: Any, n: int, backend: str | None = None) -> ComponentStats:
    """Voxel count, bounding box and centroid of components 1..n of ``labels``, in one pass.

    ``labels`` is 2-D or 3-D integers 0..n (2-D stats have 2 columns); a label above ``n`` or
    below 0 raises ``InputError`` naming it. Counts/boxes int64, centroid float64.
    """
    arr = to_array(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"labels must be 2-D or 3-D, got shape {tuple(arr.shape)}")
    out = dispatch(ccl_stats, arr, backend)(arr if arr.ndim == 3 else arr[None], int(n))
    if arr.ndim == 2:
        out = tuple(a[:, 1:] if a.ndim == 2 else a for a in out)
    return ComponentStats(*(like(a, labels) for a in out))
