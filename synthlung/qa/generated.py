"""A generated dataset as QA reads it: its cases' records and files, and the banks it was made from.

A ``synthlung generate`` folder holds ``run.json`` (the host and seed bank
paths), ``manifest.jsonl`` and per case ``records/<case>.json`` whose ``files``
name the image, label and instance map. Hosts and seeds are opened only when
asked for, once each.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..volume import Volume


def record_path_of(case: Path) -> Path:
    """The record JSON of a case given its record or its image file (``imagesTr/case_0003_0000.nii.gz``)."""
    if case.suffix == ".json":
        return case
    name = case.name.split(".")[0].removesuffix("_0000")
    return case.parent.parent / "records" / f"{name}.json"


class GeneratedDataset:
    """The folder ``root`` written by :func:`synthlung.generate`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "records").is_dir():
            raise InputError(f"{self.root}: not a generated dataset (no records/ folder)")
        self._hosts: dict[str, tuple[Volume, Volume | None]] = {}

    @classmethod
    def of_case(cls, case: str | Path) -> tuple["GeneratedDataset", dict]:
        """The dataset holding ``case`` (a record or image path) and that case's record."""
        path = record_path_of(Path(case))
        if not path.exists():
            raise InputError(f"{case}: no case record found (looked for {path})")
        return cls(path.parent.parent), read_record(path)

    def records(self) -> list[dict]:
        """Every case record, in case order."""
        return [read_record(p) for p in sorted((self.root / "records").glob("case_*.json"))]

    def volume(self, record: dict, kind: str) -> Volume:
        """The case's ``image``, ``label`` or ``instances`` volume."""
        from ..io import load
        return load(self.root / record["files"][kind], check_units=kind == "image")

    @cached_property
    def run(self) -> dict:
        path = self.root / "run.json"
        if not path.exists():
            raise InputError(f"{self.root}: no run.json, so the host and seed banks are unknown")
        return json.loads(path.read_text())

    @cached_property
    def seed_bank(self) -> Any:
        from ..seeds import SeedBank
        return SeedBank.open(self.run["seeds"])

    @cached_property
    def _host_entries(self) -> tuple[Path, dict[str, dict]]:
        from ..io.atomic import read_json_index
        root = Path(self.run["hosts"])
        index = read_json_index(root / "index.json", "host bank index", 1)
        return root, {h["id"]: h for h in index["hosts"]}

    def host(self, host_id: str) -> tuple[Volume, Volume]:
        """(image, lung labels) of a host, as the case was made from it (read once, kept)."""
        if host_id not in self._hosts:
            from ..io import load
            root, entries = self._host_entries
            if host_id not in entries:
                raise InputError(f"{root}: no host {host_id!r} in the host bank")
            entry = entries[host_id]
            image = load(entry["image"])
            lungs = load(root / entry["lungs"], check_units=False)
            self._hosts = {host_id: (image, image.with_array(np.asarray(lungs.array).astype(np.uint8)))}
        return self._hosts[host_id]


def read_record(path: Path) -> dict:
    """A case record; unreadable JSON is a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read case record: {exc}") from exc
