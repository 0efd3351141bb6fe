"""Which array module and which kernel implementation a call uses.

The input decides: a NumPy array runs the ``cpu`` kernels, a CuPy array the
``cuda`` kernels, a torch tensor goes zero-copy through DLPack to whichever of
the two matches its device, and the result comes back as the input's type.
``backend=`` overrides the choice. Nothing is copied between host and device
behind the caller's back: ``backend="cuda"`` on NumPy input copies the call's
arrays to the GPU once and the results back once (:func:`dispatch`), and the
CUDA kernels themselves refuse NumPy arrays outside the simulator
(:func:`cuda_module`), where Numba would copy them at every launch.

Three facts are kept apart:

* :func:`cupy_gpu_available` - CuPy is installed and can allocate on a GPU;
* :func:`numba_cuda_available` - Numba can compile and launch CUDA kernels;
* :func:`cuda_simulator_enabled` - ``NUMBA_ENABLE_CUDASIM=1``: Numba's CUDA
  simulator runs the kernels in Python on NumPy arrays (CI has no GPU). Numba
  then reports CUDA as available although CuPy cannot allocate.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Callable

import numpy as np

from .errors import InputError, MissingExtraError

BACKENDS: tuple[str, ...] = ("cpu", "cuda")


def optional_import(module: str, extra: str, what: str = "") -> Any:
    """Import an optional dependency or raise :class:`MissingExtraError` naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra, what) from exc


def cuda_simulator_enabled() -> bool:
    """True when Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.cache
def cupy_gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device can be used through it."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, driver errors
        return False


@functools.cache
def numba_cuda_available() -> bool:
    """True when Numba can run CUDA kernels, on a GPU or in the simulator."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def _is_torch(x: Any) -> bool:
    """A torch tensor, subclasses included (e.g. MONAI's MetaTensor)."""
    return any(c.__name__ == "Tensor" and c.__module__.split(".")[0] == "torch" for c in type(x).__mro__)


def array_module(x: Any) -> Any:
    """``cupy`` for a CuPy array, ``numpy`` otherwise."""
    if type(x) is np.ndarray:  # the common case, called many times per tumour
        return np
    if _is_cupy(x):
        import cupy
        return cupy
    return np


def to_array(x: Any) -> Any:
    """A NumPy or CuPy view of ``x``; torch tensors are shared through DLPack, never copied."""
    if _is_torch(x):
        import torch
        # a subclass (MONAI's MetaTensor) as a plain tensor first: its detach would copy metadata
        x = (x if type(x) is torch.Tensor else x.as_subclass(torch.Tensor)).detach()
        if x.device.type == "cuda":
            cupy = optional_import("cupy", "cuda12", "CUDA torch tensors")
            return cupy.from_dlpack(x)
        return np.from_dlpack(x)
    if _is_cupy(x) or isinstance(x, np.ndarray):
        return x
    return np.asarray(x)


def like(result: Any, original: Any) -> Any:
    """Return ``result`` as the type of ``original`` (torch in, torch out), zero-copy."""
    if _is_torch(original):
        import torch
        return torch.from_dlpack(result)
    return result


def resolve_backend(x: Any, backend: str | None = None) -> str:
    """The implementation to run for array ``x``: ``backend`` if given, else by array type."""
    if backend is not None:
        if backend not in BACKENDS:
            raise InputError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        if backend == "cuda" and not numba_cuda_available():
            raise MissingExtraError("numba-cuda", "cuda12", "backend='cuda'")
        return backend
    return "cuda" if _is_cupy(x) else "cpu"


def cuda_module(x: Any, what: str) -> Any:
    """The array module of a CUDA kernel's input: CuPy, or NumPy under the simulator only.

    Off the simulator a NumPy array handed to a Numba CUDA kernel is copied to
    the device and back at every launch; the kernels refuse it instead (the
    front end's :func:`dispatch` copies once per call).
    """
    if _is_cupy(x):
        import cupy
        return cupy
    if cuda_simulator_enabled():
        return np
    raise InputError(f"{what}: the cuda kernels take CuPy arrays (NumPy only in Numba's simulator), "
                     f"got {type(x).__module__}.{type(x).__name__}")


def _on_device(fn: Callable) -> Callable:
    """``fn`` with NumPy array arguments copied to the GPU once and array results copied back once."""
    cupy = optional_import("cupy", "cuda12", "backend='cuda' on NumPy input")

    def to_host(r):
        if isinstance(r, tuple):
            return tuple(to_host(v) for v in r)
        return r.get() if _is_cupy(r) else r

    def call(*args, **kwargs):
        args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        return to_host(fn(*args, **kwargs))

    return call


def dispatch(module: Any, x: Any, backend: str | None = None) -> Callable:
    """The ``cpu`` or ``cuda`` function of a kernel module for input ``x``.

    ``backend="cuda"`` with a NumPy ``x`` (off the simulator) copies the call's
    arrays to the GPU once and its results back once, never per launch.
    """
    fn = getattr(module, resolve_backend(x, backend))
    if backend == "cuda" and not _is_cupy(x) and not cuda_simulator_enabled():
        return _on_device(fn)
    return fn


def asnumpy(x: Any) -> np.ndarray:
    """A NumPy copy of ``x`` (an explicit device-to-host copy for CuPy arrays)."""
    if _is_cupy(x):
        return x.get()
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
