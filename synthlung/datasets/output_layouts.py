"""Output dataset layouts: nnU-Net v2 raw (default) and Medical Segmentation Decathlon.

Both put images in ``imagesTr/`` and labels (0 background, 1 tumor) in
``labelsTr/``; synthlung adds ``instancesTr/`` (one id per inserted tumor,
uint16) and ``records/`` (one JSON record per case), which both frameworks ignore.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..io.atomic import write_json

LABELS = {"background": 0, "tumor": 1}


@dataclass(frozen=True)
class Layout:
    """File names of one layout; ``image_suffix`` is nnU-Net's channel suffix."""

    name: str
    image_suffix: str

    def case_name(self, index: int) -> str:
        """``case_0007`` for index 7."""
        return f"case_{index:04d}"

    def case_paths(self, out: Path, index: int) -> dict[str, Path]:
        """Where case ``index``'s image, label, instance map and record go."""
        name = self.case_name(index)
        return {
            "image": out / "imagesTr" / f"{name}{self.image_suffix}.nii.gz",
            "label": out / "labelsTr" / f"{name}.nii.gz",
            "instances": out / "instancesTr" / f"{name}.nii.gz",
            "record": out / "records" / f"{name}.json",
        }

    def write_dataset_json(self, out: Path, entries: list[dict]) -> None:
        """Write ``dataset.json`` for the finished cases ``entries`` (manifest entries)."""
        if self.name == "nnunet":
            data = {
                "channel_names": {"0": "CT"},
                "labels": LABELS,
                "numTraining": len(entries),
                "file_ending": ".nii.gz",
                "name": "synthlung",
                "description": "Synthetic lung-tumor CT made by synthlung",
            }
        else:
            data = {
                "name": "synthlung",
                "description": "Synthetic lung-tumor CT made by synthlung",
                "tensorImageSize": "3D",
                "modality": {"0": "CT"},
                "labels": {str(v): k for k, v in LABELS.items()},
                "numTraining": len(entries),
                "numTest": 0,
                "training": [{"image": f"./{e['image']}", "label": f"./{e['label']}"} for e in entries],
                "test": [],
            }
        write_json(out / "dataset.json", data)


LAYOUTS = {"nnunet": Layout("nnunet", "_0000"), "msd": Layout("msd", "")}
