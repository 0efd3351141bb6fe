"""The calls users make, side by side with what they would write instead (CPU).

Host: the real chest CT (233 x 167 x 191, 1.5 mm, Fortran-ordered as nibabel
loads it), prepared once (lungs, zone, distances). Seed: lung1's real tumour
(13.7 mm equivalent diameter), its size class pinned to 13-14 mm (small) or, scale
limit raised to 3.5, 44-46 mm (large: lung1 scaled about 3.3 times); everything else
default (alpha blending, morph ranges, placement rules, burden).

* ``synthesize`` vs a copy-paste baseline on the same prepared host: ``scipy.ndimage.zoom``
  of the seed to the host spacing (times the scale), ``elasticdeform.deform_random_grid``
  (3^3 grid, sigma 1.5 voxels, order 1 / 0), Gaussian alpha (sigma 1 voxel) pasted at a
  zone voxel into an order-preserving copy of the host image, label map beside;
* ``morph`` vs ``elasticdeform`` (image linear + mask nearest) on a 96^3 seed; the
  figure to compare is time per output voxel (``extra_info["output_voxels"]``);
* the array transform (lungs given, prepared host cached) vs ``synthesize``; the same call with
  the CPU caches warm and after a 60 MB copy (what ``CacheDataset``'s per-sample copy does); the same on a CT
  it has not seen (host cache miss): lungs segmented, lungs given, or lungs and noise from a
  host bank (``host_bank=``);
* MONAI pipelines per sample, with and without ``RandInsertTumorsd`` (plain
  ``Dataset``: load every call; ``CacheDataset``: the loaded volumes cached), then a
  96^3 crop, the HU window and a flip: ``lean`` (CT and lungs, a random crop) and
  ``lean, host bank`` (the CT only, the insertion's lungs and noise from the host bank),
  ``segmentation`` (CT, label and lungs, ``RandCropByPosNegLabeld`` on the label) and
  ``segmentation, indices`` (the crop given the label's voxel indices: ``FgBgToIndicesd``
  cached without insertion, the transform's own with it); the last two also on lung1,
  whose label holds its real tumour (``lung1 segmentation``, ``lung1 segmentation,
  indices``; resampled to 1.5 mm before the cache);
* the crop's label search per sample: MONAI's ``map_binary_to_indices`` (what
  ``RandCropByPosNegLabeld`` runs without the indices keys) on the chest CT's label, all
  background and with one inserted tumour, beside the transform's ``crop_indices``;
* a label map as ``synthesize`` makes it (``zero_map``) against ``np.zeros``, written in one
  tumour's box and read whole, on an MSD-sized grid;
* writing a case's three NIfTI files: ``synthlung.save`` vs ``nib.save``; one case
  made and written as ``generate`` does (image, label, instances, record); ``generate``
  itself, 8 cases of 1-3 tumours from a one-host bank (host loading included); the CLI,
  ``synthlung generate`` in a new process, 24 cases, one and two worker processes;
* TorchIO, per sample of a ``SubjectsDataset`` holding the loaded subject (deep-copied
  per sample): the HU window and a flip, with and without ``RandomInsertTumors`` (TorchIO's
  default ``copy=True``: a deep copy of the subject first; ``copy=False``: the image
  copied only), and with the wrapper users wrote before it (``synthesize`` on a host made
  every call).

The process's allocator is pinned first (glibc: no trimming, mmap only from 32 MB):
``CacheDataset`` deep-copies its cached item (here 60 MB) for every sample, and
glibc otherwise returns and re-faults that memory or not as its heuristics decide,
so the same pipeline measured 5.6 ms per sample in one run and 18.9 ms in another.
Pinned, every pipeline and call reuses freed memory alike.

    python -m pytest benchmarks/bench_calls.py --benchmark-enable
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthlung.hosts import make_host
from synthlung.io import load, save
from synthlung.io.atomic import write_json
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import SynthesisConfig, synthesize
from synthlung.synthesis.morphing import MorphParams, morph
from synthlung.synthesis.sizing import SizePolicy

def _pin_allocator() -> None:
    """glibc ``mallopt``: keep freed memory (no trim) and serve blocks under 32 MB from the heap."""
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_trim_threshold, 1 << 30)
        libc.mallopt(m_mmap_threshold, 32 << 20)


_pin_allocator()

# One tumour, its size class pinned; everything else (blending, morph ranges, placement, burden) default.
SMALL = SynthesisConfig(n_tumors=(1,), sizes=SizePolicy(ranges_mm=((13.0, 14.0),), weights=(1.0,)))
LARGE_SCALE = 3.3  # lung1's 13.7 mm to about 45 mm
LARGE = SynthesisConfig(n_tumors=(1,), sizes=SizePolicy(ranges_mm=((44.0, 46.0),), weights=(1.0,),
                                                        scale_limits=(0.5, 3.5)))
KEY = (0, 1)  # the case key every round uses (same work each round)


@pytest.fixture(scope="module")
def ct_path(data_dir):
    return data_dir / "totalseg-chest" / "chest_ct.nii.gz"


@pytest.fixture(scope="module")
def host(ct_path):
    return make_host(load(ct_path), host_id="chest")


@pytest.fixture(scope="module")
def bank(data_dir, tmp_path_factory):
    d = data_dir / "pyradiomics-lung1"
    seeds = extract_seeds(load(d / "lung1_image.nrrd"), load(d / "lung1_label.nrrd"), case_id="lung1")
    return SeedBank.write(seeds, tmp_path_factory.mktemp("seeds"))


# ---------------------------------------------------------------- synthesize vs copy-paste

def copy_paste(host, seed, candidates, rng, scale):
    """The baseline: zoom, elasticdeform, Gaussian alpha, pasted at a zone voxel of a prepared host."""
    import elasticdeform
    from scipy import ndimage
    zoom = np.asarray(seed.image.spacing) / np.asarray(host.image.spacing) * scale
    image = ndimage.zoom(seed.image.array.astype(np.float32), zoom, order=1)
    mask = ndimage.zoom(seed.mask.array.astype(np.float32), zoom, order=0)
    image, mask = elasticdeform.deform_random_grid([image, mask], sigma=1.5, points=3, order=[1, 0],
                                                   mode="nearest")
    alpha = ndimage.gaussian_filter(mask, 1.0)
    out = host.image.array.copy(order="K")
    label = np.zeros(out.shape, np.uint8, order="F")
    centre = np.unravel_index(candidates[rng.integers(candidates.size)], out.shape)
    lo = np.clip(np.asarray(centre) - np.asarray(image.shape) // 2, 0, np.asarray(out.shape) - image.shape)
    box = tuple(slice(int(a), int(a) + n) for a, n in zip(lo, image.shape))
    out[box] = np.rint(out[box] * (1.0 - alpha) + image * alpha).astype(out.dtype)
    label[box][mask > 0.5] = 1
    return out, label


@pytest.mark.parametrize("size", ["small", "large"])
def test_synthesize(benchmark, host, bank, size):
    config = SMALL if size == "small" else LARGE
    benchmark.group = f"synthesize, one {size} tumour"
    case = synthesize(host, bank, case_rng(*KEY), config)  # JIT warm-up
    assert case.record["tumors_inserted"] == 1
    benchmark.extra_info["box_shape"] = case.record["tumors"][0]["box_shape"]
    benchmark.extra_info["diameter_mm"] = case.record["tumors"][0]["size"]["diameter_mm"]
    benchmark.pedantic(lambda: synthesize(host, bank, case_rng(*KEY), config), rounds=15, iterations=1,
                       warmup_rounds=1)


@pytest.mark.parametrize("size", ["small", "large"])
def test_copy_paste_baseline(benchmark, host, bank, size):
    benchmark.group = f"synthesize, one {size} tumour"
    seed = bank[0]
    candidates = np.flatnonzero(host.zone.array.ravel())  # prepared once, like the host
    scale = 1.0 if size == "small" else LARGE_SCALE
    benchmark.pedantic(lambda: copy_paste(host, seed, candidates, case_rng(*KEY), scale), rounds=15,
                       iterations=1, warmup_rounds=1)


# ---------------------------------------------------------------- morph vs elasticdeform

@pytest.fixture(scope="module")
def seed96():
    from synthlung.seeds.extraction import Seed, soft_mask
    from synthlung.volume import Volume
    shape, affine = (96, 96, 96), np.diag([1.0, 1.0, 1.0, 1.0])
    grid = np.indices(shape) - 47.5
    mask = ((grid ** 2).sum(0) <= 30.0 ** 2).astype(np.uint8)
    image = (np.where(mask, 40.0, -800.0) + np.random.default_rng(0).normal(0, 25, shape)).astype(np.int16)
    return Seed(image=Volume(image, affine), mask=Volume(mask, affine),
                soft_mask=Volume(soft_mask(mask, (1.0, 1.0, 1.0), 2.0), affine), record={"seed_id": "ball"})


def test_morph_96(benchmark, seed96):
    benchmark.group = "morph, 96^3 seed (compare per output voxel)"
    params = MorphParams.sample(np.random.default_rng(0), elastic_magnitude_mm=1.5)
    out = morph(seed96, params)
    benchmark.extra_info["output_voxels"] = int(np.prod(out.image.shape))
    benchmark.pedantic(lambda: morph(seed96, params), rounds=7, iterations=1, warmup_rounds=1)


def test_elasticdeform_96(benchmark, seed96):
    import elasticdeform
    benchmark.group = "morph, 96^3 seed (compare per output voxel)"
    image = seed96.image.array.astype(np.float32)
    mask = seed96.mask.array.astype(np.float32)
    benchmark.extra_info["output_voxels"] = int(image.size)
    benchmark.pedantic(lambda: elasticdeform.deform_random_grid([image, mask], sigma=2.0, points=3, order=[1, 0]),
                       rounds=3, iterations=1, warmup_rounds=1)


# ---------------------------------------------------------------- the training-loop transform

def test_transform_array(benchmark, host, bank):
    """The array transform given the CT and its lungs, with the key of ``synthesize``'s case (same tumour)."""
    from synthlung.run.transforms import RandInsertTumors
    benchmark.group = "transform vs synthesize (small tumour)"
    insert = RandInsertTumors(bank, SMALL)
    args = dict(lungs=host.lungs.array, affine=host.image.affine)
    insert.insert_with_key(KEY, host.image.array, **args)  # prepares the host once
    benchmark.pedantic(lambda: insert.insert_with_key(KEY, host.image.array, **args), rounds=15, iterations=1,
                       warmup_rounds=1)
    assert insert.hosts.misses == 1  # the host was prepared once


@pytest.mark.parametrize("caches", ["warm", "after a 60 MB copy"])
def test_transform_caches(benchmark, host, bank, caches):
    """The array call (``copy=False``, lungs given, prepared host) run again at once, or after a copy
    of the CT and its lungs as float32 (60 MB, what ``CacheDataset`` deep-copies per sample here;
    more than this machine's 32 MB L3) has gone through the CPU caches: how much of the call's cost
    in a pipeline is the loader evicting the data and code the call needs."""
    from synthlung.run.transforms import RandInsertTumors
    benchmark.group = "transform call, CPU caches warm or not (small tumour)"
    insert = RandInsertTumors(bank, SMALL, copy=False)
    image = host.image.array.copy(order="K")
    args = dict(lungs=host.lungs.array, affine=host.image.affine)
    # prepares the host; the same tumour blended again and again into the same place settles (integer
    # HU), and once it has, the image's digest stays and every later call finds the host prepared
    for _ in range(8):
        insert.insert_with_key(KEY, image, **args)
    misses = insert.hosts.misses
    evict = None
    if caches != "warm":
        loaded = np.stack([host.image.array, host.lungs.array]).astype(np.float32)
        spare = np.empty_like(loaded)
        evict = partial(np.copyto, spare, loaded)
    benchmark.pedantic(lambda: insert.insert_with_key(KEY, image, **args), setup=evict, rounds=41, iterations=1,
                       warmup_rounds=1)
    assert insert.hosts.misses == misses  # no round prepared the host again


def test_synthesize_for_transform(benchmark, host, bank):
    benchmark.group = "transform vs synthesize (small tumour)"
    benchmark.pedantic(lambda: synthesize(host, bank, case_rng(*KEY), SMALL), rounds=15, iterations=1,
                       warmup_rounds=1)


@pytest.fixture(scope="module")
def lungs_path(host, tmp_path_factory):
    path = tmp_path_factory.mktemp("lungs") / "chest_lungs.nii.gz"
    save(host.lungs, path)
    return path


@pytest.fixture(scope="module")
def label_path(host, tmp_path_factory):
    """The chest CT's tumour label: a healthy scan, so all background."""
    path = tmp_path_factory.mktemp("label") / "chest_label.nii.gz"
    save(host.image.with_array(np.zeros(host.image.shape, np.uint8, order="F")), path)
    return path


@pytest.fixture(scope="module")
def banks(ct_path, bank, tmp_path_factory):
    """A host bank of the chest CT (ingested from a folder holding a link to it) and the lung1 seed bank."""
    import os
    from synthlung.datasets import ingest
    from synthlung.hosts import build_host_bank
    root = tmp_path_factory.mktemp("banks")
    (root / "ct").mkdir()
    os.symlink(ct_path, root / "ct" / ct_path.name)
    ingest(root / "ct", root / "catalog")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    return root / "hosts", bank.root


def lung1_item(data_dir: Path, root: Path) -> dict:
    """lung1 (512 x 512 x 48, 0.57 x 0.57 x 5 mm) with its label, which holds its real tumour, as
    every MSD Task06 case does, and its lungs, segmented once and written under ``root``."""
    from synthlung.hosts import segment_lungs
    d = data_dir / "pyradiomics-lung1"
    save(segment_lungs(load(d / "lung1_image.nrrd"), name="lung1"), root / "lung1_lungs.nii.gz")
    return {"image": str(d / "lung1_image.nrrd"), "label": str(d / "lung1_label.nrrd"),
            "lungs": str(root / "lung1_lungs.nii.gz")}


@pytest.fixture(scope="module")
def lung1(data_dir, tmp_path_factory):
    return lung1_item(data_dir, tmp_path_factory.mktemp("lung1"))


FG, BG = "label_fg_indices", "label_bg_indices"  # FgBgToIndicesd's keys for "label"


def _insert(bank, insert: str, indices: bool, host_bank) -> list:
    from monai.transforms import FgBgToIndicesd

    from synthlung.run.transforms import RandInsertTumorsd
    if insert == "without":
        return [FgBgToIndicesd("label")] if indices else []
    keys = dict(fg_indices_key=FG, bg_indices_key=BG) if indices else {}
    lungs = {"host_bank": host_bank} if host_bank is not None else {"lungs_key": "lungs"}
    return [RandInsertTumorsd(bank, SMALL, copy=insert == "copy", **lungs, **keys)]


def _pipeline(bank, insert: str, kind: str, host_bank=None) -> list:
    """Load (cached by CacheDataset), then per sample: [insert], a 96^3 crop, HU window, flips.

    ``lean``: the CT and its lungs; a random crop of the image (and of the label the
    insertion makes). ``segmentation``: the CT, its label and lungs, the crop centred
    by ``RandCropByPosNegLabeld`` on the label (pos 1, neg 1; with insertion the
    positives are the inserted tumours), image and label flipped alike, the crop
    finding the label's voxels on every sample. ``segmentation, indices``: the same,
    given the label's voxel indices: without insertion ``FgBgToIndicesd`` before the
    cache (MONAI's own speed-up), with it the transform's ``fg_indices_key`` and
    ``bg_indices_key``. ``lean, host bank``: the CT only, the insertion given
    ``host_bank`` (its lungs and noise from there), else as ``lean``. ``lung1 segmentation``
    (and ``, indices``): as ``segmentation`` on lung1 (:func:`lung1_item`), whose label holds
    a real tumour, so the crop finds positives with and without the insertion; resampled to
    1.5 mm before the cache (``Spacingd``), as a segmentation pipeline does with 5 mm slices
    (lung1 has 48 of them, fewer than the 96 of a crop). Intensity scaling
    comes after the crop in all: insertion needs HU, and scaling a patch costs less than
    scaling the CT.
    """
    from monai.transforms import (EnsureChannelFirstd, LoadImaged, RandCropByPosNegLabeld, RandFlipd,
                                  RandSpatialCropd, ScaleIntensityRanged, Spacingd)
    window = ScaleIntensityRanged("image", a_min=-1000, a_max=400, b_min=0.0, b_max=1.0, clip=True)
    if kind.startswith("lean"):
        keys = ["image"] if kind == "lean, host bank" else ["image", "lungs"]
        crop = RandSpatialCropd(["image"] if insert == "without" else ["image", "label"], roi_size=(96, 96, 96),
                                random_size=False)
        flip = RandFlipd(["image"], prob=0.5, spatial_axis=0)
    else:
        keys = ["image", "label", "lungs"]
        given = dict(fg_indices_key=FG, bg_indices_key=BG) if kind.endswith("indices") else {}
        crop = RandCropByPosNegLabeld(["image", "label"], label_key="label", spatial_size=(96, 96, 96), pos=1,
                                      neg=1, num_samples=1, **given)
        flip = RandFlipd(["image", "label"], prob=0.5, spatial_axis=0)
    head = [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys)]
    if kind.startswith("lung1"):
        head.append(Spacingd(keys, pixdim=1.5, mode=("bilinear", "nearest", "nearest")))
    return head + _insert(bank, insert, kind.endswith("indices"), host_bank) + [crop, window, flip]


def _compose(bank, insert: str, kind: str, host_bank=None):
    """:func:`_pipeline` composed, each random transform seeded by its class name: the crop and
    the flip draw alike with and without the insertion. (``Compose.set_random_state`` seeds its
    members by position, so the insertion would hand the crop and flip other seeds, and the
    variants would flip different samples.)"""
    import zlib

    from monai.transforms import Compose, Randomizable
    composed = Compose(_pipeline(bank, insert, kind, host_bank))
    for member in composed.transforms:
        if isinstance(member, Randomizable):
            member.set_random_state(seed=zlib.crc32(type(member).__name__.encode()))
    return composed


@pytest.mark.filterwarnings("ignore:Num foregrounds 0")  # the healthy CT without insertion: no positives
@pytest.mark.parametrize("kind", ["lean", "lean, host bank", "segmentation", "segmentation, indices",
                                  "lung1 segmentation", "lung1 segmentation, indices"])
@pytest.mark.parametrize("dataset", ["Dataset", "CacheDataset"])
@pytest.mark.parametrize("insert", ["without", "copy", "in place"],
                         ids=["without", "RandInsertTumorsd", "RandInsertTumorsd copy=False"])
def test_monai_pipeline_per_sample(benchmark, bank, ct_path, lungs_path, label_path, banks, lung1, dataset, insert,
                                   kind):
    from monai.data import CacheDataset, Dataset
    benchmark.group = f"MONAI {dataset}, {kind} pipeline, per sample"
    host_bank = banks[0] if kind == "lean, host bank" else None
    transform = _compose(bank, insert, kind, host_bank)
    item = {"image": str(ct_path)} if host_bank is not None else {"image": str(ct_path), "lungs": str(lungs_path)}
    items = [lung1 if kind.startswith("lung1") else item if kind.startswith("lean")
             else {**item, "label": str(label_path)}]
    ds = Dataset(items, transform) if dataset == "Dataset" else CacheDataset(items, transform, progress=False)
    ds[0]  # warm-up: JIT, prepared host
    # a cached sample costs 10-60 ms and varies more on this VM than a loaded one: more rounds
    benchmark.pedantic(lambda: ds[0], rounds=11 if dataset == "Dataset" else 41, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def loaded_chest(ct_path, lungs_path, label_path):
    """The chest CT, its lungs and its (all-background) label as ``LoadImaged`` gives them, channel first."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged
    keys = ["image", "label", "lungs"]
    return EnsureChannelFirstd(keys)(LoadImaged(keys, image_only=True)(
        {"image": str(ct_path), "label": str(label_path), "lungs": str(lungs_path)}))


@pytest.mark.parametrize("label", ["all background", "with the inserted tumour", "the transform's indices"])
def test_crop_label_search(benchmark, bank, loaded_chest, label):
    """What ``RandCropByPosNegLabeld`` without the indices keys does on every sample, on the chest
    CT's label as ``LoadImaged`` gives it: MONAI's ``map_binary_to_indices`` (``label > 0`` and the
    rest, by ``torch.nonzero``) on the label as loaded (all background) and on the same label with
    one inserted tumour; beside it what ``RandInsertTumorsd(fg_indices_key=..., bg_indices_key=...)``
    hands the crop instead (``crop_indices``: the label's own indices kept, the tumour's voxels added)."""
    from monai.transforms.utils import map_binary_to_indices

    from synthlung.run.transforms import RandInsertTumors
    benchmark.group = "the crop's label search per sample (RandCropByPosNegLabeld), chest CT"
    image, lungs, given = (loaded_chest[k] for k in ("image", "lungs", "label"))
    insert = RandInsertTumors(bank, SMALL).set_random_state(seed=0)
    insert.want_indices = True  # as the dictionary form with the indices keys
    insert.randomize()
    out = insert.apply(image, lungs, given)
    assert insert.crop_indices(out)[0].size > 0  # one tumour inserted
    search = (partial(insert.crop_indices, out) if label == "the transform's indices"
              else partial(map_binary_to_indices, given if label == "all background" else out.label))
    fg, bg = benchmark.pedantic(search, rounds=21, iterations=1, warmup_rounds=1)
    voxels = int(np.prod(given.shape))
    assert (len(fg) > 0) == (label != "all background")  # MONAI's are torch tensors, the transform's NumPy
    # MONAI's split is a partition; the transform's background is the given label's (all voxels here)
    assert (len(bg) if label == "the transform's indices" else len(fg) + len(bg)) == voxels


@pytest.mark.parametrize("prepared", ["lungs segmented", "lungs given", "host_bank"])
def test_transform_host_miss(benchmark, ct_path, lungs_path, banks, prepared):
    """A CT the transform has not seen (a new transform each round: an empty host cache), one
    small tumour: what every sample costs when a loader's CTs outnumber ``host_cache``."""
    from synthlung.run.transforms import RandInsertTumors
    benchmark.group = "transform, a CT seen the first time (host cache miss)"
    ct, lungs = load(ct_path), load(lungs_path)
    given = lungs.array if prepared == "lungs given" else None  # with host_bank: the bank's lungs
    bank_kw = {"host_bank": banks[0]} if prepared == "host_bank" else {}

    def first_call():
        insert = RandInsertTumors(banks[1], SMALL, **bank_kw)
        return insert.insert_with_key(KEY, ct.array, given, affine=ct.affine, source=str(ct_path))
    done = benchmark.pedantic(first_call, rounds=3, iterations=1, warmup_rounds=1)
    assert done.record["tumors_inserted"] == 1
    assert (done.record["host"]["id"] == "chest_ct") == (prepared == "host_bank")


# ---------------------------------------------------------------- writing

@pytest.fixture(scope="module")
def case(host, bank):
    return synthesize(host, bank, case_rng(*KEY), SMALL)


def test_write_synthlung_save(benchmark, case, tmp_path):
    benchmark.group = "write a case's three NIfTI files"

    def write():
        for name, v in (("image", case.image), ("label", case.label), ("instances", case.instances)):
            save(v, tmp_path / f"{name}.nii.gz")
    benchmark.pedantic(write, rounds=5, iterations=1, warmup_rounds=1)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "image.nii.gz").dataobj), case.image.array)


def test_write_nib_save(benchmark, case, tmp_path):
    benchmark.group = "write a case's three NIfTI files"

    def write():
        for name, v in (("image", case.image), ("label", case.label), ("instances", case.instances)):
            nib.save(nib.Nifti1Image(v.array, v.affine), str(tmp_path / f"{name}.nii.gz"))
    benchmark.pedantic(write, rounds=5, iterations=1, warmup_rounds=1)


MSD_SHAPE = (512, 512, 208)  # an MSD Task06 CT's grid


@pytest.mark.parametrize("maker", ["zero_map", "np.zeros"])
def test_label_map_written_then_read(benchmark, maker):
    """A label map of an MSD-sized CT (uint8, Fortran order) made as ``synthesize`` makes it
    (``zero_map``) or by ``np.zeros``, one tumour's 30 x 30 x 20 box written, then the map read
    whole (``count_nonzero``: what writing the case, or a crop's label search, does)."""
    from synthlung.synthesis.case import zero_map
    benchmark.group = "a label map made, one tumour box written, then read whole (512 x 512 x 208)"
    make = partial(zero_map, np) if maker == "zero_map" else np.zeros

    def made_written_read():
        label = make(MSD_SHAPE, np.uint8, order="F")
        label[200:230, 200:230, 100:120] = 1
        return int(np.count_nonzero(label))
    assert benchmark.pedantic(made_written_read, rounds=15, iterations=1, warmup_rounds=1) == 30 * 30 * 20


def test_case_with_writing(benchmark, host, bank, tmp_path):
    """What ``generate`` does per case once its host is loaded: make, write three files and the record."""
    benchmark.group = "one case made and written (generate's per-case work)"

    def make_and_write():
        made = synthesize(host, bank, case_rng(*KEY), SMALL)
        for name, v in (("image", made.image), ("label", made.label), ("instances", made.instances)):
            save(v, tmp_path / f"{name}.nii.gz")
        write_json(tmp_path / "record.json", made.record)
    benchmark.pedantic(make_and_write, rounds=5, iterations=1, warmup_rounds=1)
    assert json.loads((tmp_path / "record.json").read_text())["tumors_inserted"] == 1


def test_generate_8_cases(benchmark, banks, tmp_path_factory):
    """``generate`` end to end, one worker: per case = time / 8 (``extra_info``)."""
    from synthlung.run.offline import generate
    benchmark.group = "one case made and written (generate's per-case work)"
    hosts, seeds = banks
    outs = iter(range(100))

    def run():
        return generate(hosts, seeds, 8, tmp_path_factory.mktemp(f"gen{next(outs)}"))
    done = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert len(done) == 8 and all(e["tumors_inserted"] >= 1 for e in done)
    benchmark.extra_info["cases"] = 8


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_generate_24_cases(benchmark, banks, tmp_path_factory, workers):
    """``synthlung generate`` as users start it, a new process per run (imports, Numba's cached
    kernels loaded, the banks verified, the host loaded once per worker process): 24 cases,
    beside ``generate``'s 8 in a warm process above; per case = time / 24 (``extra_info``)."""
    import subprocess
    import sys
    benchmark.group = "one case made and written (generate's per-case work)"
    hosts, seeds = banks
    outs = iter(range(100))

    def run():
        out = tmp_path_factory.mktemp(f"cli{workers}_{next(outs)}")
        subprocess.run([sys.executable, "-m", "synthlung", "generate", "--hosts", str(hosts), "--seeds", str(seeds),
                        "--n", "24", "--out", str(out), "--workers", str(workers)], check=True, capture_output=True)
        return out
    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 24
    benchmark.extra_info["cases"] = 24


# ---------------------------------------------------------------- TorchIO

def _hand_wrapper(bank):
    """What a TorchIO user wrote before ``RandomInsertTumors`` (issue 11): a ``tio.Transform``
    that reseeds from torch and calls ``synthesize`` on a host made from the subject every call."""
    import torch
    import torchio as tio

    from synthlung.volume import Volume

    class HandWrapper(tio.Transform):
        def apply_transform(self, subject):
            ct, lungs = subject["image"], subject["lungs"]
            host = make_host(Volume(ct.data[0].numpy(), ct.affine), lungs=Volume(lungs.data[0].numpy(), ct.affine))
            made = synthesize(host, bank, case_rng(*torch.randint(0, 2**32, (2,)).tolist()), SMALL)
            ct.set_data(torch.from_numpy(made.image.array)[None])
            subject.add_image(tio.LabelMap(tensor=torch.from_numpy(made.label.array)[None], affine=ct.affine), "label")
            return subject
    return HandWrapper()


@pytest.fixture(scope="module")
def tio_subject(ct_path, lungs_path):
    """The chest CT and its lungs as a loaded TorchIO subject (``SubjectsDataset`` deep-copies it per sample)."""
    tio = pytest.importorskip("torchio")
    subject = tio.Subject(image=tio.ScalarImage(ct_path), lungs=tio.LabelMap(lungs_path))
    subject.load()
    return subject


@pytest.mark.parametrize("insert", ["without", "RandomInsertTumors", "RandomInsertTumors copy=False", "hand wrapper"])
def test_torchio_per_sample(benchmark, bank, tio_subject, insert):
    """Per sample of a ``SubjectsDataset`` holding the loaded subject: [insertion], the HU window
    (``RescaleIntensity``) and a flip of the whole subject, as before a TorchIO ``Queue`` samples
    patches; the hand wrapper, for comparison, makes the host on every call."""
    import torch
    import torchio as tio

    from synthlung.run.torchio_transform import RandomInsertTumors
    benchmark.group = "TorchIO SubjectsDataset, per sample"
    middle = {"without": [], "RandomInsertTumors": [RandomInsertTumors(bank, SMALL, lungs_name="lungs")],
              "RandomInsertTumors copy=False": [RandomInsertTumors(bank, SMALL, lungs_name="lungs", copy=False)],
              "hand wrapper": [_hand_wrapper(bank)]}[insert]
    window = tio.RescaleIntensity(out_min_max=(0.0, 1.0), in_min_max=(-1000.0, 400.0), include=["image"])
    dataset = tio.SubjectsDataset([tio_subject], transform=tio.Compose(middle + [window, tio.RandomFlip(axes=(0,))]))
    torch.manual_seed(0)
    sample = dataset[0]  # warm-up: JIT, prepared host
    assert ("label" in sample) == (insert != "without")
    benchmark.pedantic(lambda: dataset[0], rounds=3 if insert == "hand wrapper" else 21, iterations=1,
                       warmup_rounds=0 if insert == "hand wrapper" else 1)
