"""Write small synthetic labeled CT cases and MSD-style folders for tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthlung import Volume, save

AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.7, 0, 30.0], [0, 0, 2.5, -100.0], [0, 0, 0, 1]])


def small_case(folder: Path, image_name: str, label_name: str | None, seed: int = 0,
               shape=(10, 9, 6), affine=AFFINE) -> tuple[Volume, Volume]:
    """An int16 HU image (air around a soft-tissue block) and a 0/1 tumor label."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, -1000, np.int16)
    image[2:-2, 2:-2, 1:-1] = rng.integers(0, 80, size=(shape[0] - 4, shape[1] - 4, shape[2] - 2))
    label = np.zeros(shape, np.uint8)
    label[3:6, 3:5, 2:4] = 1
    vol, lab = Volume(image, affine), Volume(label, affine)
    save(vol, folder / image_name)
    if label_name:
        save(lab, folder / label_name)
    return vol, lab


def make_msd(root: Path, names=("lung_001", "lung_002")) -> Path:
    """A small MSD Task06_Lung-style folder with macOS ``._*`` junk beside every NIfTI."""
    training = []
    for i, name in enumerate(names):
        small_case(root, f"imagesTr/{name}.nii.gz", f"labelsTr/{name}.nii.gz", seed=i)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    for f in list(root.rglob("*.nii.gz")):
        (f.parent / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "dataset.json").write_text(json.dumps(
        {"name": "Lung", "training": training, "test": ["./imagesTs/lung_003.nii.gz"]}))
    return root
