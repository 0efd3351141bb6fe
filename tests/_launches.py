"""Record the CUDA kernel launches of a kernel module (Numba's simulator or a GPU): name, grid, block, arguments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Launch:
    name: str
    grid: Any
    block: Any
    args: tuple


class _Recorded:
    """Stands in for one kernel: ``kernel[grid, block](*args)`` is recorded, then run."""

    def __init__(self, name, kernel, log):
        self.name, self.kernel, self.log = name, kernel, log

    def __getitem__(self, config):
        run = self.kernel[config]

        def launch(*args):
            self.log.append(Launch(self.name, config[0], config[1], args))
            return run(*args)

        return launch


def record_launches(monkeypatch, module) -> list[Launch]:
    """Replace every kernel (not device function) of ``module`` by a recording one; returns the log."""
    log: list[Launch] = []
    for name, obj in list(vars(module).items()):
        if hasattr(obj, "__getitem__") and hasattr(obj, "py_func") and not _is_device(obj):
            monkeypatch.setattr(module, name, _Recorded(name, obj, log))
    return log


def _is_device(obj) -> bool:
    # simulator kernels carry ``_device``; compiled dispatchers keep it in their target options
    return bool(getattr(obj, "_device", False) or getattr(obj, "targetoptions", {}).get("device", False))


def on_device(*arrays):
    """The arrays as CuPy arrays when a GPU is present (the CUDA kernels refuse NumPy there), else as given."""
    from synthlung.backend import cupy_gpu_available
    if not cupy_gpu_available():
        return arrays if len(arrays) > 1 else arrays[0]
    import cupy
    out = tuple(cupy.asarray(a) for a in arrays)
    return out if len(out) > 1 else out[0]


def on_host(x):
    """A NumPy copy of ``x`` (results of the CUDA kernels, or tuples of them)."""
    from synthlung.backend import asnumpy
    return tuple(on_host(v) for v in x) if isinstance(x, tuple) else asnumpy(x)
