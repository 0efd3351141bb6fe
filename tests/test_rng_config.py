"""Counter-based case generators, synthesis options and output layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from synthlung.errors import InputError
from synthlung.datasets.output_layouts import LAYOUTS
from synthlung.rng import case_rng
from synthlung.synthesis.case import SynthesisConfig


def test_case_streams_are_reproducible_and_independent():
    a = case_rng(7, 3).random(1000)
    assert np.array_equal(a, case_rng(7, 3).random(1000))
    b = case_rng(7, 4).random(1000)
    # Neighbouring cases must not replay each other's numbers shifted (Philox counters would).
    assert not np.intersect1d(a, b).size
    assert not np.array_equal(case_rng(8, 3).random(10), a[:10])


def test_config_from_yaml_round_trip(tmp_path):
    path = tmp_path / "gen.yaml"
    path.write_text("n_tumors: [2]\nmethod: poisson\nplacement:\n  min_inside_fraction: 0.85\n")
    cfg = SynthesisConfig.from_yaml(path)
    assert cfg.n_tumors == (2,) and cfg.method == "poisson"
    assert cfg.placement.min_inside_fraction == 0.85
    assert SynthesisConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_to_dict_is_dataclasses_asdict():
    import dataclasses
    from synthlung.synthesis.placement import PlacementRules
    from synthlung.synthesis.sizing import SizePolicy
    given = SynthesisConfig(n_tumors=(1, 2), n_tumors_weights=(0.3, 0.7), method="poisson", texture=False,
                            sizes=None, blend={"feather_mm": 1.5, "margin_mm": [1.0, {"a": (2, None)}]},
                            morph={"scale": (0.9, 1.1)}, placement=PlacementRules(min_inside_fraction=0.8))
    for cfg in (SynthesisConfig(), given):
        assert repr(cfg.to_dict()) == repr(dataclasses.asdict(cfg))  # same values and container types
    out = given.to_dict()  # a copy: changing it leaves the config as it was
    assert out["blend"] is not given.blend and out["blend"]["margin_mm"] is not given.blend["margin_mm"]
    assert SynthesisConfig(sizes=SizePolicy()).to_dict()["sizes"] == dataclasses.asdict(SizePolicy())


@pytest.mark.parametrize("text, message", [
    ("colour: red\n", "unknown synthesis option"),
    ("method: smear\n", "blending method 'smear'"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "gen.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        SynthesisConfig.from_yaml(path)


def test_layouts_write_their_dataset_json(tmp_path):
    entries = [{"index": 0, "image": "imagesTr/case_0000.nii.gz", "label": "labelsTr/case_0000.nii.gz"}]
    LAYOUTS["nnunet"].write_dataset_json(tmp_path, entries)
    nn = json.loads((tmp_path / "dataset.json").read_text())
    assert nn["channel_names"] == {"0": "CT"} and nn["numTraining"] == 1
    assert nn["labels"] == {"background": 0, "tumor": 1} and nn["file_ending"] == ".nii.gz"
    assert LAYOUTS["nnunet"].case_paths(tmp_path, 3)["image"].name == "case_0003_0000.nii.gz"
    LAYOUTS["msd"].write_dataset_json(tmp_path, entries)
    msd = json.loads((tmp_path / "dataset.json").read_text())
    assert msd["training"] == [{"image": "./imagesTr/case_0000.nii.gz", "label": "./labelsTr/case_0000.nii.gz"}]
