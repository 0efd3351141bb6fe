"""Backend facts, dispatch, optional extras, and a core-only import."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from synthlung import backend
from synthlung.cli import main
from synthlung.errors import InputError, MissingExtraError


def test_missing_extra_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'synthlung\[dask\]'"):
        backend.optional_import("surely_not_a_module_xyz", "dask", "--scheduler dask")


def test_dispatch_follows_the_input_and_the_override():
    x = np.zeros((2, 2, 2), bool)
    assert backend.resolve_backend(x) == "cpu"
    with pytest.raises(InputError, match="backend='gpu'"):
        backend.resolve_backend(x, "gpu")


def test_three_facts_are_kept_apart_without_a_gpu():
    if backend.cupy_gpu_available():
        pytest.skip("a GPU is present")
    # conftest switched the simulator on: Numba then reports CUDA although CuPy cannot allocate.
    assert backend.cuda_simulator_enabled()
    assert backend.numba_cuda_available()
    assert backend.resolve_backend(np.zeros(3), "cuda") == "cuda"


def test_import_needs_only_the_core():
    """With CuPy, torch, MONAI and Dask made unimportable, synthlung and its CPU path still work."""
    code = (
        "import sys\n"
        "for m in ('cupy', 'torch', 'monai', 'dask', 'distributed', 'cucim'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np, synthlung\n"
        "labels, n = synthlung.label(np.eye(4, dtype=bool)[None], connectivity=6)\n"
        "assert n == 4, n\n"
        "from synthlung.run.offline import generate\n"
        "try:\n"
        "    generate('h', 's', 1, 'o', scheduler='dask')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "InputError" in done.stdout  # the missing bank is reported before any cluster is asked for


def test_version_and_one_line_errors(capsys, tmp_path):
    assert main(["--version"]) == 0
    import synthlung
    assert synthlung.__version__ in capsys.readouterr().out
    assert main(["seeds", str(tmp_path / "missing.json"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "missing.json" in err and "Traceback" not in err
