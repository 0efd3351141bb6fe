"""One whole synthetic case on CPU: chest CT host, lung1 tumor seed, 3 tumors, Poisson blending.

Split into its steps (placement = seed draw + morph + centre sampling; blending;
writing NIfTI) so the share of each is visible. Host preparation (lung
segmentation, placement zone) is timed apart: a host is prepared once and then
serves many cases.

    python -m pytest benchmarks/bench_case.py --benchmark-enable
"""
from __future__ import annotations

import numpy as np
import pytest

from synthlung.hosts import make_host
from synthlung.synthesis.insertion import insert
from synthlung.io import load, save
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import SynthesisConfig, sample_placements, synthesize

CONFIG = SynthesisConfig(n_tumors=(3,), method="poisson")


@pytest.fixture(scope="module")
def host(data_dir):
    return make_host(load(data_dir / "totalseg-chest" / "chest_ct.nii.gz"), host_id="chest")


@pytest.fixture(scope="module")
def bank(data_dir, tmp_path_factory):
    d = data_dir / "pyradiomics-lung1"
    seeds = extract_seeds(load(d / "lung1_image.nrrd"), load(d / "lung1_label.nrrd"), case_id="lung1")
    return SeedBank.write(seeds, tmp_path_factory.mktemp("seeds"))


def test_host_preparation(benchmark, data_dir):
    image = load(data_dir / "totalseg-chest" / "chest_ct.nii.gz")
    benchmark.pedantic(make_host, args=(image,), rounds=3, iterations=1, warmup_rounds=1)


def test_step_placement(benchmark, host, bank):
    synthesize(host, bank, case_rng(0, 99), CONFIG)  # JIT warm-up
    benchmark.pedantic(lambda: sample_placements(host, bank, case_rng(0, 0), CONFIG),
                       rounds=5, iterations=1)


def test_step_blending(benchmark, host, bank):
    planned, _ = sample_placements(host, bank, case_rng(0, 0), CONFIG)
    assert len(planned) == 3

    def blend_all():
        image = host.image.array.copy()
        label = np.zeros(image.shape, np.uint8)
        inst = np.zeros(image.shape, np.uint16)
        for k, t in enumerate(planned, start=1):
            insert(image, label, inst, t.morphed, t.placement.offset, k, host.image.spacing, method="poisson")
    blend_all()
    benchmark.pedantic(blend_all, rounds=5, iterations=1)


def test_case_without_io(benchmark, host, bank):
    synthesize(host, bank, case_rng(0, 99), CONFIG)
    benchmark.pedantic(lambda: synthesize(host, bank, case_rng(0, 0), CONFIG), rounds=5, iterations=1)


def test_case_with_nifti_writing(benchmark, host, bank, tmp_path):
    def case_and_write():
        case = synthesize(host, bank, case_rng(0, 0), CONFIG)
        save(case.image, tmp_path / "image.nii.gz")
        save(case.label, tmp_path / "label.nii.gz")
        save(case.instances, tmp_path / "instances.nii.gz")
    case_and_write()
    benchmark.pedantic(case_and_write, rounds=3, iterations=1)
