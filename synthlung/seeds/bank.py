"""The seed bank on disk: a folder of seeds with an index.

Seed bank layout (``OUT``)::

    OUT/index.json          schema below, rewritten atomically after each case
    OUT/seeds/<seed_id>.npz arrays image, mask, soft_mask, affine (one file per seed)

``index.json`` (``schema_version`` 1)::

    {"schema_version": 1, "synthlung_version": "0.1.0",
     "cases": {"<case_id>": {"source": {...}, "params": {"margin_mm": 10.0,
                              "min_volume_mm3": 30.0}, "seeds": ["<seed_id>", ...]}},
     "seeds": [{"seed_id": ..., "file": "seeds/<seed_id>.npz", "file_sha256": "<hex sha256 of the file>",
                <record fields>}, ...]}

:meth:`SeedBank.verify` checks every file against its ``file_sha256``
(``generate`` does before it writes anything).

The record fields are described in :mod:`synthlung.seeds.extraction`.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..io.atomic import atomic_path, read_json_index, remove_stale_temporaries, write_json
from ..io.folder_lock import folder_lock
from ..volume import Volume
from .extraction import Seed, extract_seeds, seed_params

SCHEMA_VERSION = 1
INDEX_NAME = "index.json"


class SeedBank:
    """A folder of seeds: ``index.json`` plus one ``.npz`` per seed (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike, index: dict[str, Any]):
        self.root = Path(root)
        self._index = index
        self._by_id = {r["seed_id"]: k for k, r in enumerate(index["seeds"])}

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False) -> "SeedBank":
        """Open the bank in folder ``path`` (or its ``index.json``); ``create`` starts an empty one."""
        path = Path(path)
        root = path.parent if path.name == INDEX_NAME else path
        index_path = root / INDEX_NAME
        if not index_path.exists():
            if create:
                return cls(root, {"schema_version": SCHEMA_VERSION, "synthlung_version": __version__,
                                  "cases": {}, "seeds": []})
            raise InputError(f"{index_path}: no seed bank index here")
        return cls(root, read_json_index(index_path, "seed bank index", SCHEMA_VERSION))

    @classmethod
    def write(cls, seeds: Iterable[Seed], out: str | os.PathLike) -> "SeedBank":
        """Add ``seeds`` to the bank at ``out`` (created if missing); returns the bank."""
        bank = cls.open(out, create=True)
        bank.add(list(seeds))
        return bank

    def __len__(self) -> int:
        return len(self._index["seeds"])

    @property
    def ids(self) -> list[str]:
        return [r["seed_id"] for r in self._index["seeds"]]

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._index["seeds"])

    @property
    def cases(self) -> dict[str, dict[str, Any]]:
        """Per case: its ``source``, the ``params`` it was extracted with and its seed ids."""
        return dict(self._index["cases"])

    def __getitem__(self, i: int) -> Seed:
        return self._load(self._index["seeds"][i])

    def get(self, seed_id: str) -> Seed:
        """Load the seed named ``seed_id`` (one file read)."""
        if seed_id not in self._by_id:
            raise InputError(f"{self.root}: no seed {seed_id!r} in the bank")
        return self[self._by_id[seed_id]]

    def is_done(self, case_id: str, source: dict, params: dict) -> bool:
        """True when ``case_id`` was extracted from files of the same sha256s with the same parameters."""
        case = self._index["cases"].get(case_id)
        return (case is not None and case["params"] == params
                and case["source"].get("sha256", case["source"]) == source.get("sha256", source))

    def add(self, seeds: list[Seed], case_id: str | None = None, source: dict | None = None,
            params: dict | None = None) -> None:
        """Write ``seeds`` and record their case(s); a case's previous seeds are replaced.

        ``case_id``/``source``/``params`` register a case even when it gave no seed.
        """
        cases = {s.record["case_id"]: (s.record["source"],
                                       seed_params(s.record["margin_mm"], s.record["min_volume_mm3"]))
                 for s in seeds}
        if case_id is not None:
            cases[case_id] = (source or {}, params or {})
        hashes = [self._write_seed(seed) for seed in seeds]
        keep = [r for r in self._index["seeds"] if r["case_id"] not in cases]
        new = [dict(s.record, file=f"seeds/{s.id}.npz", file_sha256=h) for s, h in zip(seeds, hashes)]
        stale = {r["file"] for r in self._index["seeds"]} - {r["file"] for r in keep + new}
        self._index["seeds"] = keep + new
        for cid, (src, prm) in cases.items():
            self._index["cases"][cid] = {"source": src, "params": prm,
                                         "seeds": [s.id for s in seeds if s.record["case_id"] == cid]}
        self._by_id = {r["seed_id"]: k for k, r in enumerate(self._index["seeds"])}
        write_json(self.root / INDEX_NAME, self._index)
        for name in stale:  # seeds of a redone case that it no longer has
            (self.root / name).unlink(missing_ok=True)

    def _write_seed(self, seed: Seed) -> str:
        """Write the seed's ``.npz`` atomically; returns the file's sha256."""
        from ..datasets.catalog import sha256_of
        path = self.root / "seeds" / f"{seed.id}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, image=seed.image.array, mask=seed.mask.array,
                                soft_mask=seed.soft_mask.array, affine=seed.affine)
        return sha256_of(path)

    def verify(self) -> None:
        """Check every seed file against the sha256 the index recorded for it; InputError
        naming the first file that is missing or changed (then a record's provenance would be false)."""
        from ..datasets.catalog import check_sha256
        for record in self._index["seeds"]:
            check_sha256(self.root / record["file"], record.get("file_sha256"), "seed file",
                         "rerun `synthlung seeds` into a new bank")

    def _load(self, record: dict[str, Any]) -> Seed:
        path = self.root / record["file"]
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in ("image", "mask", "soft_mask", "affine")}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path}: cannot read seed file: {type(exc).__name__}: {exc}") from exc
        shapes = {k: arrays[k].shape for k in ("image", "mask", "soft_mask")}
        if len(set(shapes.values())) != 1 or len(shapes["image"]) != 3 or arrays["affine"].shape != (4, 4):
            raise InputError(f"{path}: corrupt seed file: arrays of shapes "
                             f"{', '.join(f'{k} {v}' for k, v in shapes.items())}, affine {arrays['affine'].shape} "
                             "(expected three equal 3-D shapes and a 4x4 affine)")
        affine = arrays["affine"]
        return Seed(image=Volume(arrays["image"], affine), mask=Volume(arrays["mask"], affine),
                    soft_mask=Volume(arrays["soft_mask"], affine),
                    record={k: v for k, v in record.items() if k not in ("file", "file_sha256")})

    def __repr__(self) -> str:
        return f"SeedBank({str(self.root)!r}, {len(self)} seeds, {len(self._index['cases'])} cases)"


@dataclass
class BankReport:
    """What :func:`build_seed_bank` did: case ids per outcome, and notes (skips, errors)."""

    done: list[str]
    reused: list[str]
    skipped: list[str]
    failed: list[str]
    notes: list[str]


def build_seed_bank(catalog: str | os.PathLike, out: str | os.PathLike, margin_mm: float = 10.0,
                    min_volume_mm3: float = 30.0, skip_bad: bool = False,
                    progress: Callable[[int, int, str], None] | None = None) -> BankReport:
    """Extract the seeds of every labelled case of ``catalog`` (a ``catalog.json``) into the bank ``out``.

    Rerunnable: a case already in the bank with the same file hashes and
    parameters is not redone. Unlabelled and failed-ingest cases are skipped
    with a note. A case that cannot be read raises, or with ``skip_bad`` is
    noted and left out. ``progress(done, total, case_id)`` is called per case.
    The bank folder is locked for the run (a second writer gets
    :class:`~synthlung.errors.BusyError`); temporaries a killed run left are removed.
    """
    from ..datasets import load_catalog
    cases = load_catalog(catalog).cases
    with folder_lock(out, "seeds"):
        remove_stale_temporaries(out, Path(out) / "seeds")
        return _extract_all(cases, SeedBank.open(out, create=True), margin_mm, min_volume_mm3, skip_bad,
                            progress)


def _extract_all(cases: list, bank: SeedBank, margin_mm: float, min_volume_mm3: float, skip_bad: bool,
                 progress: Callable[[int, int, str], None] | None) -> BankReport:
    """The body of :func:`build_seed_bank`, run while holding the bank's writer lock."""
    from ..io import load
    params = seed_params(margin_mm, min_volume_mm3)
    report = BankReport([], [], [], [], [])
    for k, case in enumerate(cases):
        if progress is not None:
            progress(k, len(cases), case.id)
        if not case.ok or case.label is None:
            report.skipped.append(case.id)
            report.notes.append(f"case {case.id}: " + ("failed at ingest" if not case.ok else "no label"))
            continue
        source = {"image": str(case.image_path()), "label": str(case.label_path()), "sha256": case.sha256}
        if bank.is_done(case.id, source, params):
            report.reused.append(case.id)
            continue
        try:
            seeds = extract_seeds(load(case.image_path()), load(case.label_path(), check_units=False), margin_mm,
                                  min_volume_mm3, case_id=case.id, source=source)
        except InputError as exc:
            if not skip_bad:
                raise InputError(f"case {case.id}: {exc}") from exc
            report.failed.append(case.id)
            report.notes.append(f"case {case.id}: {exc}")
            continue
        bank.add(seeds, case.id, source, params)
        report.done.append(case.id)
    if progress is not None:
        progress(len(cases), len(cases), "")
    return report
