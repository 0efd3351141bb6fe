"""lung1's real tumor inserted into the real chest CT: exact label, untouched voxels, realism."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from synthlung.hosts import make_host
from synthlung.io import load
from synthlung.qa.realism import evaluate_methods, rise_distance_mm
from synthlung.rng import case_rng
from synthlung.seeds import SeedBank, extract_seeds
from synthlung.synthesis.case import SynthesisConfig, synthesize


@pytest.fixture(scope="module")
def lung1_bank(lung1_paths, tmp_path_factory):
    image, label = (load(p) for p in lung1_paths)
    return SeedBank.write(extract_seeds(image, label, case_id="lung1"), tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def chest_host(chest_ct_path):
    return make_host(load(chest_ct_path), host_id="chest")


ONE = SynthesisConfig(n_tumors=(1,))


def test_lung1_tumor_in_chest_ct(chest_host, lung1_bank):
    case = synthesize(chest_host, lung1_bank, case_rng(0, 0), ONE)
    assert case.record["tumors_inserted"] == 1
    t = case.record["tumors"][0]
    spacing = chest_host.image.spacing
    inserted = case.instances.array == 1
    # Label voxels all inside the host lung mask dilated by 2 mm.
    grown = ndi.distance_transform_edt(chest_host.lungs.array == 0, sampling=spacing) <= 2.0
    assert grown[inserted].all()
    # Label volume within 5 % of the morphed seed's.
    assert abs(int(inserted.sum()) - t["tumor_voxels"]) <= 0.05 * t["tumor_voxels"]
    # Voxels outside the blending box bit-identical.
    o, s = t["offset_voxels"], t["box_shape"]
    box = np.zeros(case.image.shape, dtype=bool)
    box[o[0]:o[0] + s[0], o[1]:o[1] + s[1], o[2]:o[2] + s[2]] = True
    np.testing.assert_array_equal(case.image.array[~box], chest_host.image.array[~box])


@pytest.mark.slow
def test_default_method_realism(chest_host, lung1_bank):
    """Core within 30 HU of the morphed seed's, halo under 50 HU, edge 10-90 % rise within 2x the seed's."""
    seed = lung1_bank[0]
    own_rise = rise_distance_mm(seed.image.array, seed.mask.array, seed.image.spacing)
    method = ONE.method
    reports = evaluate_methods(chest_host, lung1_bank, case_rng(0, 1), (method,), ONE)[method]
    assert len(reports) == 1
    r = reports[0]
    assert abs(r.core_error_hu) <= 30.0, r
    assert abs(r.halo_hu) <= 50.0, r
    assert own_rise / 2.0 <= r.rise_mm <= own_rise * 2.0, (r, own_rise)


def test_juxtapleural_tumors_fit_with_the_default_rules(chest_host, lung1_bank):
    from synthlung.synthesis.placement import PlacementRules
    config = SynthesisConfig(n_tumors=(2,), placement=PlacementRules(juxtapleural_probability=1.0))
    case = synthesize(chest_host, lung1_bank, case_rng(0, 2), config)
    assert case.record["tumors_inserted"] == 2
    assert all(t["juxtapleural"] and t["inside_lung_fraction"] >= 0.95 for t in case.record["tumors"])


@pytest.mark.slow
@pytest.mark.parametrize("scale", [None, 3.0], ids=["as-is", "scaled-3x"])
def test_issue10_targets_on_lung1(chest_host, lung1_bank, scale):
    """Texture and thick-slice targets with the defaults: lung1 (~14 mm) as it is and scaled to ~41 mm."""
    from synthlung.qa.realism import host_tissue_noise_hu
    config = SynthesisConfig(n_tumors=(1,), sizes=None,  # the size is the morph's scale alone
                             morph={} if scale is None else {"scale": scale, "isotropic": True})
    reports = evaluate_methods(chest_host, lung1_bank, case_rng(0, 3), ("alpha", "poisson"), config)
    r, p = reports["alpha"][0], reports["poisson"][0]
    host_noise = host_tissue_noise_hu(chest_host.image.array, chest_host.image.spacing)
    assert 0.75 <= r.noise_hu / host_noise <= 1.33, (r, host_noise)
    assert r.hu_change_ratio <= 1.1 and r.rise_ratio <= 1.15, r
    assert r.inplane_overlap > 0.7 and r.axial_overlap > 0.7, r
    assert abs(r.core_error_hu) <= 30.0 and abs(r.halo_hu) <= 5.0, r
    # Poisson leaves no unlabelled halo: nothing outside the label changed.
    assert p.outside_change_hu == 0.0 and p.halo_hu == 0.0, p


def test_same_key_same_bytes_with_texture(chest_host, lung1_bank):
    a = synthesize(chest_host, lung1_bank, case_rng(5, 1), ONE)
    b = synthesize(chest_host, lung1_bank, case_rng(5, 1), ONE)
    assert a.record["tumors"][0]["blend"]["noise_added_hu"] > 10.0
    assert a.record["tumors"][0]["morph"]["params"]["rotation_policy"].startswith("about the slice axis")
    assert a.image.array.tobytes() == b.image.array.tobytes()
    assert a.label.array.tobytes() == b.label.array.tobytes()
