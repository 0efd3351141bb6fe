"""Every CUDA kernel compiles to PTX for sm_90 with the real Numba CUDA compiler (NVVM).

The simulator (``NUMBA_ENABLE_CUDASIM=1``) runs kernels as Python and cannot catch
code that NVVM rejects, so the kernels are compiled here without a GPU, in a
subprocess with the simulator off, for the argument types the ``cuda(...)``
front ends pass (CuPy arrays type like NumPy arrays). Skips when Numba finds no
NVVM/libdevice/NVRTC (as in CI, whose extras do not include them). To run it
without a GPU, with the compiler kept out of the project's environment::

    pip install --target /tmp/nvcuda "nvidia-cuda-nvrtc==13.*" "nvidia-nvvm==13.*"
    export CUDA_HOME=/tmp/nvcuda/nvidia/cu13 LD_LIBRARY_PATH=/tmp/nvcuda/nvidia/cu13/lib
    pytest tests/test_cuda_compile.py

(``CUDA_HOME`` locates libdevice, ``LD_LIBRARY_PATH`` libnvvm and libnvrtc.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CC = (9, 0)


def _signatures() -> dict:
    """{kernel name: (dispatcher, [argument type tuples])}, one entry per kernel launch site."""
    from numba import types as T

    from synthlung.kernels import _blend_cuda, _ccl_cuda, _lung_cuda, warp

    i64, f32, f64, b1 = T.int64, T.float32, T.float64, T.boolean
    tup3 = T.UniTuple(i64, 3)
    c1 = {t: t[::1] for t in (T.uint8, T.uint32, f32)}
    c3 = {t: t[:, :, ::1] for t in (T.uint8, T.int16, T.int32, T.uint32, f32, b1)}
    ccl = _ccl_cuda
    u8, u32 = c1[T.uint8], c1[T.uint32]
    g = c3[f32]  # the multigrid's float32 levels
    m = c3[b1]
    w3 = (f64, f64, f64)
    f3 = (i64, i64, i64)
    return {
        "ccl.block_init": (ccl.block_init, [(u8, u8, u32, tup3, tup3)]),
        "ccl.block_merge": (ccl.block_merge, [(u8, u32, tup3, tup3, i64)]),
        "ccl.block_compress": (ccl.block_compress, [(u8, u32, u8, tup3, tup3)]),
        "ccl.block_label": (ccl.block_label, [(u8, u32, u32, tup3, tup3)]),
        "ccl_stats.accumulate": (ccl.accumulate, [(c3[t], i64[::1], i64[:, ::1], i64[:, ::1], f64[:, ::1])
                                                  for t in (T.uint32, T.int32, T.uint8)]),
        "block_mean": (_lung_cuda.block_mean, [(c3[t], i64, i64, i64, c3[f32]) for t in (f32, T.int16, T.uint8)]),
        "lung_refine": (_lung_cuda.lung_refine, [(c3[t], c3[T.uint8], c3[T.uint8], i64, i64, i64, f64, c3[T.uint8])
                                                 for t in (f32, T.int16)]),
        "blend.alpha": (_blend_cuda.alpha, [(c1[f32], c1[f32], c1[f32], c1[f32], f32, f32)]),
        "blend.rhs": (_blend_cuda.rhs, [(g, m, g, g, *w3, b1, g, g)]),
        "blend.smooth": (_blend_cuda.smooth, [(g, g, m, *w3, f64, i64)]),
        "blend.resid": (_blend_cuda.resid, [(g, g, m, *w3, g)]),
        "blend.matvec": (_blend_cuda.matvec, [(g, m, *w3, g)]),
        "blend.restrict": (_blend_cuda.restrict, [(g, m, *f3, g)]),
        "blend.prolong": (_blend_cuda.prolong, [(g, m, *f3, g)]),
        "blend.coarsen": (_blend_cuda.coarsen, [(m, *f3, m)]),
        "warp": (warp._cuda_kernel(), [(c1[f32], c1[f32], tup3, T.UniTuple(f64, 12), g, g, f32[:, :, :, ::1],
                                        b1, T.UniTuple(f64, 3), T.UniTuple(f64, 3), f32, f32, f32, f32)]),
    }


KERNELS = ["ccl.block_init", "ccl.block_merge", "ccl.block_compress", "ccl.block_label", "ccl_stats.accumulate",
           "block_mean", "lung_refine", "blend.alpha", "blend.rhs", "blend.smooth", "blend.resid", "blend.matvec",
           "blend.restrict", "blend.prolong", "blend.coarsen", "warp"]


def _unlisted(listed) -> list[str]:
    """Kernels (not device functions) of the CUDA kernel modules that ``_signatures`` leaves out."""
    from numba.cuda.dispatcher import CUDADispatcher

    from synthlung.kernels import _blend_cuda, _ccl_cuda, _lung_cuda

    ids = {id(k) for k in listed}
    return [f"{mod.__name__}.{name}" for mod in (_blend_cuda, _ccl_cuda, _lung_cuda)
            for name, obj in vars(mod).items()
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device") and id(obj) not in ids]


def _compile_all() -> dict:
    """Run in the subprocess: {"unlisted": [...], "unavailable": reason | None, "results": {name: "ok" | error}}."""
    import types

    from numba import cuda
    from numba.cuda import dispatcher

    # Device functions called from a kernel compile for the current device's compute
    # capability; there is no device here, so stand in one of capability CC.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)
    table = _signatures()
    out = {"unlisted": _unlisted(k for k, _ in table.values()), "unavailable": None, "results": {}}

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, "(float32[::1],)", cc=CC)
    except Exception as exc:  # no NVVM, libdevice or NVRTC: nothing to compile with
        out["unavailable"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
        return out
    for name, (kernel, sigs) in table.items():
        try:
            for sig in sigs:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
                assert ".target sm_90" in ptx, "PTX is not for sm_90"
            out["results"][name] = "ok"
        except Exception as exc:
            out["results"][name] = f"{type(exc).__name__}: {exc}"[:3000]
    return out


@pytest.fixture(scope="module")
def compiled() -> dict:
    """The subprocess's report; the simulator is off there (it replaces ``numba.cuda``)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve())], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_kernel_has_signatures(compiled):
    assert list(compiled["results"]) in ([], KERNELS)
    assert compiled["unlisted"] == []


@pytest.mark.parametrize("name", KERNELS)
def test_kernel_compiles_to_ptx(compiled, name):
    if compiled["unavailable"]:
        pytest.skip(f"Numba finds no CUDA compiler (NVVM + NVRTC, see module doc): {compiled['unavailable']}")
    assert compiled["results"][name] == "ok", compiled["results"][name]


if __name__ == "__main__":
    print(json.dumps(_compile_all()))
