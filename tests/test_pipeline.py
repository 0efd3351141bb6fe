"""synthlung generate: byte-identical reruns, worker-count independence, kill and resume."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synthlung.cli import main
from synthlung.datasets import ingest
from synthlung.run.demo import write_phantom_dataset
from synthlung.hosts import build_host_bank
from synthlung.run.offline import generate, read_manifest
from synthlung.seeds import build_seed_bank

SMALL = dict(shape=(96, 80, 64), spacing_mm=(3.0, 3.0, 3.5))


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    root = tmp_path_factory.mktemp("banks")
    ingest(write_phantom_dataset(root / "phantom", **SMALL), root / "catalog")
    build_seed_bank(root / "catalog" / "catalog.json", root / "seeds")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    return root / "hosts", root / "seeds"


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file a run leaves (the manifest's line order depends on timing)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "manifest.jsonl":
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_generate_writes_nnunet_dataset(banks, tmp_path):
    hosts, seeds = banks
    status = main(["generate", "--hosts", str(hosts), "--seeds", str(seeds), "--n", "3",
                   "--out", str(tmp_path / "a"), "--seed", "7"])
    assert status == 0
    ds = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert ds["numTraining"] == 3 and ds["channel_names"] == {"0": "CT"}
    for i in range(3):
        assert (tmp_path / "a" / "imagesTr" / f"case_{i:04d}_0000.nii.gz").is_file()
        assert (tmp_path / "a" / "labelsTr" / f"case_{i:04d}.nii.gz").is_file()
        rec = json.loads((tmp_path / "a" / "records" / f"case_{i:04d}.json").read_text())
        assert rec["random_key"] == [7, i]
    assert sorted(read_manifest(tmp_path / "a")) == [0, 1, 2]
    # A second run into the same folder without --resume is refused, with a clear message.
    again = main(["generate", "--hosts", str(hosts), "--seeds", str(seeds), "--n", "3",
                  "--out", str(tmp_path / "a")])
    assert again == 1


def test_generate_reads_the_noise_the_host_bank_measured(banks, tmp_path, monkeypatch):
    """The bank records each host's soft-tissue noise: generate (texture on by default) does not
    measure it again, and a bank without the record (built before) still works."""
    from synthlung.hosts import noise
    hosts, seeds = banks
    index = json.loads((hosts / "index.json").read_text())
    assert all("soft_tissue_noise" in h["record"] for h in index["hosts"])
    first = generate(hosts, seeds, 2, tmp_path / "a", seed=5)

    def measured(*args, **kwargs):
        raise AssertionError("generate measured a host's noise again")
    monkeypatch.setattr(noise, "measure_spectrum", measured)
    assert generate(hosts, seeds, 2, tmp_path / "b", seed=5) == first
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    monkeypatch.undo()
    old = tmp_path / "old_hosts"
    old.mkdir()
    for h in index["hosts"]:
        del h["record"]["soft_tissue_noise"]
        h["lungs"] = str(hosts / h["lungs"])
    (old / "index.json").write_text(json.dumps(index))
    generate(old, seeds, 2, tmp_path / "c", seed=5)
    cases = {k: v for k, v in _digest(tmp_path / "a").items() if k != "run.json"}  # run.json pins the bank
    assert {k: v for k, v in _digest(tmp_path / "c").items() if k != "run.json"} == cases


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_the_workers(banks, tmp_path):
    hosts, seeds = banks
    generate(hosts, seeds, 4, tmp_path / "w1", seed=11, workers=1)
    generate(hosts, seeds, 4, tmp_path / "w1b", seed=11, workers=1, layout="nnunet")
    generate(hosts, seeds, 4, tmp_path / "w2", seed=11, workers=2)
    d1 = _digest(tmp_path / "w1")
    assert d1 == _digest(tmp_path / "w1b")
    assert d1 == _digest(tmp_path / "w2")
    other = generate(hosts, seeds, 1, tmp_path / "s12", seed=12)
    assert _digest(tmp_path / "s12")["imagesTr/case_0000_0000.nii.gz"] != d1["imagesTr/case_0000_0000.nii.gz"]
    assert len(other) == 1


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_files(banks, tmp_path):
    hosts, seeds = banks
    n = 16
    generate(hosts, seeds, n, tmp_path / "full", seed=3)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "synthlung", "generate", "--hosts", str(hosts), "--seeds", str(seeds),
           "--n", str(n), "--out", str(out), "--seed", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(read_manifest(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_manifest(out))
    assert 2 <= done < n, "the run should have been killed part-way"
    assert main(cmd[3:] + ["--resume"]) == 0
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name], "a partial file survived"
    assert _digest(out) == _digest(tmp_path / "full")
    assert sorted(read_manifest(out)) == list(range(n))


@pytest.mark.slow
def test_dask_scheduler_gives_the_same_files(banks, tmp_path):
    pytest.importorskip("distributed")
    hosts, seeds = banks
    generate(hosts, seeds, 3, tmp_path / "local", seed=5)
    generate(hosts, seeds, 3, tmp_path / "dask", seed=5, scheduler="dask", workers=2)
    local, dask = _digest(tmp_path / "local"), _digest(tmp_path / "dask")
    assert local.keys() == dask.keys()
    # run.json names the scheduler-independent settings only, so every file matches.
    assert local == dask


def test_cuda_device_without_a_gpu_is_a_clear_error(banks, tmp_path):
    from synthlung.backend import cupy_gpu_available
    if cupy_gpu_available():
        pytest.skip("a GPU is present")
    hosts, seeds = banks
    status = main(["generate", "--hosts", str(hosts), "--seeds", str(seeds), "--n", "1",
                   "--out", str(tmp_path / "g"), "--device", "cuda"])
    assert status == 1 and not (tmp_path / "g").exists()


@pytest.mark.gpu
def test_cuda_device_makes_cases_from_the_same_draws(banks, tmp_path):
    hosts, seeds = banks
    cpu = generate(hosts, seeds, 2, tmp_path / "cpu", seed=9)
    gpu = generate(hosts, seeds, 2, tmp_path / "gpu", seed=9, device="cuda")
    assert [e["host"] for e in cpu] == [e["host"] for e in gpu]  # the first draw, before any float work
    assert all(e["tumors_inserted"] >= 1 for e in gpu)


def test_a_case_is_made_again_from_its_record(banks, tmp_path):
    from synthlung.hosts import HostBank
    from synthlung.io import load
    from synthlung.run.offline import remake
    from synthlung.seeds import SeedBank
    hosts, seeds = banks
    generate(hosts, seeds, 2, tmp_path / "r", seed=21)
    record = json.loads((tmp_path / "r" / "records" / "case_0001.json").read_text())
    case = remake(record, HostBank.open(hosts), SeedBank.open(seeds))
    np.testing.assert_array_equal(case.image.array, load(tmp_path / "r" / record["files"]["image"]).array)
    np.testing.assert_array_equal(case.label.array, load(tmp_path / "r" / record["files"]["label"]).array)
    assert case.record["tumors"] == record["tumors"]


def test_cases_are_grouped_by_host_for_the_workers():
    from synthlung.run.offline import _draw_host, grouped_by_host
    from synthlung.rng import case_rng
    order = grouped_by_host(list(range(40)), seed=3, n_hosts=5)
    assert sorted(order) == list(range(40))
    hosts = [_draw_host(case_rng(3, i), 5) for i in order]
    assert hosts == sorted(hosts)  # one run of cases per host
    assert len(set(hosts)) > 1
