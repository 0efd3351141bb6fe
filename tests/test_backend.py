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


def test_cuda_kernels_refuse_numpy_off_the_simulator(monkeypatch):
    """On a GPU a NumPy array would be copied to and from the device at every launch: refused instead."""
    from synthlung.kernels import (blend, block_mean, bounds, ccl, ccl_stats, erosion, lung_refine, noise_gain,
                                   shell_distance, warp)

    monkeypatch.setattr(backend, "cuda_simulator_enabled", lambda: False)
    x = np.zeros((4, 4, 4), np.float32)
    m = np.zeros((4, 4, 4), bool)
    calls = [lambda: block_mean.cuda(x, (2, 2, 2)), lambda: ccl.cuda(m), lambda: ccl_stats.cuda(m.view(np.uint8), 1),
             lambda: lung_refine.cuda(x, np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), np.uint8), (2, 2, 2), 0),
             lambda: blend.cuda.poisson(x, m, x), lambda: blend.cuda.alpha(x, x, x, 0, 1),
             lambda: warp.cuda(x, x, np.eye(4), (2, 2, 2)), lambda: shell_distance.cuda(m, (1, 1, 1), 2),
             lambda: noise_gain.cuda((4, 4, 4), (1, 1, 1), x[0], 2, 0.1, 0.1), lambda: bounds.cuda(m),
             lambda: erosion.cuda(m)]
    for call in calls:
        with pytest.raises(InputError, match="CuPy arrays"):
            call()


def test_backend_cuda_on_numpy_copies_once_per_call(monkeypatch):
    """dispatch(..., backend="cuda") with NumPy input: each array to the device once, each result back once."""
    import types

    copies = {"to": 0, "back": 0}
    fake = types.ModuleType("cupy")

    class Device:  # stands in for a CuPy array (its module name is what the backend looks at)
        __module__ = "cupy"

        def __init__(self, a):
            self.a = a

        def get(self):
            copies["back"] += 1
            return self.a

    def asarray(a):
        copies["to"] += 1
        return Device(a)

    fake.asarray = asarray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "cuda_simulator_enabled", lambda: False)
    seen = []

    def kernel(a, b, factor):
        seen.append((type(a), type(b)))
        return Device(a.a * factor), Device(b.a + factor)

    module = types.SimpleNamespace(cuda=kernel, cpu=None)
    out = backend.dispatch(module, np.ones(3), "cuda")(np.ones(3), np.zeros(3), 2)
    assert seen == [(Device, Device)] and copies == {"to": 2, "back": 2}
    assert all(isinstance(o, np.ndarray) for o in out) and out[0].tolist() == [2.0] * 3


@pytest.mark.gpu
def test_backend_cuda_on_numpy_runs_on_the_gpu_and_returns_numpy():
    import synthlung

    mask = np.random.default_rng(0).random((20, 30, 40)) < 0.4
    labels, n = synthlung.label(mask, backend="cuda")
    want, want_n = synthlung.label(mask)
    assert isinstance(labels, np.ndarray) and n == want_n and np.array_equal(labels, want)
    stats = synthlung.component_stats(labels, n, backend="cuda")
    assert isinstance(stats.counts, np.ndarray)
    np.testing.assert_array_equal(stats.counts, synthlung.component_stats(labels, n).counts)
