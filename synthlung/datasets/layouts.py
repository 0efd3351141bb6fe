"""Find the cases of a dataset folder: MSD Task06_Lung, a generic folder, or one image/label pair.

* ``msd``: ``dataset.json`` whose ``training`` entries name ``image`` and
  ``label`` files inside the dataset folder (``imagesTr/``, ``labelsTr/``);
  an entry without a label is a bad case (every training scan has one).
  The ``test`` list (unannotated scans that still hold tumors) is not ingested.
* ``folder``: either ``images/`` + ``labels/`` (or ``imagesTr/`` + ``labelsTr/``)
  matched by name, or flat ``X_image.*`` + ``X_label.*``. An image without a
  label is an unlabeled case (e.g. a healthy host), and so is a flat file
  whose name ends in neither ``_image`` nor ``_label`` (``chest_ct.nii.gz``
  is the unlabeled case ``chest_ct``). Images may be NIfTI, NRRD
  or DICOM series folders.
* ``pair``: SRC is one image (file or DICOM series folder); its label is the
  ``label`` argument, else a sibling ``X_label.*`` of ``X_image.*``, else none.

Hidden files (macOS ``._*`` resource forks) are ignored everywhere.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import SUFFIXES
from ..io.dicom import is_dicom_file, series_files

FORMATS = ("auto", "msd", "folder", "pair")
_PAIRED_DIRS = (("images", "labels"), ("imagesTr", "labelsTr"))


@dataclass
class CaseSpec:
    """A case found in the input: its id, image, label (or None), and layout errors."""

    id: str
    image: Path
    label: Path | None
    errors: list[str] = field(default_factory=list)


def split_name(path: Path) -> tuple[str, str] | None:
    """(stem, suffix) of an image file or DICOM folder, or None when it is not an image."""
    if path.name.startswith("."):
        return None
    if path.is_dir():
        return path.name, ""
    lower = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)], suffix
    return None


def _is_dicom_folder(path: Path) -> bool:
    files = series_files(path) if path.is_dir() else []
    return bool(files) and is_dicom_file(files[0])


def detect_format(src: Path) -> str:
    """'pair' for a file or DICOM series folder, 'msd' with a dataset.json, else 'folder'."""
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_file() or _is_dicom_folder(src):
        return "pair"
    if (src / "dataset.json").is_file():
        return "msd"
    return "folder"


def _msd_entry(src: Path, entry: object, key: str, where: str, errors: list[str]) -> Path | None:
    value = entry.get(key) if isinstance(entry, dict) else None
    if value is None:
        errors.append(f"{where}: entry has no {key}" + (
            "; every MSD training scan has a tumour label (unlabelled scans belong in 'test')"
            if key == "label" else ""))
        return None
    if not isinstance(value, str) or not value:
        errors.append(f"{where}: {key} must be a path string, got {value!r}")
        return None
    if os.path.isabs(value) or value.startswith(("/", "\\")):
        errors.append(f"{where}: {key} {value!r} points outside the dataset folder (absolute path)")
        return None
    path = Path(os.path.normpath(src / value))     # lexical: symlinked data inside the folder is fine
    if not path.is_relative_to(os.path.normpath(src)):
        errors.append(f"{where}: {key} {value!r} points outside the dataset folder {src}")
        return None
    if not path.exists():
        errors.append(f"{where}: {key} {value!r} is missing ({path} does not exist)")
    return path


def msd_cases(src: Path) -> list[CaseSpec]:
    """Cases of an MSD task folder from its ``dataset.json`` ``training`` list."""
    meta = src / "dataset.json"
    try:
        training = json.loads(meta.read_text())["training"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{meta}: not a valid MSD dataset.json with a 'training' list ({exc})") from exc
    if not isinstance(training, list):
        raise InputError(f"{meta}: 'training' must be a list, got {type(training).__name__}")
    cases = []
    for i, entry in enumerate(training):
        where = f"{meta} training[{i}]"
        errors: list[str] = []
        image = _msd_entry(src, entry, "image", where, errors)
        label = _msd_entry(src, entry, "label", where, errors)
        named = split_name(image) if image is not None else None
        case_id = named[0] if named else f"training_{i}"
        cases.append(CaseSpec(case_id, image if image is not None else meta, label, errors))
    return cases


def _images_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        named = split_name(p)
        if named is not None:
            if named[0] in found:
                raise InputError(f"{folder}: two images named {named[0]!r}: {found[named[0]].name} and {p.name}")
            found[named[0]] = p
    return found


def folder_cases(src: Path) -> list[CaseSpec]:
    """Cases of a generic folder (``images/``+``labels/`` or flat ``X_image.*``/``X_label.*``)."""
    for img_dir, lab_dir in _PAIRED_DIRS:
        if (src / img_dir).is_dir():
            images = _images_in(src / img_dir)
            labels = _images_in(src / lab_dir) if (src / lab_dir).is_dir() else {}
            break
    else:
        entries = _images_in(src)
        images = {k.removesuffix("_image"): p for k, p in entries.items() if k.endswith("_image")}
        labels = {k.removesuffix("_label"): p for k, p in entries.items() if k.endswith("_label")}
        for k, p in entries.items():   # a lone scan (no _image/_label in its name): an unlabelled host
            if not k.endswith(("_image", "_label")):
                if k in images:
                    raise InputError(f"{src}: {p.name} and {images[k].name} both give the case id {k!r}")
                images[k] = p
    if not images and not labels:
        raise InputError(f"{src}: no cases found (expected dataset.json, images/ + labels/, "
                         "X_image.* / X_label.* files, or image files)")
    cases = [CaseSpec(k, p, labels.get(k)) for k, p in images.items()]
    cases += [CaseSpec(k, p, p, [f"{p}: label without a matching image"])
              for k, p in labels.items() if k not in images]
    return sorted(cases, key=lambda c: c.id)


def pair_case(src: Path, label: Path | None) -> list[CaseSpec]:
    """The single case of an image file or DICOM folder, with ``label`` or its ``X_label.*`` sibling."""
    named = split_name(src)
    if named is None:
        raise InputError(f"{src}: not an image file (expected .nii, .nii.gz, .nrrd, .nhdr or a DICOM folder)")
    stem = named[0].removesuffix("_image")
    if label is None and stem != named[0]:
        siblings = [p for p in sorted(src.parent.glob(f"{stem}_label*")) if split_name(p)]
        if len(siblings) > 1:
            raise InputError(f"{src}: several labels match: {', '.join(p.name for p in siblings)}")
        label = siblings[0] if siblings else None
    elif label is not None and not Path(label).exists():
        raise InputError(f"{label}: label file does not exist")
    return [CaseSpec(stem, src, None if label is None else Path(label).resolve())]


def discover(src: Path, fmt: str = "auto", label: Path | None = None) -> tuple[str, list[CaseSpec]]:
    """(format used, cases) of ``src``; ``label`` only goes with the 'pair' format."""
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = "pair" if label is not None else detect_format(src)
    if label is not None and fmt != "pair":
        raise InputError(f"--label goes with a single image (format 'pair'), not format {fmt!r}")
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if fmt == "msd":
        return fmt, msd_cases(src)
    if fmt == "folder":
        return fmt, folder_cases(src)
    return fmt, pair_case(src, label)
