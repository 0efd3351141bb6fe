"""synthlung.kernels: the engine. Pure array functions, no I/O, no metadata.

One module per hot path. Each exposes ``cpu`` (Numba on NumPy arrays) and
``cuda`` (Numba CUDA on CuPy arrays; NumPy arrays under the CUDA simulator)
with one signature, and ``reference``, the plainest NumPy/SciPy version that
tests use as the oracle. CUDA kernels are built on first use, never at import.
"""

import os as _os

if "NUMBA_THREADING_LAYER" not in _os.environ:
    # GNU OpenMP kills forked children of a process that ran parallel kernels
    # (PyTorch DataLoader workers, process pools): choose a fork-safe layer.
    # Measured here: no slower than OpenMP for these kernels.
    from numba import config as _config
    _config.THREADING_LAYER = "forksafe"
