"""synthlung.run.transforms: tumor insertion inside PyTorch/MONAI training loops."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from synthlung.backend import to_array
from synthlung.errors import InputError
from synthlung.datasets.phantom import chest_phantom
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import SynthesisConfig
from synthlung.run.transforms import HAVE_MONAI, RandInsertTumors, RandInsertTumorsd

torch = pytest.importorskip("torch")
needs_monai = pytest.mark.skipif(not HAVE_MONAI, reason="MONAI (extra 'monai') not installed")

SHAPE, SPACING = (96, 80, 64), (3.0, 3.0, 3.5)
CONFIG = SynthesisConfig(n_tumors=(2,))


@pytest.fixture(scope="module")
def ct():
    """The host: a small phantom with two tumors of its own."""
    return chest_phantom(shape=SHAPE, spacing_mm=SPACING, n_tumors=2, seed=3)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A seed bank cut from another phantom."""
    donor = chest_phantom(shape=SHAPE, spacing_mm=SPACING, n_tumors=3, seed=11)
    seeds = extract_seeds(donor.image, donor.label, case_id="donor")
    assert seeds
    return SeedBank.write(seeds, tmp_path_factory.mktemp("seed_bank"))


def _meta(array, affine, **meta):
    from monai.data import MetaTensor
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array))[None], affine=torch.as_tensor(affine),
                      meta=meta)


def _check_inserted(label, instances, host_label):
    """Label = host tumors kept + inserted tumors; instances 1..k, only on inserted tumor voxels."""
    ids = np.unique(instances)
    assert ids[0] == 0 and ids[1:].tolist() == list(range(1, len(ids))) and len(ids) > 1
    host = host_label > 0
    assert (label[host] == 1).all()
    assert not (instances[host] > 0).any()
    assert ((label > 0) == (host | (instances > 0))).all()
    assert (label > 0).sum() > host.sum()
    return len(ids) - 1


def test_torch_cpu_tensor_in_torch_tensor_out(ct, bank):
    image = torch.from_numpy(ct.image.array.copy())
    lungs = torch.from_numpy(ct.lungs.array.copy())
    label = torch.from_numpy(ct.label.array.copy())
    before = image.clone()
    insert = RandInsertTumors(str(bank.root), CONFIG).set_random_state(seed=0)

    host = insert.host(image, lungs=lungs, label=label, affine=ct.image.affine)
    assert np.shares_memory(to_array(image), image.numpy())
    assert np.shares_memory(host.image.array, image.numpy())  # the host sees the tensor's own memory
    # the lungs are copied once per CT when it is prepared (the cache keeps no sample's memory)
    assert not np.shares_memory(host.lungs.array, lungs.numpy())
    np.testing.assert_array_equal(host.lungs.array, lungs.numpy())

    out, out_label, instances = insert(image, lungs=lungs, label=label, affine=ct.image.affine)
    assert all(isinstance(x, torch.Tensor) for x in (out, out_label, instances))
    assert out.shape == image.shape and out.dtype == image.dtype and out.device == image.device
    assert out_label.dtype == label.dtype and instances.dtype == torch.int32
    assert torch.equal(image, before)  # the input is not written to
    k = _check_inserted(out_label.numpy(), instances.numpy(), ct.label.array)
    assert insert.last_record["tumors_inserted"] == k
    boxes = np.zeros(SHAPE, dtype=bool)
    for tumor in insert.last_record["tumors"]:
        boxes[tuple(slice(o, o + n) for o, n in zip(tumor["offset_voxels"], tumor["box_shape"]))] = True
    changed = (out != image).numpy()
    assert changed.any() and not changed[~boxes].any()  # only the tumors' boxes are touched


def test_same_seed_same_output_other_seed_other_output(ct, bank):
    lungs = ct.lungs.array

    def run(seed):
        insert = RandInsertTumors(bank, CONFIG).set_random_state(seed=seed)
        return insert(ct.image.array, lungs=lungs, affine=ct.image.affine)

    a, b, c = run(5), run(5), run(6)
    assert isinstance(a[0], np.ndarray) and a[2].dtype == np.uint16
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    # a RandomState passed as MONAI does, seeded alike, gives the same draws as seed=
    by_state = RandInsertTumors(bank).set_random_state(state=np.random.RandomState(5))
    by_seed = RandInsertTumors(bank).set_random_state(seed=5)
    by_state.randomize(), by_seed.randomize()
    assert by_state.key == by_seed.key


@needs_monai
def test_compose_dict_metatensor(ct, bank):
    from monai.data import MetaTensor
    from monai.transforms import Compose, MapTransform, Randomizable

    affine = ct.image.affine
    data = {"image": _meta(ct.image.array, affine, filename_or_obj="ct3.nii.gz"),
            "label": _meta(ct.label.array.astype(np.float32), affine)}
    t = RandInsertTumorsd(bank, CONFIG, instance_key="instances", record_key="record")
    assert isinstance(t, Randomizable) and isinstance(t, MapTransform)
    pipeline = Compose([t]).set_random_state(seed=1)
    out = pipeline(data)  # lungs segmented on the fly
    image, label, instances = out["image"], out["label"], out["instances"]
    for x in (image, label, instances):
        assert isinstance(x, MetaTensor) and x.shape == (1, *SHAPE)
        assert np.allclose(x.affine.numpy(), affine)
        # the input's metadata copied, not shared: a later transform's edit stays in its own tensor
        assert x.meta is not data["image"].meta and x.applied_operations is not data["image"].applied_operations
    assert image.meta["filename_or_obj"] == "ct3.nii.gz" and label.dtype == torch.float32
    record = json.loads(out["record"])
    assert record["applied"] and record["host"]["id"] == "ct3.nii.gz"
    k = _check_inserted(label.numpy()[0], instances.numpy()[0], ct.label.array)
    assert record["tumors_inserted"] == k
    assert data["image"] is not image and torch.equal(data["image"][0], torch.from_numpy(ct.image.array))

    # The array form seeded as Compose seeds its member gives the same case.
    member_seed = int(np.random.RandomState(1).randint(2**32, dtype="uint32"))
    again = RandInsertTumors(bank, CONFIG).set_random_state(seed=member_seed)
    a_image, a_label, a_inst = again(data["image"], label=data["label"])
    assert torch.equal(a_image, image) and torch.equal(a_inst, instances) and torch.equal(a_label, label)


def _asked_of_synthesize(monkeypatch, keyword: str) -> list:
    """The values of ``keyword`` in each call the transforms make of ``synthesize``, from now on."""
    import synthlung.run.transforms as transforms

    asked = []
    real = transforms.synthesize
    monkeypatch.setattr(transforms, "synthesize", lambda *a, **kw: asked.append(kw[keyword]) or real(*a, **kw))
    return asked


def _meta_item(ct) -> dict:
    """The phantom CT, its label and lungs as MetaTensors, as a MONAI loader gives them."""
    affine = ct.image.affine
    return {"image": _meta(ct.image.array, affine), "label": _meta(ct.label.array, affine),
            "lungs": _meta(ct.lungs.array, affine)}


@needs_monai
def test_instance_map_only_when_asked_for(ct, bank, monkeypatch):
    """Without ``instance_key`` (or crop indices) the dictionary form makes no instance map, and
    the image, label and record are those it gives with the map."""
    from synthlung.hosts import make_host
    from synthlung.synthesis.case import synthesize

    made = _asked_of_synthesize(monkeypatch, "instance_dtype")
    data = _meta_item(ct)
    without = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs", record_key="record").set_random_state(seed=4)(data)
    given = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs", record_key="record", instance_key="instances")
    out = given.set_random_state(seed=4)(data)
    assert made == [None, np.int32] and "instances" not in without
    assert json.loads(without["record"])["tumors_inserted"] >= 1 and without["record"] == out["record"]
    assert torch.equal(without["image"], out["image"]) and torch.equal(without["label"], out["label"])
    assert RandInsertTumorsd(bank, fg_indices_key="fg", bg_indices_key="bg").inserter.want_instances  # it reads them
    host = make_host(ct.image, ct.label, lungs=ct.lungs)
    case = synthesize(host, bank, np.random.default_rng(3), CONFIG, instance_dtype=None)
    assert case.instances is None and case.record["tumors_inserted"] >= 1
    assert np.array_equal(case.image.array, synthesize(host, bank, np.random.default_rng(3), CONFIG).image.array)


@needs_monai
def test_record_only_when_asked_for(ct, bank, monkeypatch):
    """Without ``record_key`` (or crop indices) the dictionary form makes no case record (its own
    says applied and the key), and the image and label are those it gives with the record."""
    asked = _asked_of_synthesize(monkeypatch, "record")
    data = _meta_item(ct)
    bare = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs").set_random_state(seed=4)
    without = bare(data)
    out = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs", record_key="record").set_random_state(seed=4)(data)
    assert asked == [False, True] and "record" not in without
    assert json.loads(out["record"])["tumors_inserted"] >= 1
    assert torch.equal(without["image"], out["image"]) and torch.equal(without["label"], out["label"])
    inserter = bare.set_random_state(seed=4).inserter
    inserter.randomize()
    assert inserter.apply(data["image"], data["lungs"], data["label"]).record == {"applied": True,
                                                                                 "random_key": inserter.key}
    assert RandInsertTumorsd(bank, fg_indices_key="fg", bg_indices_key="bg").inserter.want_record  # it reads it


@needs_monai
def test_monai_dataloader_batches(ct, bank):
    """A training-loop setup: precomputed lungs, a DataLoader collating two synthetic cases."""
    from monai.data import DataLoader, Dataset

    affine = ct.image.affine
    items = [{"image": _meta(ct.image.array, affine), "label": _meta(ct.label.array, affine),
              "lungs": _meta(ct.lungs.array, affine)} for _ in range(2)]
    t = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs", instance_key="instances", record_key="record")
    batch = next(iter(DataLoader(Dataset(items, t.set_random_state(seed=2)), batch_size=2)))
    assert batch["image"].shape == batch["instances"].shape == (2, 1, *SHAPE)
    records = [json.loads(r) for r in batch["record"]]
    assert [r["tumors_inserted"] for r in records] == [int(i.max()) for i in batch["instances"]]
    assert records[0]["random_key"] != records[1]["random_key"]
    assert not torch.equal(batch["instances"][0], batch["instances"][1])


@needs_monai
def test_prob_zero_leaves_everything(ct, bank):
    image = torch.from_numpy(ct.image.array.copy())
    insert = RandInsertTumors(bank, prob=0.0).set_random_state(seed=0)
    out, label, instances = insert(image)  # no affine needed: nothing is done
    assert out is image and torch.equal(out, torch.from_numpy(ct.image.array))
    assert label.dtype == torch.uint8 and not label.any() and not instances.any()
    data = {"image": _meta(ct.image.array, ct.image.affine), "label": _meta(ct.label.array, ct.image.affine)}
    out = RandInsertTumorsd(bank, prob=0.0, instance_key="inst", record_key="rec")(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]
    assert out["inst"].shape == (1, *SHAPE) and not out["inst"].any()
    assert json.loads(out["rec"])["applied"] is False
    created = RandInsertTumorsd(bank, prob=0.0)({"image": data["image"]})["label"]  # no label given: zeros
    assert created.shape == (1, *SHAPE) and created.dtype == torch.uint8 and not created.any()


@needs_monai
def test_lps_metatensor_and_bad_inputs(ct, bank):
    insert = RandInsertTumors(bank, CONFIG).set_random_state(seed=0)
    ras = ct.image.affine
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    image = _meta(ct.image.array, lps, space="LPS")
    host = insert.host(image, lungs=torch.from_numpy(ct.lungs.array)[None])
    assert np.allclose(host.image.affine, ras)
    with pytest.raises(InputError, match="no affine"):
        insert(torch.from_numpy(ct.image.array))
    with pytest.raises(InputError, match="lungs shape"):
        insert(ct.image.array, lungs=ct.lungs.array[:-1], affine=ras)
    with pytest.raises(InputError, match=r"\(1, X, Y, Z\)"):
        insert(np.stack([ct.image.array] * 2), affine=ras)


def test_works_without_monai(bank):
    """With MONAI hidden, the module imports, seeds the same way and draws the same keys."""
    code = (
        "import sys; sys.modules['monai'] = None\n"
        "import numpy as np\n"
        "from synthlung.seeds import SeedBank\n"
        "from synthlung.run import transforms as t\n"
        "assert not t.HAVE_MONAI\n"
        f"ins = t.RandInsertTumors(SeedBank.open({str(bank.root)!r})).set_random_state(seed=5)\n"
        "ins.randomize(); print(ins.key)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    insert = RandInsertTumors(bank).set_random_state(seed=5)
    insert.randomize()
    assert done.stdout.strip() == str(insert.key)


@pytest.mark.gpu
def test_cuda_tensor(ct, bank):
    import cupy
    image = torch.from_numpy(ct.image.array).cuda()
    lungs = torch.from_numpy(ct.lungs.array).cuda()
    insert = RandInsertTumors(bank, CONFIG).set_random_state(seed=0)
    host = insert.host(image, lungs=lungs, affine=ct.image.affine)
    assert isinstance(host.image.array, cupy.ndarray) and host.image.array.data.ptr == image.data_ptr()
    out, label, instances = insert(image, lungs=lungs, affine=ct.image.affine)
    assert out.device == image.device and label.device == image.device and instances.device == image.device
    _check_inserted(label.cpu().numpy(), instances.cpu().numpy(), np.zeros(SHAPE, np.uint8))


def _fork_child(image, bank_root, queue):
    try:
        RandInsertTumors(bank_root, CONFIG).set_random_state(seed=0)(image.array, affine=image.affine)
        queue.put("ran")
    except Exception as exc:  # the message travels back to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def test_forked_worker_gets_a_clear_error_not_a_silent_death(ct, bank):
    """This test process has run parallel kernels; a forked child cannot use GNU OpenMP threads."""
    import multiprocessing as mp
    import numba
    from synthlung.components import label
    label(np.ones((8, 8, 8), bool))  # make sure this process has started Numba's threads
    if numba.threading_layer() != "omp":
        pytest.skip(f"threading layer {numba.threading_layer()} is fork-safe")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fork_child, args=(ct.image, str(bank.root), queue))
    child.start()
    child.join(120)
    message = queue.get(timeout=5)
    assert child.exitcode == 0
    assert message.startswith("SynthlungError") and "multiprocessing_context='spawn'" in message


@pytest.mark.slow
@needs_monai
def test_spawned_dataloader_workers_insert_tumors(tmp_path, bank):
    """The recommended training-loop set-up: DataLoader workers started with spawn."""
    script = tmp_path / "train.py"
    script.write_text(f"""
import numpy as np, torch
from monai.data import DataLoader, Dataset, MetaTensor
from synthlung.datasets.phantom import chest_phantom
from synthlung.run.transforms import RandInsertTumorsd

def item(seed):
    ph = chest_phantom(shape={SHAPE}, spacing_mm={SPACING}, n_tumors=0, seed=seed)
    aff = torch.from_numpy(ph.image.affine)
    return {{"image": MetaTensor(torch.from_numpy(ph.image.array[None].astype(np.float32)), affine=aff),
             "lungs": MetaTensor(torch.from_numpy(ph.lungs.array[None]), affine=aff)}}

if __name__ == "__main__":
    t = RandInsertTumorsd({str(bank.root)!r}, lungs_key="lungs").set_random_state(seed=1)
    loader = DataLoader(Dataset([item(2), item(3), item(4), item(5)], t), batch_size=2, num_workers=2,
                        multiprocessing_context="spawn")
    print(sum(int((b["label"] > 0).sum()) > 0 for b in loader))
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2"


def test_prepared_host_is_kept_per_image_and_gives_the_same_case(ct, bank):
    """A copy of the same CT hits the cache (no new host); the case equals one made without it."""
    args = dict(lungs=ct.lungs.array, label=ct.label.array, affine=ct.image.affine)
    insert = RandInsertTumors(bank, CONFIG, host_cache=1).set_random_state(seed=4)
    insert(ct.image.array, **args)
    insert.randomize()
    cached = insert.apply(ct.image.array.copy(), ct.lungs.array.copy(), ct.label.array.copy(), ct.image.affine)
    assert (insert.hosts.misses, insert.hosts.hits) == (1, 1)
    fresh = RandInsertTumors(bank, CONFIG).insert_with_key(insert.key, ct.image.array, **args)
    for a, b in zip(cached[:3], fresh[:3]):
        np.testing.assert_array_equal(a, b)
    assert cached.record == fresh.record
    (entry,) = insert.hosts._items.values()  # no sample's memory stays referenced: a uint8 copy of the lungs
    kept = entry.host
    assert entry.label_indices is None  # made only for fg_indices_key/bg_indices_key
    assert kept.image is None and kept.tumors is None and kept.lungs.array.dtype == np.uint8
    assert not np.shares_memory(kept.lungs.array, ct.lungs.array)
    np.testing.assert_array_equal(kept.lungs.array, ct.lungs.array)
    other = chest_phantom(shape=SHAPE, spacing_mm=SPACING, n_tumors=0, seed=8)
    insert(other.image.array, lungs=other.lungs.array, affine=other.image.affine)
    assert insert.hosts.misses == 2 and len(insert.hosts) == 1  # another CT: prepared, the oldest dropped


@pytest.fixture(scope="module")
def host_bank(ct, tmp_path_factory):
    """A host bank of the phantom CT, written as files (image, label) and ingested."""
    from synthlung.datasets import ingest
    from synthlung.hosts import HostBank, build_host_bank
    from synthlung.io import save
    root = tmp_path_factory.mktemp("host_bank")
    (root / "ct").mkdir()
    save(ct.image, root / "ct" / "chest_image.nii.gz")
    save(ct.label, root / "ct" / "chest_label.nii.gz")
    ingest(root / "ct", root / "catalog")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    hosts = HostBank.open(root / "hosts")
    assert len(hosts) == 1 and "soft_tissue_noise" in hosts.entries[0]["record"]
    return hosts


def _prepared_from_the_bank_only(monkeypatch) -> None:
    """Segmenting lungs or measuring noise from here on fails the test."""
    import synthlung.hosts.host as host_module
    import synthlung.hosts.noise as noise_module

    def refuse(*args, **kwargs):
        raise AssertionError("prepared from scratch, not from the bank")
    monkeypatch.setattr(host_module, "segment_lungs", refuse)
    monkeypatch.setattr(noise_module, "measure_noise", refuse)


def test_host_bank_gives_a_new_ct_its_lungs_and_noise(bank, host_bank, monkeypatch):
    """A CT of the host bank seen for the first time takes the bank's lungs and noise: nothing is
    segmented or measured, and the case equals one made with those lungs given and the noise
    measured here. In another grid the bank is not used, with a warning."""
    from synthlung.io import load
    hosts = host_bank
    (entry,) = hosts.entries
    image, label = load(entry["image"]), load(entry["label"])
    key, source = [1, 2], entry["image"]
    measured = RandInsertTumors(bank, CONFIG).insert_with_key(key, image.array, hosts[0].lungs.array, label.array,
                                                              image.affine, source=source)
    _prepared_from_the_bank_only(monkeypatch)
    insert = RandInsertTumors(bank, CONFIG, host_bank=hosts.root)
    banked = insert.insert_with_key(key, image.array, None, label.array, image.affine, source=source)
    for a, b in zip(banked[:3], measured[:3]):
        np.testing.assert_array_equal(a, b)
    assert banked.record["host"] == {"id": entry["id"], "sha256": entry["record"]["sha256"]}
    assert insert.hosts.misses == 1

    monkeypatch.undo()
    moved = image.affine.copy()
    moved[:3, 3] += 10.0  # the same array placed elsewhere: not the bank's grid
    with (pytest.warns(UserWarning, match="prepared again"),  # the same name, another affine
          pytest.warns(UserWarning, match="not in the grid of host bank")):
        elsewhere = insert.insert_with_key(key, image.array, hosts[0].lungs.array, label.array, moved, source=source)
    assert elsewhere.record["host"]["id"] == source and insert.hosts.misses == 2


@needs_monai
def test_host_bank_in_a_monai_pipeline(bank, host_bank, monkeypatch):
    """The module docstring's loop: MONAI loads image and label only, the bank gives lungs and noise."""
    from monai.data import Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    (entry,) = host_bank.entries
    files = [{"image": entry["image"], "label": entry["label"]}]
    keys = ["image", "label"]
    train = Compose([LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys),
                     RandInsertTumorsd(bank, CONFIG, host_bank=str(host_bank.root), instance_key="instances",
                                       record_key="record", copy=False)]).set_random_state(seed=0)
    _prepared_from_the_bank_only(monkeypatch)
    out = Dataset(files, train)[0]
    record = json.loads(out["record"])
    assert record["host"]["id"] == entry["id"] and record["tumors_inserted"] == 2
    _check_inserted(out["label"].numpy()[0], out["instances"].numpy()[0], np.asarray(host_bank[0].tumors.array))


def _a_whole_tumour_in(patch_instances, record):
    """Some inserted tumour lies whole in the patch (its voxel count as in the record)."""
    counts = np.bincount(np.asarray(patch_instances).ravel().astype(np.int64), minlength=len(record["tumors"]) + 1)
    return any(int(c) == t["tumor_voxels"] for c, t in zip(counts[1:], record["tumors"]))


PATCH = (48, 48, 40)


@needs_monai
def test_patch_mode_with_monai_positive_crops(ct, bank):
    from monai.transforms import Compose, RandCropByPosNegLabeld
    affine = ct.image.affine
    data = {"image": _meta(ct.image.array, affine), "lungs": _meta(ct.lungs.array, affine)}
    pipeline = Compose([
        RandInsertTumorsd(bank, CONFIG, patch_size=PATCH, lungs_key="lungs", instance_key="instances",
                          record_key="record"),
        RandCropByPosNegLabeld(["image", "label", "instances"], label_key="instances", spatial_size=PATCH,
                               pos=1, neg=0, num_samples=4),
    ]).set_random_state(seed=3)
    for _ in range(2):
        patches = pipeline(data)
        record = json.loads(patches[0]["record"])
        window = record["patch_window"]
        assert record["tumors_inserted"] >= 1 and window["shape"] == list(PATCH)
        for t in record["tumors"]:  # every box inside the window
            assert all(w <= o and o + n <= w + s for o, n, w, s in
                       zip(t["offset_voxels"], t["box_shape"], window["offset_voxels"], window["shape"]))
        for patch in patches:
            assert patch["image"].shape == (1, *PATCH)
            assert _a_whole_tumour_in(patch["instances"], record)


def test_patch_mode_with_torchio_label_sampler(ct, bank):
    tio = pytest.importorskip("torchio")
    from synthlung.run.torchio_transform import RandomInsertTumors

    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(ct.image.array)[None], affine=ct.image.affine),
                          lungs=tio.LabelMap(tensor=torch.from_numpy(ct.lungs.array)[None], affine=ct.image.affine))
    insert = RandomInsertTumors(bank, CONFIG, patch_size=PATCH, image_name="ct", lungs_name="lungs",
                                instance_name="instances", record_name="record")
    assert isinstance(insert, tio.Transform)
    assert insert.inserter.want_instances and not RandomInsertTumors(bank, CONFIG).inserter.want_instances
    torch.manual_seed(7)
    out = insert(subject)
    torch.manual_seed(7)
    again = insert(subject)
    assert torch.equal(out["ct"].data, again["ct"].data) and out["record"] == again["record"]
    assert torch.equal(subject["ct"].data[0], torch.from_numpy(ct.image.array))  # the input is kept (copy=True)
    record = json.loads(out["record"])
    assert record["tumors_inserted"] >= 1 and out["label"].data.dtype == torch.uint8
    assert torch.equal(out["label"].data > 0, out["instances"].data > 0)
    sampler = tio.LabelSampler(PATCH, label_name="instances")
    patches = [p for _, p in zip(range(4), sampler(out))]
    assert len(patches) == 4 and all(_a_whole_tumour_in(p["instances"].data, record) for p in patches)


def test_torchio_subjects_without_files_are_not_one_ct(ct, bank):
    """Subjects made from tensors (no file) are not named by their image's key in the host cache:
    two CTs are two hosts, not one CT that changed (no 'prepared again' warning)."""
    import warnings
    tio = pytest.importorskip("torchio")
    from synthlung.run.torchio_transform import RandomInsertTumors

    other = chest_phantom(shape=SHAPE, spacing_mm=SPACING, n_tumors=0, seed=8)
    insert = RandomInsertTumors(bank, CONFIG, lungs_name="lungs")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*prepared again")
        for case in (ct, other):
            insert(tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(case.image.array)[None],
                                                     affine=case.image.affine),
                               lungs=tio.LabelMap(tensor=torch.from_numpy(case.lungs.array)[None],
                                                  affine=case.image.affine)))
    assert insert.inserter.hosts.misses == 2


@needs_monai
def test_monai_dataloader_workers_repeat_under_torch_seed(tmp_path, bank):
    """MONAI's worker seeding: the same torch seed and number of workers give the same draws,
    with persistent workers too (each epoch its own); in the workers the kernels run on one
    thread; persistent workers keep their prepared hosts from one epoch to the next."""
    script = tmp_path / "loader.py"
    script.write_text(f"""
import json, sys, numpy as np, torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose
from synthlung.datasets.phantom import chest_phantom
from synthlung.run.transforms import RandInsertTumorsd

ph = chest_phantom(shape=(64, 56, 48), spacing_mm=(3.0, 3.0, 3.5), n_tumors=0, seed=2)
aff = torch.from_numpy(ph.image.affine)
items = [{{"image": MetaTensor(torch.from_numpy(ph.image.array[None]), affine=aff),
          "lungs": MetaTensor(torch.from_numpy(ph.lungs.array[None]), affine=aff)}} for _ in range(4)]
t = RandInsertTumorsd({str(bank.root)!r}, {{"n_tumors": [1]}}, lungs_key="lungs", record_key="record")

def threads(d):
    import numba
    return {{**d, "threads": numba.get_num_threads()}}

def keys(workers):
    torch.manual_seed(0)
    context = {{"multiprocessing_context": "fork"}} if workers else {{}}
    loader = DataLoader(Dataset(items, Compose([t, threads])), batch_size=1, num_workers=workers, **context)
    batches = list(loader)
    return [json.loads(r)["random_key"] for b in batches for r in b["record"]], \
        sorted({{int(n) for b in batches for n in b["threads"]}})

def counts(d):  # this worker's host cache look-ups so far (forked: t is the worker's own copy)
    return {{**d, "counts": torch.tensor([t.inserter.hosts.misses, t.inserter.hosts.hits])}}

def persistent():
    torch.manual_seed(0)
    loader = DataLoader(Dataset(items, Compose([t, counts])), batch_size=1, num_workers=2,
                        multiprocessing_context="fork", persistent_workers=True)
    epochs = [list(loader) for _ in range(2)]
    return ([[json.loads(r)["random_key"] for b in e for r in b["record"]] for e in epochs],
            [[b["counts"][0].tolist() for b in e] for e in epochs])

import numba
print(json.dumps({{"w0": [keys(0), keys(0)], "w2": [keys(2), keys(2)], "p2": [persistent(), persistent()],
                  "default": numba.config.NUMBA_NUM_THREADS}}))
""")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}  # fork-safe threads for forked workers
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    for a, b in (runs["w0"], runs["w2"]):
        assert a == b and len({tuple(k) for k in a[0]}) == 4
    assert runs["w2"][0][1] == [1]  # workers run the kernels on one thread
    assert runs["w0"][0][1] == [runs["default"]]  # in the main process: Numba's own number
    (keys_a, counts), (keys_b, _) = runs["p2"]
    assert keys_a == keys_b and keys_a[0] != keys_a[1] and len({tuple(k) for k in keys_a[1]}) == 4
    # batches alternate between the two workers: in the second epoch each worker's misses stay
    # what they were and its hits go on counting (the same process, its hosts kept)
    for worker in (0, 1):
        first, second = counts[0][worker::2], counts[1][worker::2]
        assert second[0][0] == first[-1][0] and second[0][1] > first[-1][1]


def test_copy_false_writes_the_same_case_into_the_input(ct, bank):
    args = dict(lungs=ct.lungs.array, label=ct.label.array, affine=ct.image.affine)
    want = RandInsertTumors(bank, CONFIG).set_random_state(seed=9)(ct.image.array, **args)
    mine, my_label = torch.from_numpy(ct.image.array.copy()), torch.from_numpy(ct.label.array.copy())
    got = RandInsertTumors(bank, CONFIG, copy=False).set_random_state(seed=9)(mine, **{**args, "label": my_label})
    assert got[0] is mine and not np.array_equal(mine.numpy(), ct.image.array)
    assert got[1] is my_label and not np.array_equal(my_label.numpy(), ct.label.array)  # label written in place too
    for a, b in zip(want, got):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_monai
def test_crop_indices_are_monais_and_feed_its_positive_crops(ct, bank):
    """fg/bg keys: the output label's foreground as FgBgToIndicesd finds it (own tumours and
    inserted), the given label's background; RandCropByPosNegLabeld centres on them."""
    from monai.transforms import Compose, RandCropByPosNegLabeld
    from monai.transforms.utils import map_binary_to_indices
    affine = ct.image.affine
    data = {"image": _meta(ct.image.array, affine, filename_or_obj="ct3.nii.gz"),
            "label": _meta(ct.label.array.astype(np.float32), affine), "lungs": _meta(ct.lungs.array, affine)}
    insert = RandInsertTumorsd(bank, CONFIG, lungs_key="lungs", instance_key="instances", fg_indices_key="fg",
                               bg_indices_key="bg").set_random_state(seed=4)
    own_fg, own_bg = (np.asarray(a) for a in map_binary_to_indices(data["label"]))
    for _ in range(2):  # the second call reads the label's indices from the prepared host
        out = insert(data)
        fg, bg = out["fg"], out["bg"]
        want_fg, _ = map_binary_to_indices(out["label"])
        np.testing.assert_array_equal(np.sort(fg), np.asarray(want_fg))
        assert fg.size > own_fg.size and not bg.flags.writeable
        np.testing.assert_array_equal(bg, own_bg)  # the given label's background, inserted voxels in it
    skipped = RandInsertTumorsd(bank, CONFIG, prob=0.0, lungs_key="lungs", fg_indices_key="fg",
                                bg_indices_key="bg")(data)
    np.testing.assert_array_equal(skipped["fg"], own_fg)
    with pytest.raises(InputError, match="give both"):
        RandInsertTumorsd(bank, fg_indices_key="fg")

    crop = RandCropByPosNegLabeld(["image", "label", "instances"], label_key="label", spatial_size=(24, 24, 24),
                                  pos=1, neg=0, num_samples=3, fg_indices_key="fg", bg_indices_key="bg")
    patches = Compose([insert, crop]).set_random_state(seed=5)(data)
    for patch in patches:
        assert "fg" not in patch and (patch["label"] > 0).any()
