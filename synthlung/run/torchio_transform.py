"""TorchIO: :class:`RandomInsertTumors`, tumour insertion as a ``torchio`` random transform.

It wraps :class:`synthlung.run.transforms.RandInsertTumors` (host cache, patch
mode and outputs as described there) in TorchIO's conventions: a
``RandomTransform`` on a ``tio.Subject``, probability ``p`` and
every random draw from torch's generator (the case's key is two 32-bit integers
from ``torch.randint``), so ``torch.manual_seed`` and the seeds PyTorch gives
DataLoader workers make runs repeat, as for TorchIO's own transforms.

Example, a patch-based TorchIO loop whose positive patches hold the inserted tumours::

    import torchio as tio
    from synthlung.run.torchio_transform import RandomInsertTumors

    subjects = [tio.Subject(ct=tio.ScalarImage("ct_0001.nii.gz"), lungs=tio.LabelMap("lungs_0001.nii.gz"))]
    insert = RandomInsertTumors("seed_bank/", image_name="ct", lungs_name="lungs",
                                instance_name="instances", patch_size=(96, 96, 96))
    dataset = tio.SubjectsDataset(subjects, transform=tio.Compose([insert, tio.RescaleIntensity()]))
    queue = tio.Queue(dataset, 16, 4, tio.LabelSampler((96, 96, 96), label_name="instances"))

(Checked with two Queue workers on phantoms: every patch held an inserted tumour and
a second run after ``torch.manual_seed(0)`` gave the same patches.) The patches keep
only the images, not ``record_name``: the record is on the transformed subject.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform

from ..hosts import HostBank
from ..seeds import SeedBank
from ..synthesis.case import SynthesisConfig
from .transforms import _MAX_SEED, RandInsertTumors

__all__ = ["RandomInsertTumors"]


class RandomInsertTumors(RandomTransform):
    """Insert tumours drawn from a seed bank into ``subject[image_name]`` (HU, before intensity transforms).

    Reads the ``image_name`` image ((1, W, H, D), its RAS affine) and, when the
    subject has them, the ``label_name`` and ``lungs_name`` label maps; writes the
    image and the label (a ``LabelMap`` is added when there is none), the instance
    map (int32 ``LabelMap``) under ``instance_name`` and the case record (JSON)
    under ``record_name`` when those are given (the instance map is made only
    then). The image's file path names it in the host cache and the record; an
    image made from a tensor has no name there (as a bare tensor given to
    ``RandInsertTumors``). ``seed_bank``, ``config``,
    ``zone_kw``, ``host_cache``, ``patch_size`` and ``host_bank`` are those of
    :class:`~synthlung.run.transforms.RandInsertTumors`;
    other keywords (``p``, ``copy``, ...) go to ``tio.Transform``. With TorchIO's
    ``copy=True`` (its default) the tumours are written into the subject's deep
    copy; with ``copy=False`` the subject gets new tensors and its old ones are
    left as they were.
    """

    def __init__(self, seed_bank: SeedBank | str | os.PathLike, config: SynthesisConfig | dict | None = None,
                 zone_kw: dict | None = None, host_cache: int = 8, patch_size: Any = None,
                 host_bank: HostBank | str | os.PathLike | None = None, *,
                 image_name: str = "image", label_name: str = "label", lungs_name: str | None = None,
                 instance_name: str | None = None, record_name: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        # TorchIO's copy=True hands apply_transform a deep copy: the tumours may go into it directly.
        self.inserter = RandInsertTumors(seed_bank, config, 1.0, zone_kw, host_cache, patch_size, copy=not self.copy,
                                         host_bank=host_bank)
        self.image_name, self.label_name, self.lungs_name = image_name, label_name, lungs_name
        self.instance_name, self.record_name = instance_name, record_name
        self.inserter.want_instances = instance_name is not None
        self.last_record: dict | None = None

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        key = torch.randint(0, _MAX_SEED, (2,), dtype=torch.int64).tolist()
        image = subject[self.image_name]
        label = subject.get(self.label_name)
        lungs = subject[self.lungs_name].data if self.lungs_name is not None else None
        out = self.inserter.insert_with_key(key, image.data, lungs, None if label is None else label.data,
                                            affine=image.affine, source=None if image.path is None else str(image.path))
        image.set_data(out.image)
        if label is None:
            subject.add_image(tio.LabelMap(tensor=out.label, affine=image.affine), self.label_name)
        else:
            label.set_data(out.label)
        if self.instance_name is not None:
            subject.add_image(tio.LabelMap(tensor=out.instances, affine=image.affine), self.instance_name)
        self.last_record = out.record
        if self.record_name is not None:
            subject[self.record_name] = json.dumps(out.record)
        return subject
