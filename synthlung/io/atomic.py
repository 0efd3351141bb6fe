"""Write files so that a reader never sees half of one: temporary name, then rename.

Files get the mode a plain ``open`` would give them (``0o666`` less the umask, so
0644 under umask 022), temporaries included once they are renamed into place.
A write that fails (disk full, no permission) raises
:class:`~synthlung.errors.OutputError` naming the final path.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError, OutputError


def process_umask() -> int:
    """The process umask, read from /proc where it can be (``os.umask`` alone must set it to read it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cannot_write(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line error for an OS failure writing ``path`` (ENOSPC, EACCES, EFBIG...)."""
    err = OutputError(f"{path}: cannot write: {exc.strerror or exc}")
    err.errno = exc.errno
    return err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz`` writers look at it).
    On any exception the temporary file is removed and ``path`` is untouched; an
    OS error (disk full...) becomes :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    if suffix is None:
        suffix = "".join(path.suffixes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~process_umask())
            os.replace(tmp_path, path)
        except OutputError:
            raise
        except OSError as exc:
            raise cannot_write(path, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically; NaN/Inf are refused (not JSON)."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as exc:
        raise InputError(f"{path}: refusing to write a non-finite number (NaN/Inf) as JSON: {exc}") from exc
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to ``path`` and flush it to disk (manifests, logs)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise cannot_write(path, exc) from exc


def remove_stale_temporaries(*folders: str | os.PathLike) -> list[Path]:
    """Delete the temporaries a killed writer left directly in ``folders``; returns what was removed.

    Only names made by :func:`atomic_path` (``.NAME.XXXXXXXX.tmp...``) are
    touched. Call it only while holding the folder's writer lock
    (:func:`synthlung.io.folder_lock.folder_lock`): another run's temporaries are
    then never in flight.
    """
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp*"):
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
