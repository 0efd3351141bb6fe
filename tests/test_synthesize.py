"""Synthetic cases: label exactness, untouched voxels, determinism, records; real-data realism."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from scipy import ndimage as ndi

from synthlung.hosts import make_host
from synthlung.datasets.phantom import chest_phantom
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import BLEND_METHODS, SynthesisConfig, synthesize

SMALL = dict(shape=(112, 96, 80), spacing_mm=(2.5, 2.5, 3.0))


@pytest.fixture(scope="module")
def seed_bank(tmp_path_factory):
    donor = chest_phantom(n_tumors=3, seed=5, **SMALL)
    return SeedBank.write(extract_seeds(donor.image, donor.label, case_id="donor"),
                          tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def host():
    ph = chest_phantom(n_tumors=1, seed=9, **SMALL)
    return make_host(ph.image, ph.label, host_id="phantom9", lungs=ph.lungs)


def _touched_boxes(record, shape):
    boxes = np.zeros(shape, dtype=bool)
    for t in record["tumors"]:
        o, s = t["offset_voxels"], t["box_shape"]
        boxes[o[0]:o[0] + s[0], o[1]:o[1] + s[1], o[2]:o[2] + s[2]] = True
    return boxes


@pytest.mark.parametrize("method", BLEND_METHODS)
def test_case_label_and_untouched_voxels(host, seed_bank, method):
    config = SynthesisConfig(n_tumors=(2,), method=method)
    case = synthesize(host, seed_bank, case_rng(3, 0), config, key=[3, 0])
    rec = case.record
    assert rec["tumors_inserted"] >= 1
    assert case.image.array.dtype == host.image.array.dtype
    np.testing.assert_array_equal(case.image.affine, host.image.affine)
    # The host's own tumor is kept; inserted tumors get instance ids 1..k.
    assert (case.label.array[host.tumors.array > 0] == 1).all()
    ids = np.unique(case.instances.array)
    assert list(ids) == list(range(rec["tumors_inserted"] + 1))
    assert ((case.instances.array > 0) <= (case.label.array == 1)).all()
    # Every inserted label voxel lies in the lungs dilated by 2 mm.
    grown = ndi.distance_transform_edt(host.lungs.array == 0, sampling=host.image.spacing) <= 2.0
    assert grown[case.instances.array > 0].all()
    # Outside the blending boxes the image is bit-identical to the host.
    outside = ~_touched_boxes(rec, case.image.shape)
    np.testing.assert_array_equal(case.image.array[outside], host.image.array[outside])
    # The record is plain JSON and names everything needed to redo the case.
    again = json.loads(json.dumps(rec))
    assert again["random_key"] == [3, 0] and again["host"]["id"] == "phantom9"
    assert all(t["seed_id"] in seed_bank.ids and "morph" in t for t in again["tumors"])


def test_same_key_same_case_other_key_other_case(host, seed_bank):
    a = synthesize(host, seed_bank, case_rng(1, 4))
    b = synthesize(host, seed_bank, case_rng(1, 4))
    c = synthesize(host, seed_bank, case_rng(1, 5))
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.instances.array, b.instances.array)
    assert a.record == b.record
    assert not np.array_equal(a.image.array, c.image.array)


def test_label_map_given_gets_the_same_tumours_and_keeps_its_own_values(host, seed_bank):
    from synthlung.errors import InputError
    config = SynthesisConfig(n_tumors=(2,))
    want = synthesize(host, seed_bank, case_rng(4, 0), config)
    mine = np.where(host.tumors.array > 0, 7.0, 0.0).astype(np.float32)  # the caller's own label values
    got = synthesize(host, seed_bank, case_rng(4, 0), config, label_map=mine)
    assert got.label.array is mine and got.record == want.record
    np.testing.assert_array_equal(got.image.array, want.image.array)
    np.testing.assert_array_equal(got.instances.array, want.instances.array)
    np.testing.assert_array_equal(mine > 0, want.label.array > 0)
    assert (mine[host.tumors.array > 0] == 7).all() and (mine[got.instances.array > 0] == 1).all()
    with pytest.raises(InputError, match="label_map shape"):
        synthesize(host, seed_bank, case_rng(4, 0), config, label_map=mine[1:])


def test_nothing_fits_is_recorded_not_looped(host, seed_bank):
    from synthlung.synthesis.placement import PlacementRules
    config = SynthesisConfig(n_tumors=(2,), placement=PlacementRules(min_inside_fraction=1.01, max_tries=5),
                             seed_draws_per_tumor=2)
    case = synthesize(host, seed_bank, case_rng(0, 0), config)
    assert case.record["tumors_inserted"] == 0
    assert "2 of 2 tumors found no place" in case.record["note"]
    np.testing.assert_array_equal(case.image.array, host.image.array)


def test_texture_measures_the_host_once_and_adds_its_noise(host, tmp_path):
    import dataclasses

    donor = chest_phantom(n_tumors=2, seed=6, **SMALL)
    smooth = [dataclasses.replace(s, image=s.image.with_array(ndi.gaussian_filter(s.image.array.astype("f4"), 2.0)))
              for s in extract_seeds(donor.image, donor.label, case_id="quiet")]
    bank = SeedBank.write(smooth, tmp_path / "quiet")  # seeds far quieter than the host
    quiet = synthesize(host, bank, case_rng(2, 0), SynthesisConfig(n_tumors=(1,), texture=False))
    noisy = synthesize(host, bank, case_rng(2, 0), SynthesisConfig(n_tumors=(1,)))
    assert 15.0 < noisy.record["host_noise_hu"] < 40.0  # the phantom's soft tissue carries ~25 HU noise
    assert host.record["soft_tissue_noise"]["std_hu"] == noisy.record["host_noise_hu"]
    assert noisy.record["tumors"][0]["blend"]["noise_added_hu"] > 10.0
    inside = noisy.instances.array > 0
    assert inside.any()
    # Same tumor, same place; only noise differs, and only where the tumor was blended.
    np.testing.assert_array_equal(noisy.instances.array, quiet.instances.array)
    differs = noisy.image.array != quiet.image.array
    assert differs[inside].mean() > 0.5
    assert not differs[~_touched_boxes(noisy.record, noisy.image.shape)].any()


def test_realism_measures_edges_halo_and_core():
    """The checks themselves: a blurred edge rises slower, a halo and a core shift are seen."""
    from synthlung.qa.realism import realism, rise_distance_mm
    r = np.indices((48, 48, 48)) - 24
    mask = (r ** 2).sum(0) <= 10 ** 2
    sharp = np.where(mask, 0.0, -800.0)
    spacing = (1.0, 1.0, 1.0)
    soft = ndi.gaussian_filter(sharp, 1.5)
    assert rise_distance_mm(sharp, mask, spacing) < rise_distance_mm(soft, mask, spacing)
    halo = sharp + 100.0 * (ndi.distance_transform_edt(~mask) <= 5) * ~mask
    rep = realism(sharp, halo - 30.0 * mask, sharp, mask, spacing)
    assert rep.halo_hu == pytest.approx(100.0) and rep.core_error_hu == pytest.approx(-30.0)


def test_fortran_ordered_host_gives_the_same_case_in_its_own_order(host, seed_bank):
    """nibabel's Fortran-ordered arrays: same case, outputs kept in Fortran order (no transposing copy)."""
    import dataclasses
    fortran = dataclasses.replace(host, **{name: getattr(host, name).with_array(
        np.asfortranarray(getattr(host, name).array)) for name in ("image", "lungs", "zone", "distance_mm", "tumors")})
    config = SynthesisConfig(n_tumors=(3,))
    c = synthesize(host, seed_bank, case_rng(4, 1), config)
    f = synthesize(fortran, seed_bank, case_rng(4, 1), config)
    assert c.record["tumors_inserted"] >= 2 and c.record == f.record
    for a, b in ((c.image, f.image), (c.label, f.label), (c.instances, f.instances)):
        np.testing.assert_array_equal(a.array, b.array)
        assert b.array.flags.f_contiguous and a.array.flags.c_contiguous


def test_occupancy_reads_boxes_like_a_whole_volume_map():
    from synthlung.synthesis.case import Occupancy
    rng = np.random.default_rng(0)
    shape = (30, 25, 20)
    tumors = (rng.random(shape) > 0.97).astype(np.uint8) * 2
    dense = tumors > 0
    occupancy = Occupancy(tumors, shape, np)
    for _ in range(4):
        mask = rng.random((6, 5, 7)) > 0.5
        offset = tuple(int(rng.integers(0, n - m + 1)) for n, m in zip(shape, mask.shape))
        occupancy.add(offset, mask)
        dense[tuple(slice(o, o + m) for o, m in zip(offset, mask.shape))] |= mask
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in shape]
        box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, shape))
        np.testing.assert_array_equal(occupancy[box], dense[box])
    assert not Occupancy(None, shape, np)[0:5, 0:5, 0:5].any()


@pytest.mark.parametrize("blend", [{}, {"feather_mm": 4.0}], ids=["alpha", "alpha, feathered"])
def test_seed_warped_only_where_blending_reads_it(host, seed_bank, monkeypatch, blend):
    """The planner warps each seed over its soft mask's support and the feather ramp only
    (``seed_pad``); warping it over the whole blending box (the vessel step's reach too)
    gives the same case, byte for byte: blending reads the seed nowhere else."""
    from synthlung.synthesis import case as case_module
    from synthlung.synthesis.insertion import VESSEL_REACH_VOXELS, blending_pad, seed_pad
    config = SynthesisConfig(n_tumors=(3,), blend=blend)
    spacing = host.image.spacing
    assert seed_pad("alpha", spacing, blend) == blending_pad("alpha", spacing, blend) - VESSEL_REACH_VOXELS
    assert seed_pad("poisson", spacing) is None
    lean = synthesize(host, seed_bank, case_rng(6, 2), config)
    monkeypatch.setattr(case_module, "seed_pad", blending_pad)
    wide = synthesize(host, seed_bank, case_rng(6, 2), config)
    assert lean.record["tumors_inserted"] >= 2 and lean.record == wide.record
    for a, b in ((lean.image, wide.image), (lean.label, wide.label), (lean.instances, wide.instances)):
        np.testing.assert_array_equal(a.array, b.array)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_zero_map_is_private_memory_across_fork():
    """The label and instance maps are zeros, writable, pickle like any array, and stay the
    parent's own when a forked process (a DataLoader worker) writes into them: private
    copy-on-write memory, not memory shared with every process forked after it was made."""
    from synthlung.synthesis.case import LAZY_ZERO_BYTES, zero_map
    shape = (64, 128, 160)
    for dtype, order in ((np.uint8, "F"), (np.uint16, "C")):
        arr = zero_map(np, shape, dtype, order)
        assert arr.nbytes >= LAZY_ZERO_BYTES and arr.dtype == dtype and arr.flags.writeable
        assert arr.flags.f_contiguous if order == "F" else arr.flags.c_contiguous
        assert not arr.any()
        arr[3:9, 40:50, 100:104] = 7
        pid = os.fork()
        if pid == 0:  # the child writes everywhere, then leaves at once
            arr[...] = 5
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert int(np.count_nonzero(arr)) == 6 * 10 * 4 and set(np.unique(arr).tolist()) == {0, 7}
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(arr)), arr)
