"""Preview images of synthetic cases: slices through each inserted tumor, label as a contour."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path

LUNG_WINDOW = (-1350.0, 150.0)
"""Display range in HU: the lung window (level -600, width 1500)."""


def _case_files(case: Path) -> tuple[Path, Path, dict]:
    """(image, label, record) of a case given its record JSON or its image file."""
    if case.suffix == ".json":
        record_path = case
    else:
        name = case.name.split(".")[0]
        name = name[:-5] if name.endswith("_0000") else name
        record_path = case.parent.parent / "records" / f"{name}.json"
    if not record_path.exists():
        raise InputError(f"{case}: no case record found (looked for {record_path})")
    record = json.loads(record_path.read_text())
    root = record_path.parent.parent
    return root / record["files"]["image"], root / record["files"]["label"], record


def _panels(image: np.ndarray, label: np.ndarray, centre: tuple[int, int, int]):
    """Axial, coronal and sagittal slices (image, label) through ``centre`` of RAS arrays.

    Rows run up the second axis shown, columns are flipped: the radiological
    view (patient's right on the viewer's left; anterior on the left in sagittal).
    """
    i, j, k = centre
    views = [("axial", (slice(None), slice(None), k)), ("coronal", (slice(None), j, slice(None))),
             ("sagittal", (i, slice(None), slice(None)))]
    return [(name, image[ix].T[:, ::-1], label[ix].T[:, ::-1]) for name, ix in views]


def preview(case: str | Path, out: str | Path) -> Path:
    """Write a PNG with a row of axial/coronal/sagittal slices per inserted tumor.

    ``case`` is a case's record JSON (``records/case_XXXX.json``) or its image file.
    Slices are shown in the lung window with the tumor label as a red contour;
    the image is reoriented to RAS so that every row reads the same way.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import load

    image_path, label_path, record = _case_files(Path(case))
    image = load(image_path, canonical=True)
    label = load(label_path, canonical=True)
    tumors = record.get("tumors") or []
    centres = [tuple(int(v) for v in np.rint(image.world_to_voxel(t["centre_world_mm"]))) for t in tumors]
    if not centres:
        centres = [tuple(s // 2 for s in image.shape)]
    sx, sy, sz = image.spacing
    aspects = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    fig, axes = plt.subplots(len(centres), 3, figsize=(9, 3 * len(centres)), squeeze=False)
    for row, centre in enumerate(centres):
        for col, (name, img, lab) in enumerate(_panels(np.asarray(image.array), np.asarray(label.array), centre)):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=LUNG_WINDOW[0], vmax=LUNG_WINDOW[1], origin="lower",
                      aspect=aspects[name], interpolation="nearest")
            if lab.any():
                ax.contour(lab > 0, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_title(f"{record.get('case', '')} tumor {row + 1} {name}" if tumors else name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
