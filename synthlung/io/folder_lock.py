"""One writer per output folder: an exclusive ``flock`` on ``FOLDER/.synthlung.lock``.

``flock`` rather than a pid file: the kernel drops the lock when its holder ends,
however it ends (``kill -9`` included), so a lock left by a killed run is simply
taken over, with no guess about pid liveness (pids are reused, and a pid in a
file on a shared folder may belong to another machine). The lock file stays in
place (removing it would race with a run that has just opened it); while held it
holds the holder's pid, host, command and start time, which the refusal quotes,
and it is emptied on release.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import BusyError
from .atomic import cannot_write

LOCK_NAME = ".synthlung.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the writer lock of ``folder`` (created if missing) for the block.

    Raises :class:`~synthlung.errors.BusyError` at once, touching nothing, when
    another process holds it.
    """
    folder = Path(folder)
    lock = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)   # less the umask, by the kernel
    except OSError as exc:
        raise cannot_write(lock, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
            raise BusyError(f"{folder}: another synthlung run is writing here ({holder}); "
                            "wait for it to end or choose another folder") from None
        except OSError as exc:  # e.g. ENOLCK: a file system without locks
            raise cannot_write(lock, exc) from exc
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as exc:
            raise cannot_write(lock, exc) from exc
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)  # an idle lock file is empty: runs leave the same bytes
    finally:
        os.close(fd)  # releases the lock
