"""synthlung.kernels: the engine. Pure array functions, no I/O, no metadata.

One module per hot path. Each exposes ``cpu`` (Numba on NumPy arrays) and
``cuda`` (Numba CUDA on CuPy arrays; NumPy arrays only under the CUDA
simulator, refused otherwise) with one signature, and ``reference``, the
plainest NumPy/SciPy version that tests use as the oracle. A kernel module's
CUDA code lives beside it in ``_<module>_cuda.py``, imported (and compiled) on
first use, never at import. Device code computes in float32; reductions add
into float64 accumulators; ``threadIdx.x`` runs along the contiguous axis
(:mod:`.layout` for C- and Fortran-ordered input).
"""
