"""Scalar code written once and compiled for both targets: plain Python functions that
``njit`` compiles for ``cpu`` and ``numba.cuda.jit(device=True)`` for ``cuda``.

A helper calls other helpers by their global names; :func:`compiled` rebinds those
names to the helpers compiled for the same target, in order.
"""
from __future__ import annotations

import types
from typing import Callable, Sequence


def rebind(fn: Callable, names: dict) -> Callable:
    """A copy of function ``fn`` whose global names ``names`` resolve to other objects."""
    glob = dict(fn.__globals__)
    glob.update(names)
    return types.FunctionType(fn.__code__, glob, fn.__name__, fn.__defaults__, fn.__closure__)


def compiled(functions: Sequence[Callable], jit: Callable, cold: Sequence[Callable] = (),
             cold_jit: Callable | None = None) -> dict:
    """``{name: compiled function}`` of ``functions`` (each may call the ones before it), compiled
    with ``jit``; those in ``cold`` (rare paths kept out of line) with ``cold_jit``."""
    out: dict = {}
    for fn in functions:
        out[fn.__name__] = (cold_jit if fn in cold else jit)(rebind(fn, out))
    return out
