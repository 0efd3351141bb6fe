"""The host bank on disk.

A host bank on disk (``synthlung hosts CATALOG OUT``) is a folder holding
``index.json`` and one lung mask per host, ``lungs/<id>.nii.gz`` (uint8, in the
host image's own voxel grid). ``index.json``::

    {"schema_version": 1,
     "catalog": "<absolute path of the catalog.json it was made from>",
     "hosts": [{"id": str,
                "image": "<absolute path of the CT (file or DICOM folder)>",
                "label": "<absolute path of its tumor label>" | null,
                "lungs": "lungs/<id>.nii.gz",          # relative to the bank folder
                "lungs_sha256": "<hex sha256 of the lung mask file>",
                "record": {"id", "sha256": {"image", "label"},  # of the source files
                           "left_ml", "right_ml", "total_ml",
                           "partial_coverage": bool, "shape", "spacing_mm", "method",
                           "soft_tissue_noise": {...}}}],  # hosts.noise.measure_noise; absent when
                                                            # too little soft tissue was found
     "errors": [{"id": str, "error": str}]}

Images are referenced, never copied; :meth:`HostBank.verify` checks every
image, label and lung mask against its recorded sha256 (``generate`` does
before it writes anything). ``HostBank.open(path)[i]`` reloads the
image (and the tumor label), reads the lung mask and recomputes the placement
zone (a few distance transforms, fast).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import asnumpy
from ..datasets.catalog import check_sha256, sha256_of
from ..errors import InputError, SynthlungError
from ..io.atomic import read_json_index, remove_stale_temporaries, write_json
from ..io.folder_lock import folder_lock
from .host import Host, make_host
from .lungseg import lung_summary, segment_lungs
from .noise import measure_noise

INDEX_NAME = "index.json"
SCHEMA_VERSION = 1


def _catalog_cases(catalog: str | os.PathLike) -> tuple[Path, list[dict[str, Any]]]:
    """(catalog file, good cases as dicts with id, image, label (absolute paths or None), sha256)."""
    from ..datasets import load_catalog
    cat = load_catalog(catalog)
    cases = [{"id": c.id, "image": str(c.image_path()),
              "label": None if c.label_path() is None else str(c.label_path()), "sha256": c.sha256}
             for c in cat.cases if c.ok]
    return Path(cat.path).resolve(), cases


def _host_entry(case: dict[str, Any], out: Path, method: str) -> dict[str, Any]:
    from ..io import load, save
    image = load(case["image"])
    lungs = segment_lungs(image, method=method, name=case["image"])
    rel = f"lungs/{case['id']}.nii.gz"
    save(lungs, out / rel)
    record = {"id": case["id"], "sha256": case["sha256"], **lung_summary(lungs),
              "shape": list(image.shape), "spacing_mm": [round(s, 6) for s in image.spacing], "method": method}
    try:  # measured here once, so that generate's workers do not each measure it again
        record["soft_tissue_noise"] = measure_noise(image, case["id"]).to_record()
    except InputError:
        pass  # too little soft tissue: texture noise cannot be had from this host (generate says so)
    return {"id": case["id"], "image": case["image"], "label": case["label"], "lungs": rel,
            "lungs_sha256": sha256_of(out / rel), "record": record}


def _reusable(previous: dict[str, Any] | None, case: dict[str, Any], out: Path, method: str) -> bool:
    """True when an earlier run already made this host from the same files with the same method
    and its lung mask is still the file it wrote."""
    return (previous is not None and previous["record"].get("sha256") == case["sha256"]
            and previous["record"].get("method") == method and (out / previous["lungs"]).is_file()
            and previous.get("lungs_sha256") == sha256_of(out / previous["lungs"]))


def build_host_bank(catalog: str | os.PathLike, out: str | os.PathLike, *, method: str = "threshold",
                    skip_bad: bool = False, progress=None) -> dict[str, Any]:
    """Segment every good case of a catalog and write the bank (see module docstring); returns the index.

    Rerunnable: a host whose source files (sha256) and method are unchanged is
    kept from the existing index instead of being segmented again; the index is
    rewritten (atomically) after every case.
    ``skip_bad``: a case that fails (no lungs, bad volume, unreadable) is recorded
    in ``errors`` and the rest go on; otherwise the first failure raises.
    ``progress(done, total, case_id)`` is called after each case. The bank
    folder is locked for the run (a second writer gets
    :class:`~synthlung.errors.BusyError`); temporaries a killed run left are removed.
    """
    cat_path, cases = _catalog_cases(catalog)
    out = Path(out)
    with folder_lock(out, "hosts"):
        remove_stale_temporaries(out, out / "lungs")
        return _segment_all(cat_path, cases, out, method, skip_bad, progress)


def _segment_all(cat_path: Path, cases: list[dict[str, Any]], out: Path, method: str, skip_bad: bool,
                 progress) -> dict[str, Any]:
    """The body of :func:`build_host_bank`, run while holding the bank's writer lock."""
    previous = {}
    if (out / INDEX_NAME).is_file():
        previous = {h["id"]: h for h in read_json_index(out / INDEX_NAME, "host bank index", SCHEMA_VERSION)["hosts"]}
    index: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "catalog": str(cat_path), "hosts": [], "errors": []}
    for i, case in enumerate(cases):
        try:
            old = previous.get(case["id"])
            index["hosts"].append(old if _reusable(old, case, out, method) else _host_entry(case, out, method))
        except (SynthlungError, OSError) as exc:
            if not skip_bad:
                raise
            index["errors"].append({"id": case["id"], "error": str(exc)})
        write_json(out / INDEX_NAME, index)
        if progress is not None:
            progress(i + 1, len(cases), case["id"])
    return index


class HostBank:
    """A host bank folder: ``len(bank)``, ``bank[i] -> Host``, ``bank.entries`` (index rows)."""

    def __init__(self, root: Path, index: dict[str, Any], **zone_kw):
        self.root = root
        self.index = index
        self.zone_kw = zone_kw

    @classmethod
    def open(cls, path: str | os.PathLike, **zone_kw) -> "HostBank":
        """Open a bank folder (or its ``index.json``); ``zone_kw`` go to :func:`placement_zone`."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        return cls(path.parent, read_json_index(path, "host bank index", SCHEMA_VERSION), **zone_kw)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.index["hosts"]

    def __len__(self) -> int:
        return len(self.entries)

    def verify(self) -> None:
        """Check every host's image, tumour label and lung mask against the sha256 the index
        recorded; InputError naming the first file that is missing or changed (a case record
        made from it would claim a provenance that is no longer true)."""
        for entry in self.entries:
            files = [(entry["image"], entry["record"]["sha256"].get("image"), "image"),
                     (self.root / entry["lungs"], entry.get("lungs_sha256"), "lung mask")]
            if entry["label"] is not None:
                files.append((entry["label"], entry["record"]["sha256"].get("label"), "tumour label"))
            for path, expected, what in files:
                check_sha256(Path(path), expected, f"{what} of host {entry['id']}",
                             "rerun `synthlung ingest` and `synthlung hosts`")

    def __getitem__(self, i: int) -> Host:
        from ..io import load
        entry = self.entries[i]
        image = load(entry["image"])
        lungs_path = self.root / entry["lungs"]
        lungs = load(lungs_path, check_units=False)
        if lungs.shape != image.shape:
            raise InputError(f"{lungs_path}: lung mask shape {lungs.shape} differs from host {entry['id']}'s "
                             f"image shape {image.shape} ({entry['image']})")
        lungs = image.with_array(asnumpy(lungs.array).astype(np.uint8))
        tumors = None if entry["label"] is None else load(entry["label"], check_units=False)
        return make_host(image, tumors, host_id=entry["id"], lungs=lungs, record=entry["record"], **self.zone_kw)
