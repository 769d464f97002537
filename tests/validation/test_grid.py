"""The recovery grid's shape (layer.validation.grid): modalities per scenario and seeds per scenario."""

from __future__ import annotations

from layer.validation.grid import grid, scenario_modalities, scenario_seeds

ALL = ["bmode", "swe", "fused"]


def _custom(*pairs: tuple[str, str]) -> dict:
    return {"preset": "custom", "effects": [{"layer": layer, "feature": feature, "d": 1.0} for layer, feature in pairs]}


def test_a_single_driver_trains_only_where_its_feature_shows():
    assert scenario_modalities(_custom(("dfm", "echogenicity")), ALL) == ["bmode", "fused"]
    assert scenario_modalities(_custom(("dermis", "thickness")), ALL) == ["bmode", "fused"]
    assert scenario_modalities(_custom(("muscle", "stiffness")), ALL) == ["swe", "fused"]
    # Two drivers in two modalities: all three; the grid's own modality list is respected.
    assert scenario_modalities(_custom(("dfm", "echogenicity"), ("muscle", "stiffness")), ALL) == ALL
    assert scenario_modalities(_custom(("muscle", "stiffness")), ["bmode", "fused"]) == ["fused"]
    assert scenario_modalities(_custom(("muscle", "stiffness")), ["bmode"]) == []


def test_null_and_preset_scenarios_train_every_modality():
    for block in ({"preset": "null"}, {"preset": "realistic"}, {"preset": "confounded"}, {"preset": "custom"},
                  {"preset": "custom", "effects": []}):  # fmt: skip
        assert scenario_modalities(block, ALL) == ALL


def test_seeds_per_scenario():
    seeds = {"null": 3}
    assert scenario_seeds("null", seeds, 1) == [0, 1, 2]
    assert scenario_seeds("dfm_texture", seeds, 2) == [0, 1]
    assert grid(["null", "realistic"], seeds, 1) == [("null", 0), ("null", 1), ("null", 2), ("realistic", 0)]
