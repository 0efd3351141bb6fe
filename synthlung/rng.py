"""Counter-based random streams: one independent generator per generated case.

Case ``index`` of a run with seed ``seed`` draws from
``Generator(Philox(key=[seed, index]))``. The pair is the Philox *key*, not its
counter: consecutive counters would give overlapping streams (case i+1 would
replay case i's numbers shifted by one block), distinct keys give independent
ones. The result is the same whatever worker makes the case, in whatever order.
"""
from __future__ import annotations

import numpy as np


def case_key(seed: int, index: int) -> list[int]:
    """The Philox key of case ``index`` in a run seeded with ``seed`` (both >= 0)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return [int(seed), int(index)]


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of case ``index`` in a run seeded with ``seed``."""
    key = np.array(case_key(seed, index), dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))
