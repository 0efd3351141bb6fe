"""synthlung.kernels: the engine. Pure array functions, no I/O, no metadata.

One module per hot path. Each exposes ``cpu`` (Numba on NumPy arrays) and
``cuda`` (Numba CUDA on CuPy arrays; NumPy arrays under the CUDA simulator)
with one signature, and ``reference``, the plainest NumPy/SciPy version that
tests use as the oracle. CUDA kernels are built on first use, never at import.
"""
