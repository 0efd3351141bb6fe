"""Test configuration: CUDA simulator on machines without a GPU, markers, real data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def _has_cuda_gpu() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


# Numba reads NUMBA_ENABLE_CUDASIM when numba.cuda is first imported, so decide
# before any test module imports synthlung's kernels. With a real GPU the CUDA
# kernels run on it; without one they run in the simulator on NumPy arrays.
HAS_GPU = _has_cuda_gpu()
if not HAS_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

DATA_DIR = Path(os.environ.get("SYNTHLUNG_TEST_DATA",
                               Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU with CuPy")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not HAS_GPU:  # not `in keywords`: a folder named gpu matches
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; tests that use it skip only when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real CT data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def lung1_paths(data_dir):
    """(image, label) NRRD paths of pyradiomics' lung1 case: one real tumor."""
    d = data_dir / "pyradiomics-lung1"
    return d / "lung1_image.nrrd", d / "lung1_label.nrrd"


@pytest.fixture(scope="session")
def chest_ct_path(data_dir):
    """The healthy contrast chest CT (1.5 mm isotropic) used as a host."""
    return data_dir / "totalseg-chest" / "chest_ct.nii.gz"


@pytest.fixture(scope="session")
def dicom_series_dir(data_dir):
    """The JPEG 2000 compressed abdominal DICOM series and its segmentation."""
    return data_dir / "totalseg-dicom"
