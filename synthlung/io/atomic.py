"""Write files so that a reader never sees half of one: temporary name, then rename."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz`` writers look at it).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to ``path`` and flush it to disk (manifests, logs)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries that a killed writer left under ``folder``; returns what was removed.

    Only names made by :func:`atomic_path` (``.NAME.XXXX.tmp...``) are touched.
    """
    removed = []
    for tmp in Path(folder).rglob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


def read_json_index(path: str | os.PathLike, what: str, schema_version: int) -> dict:
    """Read a synthlung JSON index (catalog, seed or host bank) and check its ``schema_version``.

    Errors name the file and ``what`` it should have been.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != schema_version:
        raise InputError(f"{path}: not a {what} with schema_version {schema_version} (found {version!r})")
    return data
