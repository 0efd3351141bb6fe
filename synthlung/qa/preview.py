"""Preview of a synthetic case: per inserted tumour, a zoomed crop before and after, two windows.

Each tumour gets two rows (the host before insertion, the case after) of six
views: axial, coronal and sagittal in the lung window, then the same in the
mediastinal window, all on one physical scale around the tumour (a field of
view of three diameters, at least 40 mm), in the radiological orientation of
:mod:`synthlung.qa.render`. Titles give the seed id, diameter, volume and the
inside-lung fraction. The label contour is optional: off, the seam shows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SynthlungError
from ..io.atomic import atomic_path
from .generated import GeneratedDataset
from .render import PLANES, WINDOWS, mask_centroid_mm, triplanar

VIEW_PIXELS = 160
"""Pixels across each view."""


def _tumour_box(record: dict, instances: np.ndarray, k: int) -> np.ndarray:
    """Instance ``k``'s mask within its blending box (saves a pass over the whole volume)."""
    t = record["tumors"][k - 1]
    box = tuple(slice(o, o + s) for o, s in zip(t["offset_voxels"], t["box_shape"]))
    return np.asarray(instances[box]) == k, [b.start for b in box]


def tumour_centre_mm(record: dict, instances: np.ndarray, affine: np.ndarray, k: int) -> np.ndarray:
    """World centroid (mm) of inserted tumour ``k`` (its instance voxels)."""
    mask, lo = _tumour_box(record, instances, k)
    shifted = np.asarray(affine, dtype=np.float64).copy()
    shifted[:3, 3] = affine[:3, :3] @ np.asarray(lo, dtype=np.float64) + affine[:3, 3]
    return mask_centroid_mm(mask, shifted)


def preview(case: str | Path, out: str | Path, contour: bool = False) -> Path:
    """Write the preview PNG of one case (its record JSON or image file) to ``out``.

    The host image comes from the host bank named in the dataset's ``run.json``;
    when it cannot be found the "before" rows say so and stay empty.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset, record = GeneratedDataset.of_case(case)
    image = dataset.volume(record, "image")
    instances = np.asarray(dataset.volume(record, "instances").array)
    try:
        before = dataset.host(record["host"]["id"])[0]
    except (SynthlungError, OSError, KeyError) as exc:  # a moved bank: show the case without its host, say why
        before, missing = None, str(exc)
    tumours = record.get("tumors") or []
    rows = max(2 * len(tumours), 1)
    fig, axes = plt.subplots(rows, 6, figsize=(13.5, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not tumours:
        axes[0, 0].set_title(f"{record.get('case', '')}: no tumour inserted", fontsize=8, loc="left")
    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    for k, t in enumerate(tumours, start=1):
        centre = tumour_centre_mm(record, instances, image.affine, k)
        volume_ml = float(t["tumor_voxels"]) * voxel_ml
        diameter = (6.0 * volume_ml * 1000.0 / np.pi) ** (1.0 / 3.0)
        fov = max(40.0, 3.0 * diameter)
        pixel = fov / VIEW_PIXELS
        label_views = triplanar(instances == k, image.affine, centre, fov, pixel, order=0) if contour else None
        for r, (name, volume) in enumerate((("before", before), ("after", image))):
            row = axes[2 * (k - 1) + r]
            if volume is None:
                row[0].set_title(f"before: host not found ({missing})"[:90], fontsize=7, loc="left")
                continue
            views = triplanar(volume.array, volume.affine, centre, fov, pixel)
            for c, (window, (lo, hi)) in enumerate(WINDOWS.items()):
                for p, plane in enumerate(PLANES):
                    ax = row[3 * c + p]
                    ax.imshow(views[plane], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                              extent=(0, fov, fov, 0))
                    if label_views is not None and name == "after" and label_views[plane].any():
                        xy = (np.arange(VIEW_PIXELS) + 0.5) * pixel
                        ax.contour(xy, xy, label_views[plane] > 0.5, levels=[0.5], colors="red", linewidths=0.6)
                    ax.set_title(f"{name} {plane}, {window}", fontsize=7)
        axes[2 * (k - 1), 0].text(
            0.0, 1.25, f"{record.get('case', '')} tumour {k}: seed {t['seed_id']}, {diameter:.1f} mm, "
            f"{volume_ml:.2f} ml, inside lung {t['inside_lung_fraction']:.2f}; field {fov:.0f} mm",
            fontsize=8, fontweight="bold", transform=axes[2 * (k - 1), 0].transAxes)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.75 / (2.4 * rows), bottom=0.01, wspace=0.05,
                        hspace=0.35)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
