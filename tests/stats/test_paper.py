"""The paper's kind of numbers (layer.stats.paper): hand-computed toys, the rank test and the paper check."""

import numpy as np
import pandas as pd
import pytest

from layer.aggregate import aggregate_scans
from layer.names import LAYERS
from layer.stats.paper import (
    CHECK_COLUMNS, PAPER_COLUMNS, REGIONS, VARIANTS, paper_check, paper_table, rank_p_value, region_variants,
)

V = {name: i for i, name in enumerate(VARIANTS)}
R = {name: i for i, name in enumerate(REGIONS)}


def toy():
    """One scan of 8 voxels in depth: background, dermis x2, then one voxel per layer; |map| 1, 2, 4, 3..7,
    split over two channels with mixed signs (the map is the channel-summed magnitude)."""
    labels = np.array([0, 1, 1, 2, 3, 4, 5, 6]).reshape(1, 8, 1, 1)
    magnitude = np.array([1, 2, 4, 3, 4, 5, 6, 7], dtype=np.float64)
    sign = np.array([1, -1, 1, -1, 1, 1, -1, 1])
    maps = np.stack([0.25 * magnitude * sign, -0.75 * magnitude * sign]).reshape(1, 2, 8, 1, 1)
    return maps.astype(np.float32), labels


def test_variants_by_hand():
    values = region_variants(*toy())[0]
    # min 1, max 7: mean_normalised = (mean - 1) / 6; dermis mean 3, then 3, 4, 5, 6, 7.
    expected_norm = {"dermis": 2 / 6, "superficial_fat": 2 / 6, "sfm": 3 / 6, "deep_fat": 4 / 6, "dfm": 5 / 6,
                     "muscle": 1.0, "non_muscle": 0.5}  # union of the five: (2+4+3+4+5+6) / 6 = 4
    for region, value in expected_norm.items():
        assert values[R[region], V["mean_normalised"]] == pytest.approx(value)
    # The composite is not the sum of its parts, and non-muscle + muscle is not 1.
    parts = sum(expected_norm[layer] for layer in LAYERS[:5])
    assert parts == pytest.approx(16 / 6) and values[R["non_muscle"], V["mean_normalised"]] != pytest.approx(parts)
    # Whole map 32 (background 1 included), six layers 31.
    mass = {"dermis": 6, "superficial_fat": 3, "sfm": 4, "deep_fat": 5, "dfm": 6, "muscle": 7, "non_muscle": 24}
    for region, m in mass.items():
        assert values[R[region], V["whole_map_share"]] == pytest.approx(m / 32)
        assert values[R[region], V["mass_share_abs"]] == pytest.approx(m / 31)
    assert values[[R["non_muscle"], R["muscle"]], V["mass_share_abs"]].sum() == pytest.approx(1.0)
    assert values[[R["non_muscle"], R["muscle"]], V["whole_map_share"]].sum() == pytest.approx(31 / 32)


def test_undefined_variants_are_nan():
    maps, labels = toy()
    flat = np.ones_like(maps)
    values = region_variants(flat, labels)[0]
    assert np.isnan(values[:, V["mean_normalised"]]).all()  # a constant map has no [0, 1] scaling
    no_sfm = np.where(labels == 3, 2, labels)
    values = region_variants(maps, no_sfm)[0]
    assert np.isnan(values[R["sfm"], V["mean_normalised"]]) and values[R["sfm"], V["mass_share_abs"]] == 0.0


def test_mass_share_is_the_aggregate_one():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 2, 12, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 7, size=(3, 12, 5, 4))
    agg = aggregate_scans(maps, labels, ["a", "b", "c"], ["bmode", "swe"])
    mass = agg[agg["measure"] == "mass_abs"].pivot_table(index=["scan_id", "layer"], values="value", aggfunc="sum")
    total = mass.groupby(level="scan_id")["value"].transform("sum")
    pooled = (mass["value"] / total).unstack("layer")[list(LAYERS)].to_numpy()  # channel 'all' share
    ours = region_variants(maps, labels)[:, : len(LAYERS), V["mass_share_abs"]]
    np.testing.assert_allclose(ours, pooled, rtol=1e-9)


def test_rank_p_value():
    assert rank_p_value(0.5, [0.1, 0.6, 0.3]) == pytest.approx(2 / 4)
    assert rank_p_value(0.7, [0.1, 0.6, 0.3]) == pytest.approx(1 / 4)  # the floor 1 / (R + 1)
    assert rank_p_value(0.1, [0.1]) == 1.0  # ties count against the trained models
    assert np.isnan(rank_p_value(0.5, []))


def _rows(values, modality="bmode", fold=0, null_model=None, subjects=("s1", "s2")):
    """Long paper-score rows: one scan per subject, ``values[layer] -> per-scan values``."""
    rows = []
    for layer, per_scan in values.items():
        for subject, v in zip(subjects, per_scan):
            rows.append({"modality": modality, "fold": fold, "map": "gradcam", "scan_id": f"{subject}_{fold}",
                         "subject_id": subject, "layer": layer, "variant": "mean_normalised", "value": v})
    table = pd.DataFrame(rows)
    if null_model is not None:
        table.insert(0, "null_model", null_model)
    return table


def test_paper_table_trained_against_null():
    trained = _rows({"dfm": [0.6, 0.4], "muscle": [0.2, 0.2]})
    null = pd.concat([_rows({"dfm": [0.5, 0.5], "muscle": [0.1, 0.3]}, null_model=0),
                      _rows({"dfm": [0.7, 0.5], "muscle": [0.1, 0.1]}, null_model=1)], ignore_index=True)
    table = paper_table(trained, null, 200, 0.95, 0, 1)
    assert list(table.columns) == list(PAPER_COLUMNS)
    table = table.set_index("layer")
    assert table.loc["dfm", "trained"] == pytest.approx(0.5)
    assert table.loc["dfm", "null_mean"] == pytest.approx(0.55)
    assert table.loc["dfm", "excess"] == pytest.approx(-0.05)
    assert table.loc["dfm", "p_value"] == pytest.approx((1 + 2) / 3)  # replicate means 0.5 and 0.6 >= 0.5
    assert table.loc["muscle", "p_value"] == pytest.approx((1 + 1) / 3)  # 0.2 and 0.1: only 0.2 >= 0.2
    assert table.loc["dfm", "p_floor"] == pytest.approx(1 / 3) and table.loc["dfm", "n_null_models"] == 2
    assert table.loc["dfm", "paper_value"] == pytest.approx(0.420) and np.isnan(table.loc["muscle", "paper_value"])
    assert "grown by 1 voxel" in table.loc["dfm", "definition"]
    none = paper_table(trained, pd.DataFrame(), 200, 0.95, 0, 1)
    assert none["null_mean"].isna().all() and none["p_value"].isna().all()


def _paper(modality, layer, trained, null):
    return {"modality": modality, "map": "gradcam_last", "variant": "mean_normalised", "layer": layer,
            "trained": trained, "null_mean": null, "primary_driving": "yes" if layer == "muscle" else "no"}


def test_paper_check_answers():
    bmode = {"dermis": (0.1, 0.1), "superficial_fat": (0.2, 0.2), "sfm": (0.3, 0.6), "deep_fat": (0.1, 0.1),
             "dfm": (0.5, 0.4), "muscle": (0.2, 0.3)}
    rows = [_paper("bmode", layer, t, n) for layer, (t, n) in bmode.items()]
    rows += [_paper("fused", "non_muscle", 0.30, 0.50), _paper("fused", "muscle", 0.32, 0.20)]
    rows += [_paper("bmode", "muscle", 0.2, 0.3) | {"modality": "swe"}]
    perf = pd.DataFrame({"modality": ["bmode", "fused"], "metric": ["auc", "auc"], "estimate": [0.8, 0.9]})
    check = paper_check({"toy": pd.DataFrame(rows)}, {"toy": perf}, 1.25)
    assert list(check.columns) == list(CHECK_COLUMNS)
    got = check.set_index(["question", "models"])["answer"].to_dict()
    assert got == {("dfm_first_bmode", "trained"): "yes", ("dfm_first_bmode", "null_models"): "no",
                   ("non_muscle_equals_muscle_fused", "trained"): "yes",  # 0.30 / 0.32 = 0.94
                   ("non_muscle_equals_muscle_fused", "null_models"): "no"}  # 0.50 / 0.20 = 2.5
    sentences = check.set_index(["question", "models"])["sentence"]
    assert "does not rank first in B-mode (sfm does; the DFM is 2)" in sentences[("dfm_first_bmode", "null_models")]
    assert check["primary"].iloc[0] == "label-gap calls (bmode): muscle"
    assert check["auc_fused"].eq(0.9).all()
