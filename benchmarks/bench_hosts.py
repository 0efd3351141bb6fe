"""segment_lungs on the real chest CT and on a 512 x 512 x 300 resample of it (CPU), with step shares."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthlung.hosts.lungseg import segment_lungs
from synthlung.volume import Volume


@pytest.fixture(scope="module")
def chest(data_dir):
    from synthlung.io import load
    return load(data_dir / "totalseg-chest" / "chest_ct.nii.gz")


@pytest.fixture(scope="module")
def big(chest):
    zoom = np.array([512, 512, 300]) / np.array(chest.shape)
    arr = ndimage.zoom(chest.array, zoom, order=1).astype(np.int16)
    affine = chest.affine.copy()
    affine[:3, :3] = affine[:3, :3] / zoom
    return Volume(arr, affine)


@pytest.mark.parametrize("which", ["chest_ct", "512x512x300"])
def test_segment_lungs_cpu(benchmark, chest, big, which):
    vol = chest if which == "chest_ct" else big
    segment_lungs(vol)  # JIT warm-up
    steps: dict = {}
    benchmark.pedantic(segment_lungs, args=(vol,), kwargs={"timings": steps}, rounds=3, iterations=1)
    total = sum(steps.values())
    benchmark.extra_info.update({k: round(v / total, 3) for k, v in steps.items()})
    print(which, {k: f"{100 * v / total:.0f}%" for k, v in steps.items()})
