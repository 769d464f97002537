"""Faithfulness, sanity and robustness summaries on games and profiles whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layer.checks import summaries as checks
from layer.explain.attribute import attributed_scans
from layer.names import LAYERS


def additive_values(weights: np.ndarray) -> np.ndarray:
    """All 64 coalition values of additive games: v(S) = sum of the weights of the players in S."""
    bits = (np.arange(64)[:, None] >> np.arange(6)) & 1
    return np.asarray(weights, dtype=float) @ bits.T


def test_faithfulness_on_an_additive_game():
    # Two scans; on an additive game the Shapley values are the weights and the best order is by weight.
    weights = np.array([[0.1, 0.2, 3.0, 0.0, 1.0, 0.5], [-0.3, 0.0, 2.0, 0.1, 0.4, 1.0]])
    values = additive_values(weights)  # [2, 64]; full logit 4.8 and 3.2: target class positive
    ids = ["a", "b"]
    right = pd.DataFrame(weights, index=ids, columns=list(LAYERS))
    reversed_ = -right
    curves, summary = checks.faithfulness_tables(values, ids, np.array([1, 0]), {"right": right, "wrong": reversed_})
    row = summary.set_index("method")
    # Deleting by weight: curve of scan a = 4.8, 1.8, 0.8, 0.3, 0.1, 0.0, -0.0 ... aopc = mean(4.8 - curve)
    curve_a = 4.8 - np.cumsum([0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.0])
    curve_b = 3.2 - np.cumsum([0, 2.0, 1.0, 0.4, 0.1, 0.0, -0.3])
    expected = np.mean([np.mean(curve_a[0] - curve_a), np.mean(curve_b[0] - curve_b)])
    assert row.loc["right", "aopc"] == pytest.approx(expected)
    assert row.loc["right", "aopc"] == pytest.approx(row.loc["right", "aopc_shapley"])
    assert row.loc["right", "order_percentile"] == pytest.approx(1.0)
    assert row.loc["wrong", "aopc"] < row.loc["right", "aopc_random"] < row.loc["right", "aopc"]
    # Random order: after k deletions the expected remaining value is (6 - k) / 6 of the total.
    random_drop = curves[curves["method"] == "random"]["mean_drop"].to_numpy()
    np.testing.assert_allclose(random_drop, np.arange(7) / 6 * np.mean([4.8, 3.2]))
    with pytest.raises(ValueError, match="did not score"):
        checks.faithfulness_tables(values, ids, np.array([1, 0]), {"partial": right.iloc[:1]})


def profile_rows(level: int, shares: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "modality": "bmode", "method": "m", "blocks_randomised": level, "block": "fc" if level else "none",
        "scan_id": "s", "channel": "all", "layer": list(LAYERS), "measure": "mass_share_abs", "value": shares,
    })


def test_sanity_flags_a_profile_that_survives_randomisation():
    trained = [0.1, 0.2, 0.3, 0.05, 0.15, 0.2]
    same_order = [0.12, 0.18, 0.35, 0.01, 0.14, 0.2]  # ranks 1..6 unchanged except a tie -> rho ~0.99
    reversed_order = trained[::-1]
    survives = pd.concat([profile_rows(0, trained), profile_rows(1, same_order)])
    table = checks.sanity_table(survives, threshold=0.7)
    assert table["flagged"].all() and table["spearman"].iloc[-1] > 0.9
    destroyed = pd.concat([profile_rows(0, trained), profile_rows(1, reversed_order)])
    table = checks.sanity_table(destroyed, threshold=0.7)
    assert not table["flagged"].any() and table["spearman"].iloc[-1] < 0


def test_robustness_change_and_spread():
    def rows(perturbation: str, shares: list[float], dice: float) -> pd.DataFrame:
        share = pd.DataFrame({"scan_id": "s", "channel": "all", "layer": list(LAYERS), "measure": "mass_share_abs",
                              "value": shares})
        mass_abs = share.assign(measure="mass_abs", value=np.asarray(shares) * 2)
        mass_pos = share.assign(measure="mass_pos", value=np.asarray(shares) * 2)  # all positive: signed = 2 s
        out = pd.concat([share, mass_abs, mass_pos])
        return out.assign(modality="bmode", method="m", perturbation=perturbation, mean_dice=dice)

    base = [0.1, 0.1, 0.2, 0.1, 0.3, 0.2]
    deeper = [0.1, 0.1, 0.1, 0.2, 0.3, 0.2]
    dice = [0.1, 0.1, 0.25, 0.05, 0.3, 0.2]
    table = checks.robustness_table(pd.concat([rows("none", base, 1.0), rows("deeper", deeper, 0.8),
                                               rows("dice", dice, 0.75)]))
    share = table[table["measure"] == "mass_share_abs"].set_index(["perturbation", "layer"])
    assert share.loc[("deeper", "sfm"), "change"] == pytest.approx(-0.1)
    assert share.loc[("none", "sfm"), "spread"] == pytest.approx(0.1)
    assert share.loc[("dice", "deep_fat"), "spread"] == pytest.approx(0.1)
    assert share.loc[("dice", "dfm"), "spread"] == 0
    contribution = table[table["measure"] == "contribution"].set_index(["perturbation", "layer"])
    assert contribution.loc[("deeper", "deep_fat"), "value"] == pytest.approx(0.4)


def test_attributed_scans_take_the_first_scans_of_each_subject():
    sheet = pd.DataFrame({"scan_id": ["b2", "a1", "a2", "b1", "c1"], "subject_id": ["B", "A", "A", "B", "C"]})
    assert attributed_scans(["a2", "a1", "b2", "b1"], sheet, 1) == ["a1", "b1"]
    assert attributed_scans(["a2", "a1", "b2", "b1", "c1"], sheet, 2) == ["a1", "a2", "b1", "b2", "c1"]
    assert attributed_scans(["b2", "a1"], sheet, 0) == ["b2", "a1"]


def test_attribution_settings_from_rule_params():
    from types import SimpleNamespace

    from layer.explain.attribute import AttributionSettings

    params = SimpleNamespace(ig_steps=4, blur_sigma=1.5, road_noise=0.02, code="abc", n_scans=3)
    settings = AttributionSettings.from_params(params)
    assert (settings.ig_steps, settings.blur_sigma, settings.road_noise) == (4, 1.5, 0.02)
    assert settings.batch_size is None  # not passed: the job's method does not read it
    assert AttributionSettings.defaults().membrane_margin == 1  # defaults: the schema's, as in config.yaml
