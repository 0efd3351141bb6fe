"""synthlung: synthetic lung-tumor CT from real tumors, on GPU (CUDA) or CPU.

Public names are imported lazily, so ``import synthlung`` is fast and needs
only the core dependencies; optional extras (CuPy, torch, MONAI, Dask) are
imported by the functions that use them.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_EXPORTS = {
    "Volume": "volume",
    "load": "io",
    "save": "io",
    "case_rng": "rng",
    "label": "components",
    "component_stats": "components",
    "chest_phantom": "datasets.phantom",
    "ingest": "datasets",
    "load_catalog": "datasets",
    "Seed": "seeds",
    "SeedBank": "seeds",
    "extract_seeds": "seeds",
    "Host": "hosts",
    "segment_lungs": "hosts",
    "placement_zone": "hosts",
    "make_host": "hosts",
    "HostBank": "hosts",
    "MorphParams": "synthesis.morphing",
    "MorphedSeed": "synthesis.morphing",
    "morph": "synthesis.morphing",
    "insert": "synthesis.insertion",
    "sample_placements": "synthesis.case",
    "Case": "synthesis.case",
    "SynthesisConfig": "synthesis.case",
    "synthesize": "synthesis.case",
    "generate": "run.offline",
    "RandInsertTumors": "run.transforms",
    "RandInsertTumorsd": "run.transforms",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synthlung' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
