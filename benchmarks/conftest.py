"""Benchmark configuration: real data location shared with the tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("SYNTHLUNG_TEST_DATA",
                               Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real CT data not found at {DATA_DIR}")
    return DATA_DIR
