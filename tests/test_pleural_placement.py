"""Placement where real tumours sit: pleural contact of seeds, pressed onto the host's pleura, sizes, burden."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from synthlung.datasets.phantom import chest_phantom
from synthlung.errors import InputError
from synthlung.hosts import make_host
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.seeds.contact import measure_contact
from synthlung.synthesis.case import SynthesisConfig, synthesize
from synthlung.synthesis.placement import outward_normal, rotation_aligning
from synthlung.synthesis.sizing import Burden, SizePolicy, sphere_ml

SMALL = dict(shape=(112, 96, 80), spacing_mm=(2.5, 2.5, 3.0))


def _half_space(axis: int, sign: int, n: int = 40):
    """A lung filling one side of a plane (label 2), a ball of radius 8 cut by the plane, affine diag(1)."""
    g = np.indices((n, n, n)).astype(float) - n // 2
    lungs = np.where(sign * g[axis] < 4, 2, 0).astype(np.uint8)  # the wall lies 4 voxels off centre
    ball = (g ** 2).sum(axis=0) <= 8 ** 2
    return ball & (lungs > 0), lungs, np.eye(4)


@pytest.mark.parametrize("axis,sign,site", [(0, -1, "mediastinal"), (0, 1, "costal"), (1, -1, "costal"),
                                            (2, -1, "diaphragmatic")])
def test_contact_of_a_tumour_cut_by_a_flat_wall(axis, sign, site):
    tumour, lungs, affine = _half_space(axis, sign)
    c = measure_contact(tumour, lungs, affine)
    expect = np.zeros(3)
    expect[axis] = sign
    assert c.fraction > 0.15 and c.inside_lung_fraction == 1.0
    assert float(np.dot(c.normal, expect)) > 0.99
    assert c.site == site  # label 2 is the right lung: its midline side is -x (RAS)
    free = measure_contact(tumour, np.full_like(lungs, 2), affine)
    assert free.fraction == 0.0 and free.normal is None and free.site == "none"


def test_rotation_aligning_takes_u_to_v_and_twists_about_v():
    rng = np.random.default_rng(0)
    for u, v in [rng.normal(size=(2, 3)) for _ in range(5)] + [(np.array([0, 0, 1.0]), np.array([0, 0, -1.0]))]:
        u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
        r = rotation_aligning(u, v, float(rng.uniform(0, 6.28)))
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(r @ u, v, atol=1e-12)


def test_outward_normal_of_a_box_lung_is_the_face_direction():
    lungs = np.zeros((30, 30, 30), bool)
    lungs[5:25, 5:25, 5:25] = True
    distance = ndi.distance_transform_edt(lungs, sampling=(1.0, 2.0, 1.0)).astype(np.float32)
    affine = np.diag([1.0, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(outward_normal(distance, (15, 24, 15), affine), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(outward_normal(distance, (5, 15, 15), affine), [-1, 0, 0], atol=1e-6)


@pytest.fixture(scope="module")
def phantom_seeds():
    donor = chest_phantom(n_tumors=3, seed=0)
    return extract_seeds(donor.image, donor.label, case_id="donor", lungs=donor.lungs)


@pytest.fixture(scope="module")
def juxta_bank(phantom_seeds, tmp_path_factory):
    """The phantom's juxtapleural tumour (against the anterior chest wall) as a one-seed bank."""
    juxta = [s for s in phantom_seeds if s.record["contact"]["site"] != "none"]
    assert len(juxta) == 1
    return SeedBank.write(juxta, tmp_path_factory.mktemp("juxta"))


def test_extraction_records_pleural_contact(phantom_seeds):
    sites = {s.id: s.record["contact"] for s in phantom_seeds}
    assert [c["site"] for c in sites.values()] == ["none", "costal", "none"]
    juxta = sites["donor-c002"]
    assert juxta["fraction"] > 0.15 and juxta["normal"][1] > 0.9  # faces the anterior chest wall (+y)
    # Segmenting the donor's lungs (no ground truth given) measures the same contact.
    donor = chest_phantom(n_tumors=3, seed=0)
    again = extract_seeds(donor.image, donor.label, case_id="donor")[1].record["contact"]
    assert abs(again["fraction"] - juxta["fraction"]) < 0.02
    assert float(np.dot(again["normal"], juxta["normal"])) > 0.99


def _pressed_onto_pleura(case, host, seed_fraction):
    """Every inserted tumour touches the host's pleura with its face along the site normal, none runs past."""
    grown = ndi.distance_transform_edt(host.lungs.array == 0, sampling=host.image.spacing) <= 2.0
    assert grown[case.instances.array > 0].all()
    for k, t in enumerate(case.record["tumors"], start=1):
        c = measure_contact(case.instances.array == k, host.lungs.array, host.image.affine)
        assert c.fraction >= 0.3 * seed_fraction, (c, t)
        assert float(np.dot(c.normal, t["pleural_normal"])) >= 0.5
        assert t["juxtapleural"] and t["pleural_contact"]["fraction"] == pytest.approx(c.fraction, abs=1e-3)


def _phantom_host_and_config():
    """A tumour-free phantom host and a config of one 14-20 mm tumour."""
    ph = chest_phantom(n_tumors=0, seed=9)
    host = make_host(ph.image, None, host_id="h9", lungs=ph.lungs)
    return host, SynthesisConfig(n_tumors=(1,), sizes=SizePolicy(((14.0, 20.0),), (1.0,)))


def test_juxtapleural_seed_is_pressed_onto_the_phantom_pleura(juxta_bank):
    host, config = _phantom_host_and_config()
    placed = 0
    for i in range(3):
        case = synthesize(host, juxta_bank, case_rng(1, i), config)
        _pressed_onto_pleura(case, host, juxta_bank.records[0]["contact"]["fraction"])
        placed += case.record["tumors_inserted"]
    assert placed >= 2


def test_sizes_reach_their_targets_and_the_burden_holds(phantom_seeds, tmp_path):
    bank = SeedBank.write([s for s in phantom_seeds if s.record["contact"]["site"] == "none"], tmp_path)
    ph = chest_phantom(n_tumors=0, seed=3, **SMALL)
    host = make_host(ph.image, None, host_id="h3", lungs=ph.lungs)
    config = SynthesisConfig(n_tumors=(4,), sizes=SizePolicy(((8.0, 12.0), (31.0, 34.0)), (1.0, 1.0)),
                             burden=Burden(max_total_ml=30.0, mass_mm=30.0, max_masses_per_lung=1))
    for i in range(3):
        case = synthesize(host, bank, case_rng(2, i), config)
        sizes = [t["size"] for t in case.record["tumors"]]
        for s in sizes:  # reached by scaling within the limits (0.5-2): within 8 % of the target
            assert abs(s["diameter_mm"] / s["target_diameter_mm"] - 1.0) < 0.08, s
        voxel_ml = float(np.prod(host.image.spacing)) / 1000
        assert int((case.instances.array > 0).sum()) * voxel_ml <= 30.0 + 1e-6
        masses = [s["lung"] for s in sizes if s["diameter_mm"] >= 30.0]
        assert len(masses) == len(set(masses))  # at most one mass per lung
    assert sphere_ml(33.0) + sphere_ml(33.0) > 30.0  # so two masses could not both fit


def test_size_and_burden_options_from_yaml_mappings():
    cfg = SynthesisConfig.from_dict({"sizes": {"ranges_mm": [[4, 10], [30, 60]], "weights": [1, 1]},
                                     "burden": {"max_total_ml": 50}})
    assert cfg.sizes.ranges_mm == ((4.0, 10.0), (30.0, 60.0)) and cfg.burden.max_total_ml == 50
    assert SynthesisConfig.from_dict({"sizes": None}).sizes is None
    with pytest.raises(InputError, match="unknown burden option"):
        SynthesisConfig.from_dict({"burden": {"max_ml": 50}})
    with pytest.raises(InputError, match="weights"):
        SizePolicy(((4.0, 10.0),), (1.0, 2.0))


# ---------------------------------------------------------------- real anatomy

@pytest.fixture(scope="module")
def chest_host(chest_ct_path):
    from synthlung.io import load
    return make_host(load(chest_ct_path), host_id="chest")


def test_juxtapleural_masses_against_the_real_pleura_reach_the_bases(chest_host, juxta_bank):
    """30-45 mm masses from a chest-wall seed: on the pleura, inside the lung, some in the lower third."""
    config = SynthesisConfig(n_tumors=(1,), sizes=SizePolicy(((30.0, 45.0),), (1.0,)))
    z = np.flatnonzero((chest_host.lungs.array > 0).any(axis=(0, 1)))  # axis 2 runs toward S here
    lower_third = z[0] + (z[-1] - z[0]) / 3.0
    centres = []
    for i in range(4):
        case = synthesize(chest_host, juxta_bank, case_rng(7, i), config)
        _pressed_onto_pleura(case, chest_host, juxta_bank.records[0]["contact"]["fraction"])
        centres += [t["centre_voxel"][2] for t in case.record["tumors"]]
    assert len(centres) >= 3
    assert min(centres) < lower_third, (centres, lower_third)


def test_lung1_tumour_is_free_and_goes_into_parenchyma(lung1_paths, chest_host, tmp_path):
    from synthlung.io import load
    seeds = extract_seeds(*(load(p) for p in lung1_paths), case_id="lung1")
    contact = seeds[0].record["contact"]
    assert contact["site"] == "none" and contact["inside_lung_fraction"] > 0.95  # lies free in lung1's lung
    bank = SeedBank.write(seeds, tmp_path)
    case = synthesize(chest_host, bank, case_rng(8, 0), SynthesisConfig(n_tumors=(2,)))
    assert case.record["tumors_inserted"] == 2
    for t in case.record["tumors"]:
        depth = float(chest_host.distance_mm.array[tuple(t["centre_voxel"])])
        radius = (3 * t["size"]["volume_ml"] * 1000 / (4 * np.pi)) ** (1 / 3)
        assert t["pleural_contact"] is None and not t["juxtapleural"] and depth >= radius


def test_no_record_asked_for_gives_the_same_pressed_tumour(juxta_bank):
    """``synthesize(record=False)`` through the pleural path (the seed cut to the lung, whose
    morph record would note the cut): the same arrays as with the record, and no record."""
    host, config = _phantom_host_and_config()
    cut = 0
    for i in range(3):
        full = synthesize(host, juxta_bank, case_rng(1, i), config)
        bare = synthesize(host, juxta_bank, case_rng(1, i), config, record=False)
        assert bare.record is None
        cut += sum("cut_to_lung_voxels" in t["morph"] for t in full.record["tumors"])
        for a, b in ((full.image, bare.image), (full.label, bare.label), (full.instances, bare.instances)):
            np.testing.assert_array_equal(a.array, b.array)
    assert cut >= 1
