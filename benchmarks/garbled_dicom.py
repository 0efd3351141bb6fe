"""How often a garbled JPEG 2000 slice of the real DICOM series is refused by ``synthlung.load``.

Each trial copies ``../shared/data/totalseg-dicom/series`` (or ``$SYNTHLUNG_TEST_DATA``) to a temporary
folder, overwrites 1, 16 or 256 random bytes at a random place inside one
slice's JPEG 2000 codestream and loads the series. Prints, per garble size, how
many trials were refused and, for those that loaded, how far the worst voxel
was from the intact series (HU). ``python benchmarks/garbled_dicom.py [trials]``
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import synthlung
from synthlung.errors import InputError

DATA = Path(os.environ.get("SYNTHLUNG_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "totalseg-dicom" / "series"


def main(trials: int = 30) -> None:
    """Run ``trials`` garbles per size and print the table."""
    intact = synthlung.load(DATA).array.astype(np.int32)
    files = sorted(DATA.iterdir())
    rng = np.random.default_rng(0)
    print("| garbled bytes | trials | refused | loaded: worst voxel off (HU) | loaded: median voxels off |")
    print("| --- | --- | --- | --- | --- |")
    for size in (1, 16, 256):
        refused, worst, changed = 0, [], []
        for _ in range(trials):
            with tempfile.TemporaryDirectory() as tmp:
                series = Path(shutil.copytree(DATA, Path(tmp) / "series"))
                victim = series / files[int(rng.integers(len(files)))].name
                blob = bytearray(victim.read_bytes())
                start = blob.index(b"\xff\x4f\xff\x51")           # SOC + SIZ: the codestream begins
                at = int(rng.integers(start, len(blob) - size - 2))
                blob[at:at + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
                victim.write_bytes(bytes(blob))
                try:
                    off = np.abs(synthlung.load(series).array.astype(np.int32) - intact)
                except InputError:
                    refused += 1
                    continue
                worst.append(int(off.max()))
                changed.append(int(np.count_nonzero(off)))
        print(f"| {size} | {trials} | {refused} | {max(worst) if worst else '-'} | "
              f"{int(np.median(changed)) if changed else '-'} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
