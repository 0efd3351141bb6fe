"""The built wheel ships every module: the kernels (installed as ``synthlung.kernels`` from ``kernels/``) and each front-end package."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_kernels_and_io(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("synthlung", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("synthlung-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # every source module ships, so a package missing from setup.cfg fails here
    sources = {f"synthlung/{f.relative_to(ROOT / 'synthlung').as_posix()}" for f in (ROOT / "synthlung").rglob("*.py")}
    sources |= {f"synthlung/kernels/{f.name}" for f in (ROOT / "kernels").glob("*.py")}
    assert sources - names == set()
    assert not any(n.startswith("kernels/") for n in names)
