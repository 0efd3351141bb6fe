"""Whether a file can hold the voxels its header claims, checked before anything is allocated."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError

DEFLATE_MAX_RATIO = 1032    # deflate (gzip, zlib) never expands data more than this


def check_room(path: Path, shape, itemsize: int, stored_bytes: int, encoding: str = "raw") -> None:
    """InputError unless ``stored_bytes`` of ``encoding`` ('raw' or 'gzip') can hold ``shape`` voxels.

    Raw data needs ``prod(shape) * itemsize`` bytes; gzip at least that over
    ``DEFLATE_MAX_RATIO``. Other encodings are not bounded here.
    """
    voxels = 1
    for s in shape:
        voxels *= int(s)
    needed = voxels * int(itemsize)
    room = stored_bytes * (DEFLATE_MAX_RATIO if encoding == "gzip" else 1)
    if encoding in ("raw", "gzip") and needed > room:
        what = "holds" if encoding == "raw" else "can expand to at most"
        raise InputError(f"{path}: header claims {' x '.join(str(int(s)) for s in shape)} voxels "
                         f"({needed:,} bytes) but the file {what} {room:,} bytes of image data; "
                         "truncated file or corrupt header")
