"""The GPU campaign (``python -m benchmarks.gpu``): without a GPU one line and a non-zero status; its table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HAS_GPU

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present: the campaign would run in full")
def test_campaign_without_gpu_says_so_in_one_line(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(out)], cwd=ROOT,
                          env=dict(os.environ, NUMBA_ENABLE_CUDASIM="0"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no usable CUDA GPU" in lines[0], lines
    assert not out.exists()


def test_table_and_targets_from_benchmark_figures(tmp_path):
    import json

    from benchmarks import gpu

    bench = {"benchmarks": [
        {"group": "gpu label-26", "name": "test_synthlung_cuda[26]", "stats": {"median": 0.005},
         "extra_info": {"size": "300x512x512", "voxels": 78_643_200, "bytes": 5 * 78_643_200}},
        {"group": "gpu label-26", "name": "test_cupyx[26]", "stats": {"median": 0.020},
         "extra_info": {"size": "300x512x512", "voxels": 78_643_200, "bytes": 5 * 78_643_200}},
        {"group": "", "name": "test_mgpcg_cuda[128^3]", "stats": {"median": 0.006}, "extra_info": {}}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    rows = gpu.benchmark_rows(path, bandwidth=4e12)
    assert [round(r["Gvox/s"], 2) if r["Gvox/s"] else None for r in rows] == [15.73, 3.93, None]
    assert round(rows[0]["copy_bw_fraction"], 3) == round(5 * 78_643_200 / 0.005 / 4e12, 3)
    t = gpu.targets(rows)
    assert t["ccl"]["met"] is True and t["poisson"]["met"] is False and t["case"]["met"] is None
    text = gpu.table(rows)
    assert len(text.splitlines()) == 2 + len(rows) and "test_cupyx[26]" in text
